"""The warm javac: one JVM that stays up inside the sandbox and compiles the engine's Java jobs, one at a time.

A cold ``javac`` spends most of a Java job starting a JVM and warming javac's own code; ``JavacServer.java`` (next to
this file) keeps both warm. What holds (issue #12):

- It runs under the same sandbox as a compile stage: bubblewrap (no network, read-only system), as root its own
  unprivileged uid held for its lifetime, the seccomp filter, and a cgroup of its own with the compile stage's memory
  and process limits (set again before every request) and a 1-CPU quota. It is started from a keeper thread that
  lives as long as it: bwrap's ``--die-with-parent`` (PR_SET_PDEATHSIG) fires when the *thread* that forked it exits.
  It dies with the engine (``close()``), with the host process (PDEATHSIG, also for a SIGKILLed host), and a group
  a killed host left behind is swept by the next engine's start (``_cgroups.sweep``, ``_workdir.sweep``).
- No code of a job runs in it: javac gets ``-proc:none`` and only the arguments the engine builds (no -J, -Xplugin
  or processor options from the job).
- One job never sees another's files or classes: its working directory is a private tmpfs of the server; each job's
  files are copied into a fresh subdirectory, compiled there (``-d`` and ``-cp`` name only that subdirectory) with a
  fresh compiler context, the class files copied back into the job's work directory, the subdirectory removed.
  Diagnostics read as a cold javac's in the job's directory: the subdirectory's name (a random token) is cut from
  them.
- Only a plain answer is trusted: javac's exit 0 (compiled) or 1 (compile error) within the stage's output cap, in
  time and CPU. Anything else — a limit reached, a crash, a hang, a protocol error, a cancelled live run — kills
  the server (the next job starts a fresh one) and this job compiles cold, so the student gets exactly the cold
  verdict (compile timeout, memory) the limits give.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import queue
import secrets
import select
import signal
import struct
import subprocess
import threading
import time
import weakref
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

from .._errors import SandboxError
from .._results import Stage
from . import _cache_dir, _dir_copy, _workdir
from ._sandbox import (
    _CPU_POLL,
    SandboxCaps,
    StageLimits,
    StageSink,
    _bwrap_command,
    _confine,
    _popen,
    _reap,
    _rlimits,
    _seccomp_fd,
    classify,
    effective_wall,
    replay,
    waited_done,
)
from ._toolchains import _JVM_FAST, JAVAC_FLAGS, Toolchain, _base_env

if TYPE_CHECKING:
    from ._uids import UidPool

_SOURCE = Path(__file__).with_name("JavacServer.java")
_MAGIC = 0x4A415643
_ACCEPTED = frozenset({0, 1})  # javac's exit codes whose answer we keep: compiled, compile error
# The server's JVM: a cold javac's flags (C1 only: measured over 100 hello compiles, full tiers cost ~1.9× the CPU
# in the first 20 and were still behind at 100, C2 compiling on the server's single CPU); VM messages go to stderr,
# so stdout carries the protocol only.
_SERVER_JVM = (*_JVM_FAST, "-XX:+DisplayVMOutputToStderr")
_START_TIMEOUT = 30.0  # seconds for a fresh server to say hello
_BUSY_WAIT = 1.0  # seconds a job waits for the server another job holds before it compiles cold
_STDERR_KEPT = 4096  # the tail of the server's own stderr kept for the reason it died


class _Broken(Exception):
    """The server cannot be trusted with this job (died, hung, went over a limit, spoke out of protocol)."""


class _Unfit(Exception):
    """This job cannot use the server, which stays up for the next one (its limits cannot be set on it)."""


def _server_classes(tc: Toolchain, cache_dir: str) -> Path | None:
    """The compiled JavacServer in the engine's cache (built by the host's javac from our own source)."""
    source = _SOURCE.read_bytes()
    name = f"javac-server-{tc.version}-{_cache_dir.digest(source, tc.executables['javac'].encode())}"

    def build(folder: Path) -> None:
        (folder / _SOURCE.name).write_bytes(source)
        done = subprocess.run(
            [tc.executables["javac"], "-proc:none", "-d", str(folder), str(folder / _SOURCE.name)],
            capture_output=True, timeout=120, env={"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"},
        )  # fmt: skip
        if done.returncode != 0:
            raise _cache_dir.BuildFailed(f"javac JavacServer.java exited {done.returncode}: {done.stderr[-500:]!r}")

    return _cache_dir.entry(cache_dir, name, build)


@dataclass
class _Answer:
    code: int
    stdout: bytes
    stderr: bytes
    cpu: float
    wall: float


class JavacServer:
    """One running server (host side). ``pid`` is its JVM's pid on the host (what a test may kill)."""

    def __init__(
        self, caps: SandboxCaps, tc: Toolchain, classes: Path, limits: StageLimits, workroot: str | None, size: int
    ) -> None:
        assert caps.bwrap is not None and caps.cgroups is not None
        self.caps = caps
        self.limits = limits
        self._stderr_tail = b""
        self.cgroup = caps.cgroups.create(limits.memory, _slots(limits.processes), cpus=1.0)
        self._keeper_stop = threading.Event()
        self.workdir: _workdir.WorkDir | None = None
        self._req_w = self._status_r = self._exit_r = -1
        try:
            self.workdir = _workdir.WorkDir(workroot, size=size, owner=caps.sandbox_uid)
            inner = caps.inner_workdir(self.workdir.path)
            # a heap below its group's limit: a long-lived JVM that collects lazily would otherwise meet the OOM killer
            # (and restart) where a one-shot javac of the same jobs never would
            heap = [f"-Xmx{max(64, limits.memory * 6 // 10 // (1024 * 1024))}m"] if limits.memory else []
            argv = [tc.executables["java"], *_SERVER_JVM, *heap, "-cp", str(classes), "JavacServer"]
            self._spawn(argv, _base_env(inner), self.workdir.path, (*tc.roots, str(classes)))
        except BaseException:
            self._keeper_stop.set()
            for fd in (self._req_w, self._status_r, self._exit_r):  # what _spawn opened before it failed
                if fd >= 0:
                    os.close(fd)
            self.cgroup.remove()
            if self.workdir is not None:
                self.workdir.remove()
            raise
        self.pid = self._find_jvm()

    @property
    def directory(self) -> str:
        """The server's private directory on the host (its working directory, ``/box`` inside)."""
        assert self.workdir is not None
        return self.workdir.path

    def _spawn(self, argv: list[str], env: dict[str, str], cwd: str, roots: tuple[str, ...]) -> None:
        caps, limits = self.caps, self.limits
        req_r, self._req_w = os.pipe()
        status_r, status_w = os.pipe()
        exit_r, exit_w = os.pipe() if caps.perl else (-1, -1)
        block_r, block_w = os.pipe()
        seccomp_fd = _seccomp_fd(caps)
        rl = _rlimits(caps, replace(limits, cpu=None), self.cgroup)  # CPU is judged per request, from the cgroup
        cmd = _bwrap_command(caps, argv, cwd, roots, status_w, block_r, seccomp_fd, rl,
                             exit_w if caps.perl else None)  # fmt: skip
        fds = (status_w, block_r, *((seccomp_fd,) if seccomp_fd is not None else ()), *((exit_w,) if caps.perl else ()))
        self._status_r, self._exit_r = status_r, exit_r
        try:
            with os.fdopen(req_r, "rb", buffering=0, closefd=False) as stdin:
                started: queue.Queue[subprocess.Popen[bytes] | BaseException] = queue.Queue()
                # PR_SET_PDEATHSIG follows the forking thread: fork from one that lives as long as the server
                thread = threading.Thread(
                    target=_keeper, args=(lambda: _popen(cmd, stdin, env, cwd, fds), started,
                                          self._keeper_stop), name="codecapsule-javac-server", daemon=True,
                )  # fmt: skip
                thread.start()
                got = started.get()
            if isinstance(got, BaseException):
                raise got
            self.proc = got
        finally:
            for fd in (req_r, status_w, block_r, exit_w, seccomp_fd):
                if fd is not None and fd >= 0:
                    os.close(fd)
        try:
            self._init_fd = _confine(self.proc, caps, limits, self.cgroup, status_r, block_w, self.proc.pid)
        finally:
            os.close(block_w)
        assert self.proc.stdout is not None and self.proc.stderr is not None
        self._out = self.proc.stdout.fileno()
        self._err = self.proc.stderr.fileno()
        os.set_blocking(self._out, False)
        os.set_blocking(self._err, False)
        self._pidfd = os.pidfd_open(self.proc.pid)

    def _find_jvm(self) -> int | None:
        """The JVM's host pid: the ``java`` process among the server's descendants."""
        todo = [self.proc.pid]
        while todo:
            pid = todo.pop()
            with contextlib.suppress(OSError):
                if Path(f"/proc/{pid}/comm").read_text().strip() == "java":
                    return pid
            with contextlib.suppress(OSError):
                todo += [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
        return None

    # -- one request ------------------------------------------------------------------------------------

    def hello(self, deadline: float) -> None:
        (magic,) = struct.unpack(">i", self._read(4, deadline, None, None))
        if magic != _MAGIC:
            raise _Broken(f"the javac server said {magic:#x}, not hello")
        self.pid = self._find_jvm()

    def compile(self, args: list[str], limits: StageLimits, sink: StageSink | None) -> _Answer:
        """Send javac's arguments; the answer, or _Broken when it cannot be trusted (the caller kills us)."""
        try:
            self.cgroup.set_limits(limits.memory, _slots(limits.processes))  # this job's compile limits
        except OSError as exc:  # e.g. a memory limit below what the server now uses: this job compiles cold
            raise _Unfit(f"cannot set this job's limits on the javac server: {exc}") from exc
        started = time.monotonic()
        deadline = started + effective_wall(limits, cpu_enforced=True)
        cpu_before = self.cgroup.cpu_time() or 0.0
        cpu_limit = (cpu_before + limits.cpu) if limits.cpu is not None else None
        payload = [a.encode() for a in args]
        request = struct.pack(">i", len(payload)) + b"".join(struct.pack(">i", len(a)) + a for a in payload)
        self._write(request, deadline)
        (code,) = struct.unpack(">i", self._read(4, deadline, cpu_limit, sink))
        out = self._chunk(limits.output, deadline, cpu_limit, sink)
        err = self._chunk(limits.output, deadline, cpu_limit, sink)
        cpu = (self.cgroup.cpu_time() or 0.0) - cpu_before
        if cpu_limit is not None and cpu_before + cpu >= cpu_limit:
            raise _Broken("the warm compile reached the CPU-time limit")
        if self.cgroup.oom_killed():
            raise _Broken("the javac server's group hit its memory limit")
        return _Answer(code, out, err, cpu, time.monotonic() - started)

    def _chunk(self, cap: int, deadline: float, cpu_limit: float | None, sink: StageSink | None) -> bytes:
        (length,) = struct.unpack(">i", self._read(4, deadline, cpu_limit, sink))
        if not 0 <= length <= cap:
            raise _Broken(f"an answer of {length} bytes (the output cap is {cap})")
        return self._read(length, deadline, cpu_limit, sink) if length else b""

    def _write(self, data: bytes, deadline: float) -> None:
        view = memoryview(data)
        while view:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not select.select([], [self._req_w], [], remaining)[1]:
                raise _Broken("the javac server does not read its requests")
            try:
                view = view[os.write(self._req_w, view) :]
            except OSError as exc:
                raise _Broken(f"the javac server's request pipe broke: {exc}") from exc

    def _read(self, n: int, deadline: float, cpu_limit: float | None, sink: StageSink | None) -> bytes:
        """Exactly ``n`` bytes of the answer, watching the deadline, the CPU limit, the live run and the server's
        death; its stderr (VM messages) is drained meanwhile so it never blocks on it."""
        got = bytearray()
        watched = [self._out, self._err, self._pidfd] + ([sink.wake_fd] if sink is not None else [])
        while len(got) < n:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise _Broken("the warm compile reached the wall-clock limit")
            if sink is not None and sink.stopped():
                raise _Broken("the live run was cancelled")
            if cpu_limit is not None and (self.cgroup.cpu_time() or 0.0) >= cpu_limit:
                raise _Broken("the warm compile reached the CPU-time limit")
            ready, _, _ = select.select(watched, [], [], min(remaining, _CPU_POLL))
            if self._err in ready and not self._drain_stderr():
                watched.remove(self._err)  # closed: nothing more to drain (and it would stay readable)
            if self._out in ready:
                with contextlib.suppress(BlockingIOError):
                    chunk = os.read(self._out, n - len(got))
                    if not chunk:
                        raise _Broken(f"the javac server closed its answers: {self._stderr_tail[-500:]!r}")
                    got += chunk
                    continue
            if self._pidfd in ready:
                raise _Broken(f"the javac server died: {self._stderr_tail[-500:]!r}")
        return bytes(got)

    def _drain_stderr(self) -> bool:
        """Keep the tail of what the server wrote on stderr; False once it is closed."""
        try:
            data = os.read(self._err, 65536)
        except BlockingIOError:
            return True
        except OSError:
            return False
        self._stderr_tail = (self._stderr_tail + data)[-_STDERR_KEPT:]
        return bool(data)

    # -- the end ----------------------------------------------------------------------------------------

    def stop(self) -> None:
        """Kill every process of the server, reap them, remove its group and directory. Idempotent."""
        if self._keeper_stop.is_set():
            return
        proc = self.proc
        self.cgroup.kill_all()
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
        if self._init_fd is not None:
            # the sandbox's init exits once its namespace is gone (bounded, as a stage waits for it); reaped below,
            # so no zombie holds the group when it is removed
            select.select([self._init_fd], [], [], 2.0)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=5)
        waited_done(proc.pid)
        _reap(self._init_fd, self.caps.sandbox_uid)
        for fd in (self._req_w, self._pidfd, self._status_r, self._exit_r, self._init_fd):
            if fd is not None and fd >= 0:
                with contextlib.suppress(OSError):
                    os.close(fd)
        assert proc.stdout is not None and proc.stderr is not None
        proc.stdout.close()
        proc.stderr.close()
        self.cgroup.remove()
        if self.workdir is not None:
            self.workdir.remove()
        self._keeper_stop.set()


def _keeper(
    start: Callable[[], subprocess.Popen[bytes]],
    started: queue.Queue[subprocess.Popen[bytes] | BaseException],
    stop: threading.Event,
) -> None:
    try:
        proc = start()
    except BaseException as exc:  # handed to the thread that asked
        started.put(exc)
        return
    started.put(proc)
    stop.wait()


def _slots(processes: int | None) -> int | None:
    # the sandbox's own helpers (setpriv/bwrap and its PID 1) need a few process slots, as in run_stage
    return processes + 4 if processes is not None else None


class WarmJavac:
    """The engine's warm javac: starts a server on first use, compiles through it, falls back to cold (None)."""

    def __init__(self, uids: UidPool | None, workroot: str | None, workdir_size: int, cache_dir: str) -> None:
        _every.add(self)
        self._uids = uids
        self._workroot = workroot
        self._workdir_size = workdir_size
        self._cache_dir = cache_dir
        self._lock = threading.Lock()
        self._server: JavacServer | None = None
        self._uid_hold: contextlib.ExitStack | None = None
        self.starts = 0  # servers started so far (a test reads it)
        self.last_failure: str | None = None  # why the last warm compile fell back to cold

    @property
    def pid(self) -> int | None:
        """The host pid of the running server's JVM (None when none runs): kill it and the next job falls back."""
        server = self._server
        return server.pid if server is not None else None

    @staticmethod
    def usable(caps: SandboxCaps) -> bool:
        """Whether this sandbox can hold a server: bubblewrap and a cgroup (its limits and CPU accounting)."""
        return caps.bwrap is not None and caps.cgroups is not None

    def compile(
        self,
        tc: Toolchain,
        sources: tuple[str, ...],
        caps: SandboxCaps,
        workdir: str,
        limits: StageLimits,
        sink: StageSink | None,
    ) -> Stage | None:
        """Compile the job in ``workdir`` (its ``.java`` files ``sources``) on the server: the compile Stage, with
        the class files now in ``workdir``; None when the job must compile cold."""
        if not self._lock.acquire(timeout=_BUSY_WAIT):
            return None  # another job holds the server (a pool would serve it; cold is the simple answer)
        try:
            return self._compile_locked(tc, sources, caps, workdir, limits, sink)
        finally:
            self._lock.release()

    def _compile_locked(
        self,
        tc: Toolchain,
        sources: tuple[str, ...],
        caps: SandboxCaps,
        workdir: str,
        limits: StageLimits,
        sink: StageSink | None,
    ) -> Stage | None:
        self.last_failure = None
        try:
            server = self._running(tc, caps, limits)
            if server is None:
                return None
            with _job_dir(server, workdir) as (sub, sub_fd):
                answer = server.compile(_arguments(sub, sources), limits, sink)
                if answer.code not in _ACCEPTED:
                    raise _Broken(f"javac exited {answer.code} ({answer.stderr[-300:]!r}): cold javac judges")
                if answer.code == 0:
                    _dir_copy.copy_out(sub_fd, workdir, caps.sandbox_uid, _is_class, self._workdir_size)
        except _Unfit as exc:
            self.last_failure = str(exc)
            return None
        except (_Broken, _dir_copy.CopyRefused, OSError, SandboxError, struct.error) as exc:
            self.last_failure = str(exc)
            self._stop()
            return None
        stage = _stage(answer, sub, limits, server.cgroup.peak_memory())
        replay(sink, stage)  # a live run gets the compiler's output as one chunk, as javac prints it at the end
        return stage

    def _running(self, tc: Toolchain, caps: SandboxCaps, limits: StageLimits) -> JavacServer | None:
        if self._server is not None and self._server.proc.poll() is None:
            return self._server
        self._stop()
        classes = _server_classes(tc, self._cache_dir)
        if classes is None:
            self.last_failure = "the javac server could not be built"
            return None
        hold = contextlib.ExitStack()
        server_caps = caps
        if caps.sandbox_uid is not None and self._uids is not None:
            server_caps = replace(caps, sandbox_uid=hold.enter_context(self._uids.take()))  # held while it lives
        try:
            server = JavacServer(server_caps, tc, classes, limits, self._workroot, self._workdir_size)
        except BaseException:
            hold.close()
            raise
        self._server, self._uid_hold = server, hold
        self.starts += 1
        server.hello(time.monotonic() + _START_TIMEOUT)
        return server

    def _stop(self) -> None:
        server, hold = self._server, self._uid_hold
        self._server = self._uid_hold = None
        if server is not None:
            server.stop()
        if hold is not None:
            hold.close()

    def close(self) -> None:
        with self._lock:
            self._stop()

    def _forget(self) -> None:
        """In a forked child: the server is the parent's; drop it without touching it."""
        self._lock = threading.Lock()
        self._server = self._uid_hold = None


_every: weakref.WeakSet[WarmJavac] = weakref.WeakSet()


def stop_all() -> None:
    """Stop every server of this process (at exit: their groups and directories go now, not at the next sweep)."""
    for warm in list(_every):
        warm.close()


def _forget_after_fork() -> None:
    for warm in list(_every):
        warm._forget()


atexit.register(stop_all)
os.register_at_fork(after_in_child=_forget_after_fork)


def _is_class(name: str) -> bool:
    return name.endswith(".class")


def _arguments(sub: str, sources: tuple[str, ...]) -> list[str]:
    """javac's arguments for a job copied into ``sub``: the engine's flags with ``-d .`` made ``-d sub``, the class
    path the subdirectory alone (a cold javac's default is ``.``; ``sub/.`` so a path javac finds there reads
    ``./X.java`` once ``sub/`` is cut, as a cold one's does), and the sources in it."""
    flags = [sub if flag == "." else flag for flag in JAVAC_FLAGS]
    return [*flags, "-cp", f"{sub}/.", *(f"{sub}/{name}" for name in sources)]


@contextlib.contextmanager
def _job_dir(server: JavacServer, workdir: str) -> Iterator[tuple[str, int]]:
    """A fresh subdirectory of the server's directory holding a copy of the job's files, (name, open fd); removed
    afterwards. The server can write there: everything goes through ``_dir_copy`` (no link is ever followed)."""
    sub = f"capsule-job-{secrets.token_hex(8)}"
    owner = server.caps.sandbox_uid
    top = os.open(server.directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)  # its mount point: not theirs
    sub_fd = -1
    try:
        os.mkdir(sub, 0o700, dir_fd=top)
        sub_fd = _dir_copy.open_dir(sub, top)
        if os.fstat(sub_fd).st_uid != os.geteuid():
            raise _Broken("the job's directory in the javac server was replaced")
        _dir_copy.copy_in(workdir, sub_fd, owner)
        if owner is not None:
            os.fchown(sub_fd, owner, owner)
        yield sub, sub_fd
    finally:
        if sub_fd >= 0:
            os.close(sub_fd)
        os.close(top)
        with contextlib.suppress(FileNotFoundError):
            _workdir.remove_tree(os.path.join(server.directory, sub))


def _stage(answer: _Answer, sub: str, limits: StageLimits, memory: int | None) -> Stage:
    """The compile Stage a cold javac in the job's directory would have given (its paths without ``sub/``)."""
    stdout, stderr = (text.decode(errors="replace").replace(f"{sub}/", "") for text in (answer.stdout, answer.stderr))
    status, message, code, sig = classify(
        reason=None, code=answer.code, sig=None, oom=False, cpu=answer.cpu, wall=answer.wall, limits=limits
    )
    return Stage(
        stdout=stdout, stderr=stderr, output=stdout + stderr, exit_code=code, signal=sig, status=status,
        message=message, wall_time=answer.wall, cpu_time=answer.cpu, memory=memory,
    )  # fmt: skip
