"""Sandboxes prepared ahead: bubblewrap already up (namespaces, mounts, seccomp, PID 1), waiting for a stage.

Why: a standby (``_standby``) saves a stage the move into its cgroup, but the stage still waits for bubblewrap to
load, make its namespaces, ~30 mounts and the seccomp filter, and for its PID 1 to start: ~4–5 ms of the ~5.5 ms a
sandboxed Python hello costs over the bare interpreter (``docs/local-engine.md``, "What a run costs"). A primed
sandbox has done all of that before the run is asked for. What a sandbox needs to know that early is fixed when it
is prepared: the run's work directory (bound at ``/box``), its unprivileged uid (as root) and the read-only roots
it binds. So a run takes its work directory and uid *from* a primed sandbox (``LocalEngine`` asks the pool of its
run stage's roots), and the first stage of the run whose sandbox would be exactly this one starts in it:

- the standby becomes the uid and execs bubblewrap with ``--bind <work dir> /box`` and the compiled PID 1
  (``_init``) in ``--serve`` mode, which waits on a socket;
- the stage sets the cgroup's limits, starts its CPU accounting, writes its input into the stdin file (or passes
  an interactive run's pipe as an SCM_RIGHTS fd) and sends one message: the resource limits, the environment and
  argv. PID 1 then forks and execs the program exactly as a cold stage's PID 1 does, and the stage is judged by
  the same code from the same facts (bwrap's JSON status, the launcher's wait status, the cgroup's counters);
- a primed sandbox serves one stage: PID 1 exits after the program, as it does cold. An unused one exits when
  its socket closes (the run ended, the engine closed, the host died: ``--die-with-parent`` too).

Nothing of the program's can reach a waiting sandbox: no program runs in it before the stage message, the socket
has no name, and the work directory is fresh and empty until the run writes the job's files.

Everything is prepared on the forker thread (``_forker``: bwrap's ``--die-with-parent`` follows the thread that
forked it), which also removes a finished run's cgroup and stops a sandbox a run did not use.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import select
import socket
import threading
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from . import _forker, _standby, _workdir

if TYPE_CHECKING:
    from ._live_stdin import LiveStdin
    from ._sandbox import SandboxCaps
    from ._uids import UidPool

READY_MAX = 2  # runs' sandboxes kept waiting per pool (each: a tmpfs and a uid; per stage a bwrap, PID 1, a cgroup)
_GIVE_UP = 3  # failed preparations in a row after which a pool stops trying
_MESSAGE_MAX = 128 * 1024  # a stage message above this starts the usual way (a socket's send buffer holds it)


@dataclass(eq=False)
class Launch:
    """One prepared sandbox: its launcher (now bwrap, its pipes the stage's), PID 1's pidfd and socket."""

    standby: _standby.Standby
    init_fd: int
    sock: socket.socket | None
    claimed: bool = False

    def alive(self) -> bool:
        """Not killed from outside while it waited."""
        return self.standby.proc.poll() is None and not select.select([self.init_fd], [], [], 0)[0]

    def start(self, argv: list[str], env: dict[str, str], limits: str, stdin: bytes | LiveStdin) -> None:
        """Send the stage to PID 1 (``limits`` as the launcher's argument); OSError if the sandbox is gone."""
        assert self.sock is not None
        try:
            body = "\0".join([limits, str(len(env)), *(f"{k}={v}" for k, v in env.items()), *argv]).encode()
            if len(body) > _MESSAGE_MAX:
                raise OSError(f"the stage's command and environment take {len(body)} bytes, over {_MESSAGE_MAX}")
            fds: list[int] = []
            if isinstance(stdin, bytes):
                os.pwrite(self.standby.stdin.fileno(), stdin, 0)
            else:
                fds = [stdin.read_fd]
            socket.send_fds(self.sock, [body], fds)
        finally:
            self.sock.close()
            self.sock = None
            self.standby.stdin.close()

    def discard(self, sandbox_uid: int | None) -> None:
        """Unused: let PID 1 read end of file and exit (bwrap with it), reap, remove the group."""
        from ._sandbox import _reap

        if self.sock is not None:
            self.sock.close()
            self.sock = None
        with contextlib.suppress(OSError):
            select.select([self.init_fd], [], [], 1.0)
        self.standby.stop()
        _reap(self.init_fd, sandbox_uid)  # a PID 1 left by a killed bwrap: reaped before its group can go
        os.close(self.init_fd)
        with contextlib.suppress(OSError):
            self.standby.cgroup.remove()


@dataclass(eq=False)
class Primed:
    """A run's place prepared ahead: its work directory and uid, and one sandbox per stage it may run there (each
    bound to that directory; a compiled language's compile and run stages each get their own, as cold)."""

    pool: PrimedPool
    caps: SandboxCaps  # with this run's uid
    work: _workdir.WorkDir
    launches: list[Launch]
    release_uid: Callable[[], None]

    @property
    def uid(self) -> int | None:
        return self.caps.sandbox_uid

    def alive(self) -> bool:
        return all(launch.alive() for launch in self.launches)

    def claim(self, caps: SandboxCaps, workdir: str, roots: tuple[str, ...]) -> Launch | None:
        """The next unused sandbox, if a stage with this sandbox, work directory and roots may start in it (the
        stage then owns the launch: process, pipes, group); else None."""
        if caps != self.caps or workdir != self.work.path or roots != self.pool.roots:
            return None
        for launch in self.launches:
            if not launch.claimed:
                if not launch.alive():
                    return None
                launch.claimed = True
                return launch
        return None

    def finished(self) -> None:
        """The run is over: ``close`` now, or on the forker thread where a sandbox no stage used must be stopped
        (a cache hit's unused compile sandbox: its group's removal would wait on the kernel, see ``_forker``)."""
        if all(launch.claimed for launch in self.launches):
            self.close()
        else:
            _forker.later(self.close)

    def close(self) -> None:
        """Stop the sandboxes no stage used, remove the work directory, free the uid (in that order: the uid is
        another run's only once nothing of this one runs as it)."""
        try:
            for launch in self.launches:
                if not launch.claimed:
                    launch.claimed = True
                    launch.discard(self.uid)
        finally:
            try:
                self.work.remove()
            finally:
                self.release_uid()


@dataclass(eq=False)  # one pool is one pool (hashable by identity: the registry is a weak set)
class PrimedPool:
    """The primed sandboxes of one engine for one set of read-only roots."""

    caps: SandboxCaps
    roots: tuple[str, ...]
    stages: int  # sandboxes per run: 2 where a compile stage may run in one too
    uids: UidPool
    workroot: str | None
    workdir_size: int | None
    ready: list[Primed] = field(default_factory=list)
    preparing: int = 0
    failures: int = 0  # preparations failed in a row; at _GIVE_UP this machine cannot prime (runs start as usual)
    closed: bool = False
    lock: threading.Lock = field(default_factory=threading.Lock)
    changed: threading.Condition = field(init=False)

    def __post_init__(self) -> None:
        self.changed = threading.Condition(self.lock)
        _pools.add(self)

    def take(self) -> Primed | None:
        """A primed sandbox (oldest first), or None: none ready yet (one is then prepared for the next run)."""
        got = None
        with self.lock:
            while self.ready and got is None:
                got = self.ready.pop(0)
                if not got.alive():
                    _forker.later(got.close)
                    got = None
        if got is None:
            self.refill()
        return got

    def refill(self) -> None:
        """Make sure one is being prepared when fewer than ``READY_MAX`` wait."""
        with self.lock:
            broken = self.failures >= _GIVE_UP
            go = not (broken or self.closed or _closing) and self.preparing + len(self.ready) < READY_MAX
            if go:
                self.preparing += 1
        if go:
            _forker.later(self._prepare)

    def _prepare(self) -> None:
        try:
            primed = _prepare(self)
        except Exception:
            primed = None
        with self.lock:
            self.preparing -= 1
            self.failures = 0 if primed is not None else self.failures + 1  # one may be passing (all uids taken)
            self.changed.notify_all()
            if primed is not None and not (self.closed or _closing):
                self.ready.append(primed)
                return
        if primed is not None:
            primed.close()

    def wait_prepared(self, timeout: float = 10.0) -> int:
        """Wait until none is being prepared; how many are ready (for tests and benchmarks)."""
        with self.lock:
            self.changed.wait_for(lambda: self.preparing == 0, timeout)
            return len(self.ready)

    def close(self, timeout: float = 10.0, *, wait: bool = True) -> None:
        """Prepare no more and stop the sandboxes waiting; ``wait=False``: on the forker thread, after what it was
        given before (an engine's finalizer must not block)."""
        with self.lock:
            self.closed = True
        if wait:
            self.release(timeout)
        else:
            _forker.later(self._stop_ready)  # a preparation queued before is done by then, and found the pool closed

    def release(self, timeout: float = 10.0) -> None:
        """Stop the sandboxes waiting now (the next run prepares anew unless closed)."""
        with self.lock:
            self.changed.wait_for(lambda: self.preparing == 0, timeout)
        self._stop_ready()
        _forker.wait_idle(timeout)  # what was handed to the forker thread (removals, unused sandboxes) is done too

    def _stop_ready(self) -> None:
        with self.lock:
            ready, self.ready = self.ready, []
        for primed in ready:
            primed.close()


def _prepare(pool: PrimedPool) -> Primed:
    caps = pool.caps
    uid_hold = contextlib.ExitStack()  # what the Primed keeps: the uid
    launches: list[Launch] = []
    try:
        uid = uid_hold.enter_context(pool.uids.take()) if caps.sandbox_uid is not None else None
        if uid is not None:
            caps = replace(caps, sandbox_uid=uid)
        work = _workdir.WorkDir(pool.workroot, size=pool.workdir_size, owner=uid)
        try:
            for _ in range(pool.stages):
                launches.append(_launch(caps, work.path, pool.roots))
        except BaseException:
            for launch in launches:
                launch.discard(uid)
            work.remove()
            raise
    except BaseException:
        uid_hold.close()
        raise
    return Primed(pool, caps, work, launches, uid_hold.close)


def _launch(caps: SandboxCaps, workdir: str, roots: tuple[str, ...]) -> Launch:
    """A standby that becomes the uid and execs bwrap bound to ``workdir``, released up to its waiting PID 1."""
    from ._sandbox import _bwrap_command, _confine

    perl, cgroups = caps.perl, caps.cgroups
    assert perl is not None and cgroups is not None and caps.init is not None
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    theirs_fd = theirs.detach()
    try:
        standby = _standby._spawn(perl, cgroups, caps.seccomp, caps.init, extra=(theirs_fd,))
    except BaseException:
        os.close(theirs_fd)
        ours.close()
        raise
    try:
        cmd = _bwrap_command(
            replace(caps, setpriv=None), [], workdir, roots, standby.status_w, standby.block_r, standby.seccomp_fd,
            None, standby.exit_w, standby.init_fd, serve_fd=theirs_fd,
        )  # fmt: skip
        standby.start(cmd, {}, workdir, b"", caps.sandbox_uid if caps.setpriv is not None else None, keep_stdin=True)
        try:
            init_fd = _confine(standby.proc, caps, None, standby.cgroup, standby.status_r, standby.block_w, None)
        finally:
            os.close(standby.block_w)
            standby.block_w = -1
        if init_fd is None:
            raise OSError("bubblewrap did not start the prepared sandbox")
    except BaseException:
        ours.close()
        standby.discard()
        raise
    return Launch(standby, init_fd, ours)


_pools: weakref.WeakSet[PrimedPool] = weakref.WeakSet()
_closing = False


def _forget_after_fork() -> None:
    """In a forked child: the sandboxes are the parent's."""
    for pool in list(_pools):
        pool.ready.clear()
        pool.preparing = 0
        pool.closed = True
        pool.lock = threading.Lock()
        pool.changed = threading.Condition(pool.lock)


os.register_at_fork(after_in_child=_forget_after_fork)


def close_pools(pools: dict[Any, PrimedPool]) -> None:
    """An engine's finalizer (dropped without ``close()``): its pools stop, on the forker thread."""
    for pool in list(pools.values()):
        pool.close(wait=False)
    pools.clear()


def release_all() -> None:
    """Stop every sandbox waiting in this process (their groups, uids and work directories go with them)."""
    for pool in list(_pools):
        pool.release()


@atexit.register
def _close_all() -> None:
    global _closing
    _closing = True
    for pool in list(_pools):
        pool.close(timeout=2.0)
