"""LocalEngine: compile and run programs on this machine, each in a fresh work directory inside a sandbox.

Isolation is the best the machine allows (see ``_sandbox``) and :meth:`LocalEngine.info` says plainly which
one that is. Nothing is left behind: the work directory is removed and every process of the run killed.
"""

from __future__ import annotations

import contextlib
import os
import threading
import weakref
from collections.abc import Iterator, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Literal

from .._errors import ConfigurationError, EngineError
from .._jobs import Job, Limits
from .._results import Result, Stage
from .._settings import local_cache_dir, local_cache_size
from .._verdicts import internal_error, judge, stage_failed
from . import _cgroups, _uids, _workdir
from ._primed import READY_MAX as _PRIMED_READY
from ._python_boot import COMPILED, SYNTAX, split_compile_outcome
from ._sandbox import SandboxCaps, StageLimits, StageSink, run_stage
from ._toolchains import COMPILE_PROFILE, RESERVES_ADDRESS_SPACE, Toolchain, compile_plan, find, program_stdin, run_plan
from .base import EngineInfo

if TYPE_CHECKING:
    from ._compiled import CompiledArtifact
    from ._javac_server import WarmJavac
    from ._live import AsyncLiveRun, LiveIO, LiveRun, Producer, StageOutput
    from ._live_stdin import LiveStdin
    from ._primed import Primed, PrimedPool
    from ._warm_compile import WarmCompiler

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

#: Total size of a run's work directory (both stages) where it can be a tmpfs (as root).
WORKDIR_SIZE = 128 * 1024 * 1024
#: The largest file the compile stage may write (an object file or executable).
COMPILE_FILE_SIZE = 64 * 1024 * 1024


def _env_flag(name: str) -> bool:
    return os.environ.get(name, "1").strip().lower() not in ("0", "false", "no", "off")


class LocalEngine:
    """Runs Python, JavaScript, Java, C and C++ locally. Thread-safe; toolchains are looked up once each.

    ``bwrap=False`` / ``cgroups=False`` (or ``CODECAPSULE_BWRAP=0`` / ``CODECAPSULE_CGROUPS=0``) turn isolation
    layers off — for trusted code or machines where they misbehave; :meth:`info` always reports what is in force.
    ``standby=False`` (or ``CODECAPSULE_STANDBY=0``) starts every stage cold instead of through a launcher
    prepared ahead inside its cgroup (see ``_standby``; same isolation and results, slower start), and prepares
    no sandboxes ahead; ``primed=False`` keeps the launchers but prepares no sandboxes ahead (``_primed``: the
    next run's bubblewrap already up, its work directory and uid with it).
    ``cgroup_parent`` (or ``CODECAPSULE_CGROUP_PARENT``) names the cgroup, delegated to this user, under which runs
    get their groups (a path as in /proc/self/cgroup); by default a normal user's delegated subtree is found.
    ``warm=False`` (``CODECAPSULE_WARM=0``, ``Settings.warm``) turns the warm paths off: every job compiles cold.
    ``cache_dir`` / ``compile_cache_size`` (``CODECAPSULE_CACHE_DIR`` / ``CODECAPSULE_COMPILE_CACHE_SIZE``) place
    the engine's cache (the C/C++ compile cache and precompiled headers, the warm javac's classes, the run JVM's
    CDS archive) and bound the compile cache.
    """

    name = "local"

    def __init__(
        self,
        *,
        defaults: Limits = DEFAULT_LIMITS,
        workroot: str | None = None,
        bwrap: bool | None = None,
        cgroups: bool | None = None,
        cgroup_parent: str | None = None,
        workdir_size: int = WORKDIR_SIZE,
        standby: bool | None = None,
        primed: bool = True,
        warm: bool | None = None,
        cache_dir: str | None = None,
        compile_cache_size: int | None = None,
    ) -> None:
        self.defaults = defaults
        #: the warm paths (a javac that stays up, CDS, PCH, compile cache); None = ``CODECAPSULE_WARM`` (default on)
        self.warm = _env_flag("CODECAPSULE_WARM") if warm is None else warm
        #: the engine's cache directory (compile cache, PCH, javac server classes, CDS archive) and the compile
        #: cache's bound (see _warm_compile, _cache_dir)
        self.cache_dir = cache_dir or local_cache_dir()
        self.compile_cache_size = compile_cache_size if compile_cache_size is not None else local_cache_size()
        self._warm_compiler: WarmCompiler | Literal[False] | None = None
        self.workroot = workroot
        self.workdir_size = workdir_size
        use_cgroups = _env_flag("CODECAPSULE_CGROUPS") if cgroups is None else cgroups
        parent = cgroup_parent if cgroup_parent is not None else os.environ.get("CODECAPSULE_CGROUP_PARENT") or None
        self.caps = SandboxCaps.detect(
            use_bwrap=_env_flag("CODECAPSULE_BWRAP") if bwrap is None else bwrap,
            use_cgroups=use_cgroups,
            cgroup_parent=parent,
            # the compiled PID 1 is the machine's, like the sandbox itself (not this engine's cache_dir); warm off:
            # nothing is built, perl's PID 1
            cache_dir=local_cache_dir() if self.warm else None,
        )
        # launchers prepared ahead inside their cgroup (_standby): off only to measure or rule them out
        self.caps = replace(self.caps, standby=_env_flag("CODECAPSULE_STANDBY") if standby is None else standby)
        #: whether runs take sandboxes prepared ahead (``_primed``; needs the standbys and the compiled PID 1)
        self.primed = primed and self.caps.uses_standby and self.caps.init is not None
        if use_cgroups and parent is not None and self.caps.cgroups is None:
            raise ConfigurationError(
                f"cannot create run cgroups under {parent!r} (CODECAPSULE_CGROUP_PARENT / cgroup_parent): it must be "
                "a cgroup delegated to this user (owned by them, with the memory and pids controllers); "
                "fix its ownership, or unset it to run without per-run cgroups."
            )
        if self.caps.sandbox_uid is not None and workroot is not None and not _workdir.reachable_by_others(workroot):
            raise ConfigurationError(
                f"workroot {workroot!r} cannot be reached by the sandbox's unprivileged uids "
                "(a parent directory lacks o+x): choose a directory such as /tmp, or leave workroot unset."
            )
        # what a host process killed mid-run left behind: its work directories (tmpfs mounts) and cgroups
        _workdir.sweep(workroot)
        if self.caps.cgroups is not None:
            _cgroups.sweep(self.caps.cgroups)
        self._uids = _uids.UidPool()
        self._toolchains: dict[str, Toolchain] = {}
        self._lock = threading.Lock()
        self._warm_javac: WarmJavac | None = None
        # sandboxes prepared ahead (_primed), by their run stage's roots and whether they hold a compile slot
        self._primed: dict[tuple[tuple[str, ...], bool], PrimedPool] = {}
        if self.primed:  # an engine dropped without close(): its waiting sandboxes (groups, tmpfs, uids) go too
            from ._primed import close_pools

            weakref.finalize(self, close_pools, self._primed)

    @property
    def warm_javac(self) -> WarmJavac | None:
        """The warm javac (``_javac_server``): None with ``warm=False`` or where the sandbox cannot hold one.
        ``warm_javac.pid`` is its running JVM's host pid."""
        if not self.warm or self._warm_javac is not None:
            return self._warm_javac
        from ._javac_server import WarmJavac

        with self._lock:
            if self._warm_javac is None and self._javac_possible():
                self._warm_javac = WarmJavac(self._uids, self.workroot, self.workdir_size, self.cache_dir)
                weakref.finalize(self, self._warm_javac.close)  # an engine dropped without close()
        return self._warm_javac

    def toolchain(self, language: str) -> Toolchain:
        with self._lock:
            tc = self._toolchains.get(language)
        if tc is None:
            tc = find(language)  # raises ToolchainMissing with the package to install
            with self._lock:
                self._toolchains[language] = tc
        return tc

    @contextlib.contextmanager
    def run_caps(self) -> Iterator[SandboxCaps]:
        """The sandbox for one run: as root, with its own unprivileged host uid, held until the block ends."""
        if self.caps.sandbox_uid is None:
            yield self.caps
            return
        with self._uids.take() as uid:
            yield replace(self.caps, sandbox_uid=uid)

    @contextlib.contextmanager
    def run_place(
        self, tc: Toolchain, job: Job, *, compiles: bool = True
    ) -> Iterator[tuple[SandboxCaps, _workdir.WorkDir, Primed | None]]:
        """A run's sandbox settings, work directory and, where one is ready, the sandbox prepared ahead for its run
        stage (``_primed``: the work directory and uid are then that sandbox's); all released when the block ends.
        ``compiles=False``: the run has no compile stage (a program compiled before, ``_compiled``)."""
        # a compiled language's compile stage may start in it too, in a slot of its own (the same roots: no
        # precompiled header, not the warm javac)
        with_slot = compiles and job.lang.compiled and not (job.language == "java" and self.warm)
        pool = self._primed_pool(self.run_roots(tc, job.language), with_slot)
        primed = pool.take() if pool is not None else None
        if primed is not None:
            try:
                yield primed.caps, primed.work, primed
            finally:
                primed.finished()
            return
        with self.run_caps() as caps:
            work = self.work_dir(caps)
            try:
                yield caps, work, None
            finally:
                work.remove()

    def work_dir(self, caps: SandboxCaps) -> _workdir.WorkDir:
        """A new work directory for a run with these sandbox settings (a tmpfs owned by its uid, as root)."""
        return _workdir.WorkDir(self.workroot, size=self.workdir_size, owner=caps.sandbox_uid)

    def _primed_pool(self, roots: tuple[str, ...], compiles: bool) -> PrimedPool | None:
        """The pool of sandboxes prepared ahead for stages with these roots, or None where none can be: they
        need what standbys need (bubblewrap, cgroups, perl) and the compiled PID 1."""
        if not self.primed:
            return None
        with self._lock:
            pool = self._primed.get((roots, compiles))
            if pool is None:
                from ._primed import PrimedPool

                pool = PrimedPool(self.caps, roots, compiles, self._uids, self.workroot, self.workdir_size)
                self._primed[roots, compiles] = pool
            return pool

    def run_roots(self, tc: Toolchain, language: str) -> tuple[str, ...]:
        """The read-only roots the run stage binds besides the system's: the toolchain's, and the CDS archive's."""
        extra = _jvm_options(tc, self.cache_dir)[1] if self.warm and language == "java" else ()
        return (*tc.roots, *extra)

    def run(self, job: Job) -> Result:
        if job.lang.sql:
            raise EngineError("SQL runs in the DuckDB engine, not the local engine.")
        tc = self.toolchain(job.language)
        limits = job.limits.over(self.defaults)
        with self.run_place(tc, job) as place:
            return self._run(job, tc, limits, *place)

    def stream(self, job: Job, *, interactive: bool = False) -> LiveRun:
        """Run ``job`` live: its events as they happen (see ``_events``); ``cancel()`` kills every process of the
        run the way a time limit does and ends the stream with verdict interrupted and the output so far.
        ``interactive``: the program's stdin is a pipe — the job's ``stdin=`` text first, then what ``send()``
        gives as it arrives; ``close_stdin()`` ends it (the program reads EOF). ``InputWanted("run")`` comes when
        the program is blocked reading it (measured in /proc, see ``_stdin_wait``). Without a ``run_timeout`` the
        run may take ``INTERACTIVE_RUN_TIMEOUT`` (someone is typing)."""
        from ._live import LiveRun

        return LiveRun(
            self._producer(job, interactive), lambda exc: internal_error(job, self.name, exc), interactive=interactive
        )

    def astream(self, job: Job, *, interactive: bool = False) -> AsyncLiveRun:
        """:meth:`stream` for asyncio (the same run on a thread, its events handed to the event loop)."""
        from ._live import AsyncLiveRun

        return AsyncLiveRun(
            self._producer(job, interactive), lambda exc: internal_error(job, self.name, exc), interactive=interactive
        )

    def _producer(self, job: Job, interactive: bool) -> Producer:
        if job.lang.sql:
            raise EngineError("SQL runs in the DuckDB engine, not the local engine.")
        tc = self.toolchain(job.language)  # a missing toolchain raises here, before any thread starts
        if interactive:
            from ._live import interactive_limits

            limits = interactive_limits(job.limits).over(self.defaults)
        else:
            limits = job.limits.over(self.defaults)

        def producer(io: LiveIO) -> Result:
            with self.run_place(tc, job) as place:
                return self._run(job, tc, limits, *place, live=io, interactive=interactive)

        return producer

    def _run(
        self,
        job: Job,
        tc: Toolchain,
        limits: Limits,
        caps: SandboxCaps,
        work: _workdir.WorkDir,
        primed: Primed | None,
        *,
        live: LiveIO | None = None,
        interactive: bool = False,
    ) -> Result:
        work.write((f.name, f.data) for f in job.files)
        compiled = self.compile_stage(job, tc, limits, caps, work.path, live=live, primed=primed)
        if primed is not None:
            primed.compile_done()
        if compiled is not None and stage_failed(compiled):
            return self.judge_stages(job, tc, limits, caps, compiled, None)
        return self.run_program(
            job, tc, limits, caps, work.path, compiled, live=live, interactive=interactive, primed=primed
        )

    # The two stages and the verdict, shared by run() and compile-once runs (_compiled.py).

    def compile_stage(
        self,
        job: Job,
        tc: Toolchain,
        limits: Limits,
        caps: SandboxCaps,
        workdir: str,
        *,
        live: LiveIO | None = None,
        primed: Primed | None = None,
    ) -> Stage | None:
        """Compile the files in ``workdir`` (None for interpreted languages); ``primed``: the run's sandbox
        prepared ahead, used if the compile's sandbox is exactly it (``run_stage``)."""
        plan = compile_plan(tc, job, caps.inner_workdir(workdir))
        if plan is None:
            return None
        stage_limits = compile_stage_limits(limits, job.language)

        def run(argv: list[str], roots: tuple[str, ...], sink: StageSink | None) -> Stage:
            return run_stage(
                caps, argv, env=plan.env, workdir=workdir, stdin=b"", roots=tc.roots + roots, limits=stage_limits,
                sink=sink, primed=primed, compile=True,
            )  # fmt: skip

        warm = self.warm_compiler(caps) if job.language in COMPILE_PROFILE else None
        with _live_stage(live, "compile") as sink:
            if warm is not None:
                return warm.compile(job, tc, caps, plan, stage_limits, workdir, run, sink)
            javac = self.warm_javac if job.language == "java" else None
            compiled = javac.compile(tc, plan.sources, caps, workdir, stage_limits, sink) if javac is not None else None
            if compiled is not None:  # else: compile cold (no server, or it could not be trusted with this job)
                return compiled
            return run(plan.argv, (), sink)

    def warm_compiler(self, caps: SandboxCaps) -> WarmCompiler | None:
        """The C/C++ compile cache and PCH store, or None: warm off, a run could reach them, or no usable dir."""
        from ._warm_compile import WarmCompiler, sandboxed_builder, usable

        if not self.warm or not usable(caps):
            return None
        with self._lock:
            if self._warm_compiler is None:
                try:
                    self._warm_compiler = WarmCompiler(self.cache_dir, self.compile_cache_size, sandboxed_builder(self))
                except OSError:
                    self._warm_compiler = False  # a cache dir we cannot create or own: compile cold
            return self._warm_compiler or None

    def run_program(
        self,
        job: Job,
        tc: Toolchain,
        limits: Limits,
        caps: SandboxCaps,
        workdir: str,
        compiled: Stage | None,
        *,
        live: LiveIO | None = None,
        interactive: bool = False,
        primed: Primed | None = None,
    ) -> Result:
        """Run the program in ``workdir`` (already compiled) with the job's stdin and args, and judge it;
        ``interactive`` (a live run): its stdin is fed from ``live`` as the input arrives. ``primed``: as for
        ``compile_stage``."""
        jvm_extra, extra_roots = _jvm_options(tc, self.cache_dir) if self.warm and job.language == "java" else ((), ())
        plan = run_plan(tc, job, caps.inner_workdir(workdir), _heap_hint(limits.memory, caps), jvm_extra)
        with (
            _live_stage(live, "run", python=job.language == "python") as sink,
            _stage_stdin(job, live if interactive else None) as stdin,
        ):
            ran = run_stage(
                caps,
                plan.argv,
                env=plan.env,
                workdir=workdir,
                stdin=stdin,
                roots=(*tc.roots, *extra_roots),
                limits=run_stage_limits(limits, job.language),
                sink=sink,
                primed=primed,
            )
        compiled, run = split_compile_outcome(job.language, compiled, ran)  # a SyntaxError did not compile
        return self.judge_stages(job, tc, limits, caps, compiled, run)

    def judge_stages(
        self, job: Job, tc: Toolchain, limits: Limits, caps: SandboxCaps, compiled: Stage | None, run: Stage | None
    ) -> Result:
        # facts the sandbox measures: with a memory cgroup, memory_limit comes from its OOM events only
        return judge(
            job, engine=self.name, version=tc.version, compile=compiled, run=run, limits=limits,
            memory_from_text=caps.cgroups is None,
        )  # fmt: skip

    def info(self) -> EngineInfo:
        languages: dict[str, str] = {}
        notes: list[str] = []
        for lang in ("python", "javascript", "java", "c", "c++"):
            try:
                languages[lang] = self.toolchain(lang).version
            except EngineError as exc:
                languages[lang] = "not installed"
                notes.append(str(exc))
        facts = self.caps.facts()
        facts["c/c++ compile cache"] = self._warm_fact()
        if self.caps.root and self.workdir_size:
            facts["disk"] += f", {self.workdir_size // (1024 * 1024)} MiB per run"
        facts["warm"] = _WARM_FACTS[(self.warm, self.warm and self._javac_possible())]
        if self.primed:
            facts["launch"] = (
                "each run's sandboxes are prepared ahead (bubblewrap up, waiting for the stage; a compiled "
                "language's compile stage in a slot of its own inside the run's, with its own cgroup), with its work "
                f"directory and uid; at most {_PRIMED_READY} runs' worth wait per language (CODECAPSULE_STANDBY=0: "
                "cold)"
            )
        return EngineInfo(
            name=self.name,
            isolation=f"{self.caps.level}: {self.caps.describe()}",
            languages=languages,
            notes=tuple(notes) + tuple(f"{k}: {v}" for k, v in facts.items()),
        )

    def _javac_possible(self) -> bool:
        """Whether this sandbox can hold a warm javac (asked without making one: info() starts nothing)."""
        from ._javac_server import WarmJavac

        return WarmJavac.usable(self.caps)

    def _warm_fact(self) -> str:
        if not self.warm:
            return "off (warm=False / CODECAPSULE_WARM=0)"
        from ._warm_compile import usable

        if not usable(self.caps):
            return "off (a program could reach it: no bubblewrap and no separate uid), every compile is cold"
        if self._warm_compiler is False:
            return (
                f"off ({self.cache_dir} cannot be created, is not owned by this user only, or is where sandboxes "
                "see it), every compile is cold"
            )
        size = self.compile_cache_size // (1024 * 1024)
        return f"{self.cache_dir} (at most {size} MiB; precompiled <bits/stdc++.h> under pch/)"

    def close(self) -> None:
        """Stop the warm javac's server (if one runs) and the sandboxes prepared ahead; the engine stays usable (a
        later job starts another server and prepares new sandboxes)."""
        if self._warm_javac is not None:
            self._warm_javac.close()
        with self._lock:
            pools = list(self._primed.values())
            self._primed.clear()  # in place: the finalizer holds this dict
        for pool in pools:
            pool.close()

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


def compile_stage_limits(limits: Limits, language: str) -> StageLimits:
    """The compile stage's limits (``limits`` with the engine's defaults filled in): compilers get room the
    student's program does not (processes, output, a large object file)."""
    assert limits.compile_timeout is not None and limits.output is not None
    return StageLimits(
        wall=limits.compile_timeout,
        cpu=limits.compile_cpu_time,
        memory=limits.compile_memory,
        processes=max(limits.processes or 64, 64),
        output=max(limits.output, 256 * 1024),
        file_size=max(limits.file_size or 0, COMPILE_FILE_SIZE),
        limit_address_space=language != "java",
    )


def run_stage_limits(limits: Limits, language: str) -> StageLimits:
    """The run stage's limits, as the job asked (``limits`` with the engine's defaults filled in)."""
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


@contextlib.contextmanager
def _live_stage(
    live: LiveIO | None, stage: Literal["compile", "run"], *, python: bool = False
) -> Iterator[StageOutput | None]:
    """A live run's stage: announced, its output streamed, a character cut at the end flushed (None otherwise)."""
    if live is None:
        yield None
        return
    # a Python run starts with its bootstrap's compile check: its first stderr line says which stage it was
    sink = live.stage_sink(stage, _PYTHON_STAGE_MARKERS if python and stage == "run" else None)
    yield sink
    sink.flush()


_PYTHON_STAGE_MARKERS: dict[bytes, Literal["compile", "run"]] = {COMPILED.encode(): "run", SYNTAX.encode(): "compile"}


@contextlib.contextmanager
def _stage_stdin(job: Job, live: LiveIO | None) -> Iterator[bytes | LiveStdin]:
    """The run stage's input: the job's stdin, or (interactive) a pipe fed as the input arrives."""
    if live is None:
        # The one stdin rule both engines follow (as Piston does): input ends with a newline, also when empty.
        yield program_stdin(job.stdin).encode()
        return
    from ._live_stdin import LiveStdin

    # typed input is sent as it is, as on Piston's live path: the job's own text gets no newline added
    feed = LiveStdin(live, job.stdin.encode())
    try:
        yield feed
    finally:
        feed.close()


# what ``info()`` says of the warm paths, by (warm on, a javac server possible in this sandbox)
_WARM_FACTS = {
    (True, True): "Java compiles in a javac server kept up in the sandbox (a cold javac when it cannot be trusted); "
    "Java runs map a CDS archive where one could be built (CODECAPSULE_WARM=0: all cold)",
    (True, False): "Java compiles cold (a javac server needs bubblewrap and cgroups); Java runs map a CDS archive",
    (False, False): "off (CODECAPSULE_WARM=0): every job compiles and starts cold",
}


def _jvm_options(tc: Toolchain, cache_dir: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
    from ._jvm_fast import run_options  # the CDS archive: built on first use, once per machine

    return run_options(tc, cache_dir)


def _heap_hint(memory: int | None, caps: SandboxCaps) -> int | None:
    """The memory figure the JVM/Node heap flags are derived from (60% of it). Under a memory cgroup the heap may
    grow past the limit (twice it), so a heap bomb meets the cgroup's OOM killer (a measured memory_limit) rather
    than the runtime's own out-of-memory message, which a program could print as well."""
    if memory is None or caps.cgroups is None:
        return memory
    return memory * 10 // 3
