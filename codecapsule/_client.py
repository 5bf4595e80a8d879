"""Client and AsyncClient: build Jobs, route them to an engine, run batches.

Routing: SQL → DuckDB (one connection per client, state lives across calls); other languages → Piston when a
URL is configured (or ``engine="piston"``), otherwise the sandboxed local engine. The two clients share every
decision (``_ClientCore``); only the I/O differs.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from ._errors import InvalidRequest, NoEndpointConfigured
from ._events import afinal_result
from ._jobs import File, Job, Limits
from ._progress import Progress, make_progress
from ._redact import display_url
from ._results import Result
from ._settings import EngineChoice, Settings
from ._verdicts import error_result, internal_error

if TYPE_CHECKING:
    from ._events import AsyncRunStream, RunStream
    from ._interrupt import RunGroup
    from .engines._live import Producer
    from .engines.base import EngineInfo
    from .engines.duckdb import DuckDBEngine
    from .engines.local import LocalEngine
    from .engines.piston import AsyncPistonEngine, PistonEngine, Runtime

JobLike = Job | Mapping[str, Any]


def to_job(item: JobLike) -> Job:
    """A Job from a Job or a dict of :func:`execute`'s arguments (``{"source": ..., "language": ...}``)."""
    if isinstance(item, Job):
        return item
    if isinstance(item, Mapping):
        kwargs = dict(item)
        try:
            source, language = kwargs.pop("source"), kwargs.pop("language")
        except KeyError as exc:
            raise InvalidRequest(f"a batch item needs 'source' and 'language', missing {exc.args[0]!r}.") from None
        return Job.create(source, language, **kwargs)
    raise InvalidRequest(f"batch items must be Job objects or dicts, not {type(item).__name__}.")


class _ClientCore:
    """Everything the sync and async clients share: settings, job building, routing decisions."""

    def __init__(self, piston_url: str | None = None, *, settings: Settings | None = None, **options: Any) -> None:
        base = settings if settings is not None else Settings.from_env()
        self.settings = base.with_(piston_url=piston_url, **options)
        self._lock = threading.Lock()
        self._duckdb: DuckDBEngine | None = None
        self._local: LocalEngine | None = None

    def __repr__(self) -> str:  # no secrets: Settings' repr hides them
        s = self.settings
        target = display_url(s.piston_url) if s.use_piston and s.piston_url else "local engine"
        return f"<{type(self).__name__} {target}, sql={s.database!r}>"

    def job(
        self,
        source: str,
        language: str,
        *,
        stdin: str = "",
        args: Sequence[str] = (),
        files: Mapping[str, str | bytes] | Iterable[File] | None = None,
        version: str = "*",
        limits: Limits | Mapping[str, Any] | None = None,
        expect: str | None = None,
        timeout: float | str | None = None,
        memory: int | str | None = None,
        name: str | None = None,
    ) -> Job:
        """The Job that :meth:`execute` would run, with the client's default timeout/memory filled in."""
        job = Job.create(
            source,
            language,
            stdin=stdin,
            args=args,
            files=files,
            version=version,
            limits=limits,
            expect=expect,
            timeout=timeout,
            memory=memory,
            name=name,
        )
        return self._with_defaults(job)

    def _with_defaults(self, job: Job) -> Job:
        defaults = Limits(memory=self.settings.memory).with_timeout(self.settings.timeout)
        if defaults == Limits():
            return job
        return Job(
            job.language,
            job.files,
            job.stdin,
            job.args,
            job.version,
            job.limits.over(defaults),
            job.expect,
            job.name,
        )

    @staticmethod
    def _batch(
        jobs: Iterable[JobLike], concurrency: int | None, progress: bool | Progress
    ) -> tuple[list[JobLike], Progress, int]:
        items = list(jobs)
        if concurrency is None:
            concurrency = default_concurrency()
        if concurrency < 1:
            raise InvalidRequest(f"concurrency must be at least 1, not {concurrency}.")
        return items, make_progress(progress, len(items)), concurrency

    def _prepare(self, item: JobLike) -> Job | Result:
        """The Job for a batch item, or an internal_error Result when the item is not a valid job."""
        try:
            return self._with_defaults(to_job(item))
        except Exception as exc:
            return _unbuildable(item, exc)

    def _wants_piston(self, job: Job, engine: EngineChoice | None) -> bool:
        if job.lang.sql:
            if engine == "piston":
                raise InvalidRequest("SQL runs in CodeCapsule's DuckDB engine, not on Piston: drop engine='piston'.")
            return False
        choice = engine or self.settings.engine
        if choice == "local":
            return False
        if choice == "piston" and not self.settings.piston_url:
            raise NoEndpointConfigured(
                "the Piston engine was requested but no URL is configured: set CODECAPSULE_PISTON_URL, pass "
                "Client(piston_url='https://tunnel.example.edu'), or use the local engine (engine='local')."
            )
        return choice == "piston" or (choice == "auto" and self.settings.piston_url is not None)

    # engines are built on first use: no DuckDB import for a client that never runs SQL
    def _duckdb_engine(self) -> DuckDBEngine:
        with self._lock:
            if self._duckdb is None:
                from .engines.duckdb import DuckDBEngine

                s = self.settings
                self._duckdb = DuckDBEngine(
                    database=s.database,
                    read_only=s.database_read_only,
                    sandbox=s.sql_sandbox,
                    memory_limit=s.sql_memory,
                    max_rows=s.max_rows,
                    allowed_directories=s.sql_data,
                )
            return self._duckdb

    def _local_engine(self) -> LocalEngine:
        with self._lock:
            if self._local is None:
                from .engines.local import LocalEngine

                s = self.settings
                self._local = LocalEngine(warm=s.warm, cache_dir=s.cache_dir, compile_cache_size=s.compile_cache_size)
            return self._local

    def engine_for(self, job: Job, engine: EngineChoice | None = None) -> str:
        """Where ``run(job)`` runs it: "duckdb", "piston" or "local"."""
        piston = self._wants_piston(job, engine)  # refuses engine="piston" for SQL
        return "duckdb" if job.lang.sql else "piston" if piston else "local"

    def _stream_route(self, job: Job, engine: EngineChoice | None, interactive: bool) -> str:
        """Where a live run goes (the decision :meth:`run` makes)."""
        route = self.engine_for(job, engine)
        if interactive and route == "duckdb":
            raise InvalidRequest(
                "interactive input is for programs, not SQL: pass the input as stdin=, or use another language."
            )
        return route

    def _replayed(self, job: Job, route: str) -> Producer:
        """A live run for an engine without a live path: the Result, replayed once it is there (runs on the live
        run's thread, with a sync engine: a Piston run from the async client gets one of its own)."""
        from .engines._live import result_producer

        if route == "duckdb":
            duck = self._duckdb_engine()
            return result_producer(lambda: duck.run(job))
        settings = self.settings

        def on_piston() -> Result:
            from .engines.piston import PistonEngine

            with contextlib.closing(PistonEngine(settings)) as piston:
                return piston.run(job)

        return result_producer(on_piston)

    @property
    def sql(self) -> DuckDBEngine:
        """The client's DuckDB engine (to ``register`` DataFrames, or reach the connection)."""
        return self._duckdb_engine()

    def _close_local(self) -> None:
        with self._lock:
            duck, self._duckdb = self._duckdb, None
            local, self._local = self._local, None
        if duck is not None:
            duck.close()
        if local is not None:
            local.close()


class Client(_ClientCore):
    """Runs programs synchronously. Use as a context manager, or call :meth:`close`.

    >>> with Client() as client:                         # doctest: +SKIP
    ...     client.execute("print(42)", "python").stdout
    '42\\n'
    """

    def __init__(self, piston_url: str | None = None, *, settings: Settings | None = None, **options: Any) -> None:
        super().__init__(piston_url, settings=settings, **options)
        self._piston: PistonEngine | None = None

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        with self._lock:
            piston, self._piston = self._piston, None
        if piston is not None:
            piston.close()
        self._close_local()

    def _piston_engine(self) -> PistonEngine:
        with self._lock:
            if self._piston is None:
                from .engines.piston import PistonEngine

                self._piston = PistonEngine(self.settings)
            return self._piston

    def execute(self, source: str, language: str, *, engine: EngineChoice | None = None, **kwargs: Any) -> Result:
        """Run one program and return its Result. See :func:`codecapsule.execute` for the arguments."""
        return self.run(self.job(source, language, **kwargs), engine=engine)

    def run(self, job: Job, *, engine: EngineChoice | None = None) -> Result:
        """Run a prepared Job. Ctrl-C (KeyboardInterrupt) stops it: no process of it is left when it propagates."""
        from ._interrupt import RunGroup

        return self._run_in(RunGroup(), job, engine)

    def _run_in(self, group: RunGroup, job: Job, engine: EngineChoice | None) -> Result:
        route = self.engine_for(job, engine)
        if route == "duckdb":
            return self._duckdb_engine().run(job)
        if route == "piston":
            return self._piston_engine().run(job)  # nothing of it runs on this machine: nothing to stop here
        # a live run, because only a live run can be stopped while its processes run (see _interrupt)
        return group.wait(self._local_engine().stream(job))

    def stream(
        self,
        source: str,
        language: str,
        *,
        interactive: bool = False,
        engine: EngineChoice | None = None,
        **kwargs: Any,
    ) -> RunStream:
        """Run one program live: iterate for its events (``StageStarted``, ``Output``, ..., ``Finished(result)``
        last); ``cancel()`` or leaving the ``with`` block stops it (verdict interrupted, output so far kept). Takes
        :meth:`execute`'s arguments. On the local engine and on Piston output comes as the program writes it; SQL
        runs are replayed when they finish. ``interactive=True``: ``send()`` types into the running program,
        ``close_stdin()`` ends its input, ``InputWanted`` says it waits for some."""
        return self.stream_job(self.job(source, language, **kwargs), interactive=interactive, engine=engine)

    def stream_job(self, job: Job, *, interactive: bool = False, engine: EngineChoice | None = None) -> RunStream:
        """:meth:`stream` for a prepared Job."""
        from .engines._live import LiveRun

        route = self._stream_route(job, engine, interactive)
        if route == "local":
            return self._local_engine().stream(job, interactive=interactive)
        if route == "piston":
            return self._piston_engine().stream(job, interactive=interactive)
        return LiveRun(self._replayed(job, route), _crash(job, route), interactive=False)

    def execute_many(
        self,
        jobs: Iterable[JobLike],
        *,
        concurrency: int | None = None,
        progress: bool | Progress = False,
        engine: EngineChoice | None = None,
    ) -> list[Result]:
        """Run many jobs, at most ``concurrency`` at a time (default: this machine's CPU cores, so each local run
        gets a core); results come back in the jobs' order.

        A job that cannot be run at all becomes a Result with verdict ``internal_error`` (its exception kept in
        ``result.exception``); the others are not affected. Ctrl-C cancels the jobs not yet started and stops the
        running ones (no process of the batch is left when KeyboardInterrupt propagates).
        """
        from ._interrupt import RunGroup, shutdown_patiently

        items, bar, concurrency = self._batch(jobs, concurrency, progress)
        results: list[Result | None] = [None] * len(items)
        group = RunGroup()

        def one(index: int) -> None:
            job = self._prepare(items[index])
            if isinstance(job, Job):
                try:
                    results[index] = self._run_in(group, job, engine)
                except Exception as exc:
                    results[index] = internal_error(job, "client", exc)
            else:
                results[index] = job
            bar.advance(results[index])

        from concurrent.futures import ThreadPoolExecutor  # here: keeps `import codecapsule` light

        pool = ThreadPoolExecutor(max_workers=min(concurrency, max(1, len(items))), thread_name_prefix="capsule")
        try:
            futures = [pool.submit(one, i) for i in range(len(items))]
            for f in futures:
                f.result()
        except BaseException:
            group.stop()
            shutdown_patiently(pool)
            raise
        finally:
            pool.shutdown(wait=True)
            bar.close()
        return [r for r in results if r is not None]

    # -- Piston server management (needs a configured URL) ------------------------------------------

    def runtimes(self) -> list[Runtime]:
        """Languages and versions installed on the Piston server."""
        return self._piston_engine().runtimes()

    def packages(self) -> list[dict[str, Any]]:
        """Packages the Piston server can install, and whether each is installed."""
        return self._piston_engine().packages()

    def install(self, language: str, version: str) -> dict[str, Any]:
        return self._piston_engine().install(language, version)

    def uninstall(self, language: str, version: str) -> dict[str, Any]:
        return self._piston_engine().uninstall(language, version)

    def engine_info(self) -> list[EngineInfo]:
        """What runs where, and how well it is isolated."""
        infos = [self._piston_engine().info() if self.settings.use_piston else self._local_engine().info()]
        infos.append(self._duckdb_engine().info())
        return infos


class AsyncClient(_ClientCore):
    """The asynchronous twin of :class:`Client`: the same arguments, ``await``-ed."""

    def __init__(self, piston_url: str | None = None, *, settings: Settings | None = None, **options: Any) -> None:
        super().__init__(piston_url, settings=settings, **options)
        self._piston: AsyncPistonEngine | None = None

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        piston, self._piston = self._piston, None
        if piston is not None:
            await piston.aclose()
        self._close_local()

    def _piston_engine(self) -> AsyncPistonEngine:
        if self._piston is None:
            from .engines.piston import AsyncPistonEngine

            self._piston = AsyncPistonEngine(self.settings)
        return self._piston

    async def execute(self, source: str, language: str, *, engine: EngineChoice | None = None, **kwargs: Any) -> Result:
        return await self.run(self.job(source, language, **kwargs), engine=engine)

    async def run(self, job: Job, *, engine: EngineChoice | None = None) -> Result:
        import asyncio  # not at module level: scripts that never go async skip its import cost

        piston = self._wants_piston(job, engine)  # refuses engine="piston" for SQL
        if job.lang.sql:
            return await asyncio.to_thread(self._duckdb_engine().run, job)
        if piston:
            return await self._piston_engine().arun(job)
        # a live run, the only kind that can be stopped: cancelling this task (Ctrl-C under asyncio.run, a timeout
        # around the await) kills the run's processes, and the cancellation goes on once they are gone (aclose)
        async with self._local_engine().astream(job) as run:
            return await afinal_result(run)

    def stream(
        self,
        source: str,
        language: str,
        *,
        interactive: bool = False,
        engine: EngineChoice | None = None,
        **kwargs: Any,
    ) -> AsyncRunStream:
        """:meth:`Client.stream` for asyncio: ``async with client.stream(...) as run: async for event in run``."""
        return self.stream_job(self.job(source, language, **kwargs), interactive=interactive, engine=engine)

    def stream_job(self, job: Job, *, interactive: bool = False, engine: EngineChoice | None = None) -> AsyncRunStream:
        """:meth:`stream` for a prepared Job."""
        from .engines._live import AsyncLiveRun

        route = self._stream_route(job, engine, interactive)
        if route == "local":
            return self._local_engine().astream(job, interactive=interactive)
        if route == "piston":
            return self._piston_engine().astream(job, interactive=interactive)
        return AsyncLiveRun(self._replayed(job, route), _crash(job, route), interactive=False)

    async def map(
        self,
        jobs: Iterable[JobLike],
        *,
        concurrency: int | None = None,
        progress: bool | Progress = False,
        engine: EngineChoice | None = None,
    ) -> list[Result]:
        """Run many jobs concurrently (bounded); results in the jobs' order, failures as internal_error Results."""
        import asyncio

        items, bar, concurrency = self._batch(jobs, concurrency, progress)
        gate = asyncio.Semaphore(concurrency)

        async def one(item: JobLike) -> Result:
            async with gate:
                job = self._prepare(item)
                if isinstance(job, Job):
                    try:
                        result = await self.run(job, engine=engine)
                    except Exception as exc:
                        result = internal_error(job, "client", exc)
                else:
                    result = job
                bar.advance(result)
                return result

        try:
            return list(await asyncio.gather(*(one(i) for i in items)))
        finally:
            bar.close()

    execute_many = map

    async def runtimes(self) -> list[Runtime]:
        return await self._piston_engine().aruntimes()

    async def packages(self) -> list[dict[str, Any]]:
        return await self._piston_engine().apackages()

    async def install(self, language: str, version: str) -> dict[str, Any]:
        return await self._piston_engine().ainstall(language, version)

    async def uninstall(self, language: str, version: str) -> dict[str, Any]:
        return await self._piston_engine().auninstall(language, version)


def _crash(job: Job, engine: str) -> Callable[[BaseException], Result]:
    """What a live run's Finished carries when its producer failed: the internal_error Result a batch gives."""
    return lambda exc: internal_error(job, engine, exc)


def _unbuildable(item: JobLike, exc: Exception) -> Result:
    """A Result for a batch item that is not even a valid job (bad language, bad limit)."""
    language = str(item.get("language", "?")) if isinstance(item, Mapping) else "?"
    name = item.get("name") if isinstance(item, Mapping) else None
    return error_result(exc, engine="client", language=language, name=name)


def default_concurrency() -> int:
    """Batches run this many jobs at once unless told otherwise: the CPUs this process may use."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)
