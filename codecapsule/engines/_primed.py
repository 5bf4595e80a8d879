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
- a primed sandbox serves one run stage: PID 1 exits after the program, as it does cold. An unused one exits
  when its socket closes (the run ended, the engine closed, the host died: ``--die-with-parent`` too);
- a compiled language's sandbox also serves its compile stage, in a *compile slot* (one launch less than a
  sandbox per stage). Before any stage, PID 1 forks the slot's launcher, which waits on a second socket, and the
  forker thread moves that child into a cgroup of its own (the slow move, off the run's path, as a standby's).
  The compile stage sets that group's limits and sends its message there with its own stdin, stdout, stderr and
  report pipes, so its limits, counters (CPU, memory peak, OOM kills) and verdict are its own, as in a sandbox of
  its own. The launcher runs it as PID 1 runs a stage, as the subreaper of all it starts, then kills everything
  the compile left in the namespace (everything but PID 1 and itself) and exits once that is reaped; only then
  does the run stage start, in PID 1, as above, with the default signal mask and dispositions restored (PID 1
  catches SIGCHLD while it waits, to reap the launcher). A compile-cache hit, or a compile elsewhere (a
  precompiled header binds another root), lets the slot go: its launcher reads end of file and exits, and the run
  stage waits for that (a program listing ``/proc`` sees what a cold run sees).

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
import weakref
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from . import _forker, _ready, _standby, _workdir

if TYPE_CHECKING:
    from ._cgroups import CgroupSupport, RunCgroup
    from ._live_stdin import LiveStdin
    from ._sandbox import SandboxCaps
    from ._uids import UidPool

READY_MAX = 2  # runs' sandboxes kept waiting per pool (each: a tmpfs, a uid, a bwrap, PID 1, 1-2 cgroups)
_GIVE_UP = 3  # failed preparations in a row after which a pool stops trying (runs then start as usual)
_MESSAGE_MAX = 128 * 1024  # a stage message above this starts the usual way (a socket's send buffer holds it)
_SLOT_WAIT = 5.0  # seconds for a prepared PID 1 to fork its compile slot
_LET_GO_WAIT = 1.0  # seconds an unused slot's launcher may take to exit before the run stage starts elsewhere


@dataclass(eq=False)
class CompileSlot:
    """A compiled language's compile stage, prepared inside the run's sandbox: PID 1's child, already moved into
    the compile's own cgroup, waiting on its socket for the stage (limits, environment, argv and its stdin, stdout,
    stderr and report pipes as SCM_RIGHTS fds). It ends once the compile and all it left are dead and reaped."""

    sock: socket.socket | None
    pid: int  # the slot's launcher (PID 1's child: not ours to wait for, PID 1 reaps it)
    pidfd: int
    cgroup: RunCgroup
    claimed: bool = False  # by a compile stage, or let go
    ran: bool = False  # a compile stage was sent to it
    ended: bool = False  # that stage is over and its launcher is gone (the run stage may start)

    def alive(self) -> bool:
        return not select.select([self.pidfd], [], [], 0)[0]

    def start(self, argv: list[str], env: dict[str, str], limits: str, stdin_fd: int) -> tuple[int, int, int]:
        """Send the stage (``stdin_fd``: a file holding its input); our ends of its stdout, stderr and report
        pipes. OSError if the launcher is gone."""
        assert self.sock is not None
        body = _message(argv, env, limits)
        pipes = [os.pipe() for _ in range(3)]
        try:
            socket.send_fds(self.sock, [body], [stdin_fd, *(w for _, w in pipes)])
            self.ran = True
        except BaseException:
            for r, _ in pipes:
                os.close(r)
            raise
        finally:
            for _, w in pipes:
                os.close(w)
            self.sock.close()
            self.sock = None
        return pipes[0][0], pipes[1][0], pipes[2][0]

    def discard(self) -> None:
        """Let it go unused (a cache hit, a compile elsewhere): its launcher reads end of file and exits, killing
        nothing (PID 1 reaps it). Its group goes with the run (``Primed.close``)."""
        if self.sock is not None:
            self.sock.close()
            self.sock = None
        self.claimed = True

    def gone(self, timeout: float) -> bool:
        """Wait (bounded) for its launcher to be gone."""
        return bool(select.select([self.pidfd], [], [], timeout)[0])

    def remove(self) -> None:
        """Once its launcher is gone (bounded wait): close our pidfd and remove its group (once; forker thread)."""
        if self.pidfd < 0:
            return
        with contextlib.suppress(OSError):
            self.gone(1.0)
        os.close(self.pidfd)
        self.pidfd = -1
        with contextlib.suppress(OSError):
            self.cgroup.remove()


def _message(argv: list[str], env: dict[str, str], limits: str) -> bytes:
    """A stage for PID 1 or a compile slot: NUL-separated limits, environment count and entries, argv."""
    body = "\0".join([limits, str(len(env)), *(f"{k}={v}" for k, v in env.items()), *argv]).encode()
    if len(body) > _MESSAGE_MAX:
        raise OSError(f"the stage's command and environment take {len(body)} bytes, over {_MESSAGE_MAX}")
    return body


@dataclass(eq=False)
class Launch:
    """One prepared sandbox: its launcher (now bwrap, its pipes the run stage's), PID 1's pidfd and socket, and
    for a compiled language the compile stage's slot."""

    standby: _standby.Standby
    init_fd: int
    sock: socket.socket | None
    compile: CompileSlot | None = None
    claimed: bool = False

    def alive(self) -> bool:
        """Not killed from outside while it waited."""
        return self.standby.proc.poll() is None and not select.select([self.init_fd], [], [], 0)[0]

    def start(self, argv: list[str], env: dict[str, str], limits: str, stdin: bytes | LiveStdin) -> None:
        """Send the stage to PID 1 (``limits`` as the launcher's argument); OSError if the sandbox is gone."""
        assert self.sock is not None
        try:
            body = _message(argv, env, limits)
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
        """Unused: let PID 1 read end of file and exit (bwrap with it), reap, remove the groups."""
        from ._sandbox import _reap

        if self.compile is not None:
            self.compile.discard()
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
    """A run's place prepared ahead: its work directory and uid, and the one sandbox bound to that directory its
    stages run in (a compiled language's compile stage in the slot inside it, with its own group and limits)."""

    pool: PrimedPool
    caps: SandboxCaps  # with this run's uid
    work: _workdir.WorkDir
    launch: Launch
    release_uid: Callable[[], None]

    @property
    def uid(self) -> int | None:
        return self.caps.sandbox_uid

    def alive(self) -> bool:
        slot = self.launch.compile
        return self.launch.alive() and (slot is None or slot.alive())

    def _fits(self, caps: SandboxCaps, workdir: str, roots: tuple[str, ...]) -> bool:
        return caps == self.caps and workdir == self.work.path and roots == self.pool.roots

    def claim_compile(self, caps: SandboxCaps, workdir: str, roots: tuple[str, ...]) -> CompileSlot | None:
        """The compile slot, if a compile stage with this sandbox, work directory and roots may start in it and
        none did yet (the stage then owns the slot: its launcher, pipes and group); else None."""
        slot = self.launch.compile
        if slot is None or slot.claimed or self.launch.claimed or not self._fits(caps, workdir, roots):
            return None
        if not slot.alive():
            slot.discard()
            return None
        slot.claimed = True
        return slot

    def compile_done(self) -> None:
        """The run's compile stage is over, or it needed none (a cache hit): an unused slot's launcher may exit
        now, while the run stage is set up."""
        slot = self.launch.compile
        if slot is not None and not slot.claimed:
            slot.discard()

    def claim(self, caps: SandboxCaps, workdir: str, roots: tuple[str, ...]) -> Launch | None:
        """The sandbox, if a run stage with this sandbox, work directory and roots may start in it and none did
        yet (the stage then owns the launch: process, pipes, group); else None. An unused compile slot is let
        go first: nothing of a compile stage is alive while the run stage runs."""
        launch = self.launch
        if launch.claimed or not self._fits(caps, workdir, roots) or not launch.alive():
            return None
        slot = launch.compile
        if slot is not None and not slot.ran:
            slot.discard()
            if not slot.gone(_LET_GO_WAIT):  # the run's program must not see it (a process list would differ)
                return None
        elif slot is not None and not slot.ended:
            return None  # its compile stage could not make sure its launcher was gone: the run starts elsewhere
        launch.claimed = True
        return launch

    def finished(self) -> None:
        """The run is over: ``close`` now, or on the forker thread where the sandbox was not used (its group's
        removal would wait on the kernel, see ``_forker``)."""
        if self.launch.claimed:
            self.close()
        else:
            _forker.later(self.close)

    def close(self) -> None:
        """Stop the sandbox if no stage used it, remove the work directory, free the uid (in that order: the uid
        is another run's only once nothing of this one runs as it)."""
        try:
            slot = self.launch.compile
            if slot is not None and not slot.ran:  # (a slot that ran a stage is removed by that stage)
                slot.discard()
                _forker.later(slot.remove)
            if not self.launch.claimed:
                self.launch.claimed = True
                self.launch.discard(self.uid)
        finally:
            try:
                self.work.remove()
            finally:
                self.release_uid()


class PrimedPool(_ready.ReadyPool[Primed]):
    """The primed sandboxes of one engine for one set of read-only roots (with compile slots where ``compiles``)."""

    def __init__(
        self,
        caps: SandboxCaps,
        roots: tuple[str, ...],
        compiles: bool,
        uids: UidPool,
        workroot: str | None,
        workdir_size: int | None,
    ) -> None:
        super().__init__(READY_MAX, give_up=_GIVE_UP)
        self.caps = caps
        self.roots = roots
        self.compiles = compiles  # whether the sandboxes hold a compile slot (a compiled language's runs)
        self.uids = uids
        self.workroot = workroot
        self.workdir_size = workdir_size
        self.closed = _closing
        _pools.add(self)

    def make(self) -> Primed:
        return _prepare(self)

    def alive(self, item: Primed) -> bool:
        return item.alive()

    def stop(self, item: Primed) -> None:
        item.close()

    def take(self) -> Primed | None:
        """A primed sandbox (oldest first), or None: none ready yet (one is then prepared for the next run)."""
        got = super().take()
        if got is None:
            self.refill()
        return got

    def release(self, timeout: float = 10.0) -> None:
        """Stop the sandboxes waiting now (the next run prepares anew unless closed), and wait for what was handed
        to the forker thread (removals, unused sandboxes)."""
        super().release(timeout)
        _forker.wait_idle(timeout)


def _prepare(pool: PrimedPool) -> Primed:
    caps = pool.caps
    uid_hold = contextlib.ExitStack()  # what the Primed keeps: the uid
    try:
        uid = uid_hold.enter_context(pool.uids.take()) if caps.sandbox_uid is not None else None
        if uid is not None:
            caps = replace(caps, sandbox_uid=uid)
        work = _workdir.WorkDir(pool.workroot, size=pool.workdir_size, owner=uid)
        try:
            launch = _launch(caps, work.path, pool.roots, pool.compiles)
        except BaseException:
            work.remove()
            raise
    except BaseException:
        uid_hold.close()
        raise
    return Primed(pool, caps, work, launch, uid_hold.close)


def _launch(caps: SandboxCaps, workdir: str, roots: tuple[str, ...], compiles: bool) -> Launch:
    """A standby that becomes the uid and execs bwrap bound to ``workdir``, released up to its waiting PID 1
    (which first forks the compile slot's launcher where ``compiles``)."""
    from ._sandbox import _bwrap_command, _confine

    perl, cgroups = caps.perl, caps.cgroups
    assert perl is not None and cgroups is not None and caps.init is not None
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    slot_ours, slot_theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET) if compiles else (None, None)
    passed = tuple(end.detach() for end in (theirs, slot_theirs) if end is not None)
    try:
        standby = _standby._spawn(perl, cgroups, caps.seccomp, caps.init, extra=passed)
    except BaseException:
        for fd in passed:
            os.close(fd)
        for end in (ours, slot_ours):
            if end is not None:
                end.close()
        raise
    slot = None
    try:
        cmd = _bwrap_command(
            replace(caps, setpriv=None), [], workdir, roots, standby.status_w, standby.block_r, standby.seccomp_fd,
            None, standby.exit_w, standby.init_fd, serve_fd=passed[0], compile_fd=passed[1] if compiles else None,
        )  # fmt: skip
        standby.start(cmd, {}, workdir, b"", caps.sandbox_uid if caps.setpriv is not None else None, keep_stdin=True)
        try:
            init_fd = _confine(standby.proc, caps, None, standby.cgroup, standby.status_r, standby.block_w, None)
        finally:
            os.close(standby.block_w)
            standby.block_w = -1
        if init_fd is None:
            raise OSError("bubblewrap did not start the prepared sandbox")
        if slot_ours is not None:
            try:
                slot = _compile_slot(caps, cgroups, ours, slot_ours, standby.proc.pid)
            except BaseException:
                os.close(init_fd)
                raise
    except BaseException:
        ours.close()
        if slot_ours is not None and slot is None:
            slot_ours.close()
        standby.discard()
        raise
    return Launch(standby, init_fd, ours, slot)


def _compile_slot(
    caps: SandboxCaps, cgroups: CgroupSupport, ours: socket.socket, slot_sock: socket.socket, bwrap: int
) -> CompileSlot:
    """PID 1 (bwrap's child) has forked the slot's launcher and says so ("C"): move that child (PID 1's only one)
    into a new group of its own, where the compile stage will run."""
    from ._sandbox import _children, _join

    if not select.select([ours], [], [], _SLOT_WAIT)[0] or ours.recv(1) != b"C":
        raise OSError("the prepared sandbox's PID 1 did not start the compile slot")
    inits = _children(bwrap)
    children = _children(inits[0]) if len(inits) == 1 else []
    if len(children) != 1:
        raise OSError(f"the prepared sandbox's PID 1 has {len(children)} children, not the compile slot alone")
    pidfd = os.pidfd_open(children[0])
    try:
        if caps.sandbox_uid is not None and os.stat(f"/proc/{children[0]}").st_uid != caps.sandbox_uid:
            raise OSError("the compile slot does not run as the sandbox's uid")
        cgroup = cgroups.create(None, None, cpus=1.0)
        try:
            _join(cgroup, children[0])  # the slow move, off every stage's path (as a standby's)
            if select.select([pidfd], [], [], 0)[0]:
                raise OSError("the compile slot ended before it was moved")
        except BaseException:
            with contextlib.suppress(OSError):
                cgroup.remove()
            raise
    except BaseException:
        os.close(pidfd)
        raise
    return CompileSlot(slot_sock, children[0], pidfd, cgroup)


_pools: weakref.WeakSet[PrimedPool] = weakref.WeakSet()
_closing = False


def _forget_after_fork() -> None:
    """In a forked child: the sandboxes are the parent's."""
    for pool in list(_pools):
        pool.forget()


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
