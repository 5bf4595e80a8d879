"""DuckDBEngine: SQL in a DuckDB worker process, one per Client, sandboxed and memory-capped by default.

Why a worker process (measured in ``bench/bench_sql_isolation.py``, see docs/sql.md): DuckDB's ``memory_limit``
covers its buffer manager, not every allocation — ``SELECT len(range(100000000))`` or ``repeat('x', 1500000000)``
grow the process past any limit, and in a notebook that process is the kernel. The worker caps its own address
space (``RLIMIT_AS`` = its set-up size + the SQL memory limit + :data:`ADDRESS_SPACE_MARGIN`), so such an
allocation fails inside DuckDB as an ``Out of Memory Error`` and the worker lives on. Results come back (JSON, or
Arrow IPC for other types) as their first ``max_rows`` rows only; the whole result stays in the worker (within the
limit) until ``Table.df()``/``arrow()`` asks for it.

The session's tables live in a database file in a private temporary directory (for the default ``:memory:``),
so a worker that had to be killed (a query that ignores the interrupt, Ctrl-C) is restarted on the same file
and every committed table is still there; registered DataFrames are registered again.

The sandbox (in this order, because ``lock_configuration`` freezes everything after it): a memory limit, no
temporary directory, the allowed course-data directories, ``enable_external_access=false``,
``lock_configuration=true``; statements that write files (COPY, EXPORT) or attach databases are refused.
A SQL error is a Result (verdict runtime_error, DuckDB's message), never an exception.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import weakref
from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from .._errors import ConfigurationError, EngineError
from .._jobs import Job, Limits
from .._results import Result, Stage, Table
from .._verdicts import judge
from ._sql_messages import clean_error, tables_text
from ._sql_wire import (
    SEQ,
    Buffer,
    Reader,
    WireError,
    WireTimeout,
    arrow_to_bytes,
    bytes_to_arrow,
    write_message,
)
from .base import EngineInfo

DEFAULT_TIMEOUT = 30.0
# The worker's address space is capped at what it maps once set up (the interpreter, DuckDB, pyarrow, its threads:
# about 480 MB mapped, 70 MB resident) plus the SQL memory limit plus this margin (allocator slack, result buffers).
ADDRESS_SPACE_MARGIN = 256 << 20
# How long past a query's time limit the worker may take to stop before it is killed and restarted.
KILL_GRACE = 3.0
_START_TIMEOUT = 60.0
_TRANSFER_TIMEOUT = 120.0  # reading an answer that has started (a df() of a large result)
_THREADS = 4  # DuckDB's threads in the worker: each adds stack and arena address space under the cap


class _Worker:
    """One worker process and its pipes; ``generation`` tells results of an earlier worker apart."""

    def __init__(self, config: dict[str, Any], directory: Path, generation: int) -> None:
        import codecapsule

        package_root = str(Path(codecapsule.__file__).resolve().parent.parent)
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (package_root, env.get("PYTHONPATH")) if p)
        env["MALLOC_ARENA_MAX"] = "2"  # glibc reserves 64 MB of address space per arena otherwise
        env["ARROW_DEFAULT_MEMORY_POOL"] = "system"  # mimalloc reserves address space in large segments
        self.log_path = directory / f"worker-{generation}.log"
        self.generation = generation
        interrupt_read, self._interrupt = os.pipe()
        try:
            with open(self.log_path, "wb") as log:
                self.process = subprocess.Popen(
                    [sys.executable, "-m", "codecapsule.engines._sql_worker"],
                    stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE,
                    stderr=log,
                    env=env,
                    pass_fds=(interrupt_read,),
                    start_new_session=True,  # Ctrl-C in the notebook is ours to handle; a kill reaches only it
                )
        finally:
            os.close(interrupt_read)
        assert self.process.stdin is not None and self.process.stdout is not None
        self._in, self._out = self.process.stdin.fileno(), Reader(self.process.stdout.fileno())
        self._seq = 0
        try:
            answer, _ = self.request(
                {**config, "interrupt_fd": interrupt_read}, deadline=time.monotonic() + _START_TIMEOUT
            )
        except WireError:
            raise EngineError(f"the SQL worker did not start: it {self.death()}") from None
        if not answer.get("ok"):
            self.kill()
            raise ConfigurationError(f"cannot open the SQL database {config['database']!r}: {answer.get('error')}")
        self.version = str(answer.get("version", ""))

    def next_seq(self) -> int:
        self._seq += 1
        return self._seq

    def request(
        self, header: dict[str, Any], body: Buffer = b"", *, deadline: float | None = None, grace: float = KILL_GRACE
    ) -> tuple[dict[str, Any], Buffer]:
        """Send one request and read its answer. At ``deadline`` the running query (``header["seq"]``) is
        interrupted; a worker that still does not answer ``grace`` seconds later is killed (``WireTimeout``)."""
        try:
            write_message(self._in, header, body)
            if deadline is not None and not self._out.readable(deadline):
                self.interrupt(int(header.get("seq", 0)))
                if not self._out.readable(time.monotonic() + grace):
                    raise WireTimeout("the SQL worker did not stop when interrupted")
            return self._out.read(time.monotonic() + _TRANSFER_TIMEOUT)
        except KeyboardInterrupt:
            # Ctrl-C in the notebook: stop the query, keep the worker (and its tables) when it answers
            try:
                self.interrupt(int(header.get("seq", 0)))
                if self._out.readable(time.monotonic() + grace):
                    self._out.read(time.monotonic() + _TRANSFER_TIMEOUT)
                    raise
            except WireError:
                pass
            self.kill()
            raise
        except BaseException:
            self.kill()  # out of step (no answer, a dead worker): this worker is done
            raise

    def interrupt(self, seq: int) -> None:
        with contextlib.suppress(OSError):  # already gone: the read that follows tells
            os.write(self._interrupt, SEQ.pack(seq))

    @property
    def alive(self) -> bool:
        return self.process.poll() is None

    def death(self) -> str:
        """How the worker ended, from its wait status (and the last line it wrote)."""
        code = self.process.wait()
        how = f"was killed by {signal.Signals(-code).name}" if code < 0 else f"exited with status {code}"
        try:
            tail = self.log_path.read_text(errors="replace").strip().splitlines()[-1:]
        except OSError:
            tail = []
        return how + (f" ({tail[0]})" if tail else "")

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait()
        for stream in (self.process.stdin, self.process.stdout):
            if stream is not None:
                stream.close()
        if self._interrupt >= 0:
            os.close(self._interrupt)
            self._interrupt = -1

    def close(self) -> None:
        if self.alive:
            try:
                write_message(self._in, {"op": "close"})
                self.process.wait(timeout=5)
            except (WireError, subprocess.TimeoutExpired):
                pass
        self.kill()


class _KeptRows:
    """The rows of a result after its head, kept in the worker; called by ``Table.arrow()``/``df()``."""

    def __init__(self, engine: DuckDBEngine, result: int, generation: int) -> None:
        self._engine = weakref.ref(engine)
        self.result, self.generation = result, generation
        weakref.finalize(self, engine._forget, result, generation)

    def __call__(self) -> Any:
        engine = self._engine()
        if engine is None:
            raise EngineError("the SQL session of this result is closed: run the query again.")
        return engine._fetch_kept(self.result, self.generation)


class DuckDBEngine:
    """Runs SQL jobs on one DuckDB session in a worker process (state lives across calls, like a notebook)."""

    name = "duckdb"

    def __init__(
        self,
        database: str = ":memory:",
        *,
        read_only: bool = False,
        sandbox: bool = True,
        memory_limit: int = 1_000_000_000,
        max_rows: int = 1000,
        timeout: float = DEFAULT_TIMEOUT,
        allowed_directories: Sequence[str | os.PathLike[str]] = (),
    ) -> None:
        self.database = database
        self.read_only = read_only
        self.sandbox = sandbox
        self.memory_limit = memory_limit
        self.max_rows = max_rows
        self.timeout = timeout
        self.allowed_directories = tuple(str(Path(d).resolve()) for d in allowed_directories)
        self._worker: _Worker | None = None
        self._generation = 0
        self._dir: Path | None = None  # private: the session database file and the worker logs
        self._registered: dict[str, Any] = {}  # name → the caller's object, registered again after a restart
        self._forgotten: list[int] = []
        self._lock = threading.RLock()  # one request at a time on the pipe
        self._version = ""
        self.kill_grace = KILL_GRACE  # how long an interrupted query may take to stop before the worker is killed

    # -- the worker ------------------------------------------------------------------------------------

    def _config(self) -> dict[str, Any]:
        assert self._dir is not None
        database = self.database
        if database == ":memory:":
            database = str(self._dir / "session.duckdb")  # a file, so a restarted worker finds the tables
        return {
            "database": database,
            "read_only": self.read_only,
            "sandbox": self.sandbox,
            "memory_limit": self.memory_limit,
            "keep_budget": max(self.memory_limit // 2, 1 << 20),
            "address_space_extra": self.memory_limit + ADDRESS_SPACE_MARGIN if self.sandbox else 0,
            "allowed_directories": list(self.allowed_directories),
            "threads": min(os.cpu_count() or 1, _THREADS),
        }

    def _live(self) -> _Worker:
        with self._lock:
            if self._worker is not None and self._worker.alive:
                return self._worker
            if self.read_only and self.database == ":memory:":
                raise ConfigurationError("an in-memory database cannot be read-only: give a database file path.")
            if self._dir is None:
                self._dir = Path(tempfile.mkdtemp(prefix="codecapsule-sql-"))  # mode 0700
            self._generation += 1
            self._worker = _Worker(self._config(), self._dir, self._generation)
            self._version = self._worker.version
            self._forgotten.clear()
            for name, data in self._registered.items():
                self._send_table(self._worker, name, data)
            return self._worker

    def _lost(self, worker: _Worker, why: str) -> str:
        """Note that the worker is gone; the next request starts a new one on the same database file."""
        self._worker = None
        return f"the SQL session restarts with the next query ({why}); committed tables are kept"

    def start(self) -> None:
        """Start the worker now (a database that cannot be opened raises ``ConfigurationError`` here)."""
        self._live()

    def _forget(self, result: int, generation: int) -> None:
        if generation == self._generation:
            self._forgotten.append(result)  # sent with the next request: no pipe traffic from a finalizer

    def _fetch_kept(self, result: int, generation: int) -> Any:
        with self._lock:
            worker = self._worker
            if worker is None or not worker.alive or worker.generation != generation:
                raise EngineError("the rest of this result is gone (the SQL session restarted): run the query again.")
            answer, body = worker.request({"op": "fetch", "result": result})
            if not answer.get("ok") and not answer.get("gone"):
                raise EngineError(
                    f"cannot bring the whole result over ({answer.get('error')}): keep what you need with CREATE "
                    "TABLE ... AS SELECT, or add a LIMIT."
                )
            if not answer.get("ok"):
                raise EngineError(
                    "the rest of this result is no longer kept (later results needed the memory): run the query "
                    "again, or keep what you need with CREATE TABLE ... AS SELECT."
                )
            return bytes_to_arrow(body)

    # -- registering data --------------------------------------------------------------------------------

    def register(self, name: str, data: Any) -> None:
        """Expose a DataFrame / Arrow table to SQL as view ``name`` (the sandbox forbids implicit scans)."""
        if not name.isidentifier():
            raise EngineError(f"{name!r} is not a valid SQL view name: use letters, digits and '_'.")
        with self._lock:
            self._send_table(self._live(), name, data)
            self._registered[name] = data

    def _send_table(self, worker: _Worker, name: str, data: Any) -> None:
        answer, _ = worker.request({"op": "register", "name": name}, arrow_to_bytes(_as_arrow(name, data)))
        if not answer.get("ok"):
            raise EngineError(f"cannot register {name!r}: {answer.get('error')}")

    def unregister(self, name: str) -> None:
        with self._lock:
            self._registered.pop(name, None)
            self._live().request({"op": "unregister", "name": name})

    def open(self, database: str, *, read_only: bool = True) -> None:
        """Switch to another database file (a course database is read-only unless asked otherwise).
        Registered DataFrames and the tables of the previous session are gone."""
        with self._lock:
            self.close()
            self.database, self.read_only = database, read_only
            self._live()

    def allow_directories(self, directories: Sequence[str | os.PathLike[str]]) -> None:
        """Let queries read files under these directories (read-only). The worker restarts with the new
        allowlist; the session's tables and registered DataFrames are kept."""
        wanted = tuple(str(Path(d).resolve()) for d in directories)
        with self._lock:
            if wanted == self.allowed_directories:
                return
            self.allowed_directories = wanted
            if self._worker is not None:
                self._worker.close()  # a clean close checkpoints; the next query starts the new worker
                self._worker = None

    def close(self) -> None:
        with self._lock:
            if self._worker is not None:
                self._worker.close()
                self._worker = None
            self._registered.clear()
            if self._dir is not None:
                shutil.rmtree(self._dir, ignore_errors=True)
                self._dir = None

    # -- running -----------------------------------------------------------------------------------

    def execute(self, sql: str, params: Mapping[str, Any] | None = None, *, timeout: float | None = None) -> Result:
        """Run ``sql`` with named parameters (``$name`` in the query) bound as prepared-statement values."""
        return self.run(Job.create(sql, "sql", timeout=timeout), params=params)

    def run(self, job: Job, params: Mapping[str, Any] | None = None) -> Result:
        timeout = job.limits.run_timeout or self.timeout
        limits = Limits(run_timeout=timeout, memory=self.memory_limit if self.sandbox else None)
        header: dict[str, Any] = {"op": "run", "sql": job.source, "head": self.max_rows}
        body = arrow_to_bytes(_params_table(params)) if params else b""
        started = time.perf_counter()
        with self._lock:
            worker = self._live()
            if self._forgotten:
                forgotten, self._forgotten = self._forgotten, []
                worker.request({"op": "forget", "results": forgotten})
            header["seq"] = worker.next_seq()
            try:
                answer, rows = worker.request(
                    header, body, deadline=time.monotonic() + timeout, grace=self.kill_grace
                )
            except WireTimeout:
                why = f"query interrupted after the {timeout:g} s time limit"
                return self._stopped(job, "TO", why, self._lost(worker, "it did not stop at the time limit"), limits)
            except WireError:
                died = f"the SQL worker {worker.death()}"
                return self._stopped(job, "SG", died, self._lost(worker, "it died"), limits)
            except KeyboardInterrupt:
                self._lost(worker, "the query was interrupted")
                raise
        wall = float(answer.get("wall") or (time.perf_counter() - started))
        table = self._table(answer, rows, worker.generation)
        done = [str(d) for d in answer.get("done") or ()]
        if answer.get("ok"):
            stdout = _as_csv(table) if table is not None else tables_text(done)
            run = Stage(stdout=stdout, output=stdout, exit_code=0, wall_time=wall)
            return replace(self._judge(job, run, limits), table=table)
        status = str(answer.get("status") or "XX")
        message = str(answer.get("error") or "")
        if status == "TO":
            message = f"query interrupted after the {timeout:g} s time limit"
        elif status != "XX":
            message = clean_error(message)
        if status == "ML" and not message.startswith(("Out of Memory", "the query's result")):
            message = (
                f"Out of Memory Error: {message or 'an allocation failed'} (the SQL memory limit is "
                f"{self.memory_limit} bytes)"
            )
        if done:
            message = f"{message}\n(before it: {tables_text(done)})"
        run = Stage(stderr=message, output=message, exit_code=1, status=status, wall_time=wall)
        return replace(self._judge(job, run, limits), table=table, error=message)

    def _table(self, answer: dict[str, Any], rows: Buffer, generation: int) -> Table | None:
        meta = answer.get("table") or answer.get("partial")
        if meta is None:
            return None
        columns, types = tuple(meta["columns"]), tuple(meta["types"])
        if "rows" in meta:
            head_rows = meta["rows"]  # Table makes them tuples
        else:
            head = bytes_to_arrow(rows) if rows else None
            values = [head.column(i).to_pylist() for i in range(head.num_columns)] if head is not None else []
            head_rows = tuple(zip(*values, strict=True)) if values else ()
        if "rows_seen" in meta:  # stopped at the memory limit: the first rows, and how far it got
            return Table(columns, types, head_rows, total_rows=int(meta["rows_seen"]), truncated=True)
        total = int(meta.get("total_rows", len(head_rows)))
        result = meta.get("result")
        if result is None:
            return Table(columns, types, head_rows, total_rows=total)
        return Table(
            columns, types, head_rows, total_rows=total, truncated=True, _rest=_KeptRows(self, int(result), generation)
        )

    def _stopped(self, job: Job, status: str, message: str, note: str, limits: Limits) -> Result:
        message = f"{message}\n({note})"
        run = Stage(stderr=message, output=message, exit_code=1, status=status)
        return replace(self._judge(job, run, limits), error=message)

    def _judge(self, job: Job, run: Stage, limits: Limits) -> Result:
        # the same verdict policy as every engine (expected output is compared with the table as CSV)
        return judge(job, engine=self.name, version=self._version, compile=None, run=run, limits=limits)

    def info(self) -> EngineInfo:
        import duckdb

        where = self.database + (" (read-only)" if self.read_only else "")
        if self.sandbox:
            data = ", ".join(self.allowed_directories)
            isolation = (
                f"DuckDB worker process on {where}; sandboxed: memory limit {self.memory_limit} bytes (address "
                f"space capped at its start-up size + {self.memory_limit + ADDRESS_SPACE_MARGIN} bytes), "
                + (f"reads files only under {data}, " if data else "no file access, ")
                + "no network, no extensions, configuration locked"
            )
        else:
            isolation = f"DuckDB worker process on {where}; NOT sandboxed (files and network reachable)"
        return EngineInfo(name=self.name, isolation=isolation, languages={"sql": duckdb.__version__})


def _as_arrow(name: str, data: Any) -> Any:
    import pyarrow as pa

    if isinstance(data, pa.Table):
        return data
    if isinstance(data, pa.RecordBatch):
        return pa.Table.from_batches([data])
    if type(data).__module__.startswith("pandas"):
        return pa.Table.from_pandas(data, preserve_index=False)
    try:
        return pa.table(data)
    except (TypeError, ValueError, pa.ArrowException) as exc:
        raise EngineError(
            f"cannot register {name!r}: a {type(data).__name__} is not a table (use a pandas DataFrame, a pyarrow "
            f"Table or a dict of columns) — {exc}"
        ) from None


def _params_table(params: Mapping[str, Any]) -> Any:
    """The parameter values as a one-row Arrow table: their types travel with them (dates, decimals, ...)."""
    import pyarrow as pa

    try:
        return pa.table({name: [value] for name, value in params.items()})
    except (TypeError, ValueError, pa.ArrowException) as exc:
        raise EngineError(f"a SQL parameter must be a number, text, date or list of them: {exc}") from None


def _as_csv(table: Table) -> str:
    """The displayed rows as CSV with a header: what ``expect=`` is compared with for SQL."""
    import csv
    import io

    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(table.columns)
    writer.writerows(table.rows)
    return buf.getvalue()
