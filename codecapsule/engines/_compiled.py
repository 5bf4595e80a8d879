"""Compile once, run many: the local engine's entry point for grading a program against many inputs.

:func:`compile_job` writes the job's files into a work directory and runs the compile stage there (none for
interpreted languages); the directory is the :class:`CompiledArtifact`. :func:`run_compiled` copies that
directory into a fresh one for every run, so a test can never see what an earlier test wrote, and runs the
run stage there with the same sandbox and limits as :meth:`LocalEngine.run`.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from .._errors import EngineError
from .._jobs import Job, Limits, as_args
from .._results import Result, Stage
from .._verdicts import judge, stage_failed
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
        file_size=None,
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


@dataclass
class CompiledArtifact:
    """A compiled program kept on disk: its sources and build output in ``workdir``. Close it when done
    (or use it as a context manager); :attr:`failed` with :attr:`result` the compile error when it did not build."""

    job: Job
    toolchain: Toolchain
    limits: Limits  # the job's limits with the engine's defaults filled in
    workdir: str
    compile: Stage | None  # None for interpreted languages
    result: Result | None = None  # the compile_error Result when the build failed

    @property
    def failed(self) -> bool:
        return self.result is not None

    def close(self) -> None:
        from .local import _remove_tree

        if self.workdir:
            _remove_tree(self.workdir)
            self.workdir = ""

    def __enter__(self) -> CompiledArtifact:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def compile_job(engine: LocalEngine, job: Job) -> CompiledArtifact:
    """Write the job's files and run its compile stage once (the job's stdin and args are not used)."""
    tc = engine.toolchain(job.language)
    limits = job.limits.over(engine.defaults)
    workdir = tempfile.mkdtemp(prefix="codecapsule-build-", dir=engine.workroot)
    artifact = CompiledArtifact(job, tc, limits, workdir, compile=None)
    try:
        engine._write_files(job, workdir)
        plan = compile_plan(tc, job, engine.caps.inner_workdir(workdir))
        if plan is not None:
            artifact.compile = run_stage(
                engine.caps,
                plan.argv,
                env=plan.env,
                workdir=workdir,
                stdin=b"",
                roots=tc.roots,
                limits=compile_stage_limits(limits, job.language),
            )
            if stage_failed(artifact.compile):
                artifact.result = judge(
                    job, engine=engine.name, version=tc.version, compile=artifact.compile, run=None, limits=limits
                )
    except BaseException:
        artifact.close()
        raise
    return artifact


def run_compiled(
    engine: LocalEngine,
    artifact: CompiledArtifact,
    *,
    stdin: str = "",
    args: Sequence[str] = (),
    expect: str | None = None,
    name: str | None = None,
) -> Result:
    """Run the compiled program once with this input, in a fresh copy of its work directory."""
    from .local import _remove_tree, _stdin_bytes

    if artifact.result is not None:
        return replace(artifact.result, name=name, expected=expect)
    if not artifact.workdir:
        raise EngineError("this CompiledArtifact is closed: compile the job again with LocalEngine.compile(job).")
    job = replace(artifact.job, stdin=stdin, args=as_args(args), expect=expect, name=name)
    workdir = tempfile.mkdtemp(prefix="codecapsule-", dir=engine.workroot)
    try:
        shutil.copytree(artifact.workdir, workdir, dirs_exist_ok=True, symlinks=True)
        plan = run_plan(artifact.toolchain, job, engine.caps.inner_workdir(workdir), artifact.limits.memory)
        ran = run_stage(
            engine.caps,
            plan.argv,
            env=plan.env,
            workdir=workdir,
            stdin=_stdin_bytes(stdin),
            roots=artifact.toolchain.roots,
            limits=run_stage_limits(artifact.limits, job.language),
        )
        return judge(
            job,
            engine=engine.name,
            version=artifact.toolchain.version,
            compile=artifact.compile,
            run=ran,
            limits=artifact.limits,
        )
    finally:
        _remove_tree(workdir)
