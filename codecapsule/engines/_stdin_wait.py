"""Whether a live run's program is blocked reading its stdin — read from /proc, never guessed from its output.

A task waits for our input when it sleeps in the kernel (``wchan``) reading a pipe, in a read system call
(``/proc/<pid>/task/<tid>/syscall``: number and first argument) whose fd is our stdin pipe
(``/proc/<pid>/fd/<fd>`` → ``pipe:[<inode>]``); or sleeps in ``epoll_wait`` on an epoll instance that watches our
pipe (``/proc/<pid>/fdinfo/<epfd>`` lists ``tfd: ... ino:<hex inode>``; Node's event loop). Every task of every
process is looked at: Java's ``Scanner`` reads on a thread that is not the first.

Where /proc cannot tell — no permission to a task's ``syscall`` file, an unknown architecture, or a ``poll`` /
``select`` wait whose fd set /proc does not show — the answer is None and the caller falls back to the quiet-time
rule (:data:`QUIET_FOR_INPUT`, the rule Piston's live path uses, where the server cannot say).
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

# An interactive run that printed nothing and read everything sent for this long is taken to wait for input —
# only where the waiting cannot be measured (Piston's server cannot say; /proc may not tell).
QUIET_FOR_INPUT = 0.3
QUIET_BEFORE_PROBE = 0.05  # a run stage must be silent this long before /proc is looked at
PROBE_EVERY = 0.05  # and is looked at no more often than this

_PIPE_READ_WCHANS = frozenset({"pipe_read", "anon_pipe_read"})  # the names differ between kernel versions
_EPOLL_WCHANS = frozenset({"do_epoll_wait", "ep_poll"})

# system call numbers: read, pread64, readv, preadv, preadv2 / epoll_wait, epoll_pwait, epoll_pwait2 / poll,
# ppoll, select, pselect6 (whose fd sets /proc does not show)
_READ_CALLS = {"x86_64": frozenset({0, 17, 19, 295, 327}), "aarch64": frozenset({63, 67, 65, 69, 286})}
_EPOLL_CALLS = {"x86_64": frozenset({232, 281, 441}), "aarch64": frozenset({22, 441})}
_POLL_CALLS = {"x86_64": frozenset({7, 271, 23, 270}), "aarch64": frozenset({73, 72})}


def blocked_reading(pids: Iterable[int], pipe_inode: int) -> bool | None:
    """True when a task of ``pids`` sleeps waiting to read the pipe ``pipe_inode``; False when none does; None
    when /proc could not tell for some task (and none was seen waiting)."""
    machine = os.uname().machine
    if machine not in _READ_CALLS:
        return None
    unknown = False
    for pid in pids:
        for tid in _tasks(pid):
            waits = _task_waits(pid, tid, pipe_inode, machine)
            if waits:
                return True
            unknown = unknown or waits is None
    return None if unknown else False


def _tasks(pid: int) -> list[str]:
    try:
        return os.listdir(f"/proc/{pid}/task")
    except OSError:
        return []  # gone since it was listed


def _task_waits(pid: int, tid: str, pipe_inode: int, machine: str) -> bool | None:
    task = f"/proc/{pid}/task/{tid}"
    try:
        call = Path(f"{task}/syscall").read_text().split()
        # "poll_schedule_timeout.constprop.0": the compiler's suffix is not part of the name
        wchan = Path(f"{task}/wchan").read_text().strip().partition(".")[0]
    except FileNotFoundError:
        return False  # the task ended
    except OSError:
        return None  # no permission (ptrace access): /proc cannot tell
    if len(call) < 2 or not call[0].isdigit():
        return False  # "running" (or a task in no system call): not blocked
    number, first = int(call[0]), int(call[1], 16)
    ours = f"pipe:[{pipe_inode}]"
    if wchan in _PIPE_READ_WCHANS and number in _READ_CALLS[machine]:
        return _fd_target(pid, first) == ours
    if wchan in _EPOLL_WCHANS and number in _EPOLL_CALLS[machine]:
        return _epoll_watches(pid, first, pipe_inode)
    if wchan not in ("", "0") and number in _POLL_CALLS[machine] and _fd_target(pid, 0) == ours:
        return None
    return False


def _fd_target(pid: int, fd: int) -> str | None:
    try:
        return os.readlink(f"/proc/{pid}/fd/{fd}")
    except OSError:
        return None


def _epoll_watches(pid: int, epfd: int, pipe_inode: int) -> bool:
    try:
        info = Path(f"/proc/{pid}/fdinfo/{epfd}").read_text()
    except OSError:
        return False
    wanted = f"ino:{pipe_inode:x}"
    return any(line.startswith("tfd:") and wanted in line.split() for line in info.splitlines())


def descendants(pid: int) -> list[int]:
    """``pid`` and every process below it (for a run without a cgroup to list its processes)."""
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        for tid in _tasks(current):
            try:
                todo.extend(int(p) for p in Path(f"/proc/{current}/task/{tid}/children").read_text().split())
            except OSError:
                continue
    return found
