"""``%%capsule`` / ``%capsule`` driven through a real IPython InteractiveShell and the real local engine.

Assertions are on what a student would see: the display bundles the cell publishes (HTML and text), what the
shell prints for errors, and whether the cell counts as failed (which is what stops "Run All").
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from IPython.core.error import UsageError
from IPython.core.interactiveshell import InteractiveShell
from IPython.utils.capture import capture_output

from codecapsule.magics import CellOptions, UnexpectedVerdict, parse_cell_line, saved_file_name, unescape

pytestmark = pytest.mark.timeout(120)


@dataclass
class Cell:
    success: bool
    error: BaseException | None
    stdout: str  # what the shell printed (tracebacks, print())
    stderr: str  # UsageError messages, %config errors
    texts: list[str]  # text/plain of each display
    htmls: list[str]  # text/html of each display

    @property
    def text(self) -> str:
        return "\n".join(self.texts)

    @property
    def html(self) -> str:
        return "\n".join(self.htmls)

    @property
    def shown(self) -> str:
        """The text under the status line, which comes first (the verdict before the output)."""
        first, _, rest = self.text.partition("\n")
        assert first.startswith("[") and " · " in first, self.text
        return rest


@pytest.fixture
def shell(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[InteractiveShell]:
    for var in ("CODECAPSULE_PISTON_URL", "CODECAPSULE_ENGINE", "CODECAPSULE_TIMEOUT", "CODECAPSULE_MEMORY"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.chdir(tmp_path)
    ip = InteractiveShell.instance()
    ip.run_line_magic("load_ext", "codecapsule")
    yield ip
    ip.run_line_magic("unload_ext", "codecapsule")
    ip.config.pop("Capsule", None)  # %config values would configure the next test's instance
    for name in [n for n in ip.user_ns if n.startswith("cc_")]:
        del ip.user_ns[name]


def run(ip: InteractiveShell, code: str) -> Cell:
    with capture_output() as cap:
        result = ip.run_cell(code)
    return Cell(
        success=result.success,
        error=result.error_in_exec or result.error_before_exec,
        stdout=cap.stdout,
        stderr=cap.stderr,
        texts=[o.data.get("text/plain", "") for o in cap.outputs],
        htmls=[o.data.get("text/html", "") for o in cap.outputs],
    )


def no_codecapsule_stack(cell: Cell) -> None:
    """Nothing of codecapsule's own stack: no traceback printed by the shell, no codecapsule file anywhere."""
    shell_printed = cell.stdout + cell.stderr
    # the live echo of a failing program is its own traceback (files under the sandbox's /box); any other is ours
    frames = re.findall(r'File "([^"]+)"', shell_printed)
    assert all(frame.startswith("/box/") for frame in frames), frames
    assert "most recent call last" not in shell_printed or frames
    assert "codecapsule/" not in shell_printed + cell.text and "magics.py" not in shell_printed + cell.text


needs_java = pytest.mark.skipif(shutil.which("javac") is None, reason="javac not installed")
needs_gpp = pytest.mark.skipif(shutil.which("g++") is None, reason="g++ not installed")


# -- parsing (pure) ------------------------------------------------------------------------------------------


def test_parse_full_line() -> None:
    opts = parse_cell_line(
        'cpp --stdin "3 4\\n5" --args "-x 7" --timeout 500ms --memory 64MB --out cc_r '
        "--with point.h point.cpp --expect 'a \"b\"' --raise --engine local --version 12"
    )
    assert opts == CellOptions(
        language="c++",
        stdin="3 4\n5",
        args=("-x", "7"),
        timeout="500ms",
        memory="64MB",
        out="cc_r",
        with_files=("point.h", "point.cpp"),
        expect='a "b"',
        raise_on_failure=True,
        engine="local",
        version="12",
    )


def test_parse_sql_options() -> None:
    opts = parse_cell_line("duckdb --db course.duckdb --db-write --register scores=df grades --out cc_t")
    assert opts.language == "sql" and opts.db == "course.duckdb" and opts.db_write
    assert opts.register == (("scores", "df"), ("grades", "grades"))


def test_parse_save_names() -> None:
    assert parse_cell_line("java --save Point").save == "Point.java"
    assert parse_cell_line("cpp --save point.h").save == "point.h"
    assert parse_cell_line("c --save util --run").run
    assert saved_file_name("helpers/util", "python") == "helpers/util.py"


def test_unescape() -> None:
    assert unescape(r"a\nb\tc\\n") == "a\nb\tc\\n"


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("", "needs a language"),
        ("jav", "Did you mean 'java'"),
        ("python --stdin a --stdin-from b", "either --stdin or --stdin-from"),
        ("python --expect a --expect-from b", "either --expect or --expect-from"),
        ("python --bogus", "unknown option --bogus. See %%capsule"),
        ('python --stdin "unclosed', "check the quotes"),
        ("python --run", "--run goes with --save"),
        ("python --db x.duckdb", "are for SQL cells"),
        ("sql --db-write", "--db-write goes with --db"),
        ("sql --register 1x=df", "use name=VARIABLE"),
        ("python --out not-a-name", "is not a Python variable name"),
        ("python --expect-verdict great", "--expect-verdict 'great' is not one of ok, compile_error"),
    ],
)
def test_parse_errors_are_usage_errors(line: str, message: str) -> None:
    with pytest.raises(UsageError, match=message.replace("(", r"\(").replace("'", "'")):
        parse_cell_line(line)


# -- registration and configuration ------------------------------------------------------------------------


def test_help_is_generated(shell: InteractiveShell) -> None:
    cell = run(shell, "%%capsule?")
    assert "%%capsule [--stdin TEXT]" in cell.stdout
    assert "--expect-verdict VERDICT" in cell.stdout and "--register NAME=VAR" in cell.stdout


def test_config_lists_and_sets_capsule_options(shell: InteractiveShell) -> None:
    listed = run(shell, "%config Capsule")
    for name in ("piston_url", "timeout", "memory", "engine", "displaylimit", "raise_on_failure"):
        assert f"Capsule.{name}=" in listed.stdout
    run(shell, '%config Capsule.timeout = "300ms"')
    cell = run(shell, "%%capsule python\nwhile True: pass")
    assert "Time limit" in cell.text and "limit 300 ms" in cell.text


def test_config_rejects_bad_values(shell: InteractiveShell) -> None:
    cell = run(shell, '%config Capsule.timeout = "soon"')
    assert "%config Capsule.timeout: must be a duration such as 2.5 or '500ms', not 'soon'." in cell.stderr
    cell = run(shell, '%config Capsule.piston_url = "ftp://example.edu"')
    assert "must start with https://" in cell.stderr and not cell.success
    assert shell.magics_manager.registry["Capsule"].piston_url is None
    assert shell.magics_manager.registry["Capsule"].timeout is None


def test_unload_removes_magics_and_configurable(shell: InteractiveShell) -> None:
    shell.run_line_magic("unload_ext", "codecapsule")
    assert shell.find_cell_magic("capsule") is None
    assert not any(type(c).__name__ == "Capsule" for c in shell.configurables)
    shell.run_line_magic("load_ext", "codecapsule")  # for the fixture's teardown
    assert shell.find_cell_magic("capsule") is not None


def test_import_codecapsule_does_not_import_ipython() -> None:
    code = "import sys, codecapsule\nprint(sorted(m for m in ('IPython', 'traitlets', 'duckdb') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


# -- running cells ------------------------------------------------------------------------------------------


def test_python_cell_shows_stdout_and_status(shell: InteractiveShell) -> None:
    cell = run(shell, "%%capsule python\nprint(6 * 7)")
    assert cell.success
    assert cell.text.startswith("[✓ ok · exit 0 · ") and cell.shown == "42"
    assert "local · python 3." in cell.text
    assert '<pre class="cc-stdout"' in cell.html and ">42</pre>" in cell.html


def test_stderr_is_visibly_distinct(shell: InteractiveShell) -> None:
    cell = run(shell, '%%capsule js\nconsole.log("to stdout"); console.error("to stderr")')
    assert '<pre class="cc-stdout"' in cell.html and "to stdout" in cell.html
    assert '<pre class="cc-stderr"' in cell.html
    stderr_block = cell.html.split('<pre class="cc-stderr"', 1)[1]
    assert "to stderr" in stderr_block and "to stdout" not in stderr_block


def test_student_script_tag_renders_as_text(shell: InteractiveShell) -> None:
    cell = run(shell, '%%capsule python\nprint("</pre><script>alert(1)</script>")')
    assert "<script>" not in cell.html
    assert "&lt;/pre&gt;&lt;script&gt;alert(1)&lt;/script&gt;" in cell.html
    assert "</pre><script>alert(1)</script>" in cell.text


@needs_gpp
def test_compile_error_points_at_the_cells_line(shell: InteractiveShell) -> None:
    cell = run(shell, "%%capsule cpp\n#include <iostream>\nint main() {\n    std::cout << y;\n}")
    assert cell.success  # a student's compile error is a result, not a failed cell
    assert "line 4, col 18: error: 'y' was not declared" in cell.text.replace("‘", "'").replace("’", "'")
    assert "    4 |     std::cout << y;" in cell.text  # gcc's excerpt numbered like the cell too
    assert "main.cpp" not in cell.text
    assert "compile_error" in cell.text
    no_codecapsule_stack(cell)


def test_runtime_error_shows_the_students_traceback_only(shell: InteractiveShell) -> None:
    cell = run(shell, "%%capsule python\nx = 1\nprint(x / 0)")
    assert cell.success
    assert "cell, line 3, in <module>" in cell.text and "ZeroDivisionError" in cell.text
    assert "runtime_error · exit 1" in cell.text
    no_codecapsule_stack(cell)


def test_time_limit_keeps_what_was_printed(shell: InteractiveShell) -> None:
    cell = run(shell, '%%capsule python --timeout 500ms\nprint("started", flush=True)\nwhile True: pass')
    assert "Time limit: the program was stopped" in cell.text
    assert "started" in cell.text
    assert "time_limit" in cell.text


def test_stdin_text_and_variable(shell: InteractiveShell) -> None:
    cell = run(shell, '%%capsule python --stdin "3 4"\na, b = map(int, input().split())\nprint(a + b)')
    assert cell.shown.splitlines()[0] == "7"
    run(shell, "cc_lines = ['Ada', 'Grace']")
    cell = run(shell, "%%capsule python --stdin-from cc_lines\nimport sys\nprint(sorted(sys.stdin.read().split()))")
    assert cell.shown.startswith("['Ada', 'Grace']")
    cell = run(shell, "%%capsule python --stdin-from cc_missing\nprint(1)")
    assert not cell.success and "no variable 'cc_missing'" in cell.stderr
    no_codecapsule_stack(cell)


def test_variables_expand_in_the_magic_line(shell: InteractiveShell) -> None:
    run(shell, "cc_n = 5")
    cell = run(shell, "%%capsule python --args {cc_n} 2\nimport sys\nprint(sys.argv[1:])")
    assert cell.shown.startswith("['5', '2']")


def test_expect_gives_wrong_answer_with_a_diff(shell: InteractiveShell) -> None:
    cell = run(shell, '%%capsule python --expect "1\\n2\\n3"\nfor i in range(1, 3): print(i)')
    assert cell.success
    assert "Wrong answer" in cell.text
    assert "line 3: expected '3', your output has no such line" in cell.text and 'class="cc-diff"' in cell.html
    run(shell, "cc_want = '1\\n2\\n'")
    cell = run(shell, "%%capsule python --expect-from cc_want\nfor i in range(1, 3): print(i)")
    assert "✓ ok" in cell.text and "Wrong answer" not in cell.text


def test_out_keeps_the_result(shell: InteractiveShell) -> None:
    run(shell, "%%capsule python --out cc_r\nprint('kept')")
    assert shell.user_ns["cc_r"].stdout == "kept\n"
    assert shell.user_ns["cc_r"].verdict == "ok"


def test_the_last_result_stays_whole_while_the_display_keeps_head_and_tail(shell: InteractiveShell) -> None:
    run(shell, "%config Capsule.output_budget = 2000")
    cell = run(shell, "%%capsule python\nfor i in range(1000):\n    print(f'row {i:04d}')")
    assert cell.success
    assert "row 0000" in cell.html and "row 0999" in cell.html and "row 0500" not in cell.html
    assert "bytes left out of this view; the whole output is in _capsule_result.stdout" in cell.html
    whole = shell.user_ns["_capsule_result"]
    assert whole.verdict == "ok" and len(whole.stdout.splitlines()) == 1000


def test_no_input_option_and_interactive_config(shell: InteractiveShell) -> None:
    assert parse_cell_line("python --no-input").no_input and not parse_cell_line("python").no_input
    run(shell, "%config Capsule.interactive = False")
    cell = run(shell, "%%capsule python\nprint(int(input()) * 2)")
    assert cell.success and "runtime_error" in cell.text
    assert "this program reads input: pass --stdin, or run the cell interactively" in cell.text


def test_expected_failure_does_not_stop_the_notebook(shell: InteractiveShell) -> None:
    cell = run(shell, "%%capsule c --expect-verdict compile_error\nint main(void) { return missing; }")
    assert cell.success
    assert "expected verdict compile_error: this cell fails on purpose" in cell.text
    assert "'missing' undeclared" in cell.text.replace("‘", "'").replace("’", "'")


def test_unexpected_verdict_fails_the_cell_in_one_line(shell: InteractiveShell) -> None:
    cell = run(shell, "%%capsule c --expect-verdict compile_error\nint main(void) { return 0; }")
    assert not cell.success
    assert isinstance(cell.error, UnexpectedVerdict)
    assert "UnexpectedVerdict" in cell.stdout
    assert "expected verdict compile_error, but the program ran successfully (ok)" in cell.stdout
    assert "✓ ok" in cell.text  # the result is still shown
    no_codecapsule_stack(cell)


def test_raise_option_and_config(shell: InteractiveShell) -> None:
    cell = run(shell, "%%capsule python\nraise SystemExit(3)")
    assert cell.success and "runtime_error · exit 3" in cell.text
    cell = run(shell, "%%capsule python --raise\nraise SystemExit(3)")
    assert not cell.success and "the program exited with an error (runtime_error)" in cell.stdout
    run(shell, "%config Capsule.raise_on_failure = True")
    cell = run(shell, "%%capsule python\nraise SystemExit(3)")
    assert not cell.success
    cell = run(shell, "%%capsule python\nprint('fine')")
    assert cell.success
    no_codecapsule_stack(cell)


def test_usage_errors_are_short(shell: InteractiveShell) -> None:
    cell = run(shell, "%%capsule cobol\nDISPLAY 'HI'.")
    assert not cell.success
    assert "UsageError: unknown language 'cobol'" in cell.stderr
    cell = run(shell, "%%capsule python --timeout forever\nprint(1)")
    assert "UsageError" in cell.stderr and "timeout" in cell.stderr
    no_codecapsule_stack(cell)


def test_engine_errors_are_short(shell: InteractiveShell) -> None:
    cell = run(shell, "%%capsule python --engine piston\nprint(1)")
    assert not cell.success
    assert "NoEndpointConfigured" in cell.stdout and "CODECAPSULE_PISTON_URL" in cell.stdout
    no_codecapsule_stack(cell)


# -- saved files: multi-file programs across cells ----------------------------------------------------------


@needs_java
def test_java_classes_across_cells(shell: InteractiveShell) -> None:
    saved = run(
        shell,
        "%%capsule java --save Point\npublic class Point {\n  final int x, y;\n"
        "  Point(int x, int y) { this.x = x; this.y = y; }\n"
        "  int manhattan() { return Math.abs(x) + Math.abs(y); }\n}",
    )
    assert "saved Point.java (java, 5 lines)" in saved.text
    listed = run(shell, "%capsule files")
    assert "Point.java" in listed.stdout and "java" in listed.stdout
    cell = run(
        shell,
        '%%capsule java --with Point --stdin "3 -4"\nimport java.util.Scanner;\n'
        "public class Main {\n  public static void main(String[] a) {\n"
        "    Scanner in = new Scanner(System.in);\n"
        "    System.out.println(new Point(in.nextInt(), in.nextInt()).manhattan());\n  }\n}",
    )
    assert cell.shown.splitlines()[0] == "7", cell.text


@needs_gpp
def test_cpp_header_across_cells_and_capsule_run(shell: InteractiveShell) -> None:
    run(shell, "%%capsule cpp --save square.h\ninline int square(int x) { return x * x; }")
    run(
        shell,
        '%%capsule cpp --save app.cpp --with square.h\n#include <iostream>\n#include "square.h"\n'
        "int main(int argc, char** argv) { std::cout << square(argc) << std::endl; }",
    )
    cell = run(shell, "%capsule run app.cpp --with square.h --args a b")
    assert cell.shown.splitlines()[0] == "9", cell.text
    cell = run(shell, "%capsule run nothing")
    assert "no saved file 'nothing'" in cell.stderr


def test_save_and_run(shell: InteractiveShell) -> None:
    cell = run(shell, "%%capsule python --save greet --run\nprint('hi')")
    assert "hi" in cell.text
    assert "greet.py" in run(shell, "%capsule files").stdout


def test_line_magic_engine_and_runtimes(shell: InteractiveShell) -> None:
    engine = run(shell, "%capsule engine")
    assert "engine: local" in engine.stdout and "isolation:" in engine.stdout
    runtimes = run(shell, "%capsule runtimes")
    assert "python" in runtimes.stdout
    bad = run(shell, "%capsule frobnicate")
    assert "unknown %capsule command 'frobnicate'" in bad.stderr


# -- SQL ----------------------------------------------------------------------------------------------------


def test_sql_session_persists_and_truncates(shell: InteractiveShell) -> None:
    run(shell, "%%capsule sql\nCREATE TABLE nums AS SELECT range AS n FROM range(1000000)")
    cell = run(shell, "%%capsule sql --out cc_q\nSELECT n, n * n AS sq FROM nums ORDER BY n")
    assert "showing 10 of 1,000,000 rows" in cell.html
    assert cell.html.count("<tr>") == 11
    result: Any = shell.user_ns["cc_q"]
    assert len(result.table.df()) == 1_000_000
    run(shell, "%config Capsule.displaylimit = 3")
    cell = run(shell, "%%capsule sql\nSELECT * FROM nums")
    assert "showing 3 of 1,000,000 rows" in cell.html


def test_sql_register_dataframe(shell: InteractiveShell) -> None:
    run(shell, "import pandas as pd\ncc_df = pd.DataFrame({'name': ['Ada', 'Linus'], 'score': [90, 75]})")
    cell = run(shell, "%%capsule sql\nSELECT * FROM cc_df")
    assert "cc_df" in cell.text and "showing" not in cell.text  # no implicit scan of notebook variables
    cell = run(shell, "%%capsule sql --register scores=cc_df\nSELECT name FROM scores WHERE score > 80")
    assert "Ada" in cell.html and "Linus" not in cell.html


def test_sql_error_shows_duckdbs_message(shell: InteractiveShell) -> None:
    cell = run(shell, "%%capsule sql\nSELECT 1;\nSELECT * FROM no_such_table")
    assert "no_such_table" in cell.text and "Catalog Error" in cell.text
    no_codecapsule_stack(cell)


def test_sql_course_database_is_read_only(shell: InteractiveShell, tmp_path: Path) -> None:
    import duckdb

    db = tmp_path / "course.duckdb"
    with duckdb.connect(str(db)) as con:
        con.execute("CREATE TABLE students AS SELECT * FROM (VALUES (1, 'Ada'), (2, 'Grace')) t(id, name)")
    run(shell, f"cc_db = {str(db)!r}")
    cell = run(shell, "%%capsule sql --db {cc_db}\nSELECT count(*) AS n FROM students")
    assert "read-only" in cell.text and ">2<" in cell.html
    cell = run(shell, "%%capsule sql\nINSERT INTO students VALUES (3, 'Linus')")
    assert "read-only" in cell.text.lower() or "read_only" in cell.text.lower()
    cell = run(shell, "%%capsule sql --db {cc_db} --db-write\nINSERT INTO students VALUES (3, 'Linus')")
    cell = run(shell, "%%capsule sql\nSELECT count(*) AS n FROM students")
    assert ">3<" in cell.html


def test_sql_bad_database_path_keeps_the_session_database(shell: InteractiveShell, tmp_path: Path) -> None:
    run(shell, "%%capsule sql\nCREATE TABLE kept AS SELECT 42 AS answer")
    cell = run(shell, f"%%capsule sql --db {tmp_path / 'missing.duckdb'}\nSELECT 1")
    assert not cell.success
    assert "cannot open the SQL database" in cell.stdout and "does not exist" in cell.stdout
    no_codecapsule_stack(cell)
    cell = run(shell, "%%capsule sql\nSELECT answer FROM kept")
    assert ">42<" in cell.html


def test_sql_back_to_the_session_database(shell: InteractiveShell, tmp_path: Path) -> None:
    import duckdb

    db = tmp_path / "other.duckdb"
    duckdb.connect(str(db)).close()
    run(shell, "%%capsule sql\nCREATE TABLE mine AS SELECT 1 AS x")
    assert "Catalog Error" in run(shell, f"%%capsule sql --db {db}\nSELECT * FROM mine").text
    cell = run(shell, "%%capsule sql --db :memory:\nSELECT x FROM mine")
    assert "SQL cells now use the session database" in cell.text and ">1<" in cell.html


# -- the same cells on Piston (the Piston-compatible test server on 127.0.0.1) ------------------------------


def test_cells_run_on_piston_when_configured(shell: InteractiveShell, piston_server: Any) -> None:
    run(shell, f'%config Capsule.piston_url = "{piston_server.url}"')
    cell = run(shell, "%%capsule python --stdin 5\nprint(int(input()) * 2)")
    assert cell.shown.splitlines()[0] == "10", cell.text
    assert " · piston · python " in cell.text
    assert [job.language for job in piston_server.executions] == ["python"]
    cell = run(shell, "%%capsule c --expect-verdict compile_error\nint main(void) { return missing; }")
    assert cell.success and "line 2, col 25: error" in cell.text  # Piston's file name mapped the same way
    runtimes = run(shell, "%capsule runtimes")
    assert f"Piston runtimes at {piston_server.url}" in runtimes.stdout and "python" in runtimes.stdout
    # --engine local still runs here, without a request
    before = len(piston_server.executions)
    cell = run(shell, "%%capsule python --engine local\nprint('here')")
    assert " · local · python " in cell.text and len(piston_server.executions) == before


def test_access_secret_never_shown(
    shell: InteractiveShell, piston_server: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    secret = "s3cr3t-access-value-0123456789"
    monkeypatch.setenv("CODECAPSULE_ACCESS_CLIENT_ID", "id-visible.access")
    monkeypatch.setenv("CODECAPSULE_ACCESS_CLIENT_SECRET", secret)
    run(shell, f'%config Capsule.piston_url = "{piston_server.url}"')
    shown = [
        run(shell, "%capsule engine"),
        run(shell, "%config Capsule"),
        run(shell, "%%capsule python --out cc_r\nimport os\nprint(sorted(os.environ))"),
    ]
    for cell in shown:
        assert secret not in cell.stdout + cell.stderr + cell.text + cell.html
    assert secret not in repr(shell.user_ns["cc_r"]) + shell.user_ns["cc_r"].to_json()
    assert piston_server.log[-1].headers.get("cf-access-client-secret") == secret  # it was sent, not shown


# -- typing mistakes: did-you-mean, %config checked, clean help ------------------------------------------------


# a typing mistake: one line on stderr, the cell fails (Run All stops) and nothing after it ran
TYPOS = [
    ("%%capsule python --timout 2s", "%%capsule: unknown option --timout. Did you mean --timeout?"),
    ("%%capsule python --engine lokal", "--engine 'lokal' is not one of auto, local, piston. Did you mean local?"),
    ("%%capsule python --expect-verdict ok_", "Did you mean ok?"),
    ("%%capsule python --zzz", "unknown option --zzz. See %%capsule? for the options."),
    ('%config Capsule.timout = "2s"', "%config: Capsule has no setting 'timout'. Did you mean Capsule.timeout?"),
    ('%config Capsule.timeout = "2 parsecs"', "%config Capsule.timeout: must be a duration such as 2.5 or '500ms'"),
    ('%config Capsule.engine = "lokal"', "%config Capsule.engine: must be one of auto, local, piston, not 'lokal'."),
    ('%config Capsule.max_lines = "x"', "%config Capsule.max_lines: must be a whole number, not 'x'."),
    ('%config Capsule.memory = "lots"', "%config Capsule.memory: must be a size such as 268435456 or '256MB'"),
]


@pytest.mark.parametrize(("line", "message"), TYPOS)
def test_a_typing_mistake_is_one_line_with_a_did_you_mean_and_the_cell_stops(
    shell: InteractiveShell, line: str, message: str
) -> None:
    cell = run(shell, f"{line}\nprint('ran on')")
    assert not cell.success and cell.texts == []
    assert "ran on" not in cell.stdout  # the rest of the cell did not run
    assert message in cell.stderr and "ERROR:root" not in cell.stderr and cell.stderr.count("\n") == 1
    no_codecapsule_stack(cell)


def test_an_unambiguous_prefix_still_works(shell: InteractiveShell) -> None:
    cell = run(shell, "%%capsule python --time 2s\nprint('ran')")
    assert cell.success and cell.shown == "ran"


def test_a_good_config_value_applies_and_other_configurables_are_untouched(shell: InteractiveShell) -> None:
    cell = run(shell, '%config Capsule.timeout = "300ms"\n%config Capsule.max_lines = 5\nprint("set")')
    assert cell.success and cell.stdout == "set\n"
    cell = run(shell, "%%capsule python\nwhile True: pass")
    assert "time_limit" in cell.text and "limit 300 ms" in cell.text
    cell = run(shell, "%%capsule python\nfor i in range(20): print(i)")
    assert "… 15 more lines not shown" in cell.text
    assert run(shell, "%config Capsule").success  # the listing is IPython's own
    assert run(shell, "%config InteractiveShell.autoindent = False").success


def test_capsule_help_is_plain_text(shell: InteractiveShell) -> None:
    from codecapsule.magics import Capsule

    doc = Capsule.capsule.__doc__ or ""
    assert doc.startswith("Usage:\n\n  %%capsule [--stdin TEXT]")
    assert "::" not in doc and "<" not in doc and ">" not in doc
    assert "--engine {auto,local,piston}" in doc and "Examples:\n" in doc
