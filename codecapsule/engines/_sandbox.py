"""Run one stage of a program in the best sandbox this machine offers, with limits, streaming capture and cleanup.

Layers, each used when available (``SandboxCaps.detect``):
  1. a per-run cgroup (memory, processes) joined by a tiny ``sh`` prologue before exec;
  2. ``prlimit`` for CPU time, file size, open files, core dumps (and address space where that is safe);
  3. ``bwrap``: no network, read-only system directories, only the work directory writable, own PID namespace.
The wall-clock deadline kills the whole process group and cgroup; output is read as a stream and capped.
No ``preexec_fn``: it would make Python fork instead of vfork (~65 ms per spawn from a large kernel).
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import resource
import select
import selectors
import shlex
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from .._errors import SandboxError
from .._results import Stage
from . import _cgroups

_READ = 65536
SANDBOX_WORKDIR = "/box"


@dataclass(frozen=True)
class StageLimits:
    wall: float
    cpu: float | None
    memory: int | None
    processes: int | None
    output: int
    file_size: int | None
    limit_address_space: bool  # RLIMIT_AS is only safe for runtimes that do not reserve huge address space


@dataclass(frozen=True)
class SandboxCaps:
    """What isolation this machine allows; detected once per engine."""

    sh: str
    bwrap: str | None
    prlimit: str | None
    cgroups: _cgroups.CgroupSupport | None
    root: bool

    @classmethod
    def detect(cls, *, use_bwrap: bool = True, use_cgroups: bool = True) -> SandboxCaps:
        bwrap = _find("bwrap") if use_bwrap else None
        if bwrap is not None and not _bwrap_works(bwrap):
            bwrap = None
        return cls(
            sh=_find("sh") or "/bin/sh",
            bwrap=bwrap,
            prlimit=_find("prlimit"),
            cgroups=_cgroups.detect() if use_cgroups else None,
            root=os.geteuid() == 0,
        )

    def inner_workdir(self, workdir: str) -> str:
        """Where the work directory appears to the program: a fixed path inside bubblewrap, so messages and
        tracebacks read the same on every run (``/box/main.py``)."""
        return SANDBOX_WORKDIR if self.bwrap else workdir

    @property
    def level(self) -> str:
        """``full`` (bwrap + cgroup), ``namespaces`` (bwrap only), ``cgroup`` or ``rlimits``."""
        if self.bwrap and self.cgroups:
            return "full"
        if self.bwrap:
            return "namespaces"
        if self.cgroups:
            return "cgroup"
        return "rlimits"

    def describe(self) -> str:
        parts = []
        if self.bwrap:
            parts.append("bubblewrap (no network, read-only system, only the work directory writable, own PIDs)")
        if self.cgroups:
            parts.append(f"a per-run cgroup v{self.cgroups.version} (memory and process limits)")
        if self.prlimit:
            parts.append("resource limits (CPU time, file size, open files)")
        text = "; ".join(parts) if parts else "wall-clock timeout only"
        if not self.bwrap:
            text += (
                ". Programs can reach the network, write files outside their work directory"
                + ("" if self.cgroups else " and leave daemonised (setsid) processes behind")
                + " "
                "(install bubblewrap to isolate them)"
            )
        if not self.cgroups and self.root:
            text += ". Running as root without cgroups: a fork bomb is NOT contained"
        elif not self.cgroups:
            text += ". Memory is limited by address space/heap flags only"
        return text + "."


def _find(name: str) -> str | None:
    for d in ("/usr/bin", "/bin", "/usr/local/bin", "/usr/sbin", "/sbin"):
        p = os.path.join(d, name)
        if os.access(p, os.X_OK):
            return p
    return None


def _bwrap_works(bwrap: str) -> bool:
    try:
        proc = subprocess.run(
            [bwrap, *_system_binds(()), "--unshare-all", "--", "/bin/true"], capture_output=True, timeout=10
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    return proc.returncode == 0


def _system_binds(extra_roots: tuple[str, ...]) -> list[str]:
    """Read-only views of the system the toolchains need; nothing of /home, /root or most of /etc."""
    args: list[str] = []
    for top in ("/usr", "/bin", "/lib", "/lib32", "/lib64", "/sbin"):
        if os.path.islink(top):
            args += ["--symlink", os.readlink(top), top]
        elif os.path.isdir(top):
            args += ["--ro-bind", top, top]
    for etc in (
        "/etc/alternatives",
        "/etc/ld.so.cache",
        "/etc/ld.so.conf",
        "/etc/ld.so.conf.d",
        "/etc/java-17-openjdk",
        "/etc/java-21-openjdk",
        "/etc/localtime",
        "/etc/ssl/certs",
    ):
        if os.path.exists(etc):
            args += ["--ro-bind", etc, etc]
    for root in extra_roots:
        if not any(root == d or root.startswith(d + "/") for d in ("/usr", "/bin", "/lib", "/lib64", "/sbin")):
            args += ["--ro-bind", root, root]
    return args


def _own_process_count() -> int:
    uid = os.getuid()
    n = 0
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                if entry.stat().st_uid == uid:
                    n += 1
    return n


def _rlimits(caps: SandboxCaps, limits: StageLimits, cgroup: _cgroups.RunCgroup | None) -> list[tuple[int, int, int]]:
    """(resource, soft, hard) for this stage: CPU time, file size, open files, no core dumps, and address space or
    process count where no cgroup covers them."""
    rl = [(resource.RLIMIT_CORE, 0, 0), (resource.RLIMIT_NOFILE, 512, 512)]
    if limits.cpu is not None:
        soft = max(1, math.ceil(limits.cpu))
        rl.append((resource.RLIMIT_CPU, soft, soft + 1))  # SIGXCPU at soft, SIGKILL one second later
    if limits.file_size is not None:
        rl.append((resource.RLIMIT_FSIZE, limits.file_size, limits.file_size))
    if limits.memory is not None and limits.limit_address_space and cgroup is None:
        # without a memory cgroup, address space is the only memory limit we have (+ room for the runtime)
        rl.append((resource.RLIMIT_AS, limits.memory + 64 * 1024 * 1024, limits.memory + 64 * 1024 * 1024))
    if limits.processes is not None and not caps.root and cgroup is None:
        # RLIMIT_NPROC counts all of this user's processes; root ignores it (hence the cgroup)
        n = _own_process_count() + limits.processes
        rl.append((resource.RLIMIT_NPROC, n, n))
    return rl


_PRLIMIT_FLAGS = {
    resource.RLIMIT_CORE: "core",
    resource.RLIMIT_NOFILE: "nofile",
    resource.RLIMIT_CPU: "cpu",
    resource.RLIMIT_FSIZE: "fsize",
    resource.RLIMIT_AS: "as",
    resource.RLIMIT_NPROC: "nproc",
}


def _bwrap_command(
    caps: SandboxCaps, argv: list[str], workdir: str, roots: tuple[str, ...], info_fd: int, block_fd: int
) -> list[str]:
    assert caps.bwrap is not None
    return [
        caps.bwrap, *_system_binds(roots),
        "--proc", "/proc", "--dev", "/dev",
        "--bind", workdir, SANDBOX_WORKDIR, "--chdir", SANDBOX_WORKDIR,
        "--unshare-all", "--die-with-parent", "--cap-drop", "ALL", "--hostname", "capsule",
        "--remount-ro", "/",
        # bwrap reports the sandbox's pid on info_fd, then waits on block_fd before starting the program: in between
        # we put that pid in the run's cgroup and set its resource limits (no shell or prlimit hop: ~2.5 ms saved)
        "--info-fd", str(info_fd), "--block-fd", str(block_fd),
        "--", *argv,
    ]  # fmt: skip


def _chain_command(
    caps: SandboxCaps, argv: list[str], limits: StageLimits, cgroup: _cgroups.RunCgroup | None
) -> list[str]:
    """Without bubblewrap: ``sh`` joins the cgroup, ``prlimit`` sets the limits, then they exec the program."""
    cmd = list(argv)
    if caps.prlimit:
        flags = [f"--{_PRLIMIT_FLAGS[r]}={soft}:{hard}" for r, soft, hard in _rlimits(caps, limits, cgroup)]
        cmd = [caps.prlimit, *flags, "--", *cmd]
    if cgroup is not None:
        joins = " && ".join(f"echo $$ > {shlex.quote(f)}" for f in cgroup.procs_files)
        cmd = [caps.sh, "-c", f'{joins} || exit 125; exec "$@"', "capsule", *cmd]
    return cmd


def _release_sandbox(
    caps: SandboxCaps, limits: StageLimits, cgroup: _cgroups.RunCgroup | None, info_r: int, block_w: int
) -> int | None:
    """Read the sandbox's pid from bwrap, confine it, and let it start the program; returns a pidfd of the
    sandbox's init (it exits only once every process of the namespace is gone)."""
    data = b""
    while b"}" not in data:
        chunk = os.read(info_r, 4096)
        if not chunk:
            return None  # bwrap failed before creating the sandbox: its stderr says why
        data += chunk
    pid = int(json.loads(data[: data.index(b"}") + 1])["child-pid"])
    if cgroup is not None:
        for procs in cgroup.procs_files:
            Path(procs).write_text(str(pid))
    for res, soft, hard in _rlimits(caps, limits, cgroup):
        resource.prlimit(pid, res, (soft, hard))
    init_fd = os.pidfd_open(pid)
    os.write(block_w, b"1")
    return init_fd


_SIGNAL_TEXT = {
    "SIGSEGV": "segmentation fault (invalid memory access)",
    "SIGABRT": "aborted",
    "SIGFPE": "arithmetic error (e.g. division by zero)",
    "SIGKILL": "killed",
    "SIGXFSZ": "file size limit exceeded",
    "SIGBUS": "bus error",
    "SIGILL": "illegal instruction",
}


def _children(pid: int) -> list[int]:
    try:
        return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def _wait_group_gone(pgid: int) -> None:
    """Wait (bounded) until no live process of the group is left; a SIGKILL is not instantaneous."""
    for _ in range(200):
        live = False
        for entry in os.scandir("/proc"):
            if not entry.name.isdigit() or int(entry.name) == pgid:
                continue
            state = _cgroups.process_state(int(entry.name))
            if state is not None and state[1] == pgid and state[0] not in ("Z", "X"):
                live = True
                break
        if not live:
            return
        os.sched_yield()


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"SIG{number}"


def run_stage(
    caps: SandboxCaps,
    argv: list[str],
    *,
    env: dict[str, str],
    workdir: str,
    stdin: bytes,
    limits: StageLimits,
    roots: tuple[str, ...] = (),
) -> Stage:
    """Run ``argv`` in ``workdir`` under the sandbox and limits; always returns a Stage (never leaves processes)."""
    cgroup = None
    if caps.cgroups is not None and (limits.memory is not None or limits.processes is not None):
        try:
            # the sandbox's own helpers (sh, bwrap and its reaper) need a few process slots of their own
            procs = limits.processes + 4 if limits.processes is not None else None
            cgroup = caps.cgroups.create(limits.memory, procs)
        except OSError as exc:
            raise SandboxError(
                f"could not create a cgroup for the run ({exc}); set CODECAPSULE_CGROUPS=0 to run without one."
            ) from exc
    try:
        return _run(caps, argv, env, workdir, stdin, limits, roots, cgroup)
    finally:
        if cgroup is not None:
            cgroup.remove()


@dataclass
class _Captured:
    out: bytearray
    err: bytearray
    combined: bytearray
    reason: str | None  # "TO" (wall clock), "OL"/"EL" (stdout/stderr over the cap) when we stopped the program


def _spawn(
    caps: SandboxCaps,
    argv: list[str],
    env: dict[str, str],
    workdir: str,
    stdin: bytes,
    limits: StageLimits,
    roots: tuple[str, ...],
    cgroup: _cgroups.RunCgroup | None,
) -> tuple[subprocess.Popen[bytes], int | None]:
    """Start the program confined; returns the process and, under bwrap, a pidfd of the sandbox's init."""
    gate: tuple[int, int, int, int] | None = None
    if caps.bwrap:
        info_r, info_w = os.pipe()
        block_r, block_w = os.pipe()
        gate = (info_r, info_w, block_r, block_w)
        cmd = _bwrap_command(caps, argv, workdir, roots, info_w, block_r)
    else:
        cmd = _chain_command(caps, argv, limits, cgroup)
    try:
        with tempfile.TemporaryFile() as stdin_file:
            stdin_file.write(stdin)
            stdin_file.seek(0)
            try:
                proc = subprocess.Popen(
                    cmd, stdin=stdin_file, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, cwd=workdir,
                    process_group=0, close_fds=True, pass_fds=(gate[1], gate[2]) if gate else (),
                )  # fmt: skip
            except OSError as exc:
                raise SandboxError(f"could not start {argv[0]!r}: {exc}") from exc
        if gate is None:
            return proc, None
        os.close(gate[1])
        os.close(gate[2])
        try:
            return proc, _release_sandbox(caps, limits, cgroup, gate[0], gate[3])
        except (OSError, ValueError, KeyError) as exc:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            raise SandboxError(f"could not confine the sandbox: {exc}") from exc
    finally:
        if gate is not None:
            for fd in (gate[0], gate[3]):
                with contextlib.suppress(OSError):
                    os.close(fd)


def _capture(proc: subprocess.Popen[bytes], pidfd: int, limits: StageLimits, deadline: float) -> _Captured:
    """Read stdout and stderr as streams until the program has exited and its output is drained, the deadline
    passes or a stream goes over the output cap (the prefix is kept). A grandchild that keeps the pipes open
    does not hold the result back once the program itself is done."""
    assert proc.stdout is not None and proc.stderr is not None
    got = _Captured(bytearray(), bytearray(), bytearray(), None)
    streams = {proc.stdout.fileno(): (got.out, "OL"), proc.stderr.fileno(): (got.err, "EL")}
    exited = False
    with selectors.DefaultSelector() as sel:
        for fd in streams:
            os.set_blocking(fd, False)
            sel.register(fd, selectors.EVENT_READ)
        sel.register(pidfd, selectors.EVENT_READ)
        while streams or not exited:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                got.reason = "TO"
                return got
            events = sel.select(0 if exited else remaining)
            if exited and not events:
                return got
            for key, _ in events:
                if key.fd == pidfd:
                    exited = True
                    sel.unregister(pidfd)
                    continue
                try:
                    chunk = os.read(key.fd, _READ)
                except BlockingIOError:
                    continue
                if not chunk:
                    sel.unregister(key.fd)
                    del streams[key.fd]
                    continue
                buf, over = streams[key.fd]
                room = max(limits.output - len(buf), 0)
                buf += chunk[:room]
                got.combined += chunk[:room]
                if len(chunk) > room:
                    got.reason = over
                    return got
    return got


def _kill(caps: SandboxCaps, proc: subprocess.Popen[bytes], pidfd: int, cgroup: _cgroups.RunCgroup | None) -> None:
    if caps.bwrap:
        # kill the namespace's init first: the kernel then kills everything in the namespace and bwrap reaps it,
        # instead of leaving an orphaned zombie for a PID 1 that may never reap it
        for child in _children(proc.pid):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(child, signal.SIGKILL)
        select.select([pidfd], [], [], 1.0)  # bwrap exits once its namespace is gone
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    if cgroup is not None:
        cgroup.kill_all()


def classify(
    *,
    reason: str | None,
    code: int | None,
    sig: str | None,
    oom: bool,
    cpu: float | None,
    wall: float,
    limits: StageLimits,
) -> tuple[str | None, str | None, int | None, str | None]:
    """Piston-style (status, message, exit code, signal) for how a stage ended (pure)."""
    if reason == "TO":
        return "TO", "Time limit exceeded (wall clock)", None, "SIGKILL"
    if reason in ("OL", "EL"):
        stream = "stdout" if reason == "OL" else "stderr"
        return reason, f"{stream} length exceeded (output limit {limits.output} bytes)", None, "SIGKILL"
    if oom:
        return "ML", f"Memory limit exceeded ({limits.memory} bytes)", code, sig
    used = cpu if cpu is not None else wall
    if sig == "SIGXCPU" or (sig == "SIGKILL" and limits.cpu is not None and used >= limits.cpu):
        return "TO", "Time limit exceeded", code, sig
    if sig is not None:
        return "SG", f"Killed by {sig}: {_SIGNAL_TEXT.get(sig, 'signal')}", code, sig
    if code:
        return "RE", f"Exited with error status {code}", code, sig
    return None, None, code, sig


def _run(
    caps: SandboxCaps,
    argv: list[str],
    env: dict[str, str],
    workdir: str,
    stdin: bytes,
    limits: StageLimits,
    roots: tuple[str, ...],
    cgroup: _cgroups.RunCgroup | None,
) -> Stage:
    started = time.monotonic()
    proc, init_fd = _spawn(caps, argv, env, workdir, stdin, limits, roots, cgroup)
    pidfd = os.pidfd_open(proc.pid)
    try:
        got = _capture(proc, pidfd, limits, started + limits.wall)
        if got.reason is not None:
            _kill(caps, proc, pidfd, cgroup)
        else:
            # leftovers in the program's process group (the cgroup's are killed when it is removed)
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)
            if not caps.bwrap and cgroup is None:
                _wait_group_gone(proc.pid)  # nothing else waits for them to die in this mode
        if init_fd is not None:
            # bwrap may report the program's exit before its namespace is torn down: wait for that (bounded)
            select.select([init_fd], [], [], 2.0)
    finally:
        os.close(pidfd)
        if init_fd is not None:
            os.close(init_fd)
        assert proc.stdout is not None and proc.stderr is not None
        proc.stdout.close()
        proc.stderr.close()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    wall = time.monotonic() - started
    # under bubblewrap, rusage only sees bwrap itself: the cgroup's CPU accounting sees the program
    cpu: float | None = cgroup.cpu_time() if cgroup is not None else None
    if cpu is None and not caps.bwrap:
        cpu = usage.ru_utime + usage.ru_stime
    memory = cgroup.peak_memory() if cgroup is not None else usage.ru_maxrss * 1024

    code: int | None = proc.returncode
    sig: str | None = None
    if code is not None and code < 0:
        sig, code = _signal_name(-code), 128 - code
    elif caps.bwrap and code is not None and 128 < code < 160:
        sig = _signal_name(code - 128)  # bwrap reports a signal death of the program as 128+n
    if caps.bwrap and code == 1 and got.err.startswith(b"bwrap: "):
        raise SandboxError(f"the sandbox could not start: {got.err.decode(errors='replace').strip()}")
    if code == 125 and cgroup is not None and not got.out and got.err.startswith(b"capsule: "):
        raise SandboxError(f"could not join the run's cgroup: {got.err.decode(errors='replace').strip()}")
    oom = cgroup.oom_killed() if cgroup is not None else False
    status_code, message, code, sig = classify(
        reason=got.reason, code=code, sig=sig, oom=oom, cpu=cpu, wall=wall, limits=limits
    )
    return Stage(
        stdout=got.out.decode(errors="replace"),
        stderr=got.err.decode(errors="replace"),
        output=got.combined.decode(errors="replace"),
        exit_code=code,
        signal=sig,
        status=status_code,
        message=message,
        wall_time=wall,
        cpu_time=cpu,
        memory=memory,
        truncated=got.reason in ("OL", "EL"),
    )
