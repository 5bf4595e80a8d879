"""The Result renderer: pure functions over hand-built Results (no engine, no IPython)."""

from __future__ import annotations

import re

import pytest

from codecapsule import Limits, Result, Stage, Table, Verdict
from codecapsule._render import map_locations, render_html, render_text, status_line

EVIL = "</pre><script>alert(1)</script>"


def ok(stdout: str = "42\n", stderr: str = "", **kw: object) -> Result:
    run = Stage(stdout=stdout, stderr=stderr, exit_code=0, wall_time=0.12, memory=12_900_000)
    return Result("java", "17.0.9", "local", Verdict.OK, run=run, **kw)  # type: ignore[arg-type]


# -- escaping ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "result",
    [
        ok(stdout=EVIL),
        ok(stderr=EVIL),
        Result("c", "12", "local", Verdict.COMPILE_ERROR, compile=Stage(stderr=f"main.c:1:1: error: {EVIL}")),
        Result("sql", "1.4", "duckdb", Verdict.RUNTIME_ERROR, error=f"Parser Error: {EVIL}"),
        Result("sql", "1.4", "duckdb", Verdict.OK, table=Table((EVIL,), (EVIL,), ((EVIL,),), 1)),
        Result("python", "3", "local", Verdict.INTERNAL_ERROR, error=EVIL),
        ok(stdout="1\n", name=EVIL),
        Result(
            "python",
            "3",
            "local",
            Verdict.WRONG_ANSWER,
            run=Stage(stdout="x\n", exit_code=0),
            expected=EVIL,
            diff=f"--- expected\n+++ actual\n@@ -1 +1 @@\n-{EVIL}\n+x",
        ),
    ],
)
def test_student_markup_is_shown_as_text(result: Result) -> None:
    html = render_html(result)
    assert "<script>" not in html
    assert "</pre><script>" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    # the text rendering shows it verbatim: that is what the student printed
    assert "<script>alert(1)</script>" in render_text(result)


def test_only_known_tags_in_html() -> None:
    html = render_html(ok(stdout=EVIL * 3, stderr="<b>x</b> <img src=x onerror=alert(1)>"))
    tags = set(re.findall(r"<\s*/?\s*([a-zA-Z]+)", html))
    assert tags <= {"div", "pre", "span", "details", "summary", "table", "thead", "tbody", "tr", "th", "td"}
    assert "onerror=alert" not in html.replace("onerror=alert(1)&gt;", "")


# -- stdout, stderr and status ----------------------------------------------------------------------------


def test_stdout_and_stderr_are_separate_blocks() -> None:
    html = render_html(ok(stdout="out line\n", stderr="err line\n"))
    stdout = re.search(r'<pre class="cc-stdout"[^>]*>(.*?)</pre>', html, re.S)
    stderr = re.search(r'<pre class="cc-stderr"[^>]*>(.*?)</pre>', html, re.S)
    assert stdout and stdout.group(1) == "out line"
    assert stderr and stderr.group(1) == "err line"
    assert "jp-error-color1" in html  # stderr is marked with the theme's error colour
    text = render_text(ok(stdout="out line\n", stderr="err line\n"))
    assert text.index("out line") < text.index("--- stderr ---") < text.index("err line")


def test_status_line_has_verdict_exit_time_memory_engine_and_version() -> None:
    line = status_line(ok())
    assert line == "✓ ok · exit 0 · 120 ms · 12.3 MiB · local · java 17.0.9"
    assert f"[{line}]" in render_text(ok())
    assert "120 ms" in render_html(ok()) and "local" in render_html(ok())


def test_no_output_is_said() -> None:
    assert "(no output)" in render_text(ok(stdout=""))
    assert "(no output)" in render_html(ok(stdout=""))


def test_ansi_codes_and_control_characters_are_removed() -> None:
    result = ok(stdout="\x1b[31mred\x1b[0m\x00 plain\n")
    assert "red plain" in render_text(result)
    assert "\x1b" not in render_html(result) and "\x00" not in render_html(result)


def test_repr_html_and_str_use_the_renderer() -> None:
    result = ok(stdout="hello\n")
    assert result._repr_html_() == render_html(result)
    assert str(result) == render_text(result)


# -- compile errors mapped to the cell's lines --------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "main", "expected"),
    [
        ("main.cpp:3:5: error: expected ';'", "main.cpp", "line 3, col 5: error: expected ';'"),
        ("/tmp/cc-1/main.c:12:1: warning: x", "main.c", "line 12, col 1: warning: x"),
        ("Main.java:7: error: ';' expected", "Main.java", "line 7: error: ';' expected"),
        ('  File "/box/main.py", line 4, in <module>', "main.py", "  cell, line 4, in <module>"),
        (
            "/w/main.js:2\n    at Object.<anonymous> (/w/main.js:2:9)",
            "main.js",
            "line 2\n    at Object.<anonymous> (line 2, col 9)",
        ),
        ("main.c: In function 'main':\nmain.c:2:3: error: x", "main.c", "In function 'main':\nline 2, col 3: error: x"),
        ("Point.java:3: error: x", "Main.java", "Point.java:3: error: x"),  # another file is left alone
        ("domain.c:3:1: error: x", "main.c", "domain.c:3:1: error: x"),  # not a prefix match
        ("main.cpp:3:5: error", "", "main.cpp:3:5: error"),
    ],
)
def test_map_locations(text: str, main: str, expected: str) -> None:
    assert map_locations(text, main) == expected


def test_map_locations_with_prepended_lines() -> None:
    text = "main.c:5:2: error: a\nmain.c:1:1: note: b"
    # two lines were added before the cell: line 5 of the file is line 3 of the cell; line 1 is not the cell's
    assert map_locations(text, "main.c", line_offset=-2) == "line 3, col 2: error: a\nmain.c:1:1: note: b"


def test_map_locations_for_a_magic_cell_renumbers_gcc_excerpts() -> None:
    # %%capsule is the cell's line 1: the program's line 3 is the cell's line 4, in the excerpt gutter too
    text = "main.cpp:3:5: error: 'y' was not declared\n    3 |     y = 1;\n      |     ^\n"
    assert map_locations(text, "main.cpp", line_offset=1) == (
        "line 4, col 5: error: 'y' was not declared\n    4 |     y = 1;\n      |     ^\n"
    )


def test_map_locations_names_the_other_saved_files() -> None:
    text = "Main.java:2: error: a\n/w/Point.java:7: error: b\nXPoint.java:1: c"
    mapped = map_locations(text, "Main.java", line_offset=1, other_files=["Point.java"])
    assert mapped == "line 3: error: a\nPoint.java line 8: error: b\nXPoint.java:1: c"


def test_compile_error_is_shown_with_cell_lines() -> None:
    compile_ = Stage(
        stderr="/tmp/x/main.cpp: In function 'int main()':\n/tmp/x/main.cpp:2:5: error: "
        "'y' was not declared in this scope\n    2 |     y = 1;\n",
        exit_code=1,
        wall_time=0.3,
    )
    result = Result("c++", "12.2.0", "local", Verdict.COMPILE_ERROR, compile=compile_)
    text = render_text(result)
    assert "line 2, col 5: error: 'y' was not declared" in text
    assert "main.cpp" not in text
    assert "Compile error" in text and "compile_error" in text
    html = render_html(result)
    assert 'class="cc-compile"' in html and "line 2, col 5" in html


def test_java_main_file_given_by_the_caller() -> None:
    result = Result(
        "java",
        "17",
        "local",
        Verdict.COMPILE_ERROR,
        compile=Stage(stderr="Hello.java:3: error: ';' expected\n", exit_code=1),
    )
    assert "Hello.java:3" in render_text(result)  # default name is Main.java: unknown, left alone
    assert "line 3: error" in render_text(result, main_file="Hello.java")


# -- limits, wrong answers, internal errors ------------------------------------------------------------------


def test_time_limit_note_keeps_the_captured_prefix() -> None:
    run = Stage(stdout="started\n", status="TO", signal="SIGKILL", wall_time=1.01)
    result = Result("python", "3.11", "local", Verdict.TIME_LIMIT, run=run, limits=Limits(run_timeout=1))
    text = render_text(result)
    assert "Time limit" in text and "limit 1.00 s" in text
    assert "started" in text
    assert "signal" not in status_line(result)  # the kill is the limit, not the program's crash
    assert 'class="cc-note cc-warn"' in render_html(result)


@pytest.mark.parametrize(
    ("verdict", "status", "limits", "words"),
    [
        (
            Verdict.MEMORY_LIMIT,
            "ML",
            Limits(memory="64MiB"),
            "Memory limit: the program needed more than its memory limit of 64 MiB",
        ),
        (  # as the user wrote it: --memory 64MB is 64 MB, not "61.0 MiB"
            Verdict.MEMORY_LIMIT,
            "ML",
            Limits(memory="64MB"),
            "Memory limit: the program needed more than its memory limit of 64 MB and",
        ),
        (
            Verdict.OUTPUT_LIMIT,
            "OL",
            Limits(output="1MiB"),
            "Output limit: the program printed more than the output limit (1 MiB per stream)",
        ),
    ],
)
def test_limit_notes(verdict: Verdict, status: str, limits: Limits, words: str) -> None:
    result = Result("c", "12", "local", verdict, run=Stage(stdout="prefix\n", status=status), limits=limits)
    assert words in render_text(result)
    assert "prefix" in render_text(result)


def test_a_memory_limit_status_shows_the_limit_as_written_not_the_peak_at_the_kill() -> None:
    run = Stage(status="ML", memory=63_963_136, wall_time=0.07)
    result = Result("python", "3", "local", Verdict.MEMORY_LIMIT, run=run, limits=Limits(memory="64MB"))
    assert status_line(result) == "⚠ memory_limit · 70 ms · over 64 MB · local · python 3"


def wrong(expected: str, stdout: str) -> Result:
    from codecapsule._verdicts import compare_output

    run = Stage(stdout=stdout, exit_code=0)
    diff = compare_output(stdout, expected)
    return Result("python", "3", "local", Verdict.WRONG_ANSWER, run=run, expected=expected, diff=diff)


def test_wrong_answer_compares_expected_and_your_output_line_by_line() -> None:
    result = wrong("1\n2\n3\n", "1\n20\n3\n")
    text = render_text(result)
    assert "Wrong answer" in text and "@@" not in text and "+++" not in text
    assert "line 2:\n  expected:    2\n  your output: 20\n                ^" in text
    html = render_html(result)
    table_html = re.search(r'<table class="cc-diff".*?</table>', html, re.S)
    assert table_html is not None
    rows = re.findall(r'<tr class="(cc-same|cc-differs)".*?</tr>', table_html.group(0), re.S)
    assert rows == ["cc-same", "cc-differs", "cc-same"]  # aligned: one row per line
    assert ">expected</th>" in html and ">your output</th>" in html
    differs = re.search(r'<tr class="cc-differs".*?</tr>', html, re.S)
    assert differs is not None
    # only the differing character is marked: "2" is common, the added "0" is highlighted
    assert re.findall(r'<span class="cc-changed"[^>]*>(.*?)</span>', differs.group(0)) == ["0"]


def test_a_missing_line_does_not_misalign_the_rest() -> None:
    result = wrong("a\nb\nc\nd\n", "a\nc\nd\n")
    text = render_text(result)
    assert "line 2: expected 'b', your output has no such line" in text
    assert "line 3" not in text and "line 4" not in text
    html = render_html(result)
    assert html.count('class="cc-differs"') == 1 and "(no line)" in html


def test_long_matching_runs_in_a_diff_are_summarised() -> None:
    want = "".join(f"{i}\n" for i in range(100))
    result = wrong(want, want.replace("50\n", "fifty\n"))
    html = render_html(result)
    assert "… 48 matching lines" in html and "… 47 matching lines" in html
    assert html.count('class="cc-differs"') == 1


def test_invisible_differences_are_shown_as_repr() -> None:
    text = render_text(wrong("a b\n", "a\tb\n"))
    assert "expected:    'a b'" in text and "your output: 'a\\tb'" in text


def test_internal_error_says_what_happened_without_a_stack() -> None:
    result = Result("java", "*", "local", Verdict.INTERNAL_ERROR, error="ToolchainMissing: javac is not installed")
    text = render_text(result)
    assert "could not run this program: ToolchainMissing: javac is not installed" in text
    assert "Traceback" not in text


# -- long output --------------------------------------------------------------------------------------------


def test_the_verdict_comes_first() -> None:
    result = ok(stdout="".join(f"line {i}\n" for i in range(100)))
    html = render_html(result)
    assert html.index('class="cc-status"') < html.index('class="cc-stdout"')
    assert render_text(result).startswith("[✓ ok · exit 0")


def test_long_output_folds_after_a_few_dozen_lines_by_default() -> None:
    result = ok(stdout="".join(f"line {i}\n" for i in range(1000)))
    text = render_text(result)
    assert "line 39\n" in text and "line 40\n" not in text
    assert "… 960 more lines not shown" in text
    assert "show all 1,000 lines (960 more)" in render_html(result)


def test_runs_of_identical_lines_and_frames_are_collapsed() -> None:
    frames = "Exception in thread \"main\" java.lang.StackOverflowError\n" + "\tat Main.f(Main.java:3)\n" * 1024
    result = Result("java", "17", "local", Verdict.RUNTIME_ERROR, run=Stage(stderr=frames, exit_code=1))
    text = render_text(result)
    assert text.count("at Main.f(") == 4
    assert "… 1,020 more identical lines" in text
    html = render_html(result)
    assert '<span class="cc-repeat"' in html and "… 1,020 more identical lines" in html
    assert "<details" not in html  # collapsed, it fits: nothing to fold
    # mutual recursion: a block of two frames repeating
    pair = "\tat Main.even(Main.java:2)\n\tat Main.odd(Main.java:5)\n" * 300
    text = render_text(ok(stdout=pair))
    assert text.count("Main.even") == 2 and "… 596 more lines repeating the 2 above" in text


def test_long_output_collapses() -> None:
    result = ok(stdout="".join(f"line {i}\n" for i in range(1000)))
    html = render_html(result, max_lines=50)
    assert "<details" in html and "show all 1,000 lines (950 more)" in html
    head = re.search(r'<pre class="cc-stdout"[^>]*>(.*?)</pre>', html, re.S)
    assert head and head.group(1).count("\n") == 49
    assert "line 999" in html  # everything is still there, behind "show all"
    text = render_text(result, max_lines=50)
    assert "line 49" in text and "line 50\n" not in text
    assert "… 950 more lines not shown" in text


def test_one_very_long_line_collapses() -> None:
    html = render_html(ok(stdout="x" * 50_000))
    assert "show all 50,000 characters" in html


# -- SQL tables ---------------------------------------------------------------------------------------------


def table(total: int, shown: int = 1000) -> Table:
    rows = tuple((i, f"name {i}", None if i % 2 else 1.5) for i in range(min(total, shown)))
    return Table(("id", "name", "score"), ("INTEGER", "VARCHAR", "DOUBLE"), rows, total, total > shown)


def test_sql_table_with_footer() -> None:
    result = Result("sql", "1.4.1", "duckdb", Verdict.OK, table=table(1_000_000), run=Stage(wall_time=0.02))
    html = render_html(result)
    assert html.count("<tr>") == 11  # header + 10 rows
    assert "showing 10 of 1,000,000 rows" in html
    assert '<th title="INTEGER"' in html
    assert "NULL" in html
    text = render_text(result)
    assert "(showing 10 of 1,000,000 rows)" in text
    assert text.splitlines()[0].startswith("[✓ ok")  # the verdict first
    assert text.splitlines()[1].split() == ["id", "|", "name", "|", "score"]
    assert "1,000,000 rows" in status_line(result)


def test_small_sql_table_has_no_footer_and_max_rows_is_honoured() -> None:
    small = Result("sql", "1.4.1", "duckdb", Verdict.OK, table=table(3))
    assert "showing" not in render_html(small) and "showing" not in render_text(small)
    big = Result("sql", "1.4.1", "duckdb", Verdict.OK, table=table(50))
    assert "showing 25 of 50 rows" in render_html(big, max_rows=25)


def test_sql_error_is_shown() -> None:
    msg = "Catalog Error: Table with name nope does not exist!\nLINE 1: SELECT * FROM nope\n" + " " * 22 + "^"
    result = Result("sql", "1.4.1", "duckdb", Verdict.RUNTIME_ERROR, error=msg)
    text = render_text(result)
    assert "Catalog Error" in text and "LINE 1: SELECT * FROM nope" in text
    assert 'class="cc-error"' in render_html(result)


def test_sql_line_numbers_follow_the_cell() -> None:
    from codecapsule._render import map_sql_lines

    msg = "Catalog Error: Table with name student does not exist!\n\nLINE 2: FROM student\n             ^^^^^^^"
    assert map_sql_lines(msg, 1).endswith("LINE 3: FROM student\n             ^^^^^^^")
    long = "Parser Error: syntax error\n\nLINE 9: SELEC x\n        ^"
    assert map_sql_lines(long, 1).endswith("LINE 10: SELEC x\n         ^")  # the marker stays under the text
    assert map_sql_lines(msg, 0) == msg
    result = Result("sql", "2.0", "duckdb", Verdict.RUNTIME_ERROR, error=msg)
    assert "LINE 3: FROM student" in render_text(result, line_offset=1)
