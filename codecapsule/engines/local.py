"""LocalEngine: compile and run programs on this machine, each in a fresh work directory inside a sandbox.

Isolation is the best the machine allows (see ``_sandbox``) and :meth:`LocalEngine.info` says plainly which
one that is. Nothing is left behind: the work directory is removed and every process of the run killed.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from .._errors import EngineError
from .._jobs import Job, Limits
from .._results import Result
from .._verdicts import judge
from ._python_boot import split_compile_outcome
from ._sandbox import SandboxCaps, StageLimits, run_stage
from ._toolchains import RESERVES_ADDRESS_SPACE, Toolchain, compile_plan, find, program_stdin, run_plan
from .base import EngineInfo

if TYPE_CHECKING:
    from ._compiled import CompiledArtifact

#: What the local engine applies where a job leaves a limit unset.
DEFAULT_LIMITS = Limits(
    compile_timeout=30.0,
    run_timeout=5.0,
    compile_cpu_time=30.0,
    run_cpu_time=5.0,
    memory=512 * 1024 * 1024,
    compile_memory=1024 * 1024 * 1024,
    processes=64,
    output=1024 * 1024,
    file_size=16 * 1024 * 1024,
)


def _env_flag(name: str) -> bool:
    return os.environ.get(name, "1").strip().lower() not in ("0", "false", "no", "off")


class LocalEngine:
    """Runs Python, JavaScript, Java, C and C++ locally. Thread-safe; toolchains are looked up once each.

    ``bwrap=False`` / ``cgroups=False`` (or ``CODECAPSULE_BWRAP=0`` / ``CODECAPSULE_CGROUPS=0``) turn isolation
    layers off — for trusted code or machines where they misbehave; :meth:`info` always reports what is in force.
    """

    name = "local"

    def __init__(
        self,
        *,
        defaults: Limits = DEFAULT_LIMITS,
        workroot: str | None = None,
        bwrap: bool | None = None,
        cgroups: bool | None = None,
    ) -> None:
        self.defaults = defaults
        self.workroot = workroot
        self.caps = SandboxCaps.detect(
            use_bwrap=_env_flag("CODECAPSULE_BWRAP") if bwrap is None else bwrap,
            use_cgroups=_env_flag("CODECAPSULE_CGROUPS") if cgroups is None else cgroups,
        )
        self._toolchains: dict[str, Toolchain] = {}
        self._lock = threading.Lock()

    def toolchain(self, language: str) -> Toolchain:
        with self._lock:
            tc = self._toolchains.get(language)
        if tc is None:
            tc = find(language)  # raises ToolchainMissing with the package to install
            with self._lock:
                self._toolchains[language] = tc
        return tc

    def run(self, job: Job) -> Result:
        if job.lang.sql:
            raise EngineError("SQL runs in the DuckDB engine, not the local engine.")
        tc = self.toolchain(job.language)
        limits = job.limits.over(self.defaults)
        workdir = tempfile.mkdtemp(prefix="codecapsule-", dir=self.workroot)
        try:
            self._write_files(job, workdir)
            compiled = None
            inner = self.caps.inner_workdir(workdir)
            plan = compile_plan(tc, job, inner)
            if plan is not None:
                assert limits.compile_timeout is not None and limits.output is not None
                compiled = run_stage(
                    self.caps,
                    plan.argv,
                    env=plan.env,
                    workdir=workdir,
                    stdin=b"",
                    roots=tc.roots,
                    limits=StageLimits(
                        wall=limits.compile_timeout,
                        cpu=limits.compile_cpu_time,
                        memory=limits.compile_memory,
                        processes=max(limits.processes or 64, 64),
                        output=max(limits.output, 256 * 1024),
                        file_size=None,
                        limit_address_space=job.language != "java",
                    ),
                )
                if compiled.status is not None or compiled.exit_code:
                    return judge(job, engine=self.name, version=tc.version, compile=compiled, run=None, limits=limits)
            runp = run_plan(tc, job, inner, limits.memory)
            assert limits.run_timeout is not None and limits.output is not None
            ran = run_stage(
                self.caps,
                runp.argv,
                env=runp.env,
                workdir=workdir,
                stdin=_stdin_bytes(job.stdin),
                roots=tc.roots,
                limits=StageLimits(
                    wall=limits.run_timeout,
                    cpu=limits.run_cpu_time,
                    memory=limits.memory,
                    processes=limits.processes,
                    output=limits.output,
                    file_size=limits.file_size,
                    limit_address_space=job.language not in RESERVES_ADDRESS_SPACE,
                ),
            )
            compiled, run = split_compile_outcome(job.language, compiled, ran)  # a SyntaxError did not compile
            return judge(job, engine=self.name, version=tc.version, compile=compiled, run=run, limits=limits)
        finally:
            _remove_tree(workdir)

    @staticmethod
    def _write_files(job: Job, workdir: str) -> None:
        root = Path(workdir)
        for f in job.files:
            path = root / f.name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(f.data)

    def info(self) -> EngineInfo:
        languages: dict[str, str] = {}
        notes: list[str] = []
        for lang in ("python", "javascript", "java", "c", "c++"):
            try:
                languages[lang] = self.toolchain(lang).version
            except EngineError as exc:
                languages[lang] = "not installed"
                notes.append(str(exc))
        return EngineInfo(
            name=self.name,
            isolation=f"{self.caps.level}: {self.caps.describe()}",
            languages=languages,
            notes=tuple(notes),
        )

    def close(self) -> None:
        pass

    # -- compile once, run many (grading): see _compiled.py ------------------------------------------

    def compile(self, job: Job) -> CompiledArtifact:
        """Compile ``job`` once and keep the result (close it when done); ``artifact.failed`` on a compile error."""
        if job.lang.sql:
            raise EngineError("SQL runs in the DuckDB engine, not the local engine.")
        from ._compiled import compile_job

        return compile_job(self, job)

    def run_compiled(
        self,
        artifact: CompiledArtifact,
        *,
        stdin: str = "",
        args: Sequence[str] = (),
        expect: str | None = None,
        name: str | None = None,
    ) -> Result:
        """Run a compiled program once with this input, in a fresh sandbox and a fresh copy of its files."""
        from ._compiled import run_compiled

        return run_compiled(self, artifact, stdin=stdin, args=args, expect=expect, name=name)


def _stdin_bytes(stdin: str) -> bytes:
    # The one stdin rule both engines follow (as Piston does): input ends with a newline, also when empty.
    return program_stdin(stdin).encode()


def _remove_tree(path: str) -> None:
    def retry_writable(func: Callable[[str], object], p: str, exc_info: object) -> None:
        # a program may have made its files or directories read-only: undo that and retry once
        for target in (os.path.dirname(p), p):
            with contextlib.suppress(OSError):
                os.chmod(target, 0o700)
        with contextlib.suppress(OSError):
            func(p)

    shutil.rmtree(path, onerror=retry_writable)
