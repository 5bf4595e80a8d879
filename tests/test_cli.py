"""The command line, as a user runs it: real subprocesses, exit statuses that mirror the program's."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

EXE = [sys.executable, "-m", "codecapsule.cli"]


def cli(*args: str, stdin: str | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    # none of the developer's settings, but the session's engine cache (never the machine's own: see conftest)
    env = {k: v for k, v in os.environ.items() if not k.startswith("CODECAPSULE_") or k == "CODECAPSULE_CACHE_DIR"}
    return subprocess.run(
        [*EXE, *args],
        input=stdin if stdin is not None else "",
        capture_output=True,
        text=True,
        cwd=cwd,
        env=env,
        timeout=120,
    )


def test_run_a_java_file_with_any_class_name(tmp_path: Path) -> None:
    (tmp_path / "hello.java").write_text(
        'public class Hello { public static void main(String[] a) { System.out.println("hi"); } }'
    )
    p = cli("run", "hello.java", cwd=tmp_path)
    assert (p.returncode, p.stdout) == (0, "hi\n")


def test_run_a_snippet() -> None:
    p = cli("run", "-l", "python", "-c", "print(42)")
    assert (p.returncode, p.stdout) == (0, "42\n")


def test_stdin_is_piped_and_the_exit_status_mirrors_the_program(tmp_path: Path) -> None:
    (tmp_path / "sum.c").write_text(
        '#include <stdio.h>\nint main(){int n; scanf("%d",&n); printf("%d\\n",n*n); return n;}'
    )
    p = cli("run", "sum.c", stdin="3\n", cwd=tmp_path)
    assert (p.returncode, p.stdout) == (3, "9\n")
    assert "runtime_error" in p.stderr


def test_json_output_round_trips(tmp_path: Path) -> None:
    p = cli("run", "--json", "-l", "cpp", "-c", "int main(){ return undefined; }")
    data = json.loads(p.stdout)
    assert p.returncode == 1 and data["verdict"] == "compile_error" and "undefined" in data["compile"]["stderr"]


def test_time_limit_exit_status() -> None:
    p = cli("run", "-l", "py", "-c", "while True: pass", "--timeout", "500ms")
    assert p.returncode == 124 and "time_limit" in p.stderr


def test_usage_errors_are_one_line_without_traceback(tmp_path: Path) -> None:
    p = cli("run", "-l", "cobol", "-c", "x")
    assert p.returncode == 2 and "unknown language 'cobol'" in p.stderr and "Traceback" not in p.stderr
    (tmp_path / "prog.xyz").write_text("x")
    p = cli("run", "prog.xyz", cwd=tmp_path)
    assert p.returncode == 2 and "-l LANGUAGE" in p.stderr


def test_sql_file_prints_a_table(tmp_path: Path) -> None:
    (tmp_path / "q.sql").write_text("SELECT 6 * 7 AS answer")
    p = cli("run", "q.sql", cwd=tmp_path)
    assert p.returncode == 0 and "answer" in p.stdout and "42" in p.stdout


@pytest.mark.timeout(300)
def test_demo_runs_all_six_languages() -> None:
    p = cli("demo", "--engine", "local")
    assert p.returncode == 0, p.stdout + p.stderr
    for expected in (
        "Hello, Ada! 6 * 7 = 42",
        "sorted: 1 2 3",
        "Java says: 10! = 3628800",
        "C says: 40 + 2 = 42",
        "C++ says: sum = 10",
        "91.3333",
    ):
        assert expected in p.stdout


def test_engine_reports_isolation() -> None:
    p = cli("engine", "--engine", "local")
    assert p.returncode == 0 and "isolation:" in p.stdout and "duckdb" in p.stdout


def test_unreadable_expect_file_is_a_clean_error() -> None:
    p = cli("run", "-l", "py", "-c", "print(1)", "--expect-file", "/nonexistent/expected.txt")
    assert p.returncode == 2 and "cannot read" in p.stderr and "Traceback" not in p.stderr


def test_messages_name_the_users_files(tmp_path: Path) -> None:
    (tmp_path / "broken.c").write_text('#include <stdio.h>\nint main(void) {\n    printf("%d\\n", nope);\n}\n')
    p = cli("run", "broken.c", cwd=tmp_path)
    assert p.returncode == 1
    assert "broken.c:3:20: error:" in p.stderr and "main.c" not in p.stderr
    (tmp_path / "crash.py").write_text("def f():\n    raise ValueError('x')\nf()\n")
    p = cli("run", "crash.py", cwd=tmp_path)
    assert 'File "crash.py", line 2, in f' in p.stderr and "main.py" not in p.stderr


def test_expect_prints_the_comparison(tmp_path: Path) -> None:
    (tmp_path / "p.py").write_text("print(1)\nprint(20)\n")
    p = cli("run", "--expect", "1\n2\n", "p.py", cwd=tmp_path)
    assert p.returncode == 1 and p.stdout == "1\n20\n"
    assert "--- expected vs your output ---\nline 2:\n  expected:    2\n  your output: 20\n" in p.stderr
    assert "wrong_answer" in p.stderr.splitlines()[-1]


def test_hints_are_printed_for_beginners_mistakes(tmp_path: Path) -> None:
    p = cli("run", "-l", "python", "-c", "n = int(input())\nprint(n)")
    assert p.returncode == 1 and "Hint: this program reads input: pass --stdin" in p.stderr


def test_doctor_without_a_cluster_says_local_engine_only() -> None:
    env_vars = ("CLOUDFLARE_API_TOKEN", "AZURE_SUBSCRIPTION_ID", "CLOUDFLARE_ACCOUNT_ID")
    saved = {name: os.environ.pop(name) for name in env_vars if name in os.environ}
    try:
        p = cli("doctor")
    finally:
        os.environ.update(saved)
    assert p.returncode == 0, p.stdout + p.stderr
    assert p.stdout.startswith("local engine only:") and "[FAIL]" not in p.stdout
    assert len(p.stdout.splitlines()) == 1 and p.stderr == ""


def test_cloud_sdk_warnings_stay_off_the_terminal(capsys: pytest.CaptureFixture[str]) -> None:
    import logging

    from codecapsule import CodeCapsuleError
    from codecapsule.cluster.cli import _guarded

    def status(args: object) -> int:  # what a failed Azure sign-in looks like from the command's side
        for name in ("azure.identity._credentials.environment", "azure.identity", "msal.application"):
            logging.getLogger(name).warning("EnvironmentCredential.get_token failed: not configured")
        raise CodeCapsuleError("cannot sign in to Azure: run `az login` or set AZURE_CLIENT_ID/...")

    handler = logging.StreamHandler()  # the way a user's logging.basicConfig() would show them
    logging.getLogger().addHandler(handler)
    try:
        assert _guarded(status)(None) == 2  # type: ignore[arg-type]
    finally:
        logging.getLogger().removeHandler(handler)
    err = capsys.readouterr().err
    assert err == "codecapsule: error: cannot sign in to Azure: run `az login` or set AZURE_CLIENT_ID/...\n"
    assert logging.getLogger("azure").level == logging.NOTSET  # put back afterwards
