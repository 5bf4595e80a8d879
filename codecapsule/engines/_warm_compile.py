"""The warm path of a C/C++ compile stage: the compile cache first, then a precompiled header, else cold.

:meth:`WarmCompiler.compile` is what ``LocalEngine.compile_stage`` calls when the engine is warm. The Result
of a warm compile is a cold compile's: a cache hit replays the stored Stage (its diagnostics, byte for byte) and
copies the stored executable into the run's fresh work directory (only its wall time is the hit's own, ~0, and its
CPU time 0); a PCH compile whose diagnostics would differ is redone cold (``_pch.needs_cold_rerun``).

Used only where a program's run cannot reach the cache: under bubblewrap (which shows it nothing of the cache) or
as another uid (the cache is 0700). A program running as the engine's own user without bubblewrap could rewrite
the cache for every later student, so there the warm path is off.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import stat
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, replace
from typing import TYPE_CHECKING

from .._jobs import Job
from .._results import Stage
from .._verdicts import stage_failed
from . import _pch, _workdir
from ._cache_dir import trusted
from ._compile_cache import CompileCache, FileImage, cache_key
from ._pch import PchStore
from ._sandbox import SandboxCaps, StageLimits, StageSink, replay, run_stage
from ._toolchains import StagePlan, Toolchain, compiler_identity, pch_build_plan

if TYPE_CHECKING:
    from .local import LocalEngine

# runs the compile: (argv, extra read-only roots, live sink or None) → the Stage
RunCompile = Callable[[list[str], tuple[str, ...], StageSink | None], Stage]

#: Compile outcomes worth keeping: a build and a plain compile error (both follow from the inputs alone); never a
#: compile stopped by a limit, a signal or a cancel.
_CACHED_STATUSES = frozenset({None, "RE"})
# Files whose change means the system's headers or libraries may have changed (a package install or upgrade)
_SYSTEM_STAMPS = ("/var/lib/dpkg/status", "/usr/include", "/usr/local/include", "/usr/lib/gcc")

# Directories bound into every sandbox (``_sandbox._system_binds``): a cache there would be readable by programs
_SANDBOX_VISIBLE = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/etc", "/proc", "/dev")

#: The PCH build: a ~100 MB output and a compiler that needs ~10 s of CPU (more on a loaded machine).
PCH_LIMITS = StageLimits(
    wall=600.0, cpu=600.0, memory=2 * 1024**3, processes=64, output=256 * 1024, file_size=512 * 1024**2,
    limit_address_space=True,
)  # fmt: skip
PCH_WORKDIR_SIZE = 512 * 1024**2


def usable(caps: SandboxCaps) -> bool:
    """Whether a program's run is kept away from the cache (see the module docstring)."""
    return caps.bwrap is not None or (caps.sandbox_uid is not None and caps.sandbox_uid != os.geteuid())


def _stamp(path: str) -> list[int] | None:
    try:
        info = os.stat(path)
    except OSError:
        return None
    return [info.st_size, info.st_mtime_ns]


class WarmCompiler:
    """The compile cache under ``root/compile`` and the precompiled headers under ``root/pch``."""

    def __init__(self, root: str, max_bytes: int, build: _pch.Builder) -> None:
        real = os.path.realpath(root)
        if any(real == d or real.startswith(d + "/") for d in _SANDBOX_VISIBLE):
            raise PermissionError(f"{root} is inside a directory every sandbox sees")
        os.makedirs(root, mode=0o755, exist_ok=True)
        if not trusted(root):  # another user could swap what is inside: never used (the engine compiles cold)
            raise PermissionError(f"{root} is not owned by this user or is writable by others")
        self.cache = CompileCache(os.path.join(root, "compile"), max_bytes)
        # the sandbox's uid must reach the PCH store to read it: without that only the cache is used
        self.pch = PchStore(os.path.join(root, "pch"), build)

    def compile(
        self,
        job: Job,
        tc: Toolchain,
        caps: SandboxCaps,
        plan: StagePlan,
        limits: StageLimits,
        workdir: str,
        run: RunCompile,
        sink: StageSink | None,
    ) -> Stage:
        started = time.monotonic()
        ready = self._pch_for(job, tc, caps)
        key = self.key(job, tc, caps, plan, limits, workdir, ready.digest if ready else None)
        hit = self.cache.get(key)
        if hit is not None:
            _write_outputs(workdir, hit.files, caps.sandbox_uid)
            replay(sink, hit.stage)
            return replace(hit.stage, wall_time=time.monotonic() - started, cpu_time=0.0, memory=None)
        if ready is not None:
            stage = run([plan.argv[0], "-I", ready.include_dir, *plan.argv[1:]], (ready.include_dir,), None)
            if _pch.needs_cold_rerun(stage.stdout + stage.stderr, ready.header_path):
                stage = run(plan.argv, (), sink)
            else:
                replay(sink, stage)
        else:
            stage = run(plan.argv, (), sink)
        if stage.status in _CACHED_STATUSES and stage.signal is None and not stage.truncated:
            outputs = _outputs(workdir, job) if stage.status is None else []
            if outputs is not None:
                self.cache.put(key, stage, outputs)
        return stage

    def _pch_for(self, job: Job, tc: Toolchain, caps: SandboxCaps) -> _pch.Ready | None:
        if not _pch.wanted(job):
            return None
        if caps.sandbox_uid is not None and not _workdir.reachable_by_others(self.pch.root):
            return None
        return self.pch.ready(tc, job.language)

    @staticmethod
    def key(
        job: Job,
        tc: Toolchain,
        caps: SandboxCaps,
        plan: StagePlan,
        limits: StageLimits,
        workdir: str,
        pch_digest: str | None,
    ) -> str:
        """Everything that determines a compile's output: sources and headers (names and contents), the command
        and environment (the run's own work directory path left out), the toolchain's identity, the system's
        headers and libraries (by their packages' stamp), the limits and the PCH used."""
        inner = caps.inner_workdir(workdir)

        def general(text: str) -> str:
            return text.replace(inner, "<workdir>")

        return cache_key(
            [
                "c-compile-1",
                job.language,
                [general(a) for a in plan.argv],
                {k: general(v) for k, v in plan.env.items()},
                sorted([f.name, hashlib.sha256(f.data).hexdigest()] for f in job.files),
                compiler_identity(tc, job.language),
                {path: _stamp(path) for path in _SYSTEM_STAMPS},
                asdict(limits),
                caps.bwrap is not None,
                pch_digest,
            ]
        )


def _outputs(workdir: str, job: Job) -> list[FileImage] | None:
    """The files the compile wrote (regular files that are not the job's own, unchanged, inputs); None when the
    directory holds something that cannot be read as a plain file (then nothing is stored)."""
    inputs = {f.name: f.data for f in job.files}
    out: list[FileImage] = []
    try:
        for folder, _, names in os.walk(workdir):
            for name in names:
                path = os.path.join(folder, name)
                rel = os.path.relpath(path, workdir)
                fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
                with os.fdopen(fd, "rb") as f:
                    info = os.fstat(f.fileno())
                    if not stat.S_ISREG(info.st_mode):
                        return None
                    data = f.read()
                if inputs.get(rel) != data:
                    out.append((rel, data, info.st_mode & 0o777))
    except OSError:
        return None
    return sorted(out)


def _write_outputs(workdir: str, files: Sequence[FileImage], owner: int | None) -> None:
    """Copy a hit's files into the run's work directory, owned by the run's uid."""
    for name, data, mode in files:
        path = os.path.join(workdir, name)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            if owner is not None and owner != os.geteuid():
                os.fchown(f.fileno(), owner, owner)
            os.fchmod(f.fileno(), mode & 0o755)


def sandboxed_builder(engine: LocalEngine) -> _pch.Builder:
    """How the engine builds a PCH: in the compile stage's sandbox, as one of its uids, in a large work dir."""

    def build(tc: Toolchain, language: str, header: str, output: str) -> bytes | None:
        with engine.run_caps() as caps:
            work = _workdir.WorkDir(engine.workroot, size=PCH_WORKDIR_SIZE, owner=caps.sandbox_uid)
            try:
                plan = pch_build_plan(tc, language, header, output, caps.inner_workdir(work.path))
                stage = run_stage(
                    caps, plan.argv, env=plan.env, workdir=work.path, stdin=b"", roots=tc.roots, limits=PCH_LIMITS
                )
                if stage_failed(stage):
                    return None
                with contextlib.suppress(OSError):
                    fd = os.open(os.path.join(work.path, output), os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
                    with os.fdopen(fd, "rb") as f:
                        if stat.S_ISREG(os.fstat(f.fileno()).st_mode):
                            return f.read()
                return None
            finally:
                work.remove()

    return build
