"""Sandbox launches prepared ahead: a process already inside a fresh run cgroup, waiting to become a stage's chain.

Why: the first move of a process into a cgroup after an idle spell waits for an RCU grace period (the kernel's
cgroup_threadgroup_rwsem) — 3–15 ms measured on this cgroup v1 machine, more than all the rest of a Python
hello's sandbox overhead. A standby pays that in the background: a small perl process is spawned in its own
session with the stage's pipes already made (stdout, stderr, bwrap's status/block pipes, the seccomp program,
the launcher's exit channel), moved into a new cgroup, and left waiting on a control pipe. A stage then sets the
group's limits, writes its command, working directory and environment on the control pipe, and the standby
execs it: same pid and pipes, already in the group, so bwrap's sandbox is cloned into it with no move at all.

A standby is used once; once its program is started, the stage has the forker thread prepare the next (at most
``_READY_MAX`` wait: a ``_ready.ReadyPool``). When none is ready the stage starts the usual way. Standbys left at
exit see their control pipe close and exit; their groups are removed at exit, or swept by the next engine (the
group's name carries our pid).
"""

from __future__ import annotations

import atexit
import contextlib
import os
import subprocess
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from . import _cgroups, _ready

# Reads the command from the control fd, then becomes it. The message is its length in bytes on a line of its own,
# then the message: the standby never waits for end of file, which a copy of our write end held for a moment by
# another process we fork at the same time (the next standby, another thread's stage: until its exec) would delay.
# No message (our end closed first): it exits. Fields are NUL-separated: working directory, the host uid to become
# ("" for none), a path to open as stdin instead of the prepared file ("" for none: an interactive run's pipe, as
# /proc/<our pid>/fd/<n>), number of environment entries, the entries, then argv. Becoming the uid is what
# ``setpriv --reuid=U --regid=U --clear-groups --inh-caps=-all`` does (one exec less per stage): no supplementary
# groups, real/effective/saved gid and uid U (which clears the permitted, effective and ambient capabilities),
# then an empty inheritable set too.
_WAIT_THEN_EXEC = (
    "my $fd = shift @ARGV; open(my $c, '<&=', $fd) or exit 125; my $len = <$c>;"
    "exit 0 if !defined($len) || $len !~ /^[0-9]+\\n\\z/; my $m = '';"
    "while (length($m) < $len) { my $got = read($c, $m, $len - length($m), length($m)); exit 0 if !$got }"
    "close($c);"
    "my @f = split /\\0/, $m, -1; my $dir = shift @f; my $uid = shift @f; my $in = shift @f; my $n = shift @f;"
    "%ENV = (); if ($in ne '') { open(STDIN, '<', $in) or exit 125 }"
    "for (1 .. $n) { my ($k, $v) = split /=/, shift(@f), 2; $ENV{$k} = $v }"
    "chdir($dir) or exit 125;"
    "if ($uid ne '') { my $u = $uid + 0; syscall(SETGROUPS, 0, 0) == 0 or exit 125;"
    " syscall(SETRESGID, $u, $u, $u) == 0 or exit 125; syscall(SETRESUID, $u, $u, $u) == 0 or exit 125;"
    " my ($h, $d) = (pack('LL', 0x20080522, 0), pack('L6', 0, 0, 0, 0, 0, 0));"  # syscall() may write to these
    " syscall(CAPSET, $h, $d) == 0 or exit 125 }"
    "exec { $f[0] } @f; exit 127;"
)
_SYSCALLS = {  # (setgroups, setresgid, setresuid, capset)
    "x86_64": (116, 119, 117, 126),
    "aarch64": (159, 149, 147, 91),
}


def _script() -> str | None:
    numbers = _SYSCALLS.get(os.uname().machine)
    if numbers is None:
        return None
    script = _WAIT_THEN_EXEC
    for name, number in zip(("SETGROUPS", "SETRESGID", "SETRESUID", "CAPSET"), numbers, strict=True):
        script = script.replace(name, str(number))
    return script
_READY_MAX = 4  # standbys kept waiting per sandbox configuration (each: one small process, a cgroup, 8 fds)


@dataclass
class Standby:
    """A waiting launcher: its process, its group, and the numbers of the fds it holds for bwrap."""

    proc: subprocess.Popen[bytes]
    cgroup: _cgroups.RunCgroup
    stdin: IO[bytes]  # an empty file it has as stdin: the stage writes its input here (at offset 0)
    control_w: int
    status_r: int  # bwrap's JSON status (read end; the write end's number in the standby is status_w)
    status_w: int
    block_w: int  # bwrap waits on block_r before starting the program
    block_r: int
    seccomp_fd: int | None
    exit_r: int  # the sandbox launcher's report of the program's wait status
    exit_w: int
    init_fd: int | None  # the compiled PID 1 (``_init``), held for bwrap (None: the perl launcher)

    def start(
        self,
        argv: list[str],
        env: dict[str, str],
        cwd: str,
        stdin: bytes,
        uid: int | None,
        stdin_path: str = "",
        keep_stdin: bool = False,
    ) -> None:
        """Write the stage's input and become ``argv``, as host uid ``uid`` when given (raises OSError if the
        standby is gone). ``stdin_path``: open this as its stdin instead (an interactive run's pipe).
        ``keep_stdin``: keep our handle on its stdin file (a sandbox prepared ahead gets its input later)."""
        os.pwrite(self.stdin.fileno(), stdin, 0)
        uid_field = "" if uid is None else str(uid)
        fields = [cwd, uid_field, stdin_path, str(len(env)), *(f"{k}={v}" for k, v in env.items()), *argv]
        body = "\0".join(fields).encode()
        message = b"%d\n" % len(body) + body
        try:
            view = memoryview(message)
            while view:
                view = view[os.write(self.control_w, view) :]
        finally:
            os.close(self.control_w)
            self.control_w = -1
            if not keep_stdin:
                self.stdin.close()

    def discard(self) -> None:
        """Unused (at exit, or after a failed start): let it exit and remove its group."""
        self.stop()
        with contextlib.suppress(OSError):
            self.cgroup.remove()

    def stop(self) -> None:
        """Close our ends of its fds, kill what is left of it and reap it (its group stays)."""
        for fd in (self.control_w, self.status_r, self.block_w, self.exit_r):
            if fd >= 0:
                with contextlib.suppress(OSError):
                    os.close(fd)
        with contextlib.suppress(OSError):
            self.stdin.close()
        if self.proc.poll() is None:  # once reaped (poll() reaps), its pid may be another process group's
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.proc.pid, 9)
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            self.proc.wait(5)
        from ._sandbox import waited_done  # (the stage runner imports this module)

        waited_done(self.proc.pid)
        for pipe in (self.proc.stdout, self.proc.stderr):
            if pipe is not None:
                pipe.close()


class _Pool(_ready.ReadyPool[Standby]):
    """The standbys of one sandbox configuration."""

    def __init__(self, perl: str, cgroups: _cgroups.CgroupSupport, seccomp: bytes | None, init_fd: int | None) -> None:
        super().__init__(_READY_MAX)
        self.perl = perl
        self.cgroups = cgroups
        self.seccomp = seccomp
        self.init_fd = init_fd
        self.closed = _closing

    def make(self) -> Standby:
        return _spawn(self.perl, self.cgroups, self.seccomp, self.init_fd)

    def alive(self, item: Standby) -> bool:
        return item.proc.poll() is None

    def stop(self, item: Standby) -> None:
        item.discard()


def _spawn(
    perl: str, support: _cgroups.CgroupSupport, seccomp: bytes | None, init_fd: int | None, extra: tuple[int, ...] = ()
) -> Standby:
    """A new standby; ``extra``: more of our fds it holds for what it becomes (closed here once it has them)."""
    from ._sandbox import _popen  # the stage runner's own spawn: a new session, a waited-for child

    cgroup = support.create(None, None, cpus=1.0)
    fds: list[int] = []
    stdin: IO[bytes] | None = None
    try:
        control_r, control_w = os.pipe()
        status_r, status_w = os.pipe()
        block_r, block_w = os.pipe()
        exit_r, exit_w = os.pipe()
        fds = [control_r, control_w, status_r, status_w, block_r, block_w, exit_r, exit_w]
        seccomp_fd = None
        if seccomp is not None:
            seccomp_fd, seccomp_w = os.pipe()
            fds.append(seccomp_fd)
            os.write(seccomp_w, seccomp)  # ~700 bytes: far below the pipe's capacity
            os.close(seccomp_w)
        stdin = tempfile.TemporaryFile()  # noqa: SIM115  # outlives this call: closed by start() or discard()
        passed = (control_r, status_w, block_r, exit_w, *extra) + ((seccomp_fd,) if seccomp_fd is not None else ())
        script = _script()
        if script is None:
            raise OSError(f"no system call numbers for {os.uname().machine}")
        kept = (init_fd,) if init_fd is not None else ()  # the engine's own: not closed here
        proc = _popen([perl, "-e", script, str(control_r)], stdin, {}, "/", passed + kept)
    except BaseException:
        if stdin is not None:
            stdin.close()
        for fd in fds:
            with contextlib.suppress(OSError):
                os.close(fd)
        cgroup.remove()
        raise
    for fd in passed:
        os.close(fd)  # the standby holds them now
    standby = Standby(
        proc, cgroup, stdin, control_w, status_r, status_w, block_w, block_r, seccomp_fd, exit_r, exit_w, init_fd
    )
    try:
        for procs in cgroup.procs_files:
            Path(procs).write_text(str(proc.pid))  # the slow move, off every stage's path
    except OSError:
        standby.discard()
        raise
    return standby


_pools: dict[tuple[str, _cgroups.CgroupSupport, bytes | None, int | None], _Pool] = {}
_pools_lock = threading.Lock()
_closing = False


def take(
    perl: str | None, support: _cgroups.CgroupSupport | None, seccomp: bytes | None, init_fd: int | None = None
) -> Standby | None:
    """A standby for a stage under this sandbox configuration, or None (start the usual way). The stage calls
    ``refill`` once its program is started."""
    if perl is None or support is None or _closing:
        return None
    return _pool(perl, support, seccomp, init_fd).take()


def refill(
    perl: str | None, support: _cgroups.CgroupSupport | None, seccomp: bytes | None, init_fd: int | None = None
) -> None:
    """Make sure a standby is being prepared for the next stage (at most ``_READY_MAX`` wait). A stage calls this
    once its program is started: preparing one (new groups, a perl, the slow move into a group) then overlaps the
    program's run, where the stage's thread only waits, instead of competing with the launch for CPU and GIL."""
    if perl is None or support is None or _closing:
        return
    _pool(perl, support, seccomp, init_fd).refill()


def ready_pids(
    perl: str, support: _cgroups.CgroupSupport, seccomp: bytes | None, init_fd: int | None = None, timeout: float = 10.0
) -> list[int]:
    """The pids of the standbys waiting for this configuration, once none is being prepared (for tests and
    ``engine info``)."""
    return [standby.proc.pid for standby in _pool(perl, support, seccomp, init_fd).wait_prepared(timeout)]


def _pool(perl: str, support: _cgroups.CgroupSupport, seccomp: bytes | None, init_fd: int | None) -> _Pool:
    key = (perl, support, seccomp, init_fd)
    with _pools_lock:
        pool = _pools.get(key)
        if pool is None:
            pool = _pools[key] = _Pool(perl, support, seccomp, init_fd)
        return pool


def _all_pools() -> list[_Pool]:
    with _pools_lock:
        return list(_pools.values())


def release_all() -> None:
    """Let every waiting standby exit and remove its group (the next stage prepares new ones)."""
    for pool in _all_pools():
        pool.release()


def _forget_after_fork() -> None:
    """In a forked child: the standbys are the parent's children, not ours; drop our copies of their pipes."""
    global _pools_lock
    for pool in _pools.values():
        for standby in pool.ready:
            for fd in (standby.control_w, standby.status_r, standby.block_w, standby.exit_r):
                with contextlib.suppress(OSError):
                    os.close(fd)
    _pools.clear()
    _pools_lock = threading.Lock()


os.register_at_fork(after_in_child=_forget_after_fork)


@atexit.register
def _close_all() -> None:
    global _closing
    _closing = True
    for pool in _all_pools():
        pool.close()
