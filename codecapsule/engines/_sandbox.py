"""Run one stage of a program in the best sandbox this machine offers, with limits, streaming capture and cleanup.

Layers, each used when available (``SandboxCaps.detect``):
  1. a per-run cgroup (memory, processes, CPU quota and accounting);
  2. resource limits (CPU time, file size, open files, core dumps, and address space where that is safe);
  3. ``bwrap``: no network, read-only system directories, only the work directory writable, own PID and user
     namespaces, a seccomp filter (``_seccomp``), no capabilities;
  4. as root, a dedicated unprivileged host uid (``setpriv``): nothing of the run is ever host root.
Everything the verdict rests on is measured out of band: bwrap's JSON status tells a start failure from the
program's own exit, the cgroup's OOM counter tells memory_limit, its CPU accounting the CPU-time limit (over every
process of the run, polled while it runs). The wall clock is a backstop above the CPU limit. Output is read as a
stream and capped. No ``preexec_fn``: it would make Python fork instead of vfork (~65 ms per spawn from a large
kernel).

The stage runner's interface (used by ``local.py``; stable for other callers):
``run_stage(caps, argv, env=, workdir=, stdin=, limits=StageLimits(...), roots=()) -> Stage`` runs ``argv``
with the work directory as its current directory (``caps.inner_workdir(...)`` is where it appears inside) and
always returns a Stage (status per Piston's codes, ``message`` saying which limit was hit), or raises SandboxError
when the sandbox itself could not start.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
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
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import IO, TYPE_CHECKING, Literal, Protocol

from .._errors import SandboxError
from .._results import Stage
from . import _cgroups, _forker, _init, _seccomp, _standby, _stdin_wait, _uids

if TYPE_CHECKING:
    from ._live_stdin import LiveStdin
    from ._primed import CompileSlot, Launch, Primed

_READ = 65536
_SLOT_GONE = 2.0  # seconds a compile slot's launcher may take to end after its stage (a kill ends it at once)
SANDBOX_WORKDIR = "/box"
_CPU_POLL = 0.02  # seconds between reads of the run's CPU accounting while it runs
_PR_SET_CHILD_SUBREAPER = 36


class StageSink(Protocol):
    """Live hooks of one stage (``Client.stream``): each chunk as the capture loop read and kept it (after the
    output cap, so the chunks add up to the Stage's output exactly), and a way to be told to stop."""

    @property
    def wake_fd(self) -> int:
        """Readable when the run may have been cancelled (then ``stopped()`` says)."""
        ...

    def stopped(self) -> bool: ...

    def chunk(self, stream: Literal["stdout", "stderr"], data: bytes) -> None: ...


def replay(sink: StageSink | None, stage: Stage) -> None:
    """A live run's output of a stage that was not streamed as it ran (a cache hit, a warm compiler's answer):
    each stream whole, as one chunk."""
    if sink is None:
        return
    for stream, text in (("stdout", stage.stdout), ("stderr", stage.stderr)):
        if text:
            sink.chunk(stream, text.encode())  # type: ignore[arg-type]


@dataclass(frozen=True)
class StageLimits:
    """Limits of one stage. ``cpu`` covers every process of the stage where a cgroup accounts CPU time (else
    each process, by RLIMIT_CPU); ``wall`` is then only a backstop and is raised to at least ``2 × cpu + 1 s`` so a
    program starved by its neighbours is not judged by the clock."""

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
    setpriv: str | None = None
    sandbox_uid: int | None = None  # the host uid programs run as when we are root (None: our own uid); the engine
    # gives each run its own (``replace(caps, sandbox_uid=...)`` from ``_uids.UidPool``)
    seccomp: bytes | None = None  # the BPF filter bwrap loads (None: no filter)
    disable_userns: bool = False  # bwrap forbids further user namespaces inside (--disable-userns)
    perl: str | None = None  # the sandbox's PID 1 that reports the program's raw wait status (see _LAUNCHER)
    init: int | None = None  # a memfd of the compiled PID 1 doing the same, faster (``_init``; only with perl)
    standby: bool = False  # start stages through launchers prepared ahead inside their cgroup (``_standby``)

    @classmethod
    def detect(
        cls,
        *,
        use_bwrap: bool = True,
        use_cgroups: bool = True,
        cgroup_parent: str | None = None,
        cache_dir: str | None = None,
    ) -> SandboxCaps:
        """What this machine allows, strongest first; ``cache_dir`` (the engine's, see
        :func:`codecapsule._settings.local_cache_dir`) is where the compiled PID 1 is built (None: perl's)."""
        root = os.geteuid() == 0
        setpriv = _find("setpriv") if root else None
        uid = _uids.UidPool().first if setpriv else None
        if uid is None:
            setpriv = None
        base = cls(sh=_find("sh") or "/bin/sh", bwrap=None, prlimit=_find("prlimit"), cgroups=None, root=root)
        perl = _find("perl") if _launcher_source() is not None else None
        bwrap = _find("bwrap") if use_bwrap else None
        found = base
        if bwrap is not None:
            program = _seccomp.program()
            # strongest first: as an unprivileged uid with seccomp and no nested user namespaces; then weaker
            trials = ((True, True, True), (True, True, False), (False, True, True), (False, True, False))
            for drop_uid, filtered, no_userns in (*trials, (False, False, False)):
                if (drop_uid and uid is None) or (filtered and program is None):
                    continue
                trial = replace(
                    base, bwrap=bwrap, setpriv=setpriv if drop_uid else None, sandbox_uid=uid if drop_uid else None,
                    seccomp=program if filtered else None, disable_userns=no_userns,
                )  # fmt: skip
                if _bwrap_works(trial):
                    # the fastest PID 1 that works here: the compiled init (kept with perl, which the standbys
                    # need), else perl, else bwrap's own; one more trial when the first works
                    init = _init.program_fd(cache_dir) if perl is not None and cache_dir is not None else None
                    launchers = [replace(trial, perl=perl, init=init)] if init is not None else []
                    launchers += [replace(trial, perl=perl)] if perl is not None else []
                    found = next((c for c in launchers if _bwrap_works(c)), trial)
                    break
        if found.bwrap is None and uid is not None:
            found = replace(base, setpriv=setpriv, sandbox_uid=uid)
        if found.bwrap is not None and found.sandbox_uid is not None:
            # bwrap's monitor may exit before the sandbox's init: make that init our child, so we reap it (only as
            # root: then everything reparented to us from a run has the sandbox uid and is told apart by it)
            with contextlib.suppress(OSError, AttributeError):
                ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
        return replace(found, cgroups=_cgroups.detect(cgroup_parent) if use_cgroups else None)

    def uid_prefix(self) -> list[str]:
        """``setpriv`` to the sandbox uid, or nothing when we are not root."""
        if self.setpriv is None or self.sandbox_uid is None:
            return []
        u = self.sandbox_uid
        return [self.setpriv, f"--reuid={u}", f"--regid={u}", "--clear-groups", "--inh-caps=-all", "--"]

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

    def facts(self) -> dict[str, str]:
        """What is in force, one line per layer (for ``engine info``): uid, seccomp, cgroup, quota."""
        cg = self.cgroups
        return {
            "uid": (
                f"programs run as an unprivileged host uid of their own per run ({_uids.UID_RANGE.start}–"
                f"{_uids.UID_RANGE.stop - 1}), no capabilities"
                if self.sandbox_uid is not None
                else (
                    "programs run as HOST ROOT (setpriv missing)"
                    if self.root
                    else f"programs run as your uid {os.geteuid()}"
                )
            ),
            "seccomp": (
                "filter refuses namespaces, mount, ptrace, keyctl, bpf, perf, modules, kexec"
                + (", nested user namespaces disabled" if self.disable_userns else "")
                if self.seccomp is not None
                else "no filter (" + ("pyseccomp/libseccomp2 missing" if self.bwrap else "needs bubblewrap") + ")"
            ),
            "cgroup": (
                f"v{cg.version} per run: memory (OOM events), processes"
                + (", CPU accounting over all processes" if cg.version == 2 or cg.cpuacct_parent else "")
                + (", at most 1 CPU (quota)" if cg.cpu_parent else ", no CPU quota")
                + ("" if self.root else f", in the group delegated to you ({cg.memory_parent})")
                if cg is not None
                else "none: CPU time is limited per process, memory by address space/heap flags"
                + ("" if self.root else " (no cgroup is delegated to your user: see CODECAPSULE_CGROUP_PARENT)")
            ),
            "disk": (
                "work directory is a size-limited tmpfs (quota counted against the run's memory)"
                if self.root
                else "file-size limit per file only (no quota without root)"
            ),
            "launch": (
                "stages start through standbys prepared ahead inside their cgroup (CODECAPSULE_STANDBY=0: cold)"
                if self.uses_standby
                else "each stage starts cold (its sandbox is moved into its cgroup as it starts)"
                if self.bwrap and cg is not None
                else "each stage starts cold"
            ),
            "verdicts": (
                (
                    "memory_limit from the cgroup's OOM events"
                    if cg is not None
                    else "memory_limit inferred from the runtime's message (no memory cgroup)"
                )
                + (
                    "; signals told apart from exit codes by the sandbox's PID 1"
                    + (" (a compiled init)" if self.init is not None else " (perl)" if self.bwrap else "")
                    if self.perl or not self.bwrap
                    else "; a death by signal n and exit status 128+n look alike (perl missing)"
                )
            ),
        }

    @property
    def uses_standby(self) -> bool:
        """Whether stages start through standbys (``_standby``): under bubblewrap with cgroups and perl."""
        return self.standby and self.bwrap is not None and self.cgroups is not None and self.perl is not None

    def describe(self) -> str:
        parts = []
        if self.bwrap:
            parts.append(
                "bubblewrap (no network, read-only system, only the work directory writable, own PIDs"
                + (", seccomp" if self.seccomp is not None else "")
                + ")"
            )
        if self.sandbox_uid is not None:
            parts.append("an unprivileged uid per run")
        if self.cgroups:
            parts.append(
                f"a per-run cgroup v{self.cgroups.version} (memory and process limits"
                + (", CPU quota" if self.cgroups.cpu_parent else "")
                + ")"
            )
        if self.prlimit or self.bwrap:
            parts.append("resource limits (CPU time, file size, open files)")
        text = "; ".join(parts) if parts else "wall-clock timeout only"
        if not self.bwrap:
            text += (
                ". Programs can reach the network, write files outside their work directory"
                + ("" if self.cgroups else " and leave daemonised (setsid) processes behind")
                + " "
                "(install bubblewrap to isolate them)"
            )
        if self.root and self.sandbox_uid is None:
            text += ". Programs run as host root (install setpriv from util-linux)"
        if not self.cgroups and self.root and self.sandbox_uid is None:
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


def _bwrap_works(caps: SandboxCaps) -> bool:
    """Whether this exact bwrap configuration starts a program here (user namespaces, seccomp, setpriv)."""
    with tempfile.TemporaryDirectory() as tmp:
        if caps.sandbox_uid is not None:
            os.chown(tmp, caps.sandbox_uid, caps.sandbox_uid)
        info_r, info_w = os.pipe()
        block_r, block_w = os.pipe()
        os.write(block_w, b"1")
        seccomp_fd = _seccomp_fd(caps)
        exit_r, exit_w = os.pipe()
        try:
            cmd = _bwrap_command(
                caps, ["/bin/true"], tmp, (), info_w, block_r, seccomp_fd, exit_fd=exit_w, init_fd=caps.init
            )
            fds = (info_w, block_r, exit_w, *_optional_fds(seccomp_fd, caps.init))
            proc = subprocess.run(cmd, capture_output=True, timeout=10, pass_fds=fds, cwd=tmp, start_new_session=True)
            os.close(exit_w)
            exit_w = -1
            report = os.read(exit_r, 64)
        except (OSError, subprocess.TimeoutExpired):
            return False
        finally:
            for fd in (info_r, info_w, block_r, block_w, seccomp_fd, exit_r, exit_w):
                if fd is not None and fd >= 0:
                    os.close(fd)
        return proc.returncode == 0 and (caps.perl is None or report == b"S0\n")


def _optional_fds(*fds: int | None) -> tuple[int, ...]:
    return tuple(fd for fd in fds if fd is not None)


def _seccomp_fd(caps: SandboxCaps) -> int | None:
    """A pipe holding the BPF program for bwrap's ``--seccomp FD`` (it reads to EOF)."""
    if caps.seccomp is None:
        return None
    read_fd, write_fd = os.pipe()
    os.write(write_fd, caps.seccomp)  # ~700 bytes: far below the pipe's capacity
    os.close(write_fd)
    return read_fd


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
        if cgroup is not None and cgroup.cpu_time() is not None:
            soft += 1  # the run's CPU accounting (polled) judges; the per-process limit is only a backstop
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
    elif limits.processes is not None and caps.sandbox_uid is not None and cgroup is None:
        # as root, each run has a uid of its own, which does not ignore RLIMIT_NPROC (+ the sandbox's PID 1)
        n = limits.processes + 2
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


# The sandbox's PID 1 under bubblewrap (``--as-pid-1``): forks and execs the program, reaps orphans, and writes the
# program's raw wait status ("S<status>", or "E<errno>" when exec failed) on a pipe the program never holds
# (close-on-exec). bwrap's own init would fold a death by signal n into exit status 128+n, so `sys.exit(139)`
# and a segfault would look alike. As PID 1 of the namespace it ignores every signal sent from inside, so the
# program cannot kill it (kill(-1) spares it too). perl-base is part of every Debian/Ubuntu system; ~1.8 ms of
# start-up per stage, so ``_init``'s compiled equivalent (~0.3 ms) is used instead where it can be built.
_LAUNCHER = (
    "my $fd = shift @ARGV; my $limits = shift @ARGV; open(my $st, '>&=', $fd) or exit 125; fcntl($st, 2, 1);"
    "my $pid = fork(); if (!defined $pid) { exit 125 }"
    "if ($pid == 0) {"
    " for (split /,/, $limits) { next if $_ eq '-'; my ($r, $s, $h) = split /:/;"
    "  syscall(PRLIMIT64, 0, $r + 0, pack('QQ', $s, $h), 0) == 0 or exit 125 }"  # prlimit64(0, ...) on itself
    " exec { $ARGV[0] } @ARGV; syswrite($st, 'E' . ($! + 0) . \"\\n\");"
    ' print STDERR "capsule: cannot run $ARGV[0]: $!\\n"; exit 127 }'
    "while (1) { my $w = waitpid(-1, 0); last if $w < 0;"
    ' if ($w == $pid) { syswrite($st, "S$?\\n"); exit(($? & 127) ? 128 + ($? & 127) : $? >> 8) } }'
    "exit 125;"
)
_PRLIMIT64 = {"x86_64": 302, "aarch64": 261}  # the launcher sets the program's limits itself (no prlimit hop)


def _launcher_source() -> str | None:
    number = _PRLIMIT64.get(os.uname().machine)
    return _LAUNCHER.replace("PRLIMIT64", str(number)) if number is not None else None


def _bwrap_command(
    caps: SandboxCaps,
    argv: list[str],
    workdir: str,
    roots: tuple[str, ...],
    status_fd: int,
    block_fd: int,
    seccomp_fd: int | None,
    rlimits: list[tuple[int, int, int]] | None = None,
    exit_fd: int | None = None,
    init_fd: int | None = None,
    serve_fd: int | None = None,
    compile_fd: int | None = None,
) -> list[str]:
    """The bwrap command line. With ``exit_fd``, the sandbox's PID 1 is a launcher that reports the program's
    wait status there: the compiled init (``init_fd``, also passed to bwrap) or else perl. ``serve_fd`` (with the
    compiled init; ``argv`` and ``rlimits`` unused): it waits for the stage on that socket (``_primed``), and with
    ``compile_fd`` serves a compile stage on that one first."""
    assert caps.bwrap is not None
    prefix = caps.uid_prefix()
    launch = caps.perl is not None and exit_fd is not None
    if prefix and rlimits and caps.prlimit and not launch:
        # bwrap then runs as another uid, whose limits we could not set from outside without CAP_SYS_RESOURCE:
        # set them on the way in (bwrap itself uses next to no CPU, files or memory)
        prefix = [caps.prlimit, *_prlimit_flags(rlimits), "--", *prefix]
    return [
        *prefix, caps.bwrap, *_system_binds(roots),
        "--proc", "/proc", "--dev", "/dev",
        "--bind", workdir, SANDBOX_WORKDIR, "--chdir", SANDBOX_WORKDIR,
        "--unshare-all", "--unshare-user", *(["--disable-userns"] if caps.disable_userns else []),
        "--die-with-parent", "--cap-drop", "ALL", "--hostname", "capsule",
        "--remount-ro", "/",
        *(["--seccomp", str(seccomp_fd)] if seccomp_fd is not None else []),
        # bwrap reports the sandbox's pid on status_fd, then waits on block_fd before starting the program: in
        # between we put that pid in the run's cgroup and set its resource limits. At the end status_fd carries
        # the program's exit code only if the program was really started: a start failure is known out of band.
        "--json-status-fd", str(status_fd), "--block-fd", str(block_fd),
        *(["--as-pid-1", "--", *_pid1(caps, init_fd), str(exit_fd),
           *(["--serve", str(serve_fd), *_optional_args(compile_fd)] if serve_fd is not None
             else [_limit_list(rlimits or []), *argv])]
          if launch else ["--", *argv]),
    ]  # fmt: skip


def _optional_args(*values: int | None) -> list[str]:
    return [str(v) for v in values if v is not None]


def _pid1(caps: SandboxCaps, init_fd: int | None) -> list[str]:
    """The launcher's command before its report fd: the compiled init by its fd (it closes it first), or perl."""
    if init_fd is not None:
        return [f"/proc/self/fd/{init_fd}", str(init_fd)]
    return [caps.perl or "perl", "-e", _launcher_source() or ""]


def _limit_list(rlimits: list[tuple[int, int, int]]) -> str:
    """The launcher's limits argument: ``resource:soft:hard`` items, comma-separated (``-`` for none)."""
    return ",".join(f"{r}:{soft}:{hard}" for r, soft, hard in rlimits) or "-"


def _prlimit_flags(rlimits: list[tuple[int, int, int]]) -> list[str]:
    return [f"--{_PRLIMIT_FLAGS[r]}={soft}:{hard}" for r, soft, hard in rlimits]


def _chain_command(
    caps: SandboxCaps, argv: list[str], limits: StageLimits, cgroup: _cgroups.RunCgroup | None
) -> list[str]:
    """Without bubblewrap: ``sh`` joins the cgroup, ``prlimit`` sets the limits, then they exec the program."""
    cmd = list(argv)
    if caps.prlimit:
        cmd = [caps.prlimit, *_prlimit_flags(_rlimits(caps, limits, cgroup)), "--", *cmd]
    cmd = [*caps.uid_prefix(), *cmd]
    if cgroup is not None:
        # whether the join worked is read from the group's own counters afterwards, never from this exit code
        joins = " && ".join(f"echo $$ > {shlex.quote(f)}" for f in cgroup.procs_files)
        cmd = [caps.sh, "-c", f'{{ {joins}; }} 2>/dev/null || exit 125; exec "$@"', "capsule", *cmd]
    return cmd


def _release_sandbox(
    caps: SandboxCaps,
    limits: StageLimits | None,
    cgroup: _cgroups.RunCgroup | None,
    info_r: int,
    block_w: int,
    monitor_pid: int | None,
) -> int | None:
    """Read the sandbox's pid from bwrap, confine it, and let it start the program; returns a pidfd of the
    sandbox's init (it exits only once every process of the namespace is gone). ``monitor_pid`` None: bwrap
    started inside the run's cgroup (a standby), so its sandbox was cloned into the group."""
    if cgroup is not None and monitor_pid is not None:
        # The first move into a cgroup after an idle spell waits for an RCU grace period (~3-10 ms on cgroup v1,
        # measured): pay it now, while setpriv and bwrap start, by moving bwrap itself (its sandbox is cloned
        # into the group). Moving the sandbox's init below then costs microseconds and covers a clone that raced.
        _join(cgroup, monitor_pid)
    data = b""
    while b"}" not in data:
        chunk = os.read(info_r, 4096)
        if not chunk:
            return None  # bwrap failed before creating the sandbox: its stderr says why
        data += chunk
    pid = int(json.loads(data[: data.index(b"}") + 1])["child-pid"])
    if caps.sandbox_uid is not None and os.stat(f"/proc/{pid}").st_uid != caps.sandbox_uid:
        raise SandboxError(f"the sandbox runs as uid {os.stat(f'/proc/{pid}').st_uid}, not {caps.sandbox_uid}")
    if cgroup is not None and monitor_pid is not None:
        _join(cgroup, pid)
    if limits is not None and not (caps.uid_prefix() and caps.prlimit) and not caps.perl:
        # (else set by the launcher or the prlimit hop; no limits: a sandbox prepared ahead, its launcher sets them)
        for res, soft, hard in _rlimits(caps, limits, cgroup):
            resource.prlimit(pid, res, (soft, hard))
    init_fd = os.pidfd_open(pid)
    os.write(block_w, b"1")
    return init_fd


def _join(cgroup: _cgroups.RunCgroup, pid: int) -> None:
    for procs in cgroup.procs_files:
        Path(procs).write_text(str(pid))


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


def effective_wall(limits: StageLimits, cpu_enforced: bool) -> float:
    """The wall-clock deadline of a stage: the wall limit, raised above the CPU limit where CPU time is enforced
    over the whole run (then the CPU limit is what judges a busy program, the clock only a sleeping one)."""
    if cpu_enforced and limits.cpu is not None:
        return max(limits.wall, 2 * limits.cpu + 1.0)
    return limits.wall


def run_stage(
    caps: SandboxCaps,
    argv: list[str],
    *,
    env: dict[str, str],
    workdir: str,
    stdin: bytes | LiveStdin,
    limits: StageLimits,
    roots: tuple[str, ...] = (),
    sink: StageSink | None = None,
    primed: Primed | None = None,
    compile: bool = False,
) -> Stage:
    """Run ``argv`` in ``workdir`` under the sandbox and limits; always returns a Stage (never leaves processes).
    ``sink`` (live runs only) gets the output as it is read and can stop the stage (status ``IN``). ``stdin``: all
    of the input, or (interactive live runs) a ``LiveStdin`` whose pipe the capture loop feeds as input arrives.
    ``primed``: the run's sandbox prepared ahead (``_primed``), used if this stage's sandbox is exactly that one
    and no stage used it yet: the run stage in it, a ``compile`` stage in its compile slot."""
    cgroup = None
    standby = None
    launch = None
    slot = None
    if caps.cgroups is not None and (limits.memory is not None or limits.processes is not None):
        # the sandbox's own helpers (sh, bwrap and its reaper) need a few process slots of their own
        procs = limits.processes + 4 if limits.processes is not None else None
        if primed is not None and compile:
            slot = primed.claim_compile(caps, workdir, roots)
            if slot is not None and not _limited(slot.cgroup, limits.memory, procs):
                slot.discard()
                slot = None
        elif primed is not None:
            launch = primed.claim(caps, workdir, roots)
        if launch is not None and not _limited(launch.standby.cgroup, limits.memory, procs):
            launch.discard(caps.sandbox_uid)
            launch = None
        if slot is not None:
            cgroup = slot.cgroup
        elif launch is None and caps.uses_standby:
            standby = _standby.take(caps.perl, caps.cgroups, caps.seccomp, caps.init)
        if standby is not None and not _limited(standby.cgroup, limits.memory, procs):
            standby.discard()
            standby = None
        prepared = launch.standby if launch is not None else standby
        if prepared is not None:
            cgroup = prepared.cgroup
        try:
            if cgroup is None:
                cgroup = caps.cgroups.create(limits.memory, procs, cpus=1.0)
        except OSError as exc:
            raise SandboxError(
                f"could not create a cgroup for the run ({exc}); set CODECAPSULE_CGROUPS=0 to run without one."
            ) from exc
    refill = primed.pool.refill if (launch is not None or slot is not None) and primed is not None else None
    try:
        if slot is not None:
            assert isinstance(stdin, bytes)  # (a compile's input: none)
            return _run_slot(slot, caps, argv, env, workdir, stdin, limits, roots, sink, refill)
        return _run(
            caps, argv, env, workdir, stdin, limits, roots, cgroup, sink=sink, standby=standby, launch=launch,
            refill=refill,
        )  # fmt: skip
    finally:
        if cgroup is not None and slot is not None:
            cgroup.kill_all()
            if slot.ran:  # (else its group goes with the run: ``Primed.close``, once the run stage no longer waits)
                _forker.later(slot.remove)
        elif cgroup is not None and launch is not None:
            # nothing of the run is left alive after kill_all; removing the empty group can wait on the kernel
            # (``_forker``), so the thread preparing the next sandbox does it
            cgroup.kill_all()
            _forker.later(functools.partial(_remove_group, cgroup, caps.sandbox_uid))
        elif cgroup is not None:
            _remove_group(cgroup, caps.sandbox_uid)


def _limited(cgroup: _cgroups.RunCgroup, memory: int | None, procs: int | None) -> bool:
    """Whether the stage's limits could be set on a group prepared ahead (else it is discarded)."""
    try:
        cgroup.set_limits(memory, procs)
    except OSError:
        return False
    return True


def _remove_group(cgroup: _cgroups.RunCgroup, sandbox_uid: int | None) -> None:
    cgroup.remove()
    _reap(None, sandbox_uid)  # what the removal killed and the kernel reparented to us


@dataclass
class _Captured:
    out: bytearray
    err: bytearray
    combined: bytearray
    # why we stopped the program: "TO" (wall clock), "CPU" (CPU time of the run), "OL"/"EL" (stdout/stderr cap),
    # "IN" (the live run was cancelled)
    reason: str | None


@dataclass
class _Spawned:
    proc: subprocess.Popen[bytes]
    init_fd: int | None  # pidfd of the sandbox's init (bwrap)
    status_fd: int | None  # bwrap's JSON status
    exit_fd: int | None = None  # the launcher's report of the program's wait status


def _spawn(
    caps: SandboxCaps,
    argv: list[str],
    env: dict[str, str],
    workdir: str,
    stdin: bytes | LiveStdin,
    limits: StageLimits,
    roots: tuple[str, ...],
    cgroup: _cgroups.RunCgroup | None,
) -> _Spawned:
    """Start the program confined."""
    if not caps.bwrap:
        return _spawn_chain(caps, argv, env, workdir, stdin, limits, cgroup)
    status_r, status_w = os.pipe()
    exit_r, exit_w = os.pipe() if caps.perl else (-1, -1)
    block = os.pipe()
    seccomp_fd = _seccomp_fd(caps)
    rl = _rlimits(caps, limits, cgroup)
    cmd = _bwrap_command(
        caps, argv, workdir, roots, status_w, block[0], seccomp_fd, rl, exit_w if caps.perl else None, caps.init
    )
    fds = (status_w, block[0], *_optional_fds(seccomp_fd, exit_w if caps.perl else None, caps.init))
    spawned_ok = False
    try:
        with _stdin_file(stdin) as stdin_file:
            try:
                proc = _popen(cmd, stdin_file, env, workdir, fds)
            except OSError as exc:
                raise SandboxError(f"could not start {argv[0]!r}: {exc}") from exc
        os.close(status_w)
        status_w = -1
        os.close(block[0])
        init_fd = _confine(proc, caps, limits, cgroup, status_r, block[1], proc.pid)
        spawned_ok = True
        return _Spawned(proc, init_fd, status_r, exit_r if caps.perl else None)
    finally:
        for fd in (status_w, block[1], seccomp_fd, exit_w):
            if fd is not None and fd >= 0:
                with contextlib.suppress(OSError):
                    os.close(fd)
        if not spawned_ok:
            os.close(status_r)
            if exit_r >= 0:
                os.close(exit_r)


def _spawn_standby(
    standby: _standby.Standby,
    caps: SandboxCaps,
    argv: list[str],
    env: dict[str, str],
    workdir: str,
    stdin: bytes | LiveStdin,
    limits: StageLimits,
    roots: tuple[str, ...],
) -> _Spawned:
    """Start the program through a standby (already in the run's cgroup, its pipes made): the same command as
    ``_spawn``'s, with the standby's fd numbers."""
    cgroup = standby.cgroup
    rl = _rlimits(caps, limits, cgroup)
    # the standby becomes the sandbox uid itself (as setpriv would) and execs bwrap: no setpriv in the command
    cmd = _bwrap_command(
        replace(caps, setpriv=None), argv, workdir, roots, standby.status_w, standby.block_r, standby.seccomp_fd,
        rl, standby.exit_w, standby.init_fd,
    )  # fmt: skip
    cgroup.start_accounting()  # the standby's own start-up is not the program's CPU time
    proc = standby.proc
    try:
        uid = caps.sandbox_uid if caps.setpriv is not None else None
        if isinstance(stdin, bytes):
            standby.start(cmd, env, workdir, stdin, uid)
        else:  # it opens our pipe's read end as its fd 0 (as the uid it starts as, before becoming ``uid``)
            standby.start(cmd, env, workdir, b"", uid, stdin_path=f"/proc/{os.getpid()}/fd/{stdin.read_fd}")
        init_fd = _confine(proc, caps, limits, cgroup, standby.status_r, standby.block_w, None)
    except OSError:
        init_fd, killed = None, True  # its control pipe broke: it is gone
    except SandboxError:
        os.close(standby.status_r)
        os.close(standby.exit_r)
        raise
    else:
        killed = init_fd is None and _killed(proc.pid)
    finally:
        os.close(standby.block_w)
    if killed:
        # it died after it was taken (killed from outside) before bwrap started. (A failure of bwrap itself is an
        # exit, not a signal: that one is reported, not retried.)
        return _spawn_instead(standby, caps, argv, env, workdir, stdin, limits, roots)
    return _Spawned(proc, init_fd, standby.status_r, standby.exit_r)


def _spawn_instead(
    standby: _standby.Standby,
    caps: SandboxCaps,
    argv: list[str],
    env: dict[str, str],
    workdir: str,
    stdin: bytes | LiveStdin,
    limits: StageLimits,
    roots: tuple[str, ...],
) -> _Spawned:
    """A launcher prepared ahead is gone: start the stage cold, in the group it was given."""
    _abandon(standby.proc)
    os.close(standby.status_r)
    os.close(standby.exit_r)
    return _spawn(caps, argv, env, workdir, stdin, limits, roots, standby.cgroup)


def _spawn_primed(
    launch: Launch,
    caps: SandboxCaps,
    argv: list[str],
    env: dict[str, str],
    workdir: str,
    stdin: bytes | LiveStdin,
    limits: StageLimits,
    roots: tuple[str, ...],
) -> _Spawned:
    """Start the program in the sandbox prepared for it: one message to its PID 1 (``_primed``)."""
    standby = launch.standby
    cgroup = standby.cgroup
    cgroup.start_accounting()  # the sandbox's own start-up is not the program's CPU time
    try:
        # bwrap sets PWD after its --chdir for what it execs; here PID 1 sets the environment, so say it the same
        launch.start(argv, {**env, "PWD": SANDBOX_WORKDIR}, _limit_list(_rlimits(caps, limits, cgroup)), stdin)
    except OSError:
        # gone (killed from outside while it waited) or a message too large
        os.close(launch.init_fd)
        return _spawn_instead(standby, caps, argv, env, workdir, stdin, limits, roots)
    return _Spawned(standby.proc, launch.init_fd, standby.status_r, standby.exit_r)


def _killed(pid: int) -> bool:
    """Whether our child ``pid`` died by a signal; waits for it to end, but leaves it to be reaped."""
    try:
        info = os.waitid(os.P_PID, pid, os.WEXITED | os.WNOWAIT)
    except ChildProcessError:
        return False
    return info is not None and info.si_code in (os.CLD_KILLED, os.CLD_DUMPED)


def _confine(
    proc: subprocess.Popen[bytes],
    caps: SandboxCaps,
    limits: StageLimits | None,
    cgroup: _cgroups.RunCgroup | None,
    status_r: int,
    block_w: int,
    monitor_pid: int | None,
) -> int | None:
    """``_release_sandbox``, or kill what was started and raise SandboxError."""
    try:
        return _release_sandbox(caps, limits, cgroup, status_r, block_w, monitor_pid)
    except (OSError, ValueError, KeyError, SandboxError) as exc:
        _abandon(proc)
        raise SandboxError(f"could not confine the sandbox: {exc}") from exc


def _abandon(proc: subprocess.Popen[bytes]) -> None:
    """Kill and reap a launch that never got its program started."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    waited_done(proc.pid)


def _popen(
    cmd: list[str], stdin: IO[bytes] | int, env: dict[str, str], cwd: str, fds: tuple[int, ...]
) -> subprocess.Popen[bytes]:
    # a new session: no controlling terminal to inject keystrokes into (TIOCSTI), its own process group to kill
    proc = subprocess.Popen(
        cmd, stdin=stdin, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, cwd=cwd,
        start_new_session=True, close_fds=True, pass_fds=fds,
    )  # fmt: skip
    with _WAITED_LOCK:
        _WAITED.add(proc.pid)
    return proc


def waited_done(pid: int) -> None:
    """``pid`` (spawned by ``_popen``) has been waited for: ``_reap`` may take a process with that pid again."""
    with _WAITED_LOCK:
        _WAITED.discard(pid)


# Children a stage runner waits for itself (bwrap monitors, chain programs): _reap never takes these.
_WAITED: set[int] = set()
_WAITED_LOCK = threading.Lock()


def _spawn_chain(
    caps: SandboxCaps,
    argv: list[str],
    env: dict[str, str],
    workdir: str,
    stdin: bytes | LiveStdin,
    limits: StageLimits,
    cgroup: _cgroups.RunCgroup | None,
) -> _Spawned:
    """Without bubblewrap: the ``sh`` / ``setpriv`` / ``prlimit`` chain execs the program."""
    with _stdin_file(stdin) as stdin_file:
        try:
            return _Spawned(
                _popen(_chain_command(caps, argv, limits, cgroup), stdin_file, env, workdir, ()), None, None
            )
        except OSError as exc:
            raise SandboxError(f"could not start {argv[0]!r}: {exc}") from exc


@contextlib.contextmanager
def _stdin_file(stdin: bytes | LiveStdin) -> Iterator[IO[bytes] | int]:
    """What the program gets as fd 0: a file holding all of its input, or the read end of a live run's pipe."""
    if not isinstance(stdin, bytes):
        yield stdin.read_fd
        return
    with tempfile.TemporaryFile() as stdin_file:
        stdin_file.write(stdin)
        stdin_file.seek(0)
        yield stdin_file


def _capture(
    streams_fds: tuple[int, int],
    pidfd: int,
    launcher: int,
    limits: StageLimits,
    deadline: float,
    cgroup: _cgroups.RunCgroup | None,
    sink: StageSink | None = None,
    feed: LiveStdin | None = None,
    bwrapped: bool = False,
) -> _Captured:
    """Read stdout and stderr as streams until the program has exited and its output is drained, the deadline
    passes, the run's CPU time goes over its limit, a stream goes over the output cap (the prefix is kept), or
    the live run's ``sink`` says stop. A grandchild that keeps the pipes open does not hold the result back once
    the program itself is done. ``feed`` (interactive runs): the program's stdin pipe, written as input arrives
    and never blocking this loop; while the program is quiet it is asked whether the program waits for input.
    ``streams_fds``: our ends of its stdout and stderr; ``pidfd`` is readable once it ended; ``launcher``: the pid
    of what we started (bwrap, or the chain that became the program)."""
    got = _Captured(bytearray(), bytearray(), bytearray(), None)
    streams = {streams_fds[0]: (got.out, "OL", "stdout"), streams_fds[1]: (got.err, "EL", "stderr")}
    watch_cpu = cgroup is not None and limits.cpu is not None and cgroup.cpu_time() is not None
    exited = False
    writing = -1  # the stdin pipe's fd while the selector watches it for room

    def run_pids() -> list[int]:
        pids = cgroup.pids() if cgroup is not None else _stdin_wait.descendants(launcher)
        # bwrap's monitor holds the pipe as its fd 0 too and sleeps in poll(): it is not the program
        return [pid for pid in pids if pid != launcher] if bwrapped else pids

    with selectors.DefaultSelector() as sel:
        for fd in streams:
            os.set_blocking(fd, False)
            sel.register(fd, selectors.EVENT_READ)
        sel.register(pidfd, selectors.EVENT_READ)
        if sink is not None:
            sel.register(sink.wake_fd, selectors.EVENT_READ)
        while streams or not exited:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                got.reason = "TO"
                return got
            if sink is not None and not exited and sink.stopped():  # (drains the wake pipe: before turn())
                got.reason = "IN"
                return got
            if writing >= 0:
                sel.unregister(writing)  # before turn(): it may close the pipe
                writing = -1
            if feed is not None and not exited:
                feed.turn()
                if feed.wants_write:
                    writing = feed.write_fd
                    sel.register(writing, selectors.EVENT_WRITE)
            if watch_cpu and not exited:
                assert cgroup is not None and limits.cpu is not None
                used = cgroup.cpu_time()
                if used is not None and used >= limits.cpu:
                    got.reason = "CPU"
                    return got
                remaining = min(remaining, _CPU_POLL)
            look = feed.next_look(time.monotonic()) if feed is not None and not exited else None
            events = sel.select(0 if exited else remaining if look is None else min(remaining, look))
            if exited and not events:
                return got
            # what it printed before it blocked (still unread: select(0)) is shown before the question
            if feed is not None and not events and not exited and feed.wants_input(run_pids) and not sel.select(0):
                feed.ask()
            for key, _ in events:
                if key.fd == pidfd:
                    exited = True
                    sel.unregister(pidfd)
                    if sink is not None:
                        sel.unregister(sink.wake_fd)  # the program is done: a cancel now changes nothing
                    continue
                if (sink is not None and key.fd == sink.wake_fd) or key.fd == writing:
                    continue  # looked at on the next turn
                try:
                    chunk = os.read(key.fd, _READ)
                except BlockingIOError:
                    continue
                if not chunk:
                    sel.unregister(key.fd)
                    del streams[key.fd]
                    continue
                buf, over, name = streams[key.fd]
                room = max(limits.output - len(buf), 0)
                buf += chunk[:room]
                got.combined += chunk[:room]
                if sink is not None and room:
                    sink.chunk(name, chunk[:room])  # type: ignore[arg-type]
                if feed is not None:
                    feed.output_seen()
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
    """Piston-style (status, message, exit code, signal) for how a stage ended (pure). Every input is a fact the
    sandbox measured (wait status, cgroup counters, clocks), never the program's output."""
    if reason == "TO":
        return "TO", f"Time limit exceeded (wall clock, {wall:.3g} s)", None, "SIGKILL"
    if reason == "CPU":
        return "TO", f"Time limit exceeded (CPU time, {limits.cpu:g} s)", None, "SIGKILL"
    if reason == "IN":
        return "IN", "Interrupted (stopped before it finished)", None, "SIGKILL"
    if reason in ("OL", "EL"):
        stream = "stdout" if reason == "OL" else "stderr"
        return reason, f"{stream} length exceeded (output limit {limits.output} bytes)", None, "SIGKILL"
    if oom:
        return "ML", f"Memory limit exceeded ({limits.memory} bytes)", code, sig
    used = cpu if cpu is not None else wall
    if sig == "SIGXCPU" or (sig == "SIGKILL" and limits.cpu is not None and used >= limits.cpu):
        return "TO", f"Time limit exceeded (CPU time, {limits.cpu:g} s)", code, sig
    if sig is not None:
        return "SG", f"Killed by {sig}: {_SIGNAL_TEXT.get(sig, 'signal')}", code, sig
    if code:
        return "RE", f"Exited with error status {code}", code, sig
    return None, None, code, sig


def _read_status(fd: int) -> list[dict[str, object]]:
    """The JSON documents bwrap wrote on its status fd (the first one was consumed at start)."""
    data = b""
    with contextlib.suppress(OSError):
        while chunk := os.read(fd, 4096):
            data += chunk
    text = data.decode(errors="replace")
    docs: list[dict[str, object]] = []
    decoder = json.JSONDecoder()
    pos = 0
    while True:
        start = text.find("{", pos)
        if start < 0:
            return docs
        try:
            doc, pos = decoder.raw_decode(text, start)
        except ValueError:
            return docs
        if isinstance(doc, dict):
            docs.append(doc)


def _reap(init_fd: int | None, sandbox_uid: int | None) -> None:
    """Reap sandbox inits reparented to us (we are a child subreaper under bwrap): this run's, and any an earlier
    killed or failed run left. An init is a ``bwrap`` zombie outside its own process group; bwrap monitors we
    spawn lead their own group (a new session) and are waited for by their runner, so they are never taken."""
    if init_fd is not None:
        with contextlib.suppress(ChildProcessError, OSError):
            os.waitid(os.P_PIDFD, init_fd, os.WEXITED | os.WNOHANG)
    try:
        tasks = os.listdir("/proc/self/task")
    except OSError:
        return
    for tid in tasks:
        for child in _children_of_task(tid):
            try:
                stat = Path(f"/proc/{child}/stat").read_text()
            except OSError:
                continue
            fields = stat[stat.rindex(")") + 2 :].split()
            if fields[0] != "Z":
                continue
            with _WAITED_LOCK:
                if child in _WAITED:
                    continue
            init = stat[stat.index("(") + 1 : stat.rindex(")")] == "bwrap" and int(fields[2]) != child
            with contextlib.suppress(OSError):
                if init or (sandbox_uid is not None and os.stat(f"/proc/{child}").st_uid in _uids.UID_RANGE):
                    os.waitpid(child, os.WNOHANG)


def _children_of_task(tid: str) -> list[int]:
    try:
        return [int(p) for p in Path(f"/proc/self/task/{tid}/children").read_text().split()]
    except OSError:
        return []


def _run(
    caps: SandboxCaps,
    argv: list[str],
    env: dict[str, str],
    workdir: str,
    stdin: bytes | LiveStdin,
    limits: StageLimits,
    roots: tuple[str, ...],
    cgroup: _cgroups.RunCgroup | None,
    *,
    sink: StageSink | None = None,
    standby: _standby.Standby | None = None,
    launch: Launch | None = None,
    refill: Callable[[], None] | None = None,
) -> Stage:
    started = time.monotonic()
    if launch is not None:
        spawned = _spawn_primed(launch, caps, argv, env, workdir, stdin, limits, roots)
    elif standby is not None:
        spawned = _spawn_standby(standby, caps, argv, env, workdir, stdin, limits, roots)
    else:
        spawned = _spawn(caps, argv, env, workdir, stdin, limits, roots, cgroup)
    proc, init_fd = spawned.proc, spawned.init_fd
    if refill is not None:
        refill()  # the next run's sandboxes, while this one runs
    elif caps.uses_standby and cgroup is not None:
        _standby.refill(caps.perl, caps.cgroups, caps.seccomp, caps.init)  # for the next stage, while this one runs
    feed = None if isinstance(stdin, bytes) else stdin
    if feed is not None:
        feed.handed_over()
    pidfd = os.pidfd_open(proc.pid)
    cpu_enforced = cgroup is not None and cgroup.cpu_time() is not None
    try:
        deadline = started + effective_wall(limits, cpu_enforced)
        assert proc.stdout is not None and proc.stderr is not None
        streams_fds = (proc.stdout.fileno(), proc.stderr.fileno())
        got = _capture(streams_fds, pidfd, proc.pid, limits, deadline, cgroup, sink, feed, caps.bwrap is not None)
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
        assert proc.stdout is not None and proc.stderr is not None
        proc.stdout.close()
        proc.stderr.close()
    try:
        _, status, usage = os.wait4(proc.pid, 0)
    finally:
        with _WAITED_LOCK:
            _WAITED.discard(proc.pid)
    _reap(init_fd, caps.sandbox_uid)
    if init_fd is not None:
        os.close(init_fd)
    reports: list[dict[str, object]] = []
    if spawned.status_fd is not None:
        try:
            reports = _read_status(spawned.status_fd)
        finally:
            os.close(spawned.status_fd)
    launched: bytes = b""
    if spawned.exit_fd is not None:
        try:
            with contextlib.suppress(OSError):
                launched = os.read(spawned.exit_fd, 64)
        finally:
            os.close(spawned.exit_fd)
    proc.returncode = os.waitstatus_to_exitcode(status)
    wall = time.monotonic() - started
    # under bubblewrap, rusage only sees bwrap itself: the cgroup's CPU accounting sees the program
    cpu: float | None = cgroup.cpu_time() if cgroup is not None else None
    if cpu is None and not caps.bwrap:
        cpu = usage.ru_utime + usage.ru_stime
    memory = cgroup.peak_memory() if cgroup is not None else usage.ru_maxrss * 1024

    code: int | None = proc.returncode
    sig: str | None = None
    if caps.bwrap:
        exits = [d["exit-code"] for d in reports if isinstance(d.get("exit-code"), int)]
        if not exits and got.reason is None:
            # bwrap writes the exit code only for a program it really started: this is bwrap's own failure
            raise SandboxError(f"the sandbox could not start: {got.err.decode(errors='replace').strip()}")
        if exits:
            code = int(exits[0])  # type: ignore[call-overload]
    raw_status = _launched_status(launched, got, argv)
    if not caps.bwrap and cgroup is not None and got.reason is None and not (cpu or cgroup.peak_memory()):
        # nothing ever ran in the group: the prologue could not join it (a program's exit 125 cannot fake this)
        raise SandboxError("could not join the run's cgroup; set CODECAPSULE_CGROUPS=0 to run without one.")
    if raw_status is not None:
        code, sig = _code_and_signal(raw_status)
    elif code is not None and code < 0:
        sig, code = _signal_name(-code), 128 - code
    elif caps.bwrap and code is not None and 128 < code < 160:
        sig = _signal_name(code - 128)  # without the launcher, bwrap reports a signal death as 128+n
    oom = cgroup.oom_killed() if cgroup is not None else False
    return _stage(got, code, sig, oom, cpu, wall, memory, limits)


def _code_and_signal(raw_status: int) -> tuple[int, str | None]:
    """Exit code (128+n for a death by signal n) and signal name from a wait status."""
    if os.WIFSIGNALED(raw_status):
        return 128 + os.WTERMSIG(raw_status), _signal_name(os.WTERMSIG(raw_status))
    return os.WEXITSTATUS(raw_status), None


def _launched_status(launched: bytes, got: _Captured, argv: list[str]) -> int | None:
    """The program's own wait status from the launcher's report (None: no report); SandboxError when the
    launcher could not exec the program."""
    if launched.startswith(b"E") and got.reason is None:
        errno_text = os.strerror(int(launched[1:].strip() or 0))
        raise SandboxError(f"the sandbox could not run {argv[0]!r}: {errno_text}")
    if launched.startswith(b"S"):
        return int(launched[1:].strip())
    return None


def _stage(
    got: _Captured,
    code: int | None,
    sig: str | None,
    oom: bool,
    cpu: float | None,
    wall: float,
    memory: int | None,
    limits: StageLimits,
) -> Stage:
    """The Stage from the facts measured: its verdict by ``classify``, its output as captured."""
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


def _run_slot(
    slot: CompileSlot,
    caps: SandboxCaps,
    argv: list[str],
    env: dict[str, str],
    workdir: str,
    stdin: bytes,
    limits: StageLimits,
    roots: tuple[str, ...],
    sink: StageSink | None,
    refill: Callable[[], None] | None,
) -> Stage:
    """A compile stage in the compile slot of the run's prepared sandbox (``_primed``): its own group, limits and
    pipes; judged by the same code from the same kinds of facts (the launcher's wait status, the group's
    counters). It returns once the slot's launcher is gone, which it is only after everything the compile started
    was killed and reaped."""
    started = time.monotonic()
    cgroup = slot.cgroup
    cgroup.start_accounting()  # the slot's wait is not the compile's CPU time
    try:
        # bwrap sets PWD after its --chdir for what it execs; here the launcher sets the environment: say it alike
        with _stdin_file(stdin) as stdin_file:
            assert not isinstance(stdin_file, int)  # (all of a compile's input: a file)
            out_r, err_r, report_r = slot.start(
                argv, {**env, "PWD": SANDBOX_WORKDIR}, _limit_list(_rlimits(caps, limits, cgroup)), stdin_file.fileno()
            )
    except OSError:
        # gone (killed from outside while it waited) or a message too large: start it cold, in the slot's group
        slot.ended = slot.gone(_SLOT_GONE)
        return _run(caps, argv, env, workdir, stdin, limits, roots, cgroup, sink=sink)
    if refill is not None:
        refill()  # the next run's sandboxes, while this one compiles
    try:
        deadline = started + effective_wall(limits, cgroup.cpu_time() is not None)
        got = _capture((out_r, err_r), slot.pidfd, slot.pid, limits, deadline, cgroup, sink)
        if got.reason is not None:
            cgroup.kill_all()  # the slot's launcher and all the compile started: none of them is PID 1
        # the launcher exits once all of the compile is reaped (bounded: a kill ends it at once)
        slot.ended = slot.gone(_SLOT_GONE)
        launched = b""
        os.set_blocking(report_r, False)  # a launcher not gone yet still holds the write end
        with contextlib.suppress(OSError):
            launched = os.read(report_r, 64)
    finally:
        for fd in (out_r, err_r, report_r):
            os.close(fd)
    wall = time.monotonic() - started
    raw_status = _launched_status(launched, got, argv)
    oom = cgroup.oom_killed()
    code: int | None = None
    sig: str | None = None
    if raw_status is not None:
        code, sig = _code_and_signal(raw_status)
    elif oom:
        code, sig = 128 + signal.SIGKILL, "SIGKILL"  # the kernel killed the launcher itself: as bwrap reports it
    elif got.reason is None:
        raise SandboxError(f"the sandbox's compile launcher ended without running {argv[0]!r}")
    return _stage(got, code, sig, oom, cgroup.cpu_time(), wall, cgroup.peak_memory(), limits)
