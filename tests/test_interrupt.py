"""Ctrl-C during ``execute()`` / ``aexecute()`` under ``asyncio.run`` / ``execute_many()`` (codecapsule/_interrupt.py,
``AsyncClient.run``'s live run): a real Python script, interrupted
by a real SIGINT while its sandboxed programs run; every process of the runs is gone (no orphan, no zombie) and the
work directories removed when its KeyboardInterrupt arrives, and the KeyboardInterrupt does arrive."""

from __future__ import annotations

import os
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

# A program that forks a child and then sleeps: the child's command line carries CHILD_MARK, the program's RUN_MARK
# (as its argument). Neither mark is in the script's own command line: they come through the environment.
PROGRAM = (
    "import subprocess, sys, time\n"
    "subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(1000)', sys.argv[1] + '-child'])\n"
    "print('started', flush=True)\n"
    "time.sleep(1000)\n"
)
SCRIPT = """
import os, sys
import codecapsule
program, mark = os.environ["PROGRAM"], os.environ["RUN_MARK"]
try:
    if os.environ["HOW"] == "execute":
        codecapsule.execute(program, "python", args=[mark], timeout=3600)
    elif os.environ["HOW"] == "aexecute":  # asyncio.run: Ctrl-C cancels the main task, then raises
        import asyncio
        asyncio.run(codecapsule.aexecute(program, "python", args=[mark], timeout=3600))
    else:
        codecapsule.execute_many(
            [{"source": program, "language": "python", "args": [mark], "timeout": 3600}] * 3, concurrency=2
        )
except KeyboardInterrupt:
    print("KeyboardInterrupt", flush=True)
    sys.stdin.read()  # the test looks at the process table now, while this process is still up
else:
    print("finished without KeyboardInterrupt", flush=True)
"""


@pytest.fixture
def tmpdir_for_runs() -> Iterator[str]:
    root = tempfile.mkdtemp(prefix="capsule-interrupt-", dir="/tmp")
    os.chmod(root, 0o755)  # the sandbox's unprivileged uid must reach its work directory
    yield root
    shutil.rmtree(root, ignore_errors=True)


def _wait_for(count: int, mark: str, script: subprocess.Popen[str]) -> list[int]:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and script.poll() is None:
        found = running(mark)
        if len(found) >= count:
            return found
        time.sleep(0.02)  # a bounded poll of the process table
    raise AssertionError(f"{count} process(es) with {mark!r} never ran")


def _line(script: subprocess.Popen[str]) -> str:
    """The script's next line; without the fix, it only comes when the runs end by themselves, after an hour."""
    assert script.stdout is not None
    ready, _, _ = select.select([script.stdout], [], [], 120)
    assert ready, "the script got no KeyboardInterrupt: its runs were not stopped"
    return script.stdout.readline()


def _alive_or_zombie(pids: list[int]) -> list[int]:
    return [pid for pid in pids if Path(f"/proc/{pid}").exists()]


@pytest.mark.parametrize(("how", "children"), [("execute", 1), ("aexecute", 1), ("execute_many", 2)])
def test_ctrl_c_kills_every_process_of_the_run_before_keyboard_interrupt_arrives(
    how: str, children: int, tmpdir_for_runs: str
) -> None:
    mark = marker()
    env = {k: v for k, v in os.environ.items() if not k.startswith("CODECAPSULE_")}
    env.update(PROGRAM=PROGRAM, RUN_MARK=mark, HOW=how, TMPDIR=tmpdir_for_runs)
    script = subprocess.Popen(
        [sys.executable, "-c", SCRIPT], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True, env=env,
    )  # fmt: skip
    try:
        seen = _wait_for(children, f"{mark}-child", script)  # every run is up, down to its forked child
        seen += running(mark)
        script.send_signal(signal.SIGINT)
        assert _line(script) == "KeyboardInterrupt\n"
        # the script is still running here: a zombie child of it would still be in /proc
        assert _alive_or_zombie(seen) == []
        assert running(mark) == []
        # no run's work directory left: only empty ones, prepared for the next runs (engines/_primed.py)
        left = {p.name: os.listdir(p) for p in Path(tmpdir_for_runs).iterdir()}
        assert all(files == [] for files in left.values()), left
        out, err = script.communicate("", timeout=60)
    finally:
        if script.poll() is None:
            script.kill()
            script.wait()
    assert (script.returncode, out, err) == (0, "", "")


def test_an_uncaught_keyboard_interrupt_ends_the_script_as_python_does(tmpdir_for_runs: str) -> None:
    mark = marker()
    env = {k: v for k, v in os.environ.items() if not k.startswith("CODECAPSULE_")}
    env.update(PROGRAM=PROGRAM, RUN_MARK=mark, TMPDIR=tmpdir_for_runs)
    script = (
        "import os, codecapsule\n"
        "codecapsule.execute(os.environ['PROGRAM'], 'python', args=[os.environ['RUN_MARK']], timeout=3600)\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", script], stderr=subprocess.PIPE, text=True, env=env)
    try:
        _wait_for(1, f"{mark}-child", proc)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == -signal.SIGINT  # Python's own exit for an uncaught KeyboardInterrupt
    assert err.endswith("\nKeyboardInterrupt\n") and err.count("Traceback") == 1, err  # nothing else went wrong
    assert "During handling" not in err and "Exception ignored" not in err and "Exception in thread" not in err
    assert running(mark) == []
    assert list(Path(tmpdir_for_runs).iterdir()) == []


def test_cancelling_the_task_awaiting_a_local_run_kills_the_run_first() -> None:
    """A timeout around ``await client.execute(...)`` (or any cancel of its task): when the CancelledError reaches
    the caller, no process of the run is left."""
    import asyncio

    import codecapsule as cc

    mark = marker()

    async def main() -> tuple[list[int], list[int]]:
        async with cc.AsyncClient() as client:
            # (a time limit that ends it by itself, if the cancel did not, before the loop's shutdown waits for it)
            task = asyncio.create_task(client.execute(PROGRAM, "python", args=[mark], timeout=20))
            deadline = time.monotonic() + 60
            while not running(f"{mark}-child") and time.monotonic() < deadline and not task.done():
                await asyncio.sleep(0.02)  # a bounded poll of the process table
            seen = running(mark)
            assert seen and not task.done(), "the run never started"
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            return seen, running(mark)

    seen, left = asyncio.run(main())
    assert left == [] and _alive_or_zombie(seen) == []
