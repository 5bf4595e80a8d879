"""Hints for beginners' mistakes: real compilers and runtimes where the message is theirs, the verdict untouched."""

from __future__ import annotations

import shutil

import pytest

import codecapsule as cc
from codecapsule import Result, Stage, Verdict
from codecapsule._hints import hints_for
from codecapsule._render import render_html, render_text

needs_gcc = pytest.mark.skipif(shutil.which("gcc") is None, reason="needs gcc")
needs_python = pytest.mark.skipif(shutil.which("python3") is None, reason="needs python3")


def run_locally(source: str, language: str, **options: object) -> Result:
    with cc.Client(None) as client:
        return client.execute(source, language, engine="local", **options)


def java_failure(verdict: Verdict, stderr: str, *, compile_error: bool = False) -> Result:
    stage = Stage(stderr=stderr, exit_code=1)
    if compile_error:
        return Result("java", "17", "local", verdict, compile=stage)
    return Result("java", "17", "local", verdict, compile=Stage(exit_code=0), run=stage)


@needs_gcc
def test_void_main_in_c_gets_a_hint_and_keeps_its_verdict() -> None:
    source = '#include <stdio.h>\nvoid main() { printf("42\\n"); }\n'
    result = run_locally(source, "c")
    assert result.stdout == "42\n"
    verdict = result.verdict  # whatever the exit status made it: the hint explains, never changes it
    text = render_text(result, source=source)
    assert "Hint: main must return int: write int main(void)" in text
    assert result.verdict == verdict
    assert "main must return int" in render_html(result, source=source)
    # an int main gets no such hint
    fixed = source.replace("void main()", "int main(void)").replace("}", "return 0; }")
    assert not [h for h in hints_for(run_locally(fixed, "c"), fixed) if "main must" in h]


@needs_python
def test_reading_input_that_was_not_given_gets_a_hint() -> None:
    result = run_locally("n = int(input())\nprint(n * 2)", "python")
    assert result.verdict == "runtime_error"
    assert any(h.startswith("this program reads input: pass --stdin") for h in hints_for(result))
    given = run_locally("n = int(input())\nprint(n * 2)", "python", stdin="21")
    assert given.ok and hints_for(given) == []


@needs_python
def test_a_python_syntax_error_says_nothing_ran() -> None:
    result = run_locally("if True:\nprint('x')", "python")
    assert result.verdict == "compile_error" and result.stdout == ""
    assert any("none of it ran" in h and "IndentationError" in h for h in hints_for(result))


@pytest.mark.parametrize(
    ("result", "words"),
    [
        (
            java_failure(Verdict.RUNTIME_ERROR, "Exception in thread \"main\" java.util.NoSuchElementException\n"
                         "\tat java.base/java.util.Scanner.throwFor(Scanner.java:937)\n"),
            "this program reads input",
        ),
        (
            java_failure(Verdict.RUNTIME_ERROR, "Error: Could not find or load main class Main\nCaused by: "
                         "java.lang.NoClassDefFoundError: Main (wrong name: lab1/Main)\n"),
            "Remove the package line",
        ),
        (
            java_failure(Verdict.COMPILE_ERROR, "Main.java:1: error: class Greeter is public, should be declared "
                         "in a file named Greeter.java\npublic class Greeter {\n       ^\n1 error\n",
                         compile_error=True),
            "A public class must be in a file with its name",
        ),
        (
            java_failure(Verdict.RUNTIME_ERROR, "Error: Main method not found in class Main, please define the "
                         "main method as:\n   public static void main(String[] args)\n"),
            "public static void main(String[] args)",
        ),
        (
            java_failure(Verdict.RUNTIME_ERROR, "Error: Main method is not static in class Main, please define "
                         "the main method as:\n   public static void main(String[] args)\n"),
            "check static, void",
        ),
    ],
)
def test_java_mistakes_get_hints(result: Result, words: str) -> None:
    hints = hints_for(result)
    assert len(hints) == 1 and words in hints[0]
    assert f"Hint: {hints[0]}" in render_text(result)


def test_no_hint_for_a_program_that_works_or_another_language() -> None:
    ok = Result("java", "17", "local", Verdict.OK, run=Stage(stdout="42\n", exit_code=0))
    assert hints_for(ok, "public class Main { public static void main(String[] a) {} }") == []
    # a Python program printing Java's message is not a Java mistake
    py = Result("python", "3", "local", Verdict.RUNTIME_ERROR, run=Stage(stderr="(wrong name: a/Main)", exit_code=1))
    assert hints_for(py) == []


def test_compiler_warnings_are_folded_under_the_output_not_an_error() -> None:
    warning = (
        "main.c: In function 'main':\nmain.c:3:9: warning: suggest parentheses around assignment used as truth "
        "value [-Wparentheses]\n    3 |     if (x = 5)\n      |         ^\n"
    )
    result = Result("c", "12", "local", Verdict.OK, compile=Stage(stderr=warning, exit_code=0),
                    run=Stage(stdout="five\n", exit_code=0))
    html = render_html(result, line_offset=1)
    assert 'class="cc-stderr"' not in html and "cc-error" not in html
    assert html.index('class="cc-stdout"') < html.index('<details class="cc-warnings">')
    assert "1 compiler warning</summary>" in html and "line 4, col 9: warning: suggest parentheses" in html
    text = render_text(result, line_offset=1)
    assert text.index("five") < text.index("--- 1 compiler warning ---")
    assert "line 4, col 9: warning: suggest parentheses" in text and "if (x = 5)" not in text
