"""Compile once, run many: the local engine's entry point for grading a program against many inputs.

:func:`compile_job` writes the job's files into a work directory, runs the compile stage there (none for
interpreted languages) and keeps what the directory then holds — sources and build output — in memory: the
:class:`CompiledArtifact`. :func:`run_compiled` writes those files into a fresh work directory for every run,
so a test never sees what an earlier test wrote, and runs the run stage there with the same sandbox and limits
as :meth:`LocalEngine.run`.
"""

from __future__ import annotations

import contextlib
import importlib
import inspect
import os
import shutil
import stat
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from types import ModuleType
from typing import TYPE_CHECKING, Any

from .._errors import EngineError
from .._jobs import Job, Limits, as_args
from .._results import Result, Stage
from .._verdicts import judge, stage_failed
from ._python_boot import split_compile_outcome
from ._sandbox import StageLimits, run_stage
from ._toolchains import RESERVES_ADDRESS_SPACE, Toolchain, compile_plan, run_plan

if TYPE_CHECKING:
    from .local import LocalEngine


def compile_stage_limits(limits: Limits, language: str) -> StageLimits:
    """The compile stage's limits: compilers get room the student's program does not (threads, output)."""
    assert limits.compile_timeout is not None and limits.output is not None
    return StageLimits(
        wall=limits.compile_timeout,
        cpu=limits.compile_cpu_time,
        memory=limits.compile_memory,
        processes=max(limits.processes or 64, 64),
        output=max(limits.output, 256 * 1024),
        file_size=_local_constant("COMPILE_FILE_SIZE"),
        limit_address_space=language != "java",
    )


def run_stage_limits(limits: Limits, language: str) -> StageLimits:
    """The run stage's limits, as the job asked (engine defaults filled in)."""
    assert limits.run_timeout is not None and limits.output is not None
    return StageLimits(
        wall=limits.run_timeout,
        cpu=limits.run_cpu_time,
        memory=limits.memory,
        processes=limits.processes,
        output=limits.output,
        file_size=limits.file_size,
        limit_address_space=language not in RESERVES_ADDRESS_SPACE,
    )


# -- the engine's work-directory mechanics ------------------------------------------------------------------
# LocalEngine.run owns how a work directory is made (a plain directory, or — in the hardened engine — a tmpfs
# owned by the sandbox's uid, from ``_workdir``) and how a stage is judged. This is the one place that follows
# it, so compile-once runs are sandboxed exactly like ``run``.


def _sibling(name: str) -> ModuleType | None:
    try:
        return importlib.import_module(f"{__package__}.{name}")
    except ImportError:
        return None


def _local_constant(name: str) -> Any:
    local = _sibling("local")
    return getattr(local, name, None) if local is not None else None


def _heap_hint(engine: LocalEngine, memory: int | None) -> int | None:
    hint: Callable[[int | None, Any], int | None] | None = _local_constant("_heap_hint")
    return hint(memory, engine.caps) if hint is not None else memory


def _judge_options(engine: LocalEngine) -> dict[str, Any]:
    if "memory_from_text" in inspect.signature(judge).parameters:
        return {"memory_from_text": engine.caps.cgroups is None}
    return {}


# (relative name, content, permission bits)
FileImage = tuple[str, bytes, int]


class _Work:
    """One run's work directory, made the way the engine makes them."""

    def __init__(self, engine: LocalEngine) -> None:
        workdir = _sibling("_workdir")
        self._impl: Any = None
        if workdir is not None:
            self._impl = workdir.WorkDir(
                engine.workroot,
                size=getattr(engine, "workdir_size", None),
                owner=getattr(engine.caps, "sandbox_uid", None),
            )
            self.path: str = self._impl.path
        else:
            self.path = tempfile.mkdtemp(prefix="codecapsule-", dir=engine.workroot)

    def write(self, files: Sequence[FileImage]) -> None:
        if self._impl is not None:
            self._impl.write((name, data) for name, data, _ in files)
        else:
            for name, data, _ in files:
                target = os.path.join(self.path, name)
                os.makedirs(os.path.dirname(target), exist_ok=True)
                with open(target, "wb") as f:
                    f.write(data)
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
        if self._impl is not None:
            self._impl.remove()
            return

        def writable(func: Callable[[str], object], p: str, exc_info: object) -> None:
            for target in (os.path.dirname(p), p):  # a program may have made its files read-only
                with contextlib.suppress(OSError):
                    os.chmod(target, 0o700)
            with contextlib.suppress(OSError):
                func(p)

        shutil.rmtree(self.path, onerror=writable)


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
    work = _Work(engine)
    try:
        work.write([(f.name, f.data, 0o644) for f in job.files])
        plan = compile_plan(tc, job, engine.caps.inner_workdir(work.path))
        if plan is not None:
            artifact.compile = run_stage(
                engine.caps,
                plan.argv,
                env=plan.env,
                workdir=work.path,
                stdin=b"",
                roots=tc.roots,
                limits=compile_stage_limits(limits, job.language),
            )
            if stage_failed(artifact.compile):
                artifact.result = judge(
                    job,
                    engine=engine.name,
                    version=tc.version,
                    compile=artifact.compile,
                    run=None,
                    limits=limits,
                    **_judge_options(engine),
                )
                return artifact
        artifact.files = work.snapshot()
        return artifact
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
    from .local import _stdin_bytes

    if artifact.result is not None:
        return replace(artifact.result, name=name, expected=expect)
    if artifact.closed:
        raise EngineError("this CompiledArtifact is closed: compile the job again with LocalEngine.compile(job).")
    job = replace(artifact.job, stdin=stdin, args=as_args(args), expect=expect, name=name)
    work = _Work(engine)
    try:
        work.write(artifact.files)
        plan = run_plan(
            artifact.toolchain, job, engine.caps.inner_workdir(work.path), _heap_hint(engine, artifact.limits.memory)
        )
        ran = run_stage(
            engine.caps,
            plan.argv,
            env=plan.env,
            workdir=work.path,
            stdin=_stdin_bytes(stdin),
            roots=artifact.toolchain.roots,
            limits=run_stage_limits(artifact.limits, job.language),
        )
        compiled, run = split_compile_outcome(job.language, artifact.compile, ran)  # a SyntaxError did not compile
        return judge(
            job,
            engine=engine.name,
            version=artifact.toolchain.version,
            compile=compiled,
            run=run,
            limits=artifact.limits,
            **_judge_options(engine),
        )
    finally:
        work.remove()
