"""A Python syntax error is a compile error on both engines, read from the bootstrap's first stderr line (a fact),
never from what the program printed; everything else about a Python run is what ``python3 main.py`` gives.

Both engines are real: the local engine in its sandbox, and the faithful Piston double (real python3 run the way
Piston's run script runs it) through the real client over HTTP.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Iterator

import pytest

from codecapsule import Job, Result, Settings, Stage
from codecapsule.engines._python_boot import BOOT_FILE, COMPILED, SYNTAX, boot_file, split_compile_outcome
from codecapsule.engines.local import LocalEngine
from codecapsule.engines.piston import PistonEngine
from codecapsule.engines.piston_shape import shape
from tests.fakes.piston import PistonTestServer

pytestmark = pytest.mark.skipif(shutil.which("python3") is None, reason="needs python3")

ENGINES = ("local", "piston")
# The job directory differs between engines (the sandbox's /box, Piston's job dir): compare from the file name on.
_JOB_DIR = re.compile(r'File "(?:[^"]*/)?([^"/]+)"')


@pytest.fixture(scope="module")
def engines() -> Iterator[dict[str, LocalEngine | PistonEngine]]:
    local = LocalEngine()
    with (
        PistonTestServer(output_max_size=65536, run_timeout=10000, run_cpu_time=10000) as server,
        PistonEngine(Settings(piston_url=server.url, engine="piston", retries=0, request_timeout=60)) as piston,
    ):
        yield {"local": local, "piston": piston}
    local.close()


def run_both(engines: dict[str, LocalEngine | PistonEngine], job: Job) -> tuple[Result, Result]:
    here, there = engines["local"].run(job), engines["piston"].run(job)
    assert (here.engine, there.engine) == ENGINES
    return here, there


def same_paths(text: str) -> str:
    return _JOB_DIR.sub(r'File "\1"', text)


# -- what ``python3 main.py`` reports for a file Python cannot read --------------------------------------------

SYNTAX_ERRORS = {
    "syntax": ("print('before')\ndef f(:\n    pass\n", 2, "SyntaxError: invalid syntax"),
    "indentation": ("print('before')\nif True:\nprint('x')\n", 3, "IndentationError: expected an indented block"),
    "tab": ("if 1:\n\tx = 1\n        y = 2\n", 3, "TabError: inconsistent use of tabs and spaces in indentation"),
}


@pytest.mark.parametrize("kind", SYNTAX_ERRORS)
def test_a_syntax_error_is_a_compile_error_on_both_engines(
    kind: str, engines: dict[str, LocalEngine | PistonEngine]
) -> None:
    source, line, last = SYNTAX_ERRORS[kind]
    for result in run_both(engines, Job.create(source, "python")):
        facts = repr(result)
        assert result.verdict == "compile_error", facts
        # shaped like a C compile error: a failed compile stage, no run stage, and none of the program ran
        assert result.run is None and result.compile is not None, facts
        assert result.compile.exit_code == 1 and result.compile.stdout == "", facts
        stderr = result.compile.stderr
        assert stderr.splitlines()[0] == f'  File "{_dir_of(stderr)}main.py", line {line}', facts
        assert stderr.rstrip("\n").splitlines()[-1].startswith(last), facts
        assert "\x00" not in stderr and "\x00" not in result.compile.output, facts
        assert result.compile.output == stderr  # the interleaved output: the same report, marker gone
        assert "Traceback" not in stderr and "<string>" not in stderr and "capsule" not in stderr, facts


def _dir_of(stderr: str) -> str:
    m = re.match(r'  File "(.*/)main\.py"', stderr)
    assert m is not None, stderr
    return m.group(1)


def test_the_syntax_report_is_the_same_on_both_engines(engines: dict[str, LocalEngine | PistonEngine]) -> None:
    here, there = run_both(engines, Job.create(SYNTAX_ERRORS["indentation"][0], "python"))
    assert same_paths(here.stderr) == same_paths(there.stderr) != ""


@pytest.mark.parametrize("how", ["sys.stderr.write", "os.write"])
def test_a_program_printing_the_marker_first_is_not_a_compile_error(
    how: str, engines: dict[str, LocalEngine | PistonEngine]
) -> None:
    write = {
        "sys.stderr.write": f"import sys\nsys.stderr.write({SYNTAX!r}); sys.stderr.flush()\n",
        "os.write": f"import os\nos.write(2, {SYNTAX.encode()!r})\n",
    }[how]
    job = Job.create(write + "print('still ran')\n", "python")
    for result in run_both(engines, job):
        assert result.verdict == "ok", repr(result)
        assert result.run is not None and result.compile is None
        assert result.stdout == "still ran\n"
        assert result.stderr == SYNTAX  # what the program printed is kept, byte for byte
        assert result.output.count(SYNTAX) == 1


def test_a_compile_warning_keeps_its_place_and_the_verdict(engines: dict[str, LocalEngine | PistonEngine]) -> None:
    # compile() prints a SyntaxWarning before the program runs: it must not push the marker off the first line
    here, there = run_both(engines, Job.create("x = 1\nif x is 1:\n    print('one')\n", "python"))
    for result in (here, there):
        assert result.verdict == "ok" and result.stdout == "one\n", repr(result)
        assert "\x00" not in result.stderr and "\x00" not in result.output
        assert re.fullmatch(r'/\S*/main\.py:2: SyntaxWarning: "is" with a literal\. .*\n  if x is 1:\n', result.stderr)
    assert here.stderr.replace(_warned_dir(here), "") == there.stderr.replace(_warned_dir(there), "")


def _warned_dir(result: Result) -> str:
    return result.stderr.split("main.py:", 1)[0]


def test_a_runtime_exception_is_a_runtime_error_with_the_same_traceback(
    engines: dict[str, LocalEngine | PistonEngine],
) -> None:
    source = "def f(n):\n    return 10 // n\n\nprint('start')\nf(0)\n"
    here, there = run_both(engines, Job.create(source, "python"))
    for result in (here, there):
        assert result.verdict == "runtime_error" and result.exit_code == 1 and result.stdout == "start\n"
        assert result.compile is None and result.run is not None
        # no bootstrap frame: the traceback starts in the student's own file
        assert same_paths(result.stderr) == (
            "Traceback (most recent call last):\n"
            '  File "main.py", line 5, in <module>\n'
            "    f(0)\n"
            '  File "main.py", line 2, in f\n'
            "    return 10 // n\n"
            "           ~~~^^~~\n"
            "ZeroDivisionError: integer division or modulo by zero\n"
        ), repr(result)
    assert same_paths(here.stderr) == same_paths(there.stderr)


def test_the_program_runs_as_a_script_on_both_engines(engines: dict[str, LocalEngine | PistonEngine]) -> None:
    source = (
        "import os, sys, helper\n"
        "print(sys.argv)\n"
        "print(os.path.isabs(__file__), os.path.basename(__file__), __name__)\n"
        "print(sys.path[0] == os.path.dirname(__file__), sorted(os.listdir('.')))\n"
        "print(helper.twice(int(input())))\n"
        "print(sorted(k for k in globals() if not k.startswith('__')))\n"
        "quit(4)\n"
    )
    job = Job.create(source, "python", files={"helper.py": "def twice(n):\n    return 2 * n\n"}, stdin="21", args=["a"])
    here, there = run_both(engines, job)
    expected = (
        "['main.py', 'a']\n"
        "True main.py __main__\n"
        "True ['helper.py', 'main.py']\n"  # the bootstrap removed itself from Piston's job directory
        "42\n"
        "['helper', 'os', 'sys']\n"  # nothing of the bootstrap leaks into the program's namespace
    )
    for result in (here, there):
        assert result.verdict == "runtime_error" and result.exit_code == 4, repr(result)
        assert result.stdout == expected and result.stderr == ""


def test_exit_and_a_traceback_through_an_imported_module(engines: dict[str, LocalEngine | PistonEngine]) -> None:
    job = Job.create("import helper\nhelper.boom()\n", "python", files={"helper.py": "def boom():\n    exit(3)\n"})
    for result in run_both(engines, job):
        assert result.verdict == "runtime_error" and result.exit_code == 3 and result.stderr == ""
    job = Job.create("import helper\n", "python", files={"helper.py": "x = (\n"})
    here, there = run_both(engines, job)
    for result in (here, there):
        # a syntax error in an imported module happens while the program runs: a runtime error, as in C++ a
        # missing symbol at load time is not a compile error of main
        assert result.verdict == "runtime_error", repr(result)
        assert 'File "main.py", line 1, in <module>' in same_paths(result.stderr)
        assert "SyntaxError" in result.stderr
    assert same_paths(here.stderr) == same_paths(there.stderr)


def test_compile_once_run_many_reads_the_same_fact() -> None:
    """The local engine's grading path (compile once, run per input) judges a Python run the same way."""
    engine = LocalEngine()
    with engine.compile(Job.create("print(int(input()) * 2)\n", "python")) as artifact:
        ran = engine.run_compiled(artifact, stdin="21")
        assert ran.verdict == "ok" and ran.stdout == "42\n" and ran.stderr == "" and "\x00" not in ran.output
    with engine.compile(Job.create("print(int(input())\n", "python")) as artifact:
        broken = engine.run_compiled(artifact, stdin="21")
        assert broken.verdict == "compile_error" and broken.run is None and broken.compile is not None
        assert broken.compile.stderr.startswith('  File "') and "\x00" not in broken.compile.stderr


# -- the pure step both engines share ------------------------------------------------------------------------


def test_split_compile_outcome_reads_only_the_first_line() -> None:
    compiled = Stage(stdout="hi\n", stderr=COMPILED + "warn\n", output=COMPILED + "hi\nwarn\n", exit_code=0)
    assert split_compile_outcome("python", None, compiled) == (
        None,
        Stage(stdout="hi\n", stderr="warn\n", output="hi\nwarn\n", exit_code=0),
    )
    failed = Stage(stderr=SYNTAX + "  File ...\n", output=SYNTAX + "  File ...\n", exit_code=1, status="RE")
    assert split_compile_outcome("python", None, failed) == (
        Stage(stderr="  File ...\n", output="  File ...\n", exit_code=1, status="RE"),
        None,
    )
    # no marker (the interpreter died before it), a marker after other text, another language: untouched
    for stage in (Stage(stderr="Fatal Python error\n", exit_code=1), Stage(stderr="x\n" + SYNTAX, exit_code=1)):
        assert split_compile_outcome("python", None, stage) == (None, stage)
    assert split_compile_outcome("javascript", None, failed) == (None, failed)


def test_piston_gets_the_bootstrap_first_and_the_students_files_untouched() -> None:
    job = Job.create("print('é')\n", "python", files={"helper.py": "x = 1\n", "data.bin": b"\x00\xff"})
    files = shape(job).files
    assert files[0]["name"] == BOOT_FILE and files[0]["encoding"] == "utf8"
    assert "ENTRY='main.py'" in files[0]["content"]
    assert [(f["name"], f["encoding"]) for f in files[1:]] == [
        ("main.py", "base64"),
        ("helper.py", "base64"),
        ("data.bin", "base64"),
    ]
    # a student file that happens to have the bootstrap's name is not overwritten
    assert boot_file(["main.py", BOOT_FILE]) not in ("main.py", BOOT_FILE)
    clash = shape(Job.create("print(1)", "python", files={BOOT_FILE: "x = 1\n"})).files
    assert len({f["name"] for f in clash}) == 3
