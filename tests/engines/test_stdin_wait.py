"""``_stdin_wait.blocked_reading``: what /proc says about real processes — a read of our pipe (on any fd, on any
thread), Node's epoll on it, and the waits that are not for our input (another pipe, a sleep, a busy loop)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from codecapsule.engines._stdin_wait import blocked_reading, descendants


@contextmanager
def _program(code: list[str], *, ready: str = "ready") -> Iterator[tuple[subprocess.Popen[bytes], int]]:
    """Start ``code`` with a fresh pipe as stdin; yield once it printed ``ready`` (its wait comes next)."""
    read_end, write_end = os.pipe()
    proc = subprocess.Popen(code, stdin=read_end, stdout=subprocess.PIPE)
    os.close(read_end)
    try:
        assert proc.stdout is not None and proc.stdout.readline().decode().strip() == ready
        yield proc, os.fstat(write_end).st_ino
    finally:
        proc.kill()
        proc.wait()
        os.close(write_end)
        assert proc.stdout is not None
        proc.stdout.close()


def _settles(proc: subprocess.Popen[bytes], inode: int, expected: bool) -> bool:
    """Whether /proc gives ``expected`` within a bounded wait (the program enters its wait just after printing)."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if blocked_reading([proc.pid], inode) is expected:
            return True
        os.sched_yield()
    return False


def _python(source: str) -> list[str]:
    return [sys.executable, "-c", f"import os, sys, threading, time\nprint('ready', flush=True)\n{source}"]


def test_a_read_of_stdin_is_a_wait_for_input() -> None:
    with _program(_python("sys.stdin.readline()")) as (proc, inode):
        assert _settles(proc, inode, True)


def test_a_read_of_a_copy_of_stdin_on_another_fd_counts() -> None:
    with _program(_python("fd = os.dup(0)\nos.close(0)\nos.read(fd, 10)")) as (proc, inode):
        assert _settles(proc, inode, True)


def test_a_read_on_a_second_thread_counts() -> None:
    source = "t = threading.Thread(target=sys.stdin.readline)\nt.start()\nt.join()"
    with _program(_python(source)) as (proc, inode):
        assert _settles(proc, inode, True)


def test_a_read_of_another_pipe_is_not_a_wait_for_input() -> None:
    with _program(_python("r, w = os.pipe()\nos.read(r, 10)")) as (proc, inode):
        assert _settles(proc, inode, False)
        assert blocked_reading([proc.pid], inode + 1_000_000) is False  # and another pipe's inode is not ours


def test_sleeping_and_computing_are_not_waits_for_input() -> None:
    with _program(_python("time.sleep(1000)")) as (proc, inode):
        assert _settles(proc, inode, False)
    with _program(_python("while True: pass")) as (proc, inode):
        assert blocked_reading([proc.pid], inode) is False


@pytest.mark.skipif(shutil.which("node") is None, reason="needs node")
def test_nodes_event_loop_watching_stdin_is_a_wait_for_input() -> None:
    source = "require('readline').createInterface({ input: process.stdin }).on('line', () => {});console.log('ready');"
    with _program(["node", "-e", source]) as (proc, inode):
        assert _settles(proc, inode, True)


def test_a_poll_on_stdin_cannot_be_told_apart() -> None:
    """select()/poll() do not show their fd sets in /proc: None, and the caller falls back to quiet time."""
    with _program(_python("import select\nselect.select([0], [], [])")) as (proc, inode):
        assert _settles(proc, inode, None)  # type: ignore[arg-type]


def test_gone_processes_are_not_waiting() -> None:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    assert blocked_reading([proc.pid], 1) is False


def test_descendants_include_grandchildren() -> None:
    code = "import subprocess, sys\np = subprocess.Popen([sys.executable, '-c', 'input()'], stdin=subprocess.PIPE)\n"
    code += "print(p.pid, flush=True)\np.wait()\n"
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stdin=subprocess.PIPE)
    try:
        assert proc.stdout is not None
        child = int(proc.stdout.readline())
        assert set(descendants(proc.pid)) >= {proc.pid, child}
    finally:
        proc.kill()
        proc.wait()
        subprocess.run(["kill", "-9", str(child)], check=False)
