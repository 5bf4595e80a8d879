"""Compile once, run many: the local engine's entry point for grading a program against many inputs.

:func:`compile_job` writes the job's files into a work directory, runs the compile stage there (none for
interpreted languages) and keeps what the directory then holds — sources and build output — in memory: the
:class:`CompiledArtifact`. :func:`run_compiled` writes those files into a fresh work directory for every run,
so a test never sees what an earlier test wrote, and runs the run stage there with the same sandbox and limits
as :meth:`LocalEngine.run`.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

from .._errors import EngineError
from .._jobs import Job, Limits, as_args
from .._results import Result, Stage
from .._verdicts import stage_failed
from . import _workdir
from ._sandbox import SandboxCaps
from ._toolchains import Toolchain
from .local import LocalEngine

# (relative name, content, permission bits)
FileImage = tuple[str, bytes, int]


class _Work:
    """A run's work directory (``LocalEngine.work_dir`` or a prepared sandbox's), in file images: written with
    their permission bits, and read back after a compile."""

    def __init__(self, workdir: _workdir.WorkDir) -> None:
        self._dir = workdir
        self.path = workdir.path

    def write(self, files: Sequence[FileImage]) -> None:
        self._dir.write((name, data) for name, data, _ in files)
        for name, _, mode in files:
            if mode & 0o111:  # the compiled executable
                os.chmod(os.path.join(self.path, name), mode & 0o755)

    def snapshot(self) -> list[FileImage]:
        """Every regular file now in the directory (links and special files are not kept)."""
        out: list[FileImage] = []
        for folder, _, names in os.walk(self.path):
            for name in names:
                path = os.path.join(folder, name)
                info = os.lstat(path)
                if stat.S_ISREG(info.st_mode):
                    with open(path, "rb") as f:
                        out.append((os.path.relpath(path, self.path), f.read(), stat.S_IMODE(info.st_mode)))
        return sorted(out)

    def remove(self) -> None:
        self._dir.remove()


# -- compile once, run many ---------------------------------------------------------------------------------


@dataclass
class CompiledArtifact:
    """A compiled program: the files its work directory held after the compile stage. :attr:`failed`, with
    :attr:`result` the compile error, when it did not build. Close it (or use it as a context manager) to drop it."""

    job: Job
    toolchain: Toolchain
    limits: Limits  # the job's limits with the engine's defaults filled in
    compile: Stage | None  # None for interpreted languages
    result: Result | None = None  # the compile_error Result when the build failed
    files: list[FileImage] = field(default_factory=list, repr=False)
    closed: bool = False

    @property
    def failed(self) -> bool:
        return self.result is not None

    def close(self) -> None:
        self.files = []
        self.closed = True

    def __enter__(self) -> CompiledArtifact:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def compile_job(engine: LocalEngine, job: Job) -> CompiledArtifact:
    """Write the job's files and run its compile stage once (the job's stdin and args are not used)."""
    tc = engine.toolchain(job.language)
    limits = job.limits.over(engine.defaults)
    artifact = CompiledArtifact(job, tc, limits, compile=None)
    with engine.run_caps() as caps:
        _compile_into(artifact, engine, caps)
    return artifact


def _compile_into(artifact: CompiledArtifact, engine: LocalEngine, caps: SandboxCaps) -> None:
    job, tc, limits = artifact.job, artifact.toolchain, artifact.limits
    work = _Work(engine.work_dir(caps))
    try:
        work.write([(f.name, f.data, 0o644) for f in job.files])
        artifact.compile = engine.compile_stage(job, tc, limits, caps, work.path)
        if artifact.compile is not None and stage_failed(artifact.compile):
            artifact.result = engine.judge_stages(job, tc, limits, caps, artifact.compile, None)
            return
        artifact.files = work.snapshot()
    finally:
        work.remove()


def run_compiled(
    engine: LocalEngine,
    artifact: CompiledArtifact,
    *,
    stdin: str = "",
    args: Sequence[str] = (),
    expect: str | None = None,
    name: str | None = None,
) -> Result:
    """Run the compiled program once with this input, in a fresh work directory and sandbox."""
    if artifact.result is not None:
        return replace(artifact.result, name=name, expected=expect)
    if artifact.closed:
        raise EngineError("this CompiledArtifact is closed: compile the job again with LocalEngine.compile(job).")
    job = replace(artifact.job, stdin=stdin, args=as_args(args), expect=expect, name=name)
    # a sandbox prepared ahead where one is ready, as for LocalEngine.run (its work directory and uid are the run's)
    with engine.run_place(artifact.toolchain, job, compiles=False) as (caps, workdir, primed):
        _Work(workdir).write(artifact.files)
        return engine.run_program(
            job, artifact.toolchain, artifact.limits, caps, workdir.path, artifact.compile, primed=primed
        )
