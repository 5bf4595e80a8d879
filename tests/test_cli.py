"""The command line, as a user runs it: real subprocesses, exit statuses that mirror the program's."""

from __future__ import annotations

import contextlib
import json
import os
import pty
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.engines.hostile import marker, running
from tests.fakes.piston import PistonTestServer

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


# -- live: output as it comes, Ctrl-C, the terminal's input ------------------------------------------------------


@pytest.fixture
def runs_dir() -> Iterator[Path]:
    """TMPDIR for the CLI: its runs' work directories appear here (and must be gone afterwards)."""
    root = tempfile.mkdtemp(prefix="capsule-cli-", dir="/tmp")
    os.chmod(root, 0o755)  # the sandbox's unprivileged uid must reach its work directory
    yield Path(root)
    shutil.rmtree(root, ignore_errors=True)


def live_cli(
    *args: str, tmpdir: Path | None = None, stdin: int = subprocess.DEVNULL, sigint_ignored: bool = False
) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CODECAPSULE_")}
    if tmpdir is not None:
        env["TMPDIR"] = str(tmpdir)

    def ignore_sigint() -> None:  # as a shell starts a background job, or nohup
        signal.signal(signal.SIGINT, signal.SIG_IGN)

    return subprocess.Popen([*EXE, *args], stdin=stdin, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env,
                            preexec_fn=ignore_sigint if sigint_ignored else None)  # fmt: skip


def read_until(proc: subprocess.Popen[bytes], text: bytes) -> bytes:
    """What the CLI wrote on stdout up to and including ``text`` (it must come within a minute)."""
    assert proc.stdout is not None
    got = b""
    deadline = time.monotonic() + 60
    while text not in got:
        ready, _, _ = select.select([proc.stdout], [], [], max(0.0, deadline - time.monotonic()))
        chunk = os.read(proc.stdout.fileno(), 4096) if ready else b""
        assert chunk, f"the CLI's stdout ended or stalled before {text!r}: {got!r}"
        got += chunk
    return got


def finish(proc: subprocess.Popen[bytes]) -> tuple[int, str, str]:
    out, err = proc.communicate(timeout=120)
    return proc.returncode, out.decode(), err.decode()


def open_gate(runs_dir: Path, proc: subprocess.Popen[bytes]) -> None:
    """Unblock the program reading the fifo ``gate`` in its work directory: "go", then EOF (a bounded retry until
    the program has it open)."""
    deadline = time.monotonic() + 60
    while True:
        try:
            (gate,) = runs_dir.glob("*/gate")
            fd = os.open(gate, os.O_WRONLY | os.O_NONBLOCK)  # ENXIO while nobody reads it
        except (ValueError, OSError):
            assert proc.poll() is None and time.monotonic() < deadline, "the run ended before it was let go"
            time.sleep(0.02)  # a bounded poll for the program's open()
            continue
        os.write(fd, b"go")
        os.close(fd)
        return


def test_run_shows_the_output_while_the_program_runs(runs_dir: Path) -> None:
    # the program cannot exit before the test opens the fifo, and the test opens it only once it saw "ready"
    source = "import os\nos.mkfifo('gate')\nprint('ready', flush=True)\nopen('gate').read()\nprint('done')\n"
    proc = live_cli("run", "--timeout", "3600", "-l", "python", "-c", source, tmpdir=runs_dir)
    assert read_until(proc, b"ready\n") == b"ready\n"
    open_gate(runs_dir, proc)
    code, out, err = finish(proc)
    assert (code, out, err) == (0, "done\n", "")  # "ready" was read above: nothing printed twice


def test_an_ignored_sigint_stays_ignored(runs_dir: Path) -> None:
    source = "import os\nos.mkfifo('gate')\nprint('ready', flush=True)\nopen('gate').read()\nprint('done')\n"
    proc = live_cli("run", "--timeout", "3600", "-l", "python", "-c", source, tmpdir=runs_dir, sigint_ignored=True)
    read_until(proc, b"ready\n")
    proc.send_signal(signal.SIGINT)  # ignored: the run goes on
    open_gate(runs_dir, proc)
    assert finish(proc) == (0, "done\n", "")


def test_live_stderr_names_the_users_file(tmp_path: Path) -> None:
    (tmp_path / "crash.py").write_text("import sys\nprint('to stderr', file=sys.stderr)\nraise SystemExit(f())\n")
    code, out, err = finish(live_cli("run", str(tmp_path / "crash.py")))
    assert code == 1 and out == "" and err.startswith("to stderr\nTraceback")
    assert f'File "{tmp_path / "crash.py"}", line 3' in err and "main.py" not in err


# the program forks a child (its command line carries the mark) and prints once both are up
FORKS_AND_SLEEPS = (
    "import subprocess, sys, time\n"
    "subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(1000)', sys.argv[1]])\n"
    "print('started', flush=True)\n"
    "time.sleep(1000)\n"
)


@pytest.mark.parametrize("presses", [1, 2])
def test_ctrl_c_stops_the_run_keeps_its_output_and_exits_130(presses: int, runs_dir: Path) -> None:
    mark = marker()
    proc = live_cli("run", "--timeout", "3600", "-l", "python", "-c", FORKS_AND_SLEEPS, mark, tmpdir=runs_dir)
    read_until(proc, b"started\n")
    assert running(mark), "the forked child runs before Ctrl-C"
    for _ in range(presses):  # a second Ctrl-C lands while the run is being stopped
        proc.send_signal(signal.SIGINT)
    code, out, err = finish(proc)
    assert (code, out) == (130, "")  # "started" was read above
    assert "interrupted" in err.splitlines()[-1] and "Traceback" not in err, err
    assert running(mark) == []
    assert list(runs_dir.iterdir()) == []  # no work directory left


def test_ctrl_c_with_json_prints_the_interrupted_result(runs_dir: Path) -> None:
    source = "import sys, time\nprint('started', flush=True)\nprint('on stderr', file=sys.stderr, flush=True)\n"
    source += "open('stderr-written', 'w').close()\ntime.sleep(1000)\n"
    proc = live_cli("run", "--json", "--timeout", "3600", "-l", "python", "-c", source, tmpdir=runs_dir)
    deadline = time.monotonic() + 60
    while not list(runs_dir.glob("*/stderr-written")):
        assert time.monotonic() < deadline and proc.poll() is None, "the program never got to its sleep"
        time.sleep(0.02)  # a bounded poll for the file the program writes
    proc.send_signal(signal.SIGINT)
    code, out, err = finish(proc)
    data = json.loads(out)
    assert (code, err) == (130, "")
    run = data["run"]
    assert (data["verdict"], run["stdout"], run["stderr"]) == ("interrupted", "started\n", "on stderr\n")


def piston_cli(
    server: PistonTestServer, source: str, *args: str, stdin: int = subprocess.DEVNULL
) -> subprocess.Popen[bytes]:
    """``codecapsule run`` of a Python snippet on the test double."""
    return live_cli("run", "--piston", server.url, "--engine", "piston", "-l", "python", "-c", source, *args,
                    stdin=stdin)  # fmt: skip


def test_piped_input_on_piston_reaches_its_end(piston_server: PistonTestServer) -> None:
    # Piston's live path never closes stdin: this program would wait there for its time limit
    proc = piston_cli(piston_server, "import sys\nprint(sys.stdin.read().split())", stdin=subprocess.PIPE)
    out, err = proc.communicate(b"1 2\n3\n", timeout=120)
    assert (proc.returncode, out, err) == (0, b"['1', '2', '3']\n", b"")


def test_ctrl_c_while_waiting_for_piston(tmp_path: Path) -> None:
    # the test double runs the program as a process of this machine, without isolate's file-system view: it
    # blocks opening a fifo of this test's (found by the mark in its command line) until the test lets it go
    gate = tmp_path / f"gate-{marker()}"
    os.mkfifo(gate)
    with PistonTestServer(run_timeout=600_000, run_cpu_time=600_000) as server:
        proc = live_cli("run", "--piston", server.url, "--engine", "piston", "--timeout", "600", "-l", "python",
                        "-c", "import sys\nopen(sys.argv[1]).read()", str(gate))  # fmt: skip
        try:
            deadline = time.monotonic() + 60
            while len(running(gate.name)) < 2:  # the CLI itself, and the program on the "server"
                assert time.monotonic() < deadline and proc.poll() is None, "the program never started on Piston"
                time.sleep(0.02)  # a bounded poll of the process table
            proc.send_signal(signal.SIGINT)
            code, out, err = finish(proc)
        finally:
            with contextlib.suppress(OSError):  # ENXIO: the program is not waiting any more
                os.close(os.open(gate, os.O_WRONLY | os.O_NONBLOCK))  # lets the program end
    assert (code, out) == (130, "") and "interrupted" in err.splitlines()[-1] and "Traceback" not in err, err


def test_ctrl_c_on_a_live_piston_run(piston_server: PistonTestServer) -> None:
    main, terminal = pty.openpty()  # a terminal: the run is live (its input could be typed)
    try:
        proc = piston_cli(piston_server, "import time\nprint('tick', flush=True)\ntime.sleep(1000)\n", stdin=terminal)
        os.close(terminal)
        read_until(proc, b"tick\n")  # output shown while the program runs
        proc.send_signal(signal.SIGINT)
        code, out, err = finish(proc)
    finally:
        os.close(main)
    assert (code, out) == (130, "") and "interrupted" in err.splitlines()[-1] and "Traceback" not in err, err


def test_a_terminal_types_the_programs_input_on_piston(piston_server: PistonTestServer) -> None:
    main, terminal = pty.openpty()  # the CLI's stdin is a terminal: what is typed there goes to the program
    try:
        source = "n = input('n? ')\nprint(int(n) * 2)\nprint('bye', input('again? '))\n"
        proc = piston_cli(piston_server, source, stdin=terminal)
        os.close(terminal)
        assert read_until(proc, b"n? ") == b"n? "  # shown before the program has its input
        os.write(main, b"21\n")
        assert read_until(proc, b"again? ") == b"42\nagain? "
        os.write(main, b"now\n")
        code, out, err = finish(proc)
    finally:
        os.close(main)
    assert (code, out, err) == (0, "bye now\n", "")


def test_a_terminal_types_the_programs_input_locally() -> None:
    main, terminal = pty.openpty()
    try:
        source = "n = input('n? ')\nprint(int(n) * 2, flush=True)\nimport sys\nprint('rest', sys.stdin.read().split())"
        proc = live_cli("run", "--engine", "local", "-l", "python", "-c", source, stdin=terminal)
        os.close(terminal)
        assert read_until(proc, b"n? ") == b"n? "  # shown before the program has its input
        os.write(main, b"21\n")
        assert read_until(proc, b"42\n") == b"42\n"
        os.write(main, b"a b\n\x04")  # a line, then Ctrl-D: the end of the program's input
        code, out, err = finish(proc)
    finally:
        os.close(main)
    assert (code, out, err) == (0, "rest ['a', 'b']\n", "")


def test_a_terminal_on_the_local_engine_runs_a_program_that_reads_nothing(tmp_path: Path) -> None:
    main, terminal = pty.openpty()
    try:
        code, out, err = finish(live_cli("run", "--engine", "local", "-l", "python", "-c", "print(7)", stdin=terminal))
    finally:
        os.close(terminal)
        os.close(main)
    assert (code, out, err) == (0, "7\n", "")
