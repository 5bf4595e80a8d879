"""DuckDBEngine: SQL in an in-process DuckDB, one connection per Client, sandboxed by default.

The sandbox (in this order, because ``lock_configuration`` freezes everything after it): a memory limit, no
temporary directory, no progress bar, ``enable_external_access=false`` (no file reads/writes, COPY, ATTACH,
INSTALL/LOAD), ``lock_configuration=true`` (no SET can undo any of it). DataFrames can still be exposed with
:meth:`register`. A query timeout is enforced with ``connection.interrupt()`` from one watchdog thread.
A SQL error is a Result (verdict runtime_error, DuckDB's message), never an exception.
"""

from __future__ import annotations

import csv
import io
import threading
import time
import warnings
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from .._errors import ConfigurationError, EngineError
from .._jobs import Job, Limits
from .._results import Result, Stage, Table
from .._verdicts import judge
from .base import EngineInfo

if TYPE_CHECKING:
    import duckdb

DEFAULT_TIMEOUT = 30.0


class _Watchdog:
    """One thread that interrupts the connection when a query's deadline passes (cheaper than a Timer per query)."""

    def __init__(self, interrupt: Any) -> None:
        self._interrupt = interrupt
        self._cond = threading.Condition()
        self._deadline: float | None = None
        self._fired = False
        self._closed = False
        self._thread = threading.Thread(target=self._loop, name="codecapsule-sql-watchdog", daemon=True)
        self._thread.start()

    def arm(self, seconds: float) -> None:
        with self._cond:
            self._deadline = time.monotonic() + seconds
            self._fired = False
            self._cond.notify()

    def disarm(self) -> bool:
        """Stop watching; True when the deadline fired during the query."""
        with self._cond:
            self._deadline = None
            return self._fired

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify()
        self._thread.join(timeout=5)

    def _loop(self) -> None:
        with self._cond:
            while not self._closed:
                if self._deadline is None:
                    self._cond.wait()
                    continue
                remaining = self._deadline - time.monotonic()
                if remaining > 0:
                    self._cond.wait(remaining)
                    continue
                self._deadline = None
                self._fired = True
                self._interrupt()


class DuckDBEngine:
    """Runs SQL jobs on one DuckDB connection (state lives across calls, like a notebook session)."""

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
    ) -> None:
        self.database = database
        self.read_only = read_only
        self.sandbox = sandbox
        self.memory_limit = memory_limit
        self.max_rows = max_rows
        self.timeout = timeout
        self._conn: duckdb.DuckDBPyConnection | None = None
        self._watchdog: _Watchdog | None = None
        self._lock = threading.RLock()  # a DuckDB connection serves one query at a time
        self._version = ""

    # -- connection --------------------------------------------------------------------------------

    @property
    def connection(self) -> duckdb.DuckDBPyConnection:
        """The live connection (opened on first use)."""
        with self._lock:
            if self._conn is None:
                self._conn = self._connect()
                self._watchdog = _Watchdog(self._conn.interrupt)
            return self._conn

    def _connect(self) -> duckdb.DuckDBPyConnection:
        import duckdb

        self._version = duckdb.__version__
        if self.read_only and self.database == ":memory:":
            raise ConfigurationError("an in-memory database cannot be read-only: give a database file path.")
        try:
            conn = duckdb.connect(self.database, read_only=self.read_only)
        except duckdb.Error as exc:
            raise ConfigurationError(f"cannot open the SQL database {self.database!r}: {exc}") from None
        conn.execute("SET enable_progress_bar=false")
        if self.sandbox:
            conn.execute(f"SET memory_limit='{int(self.memory_limit)}B'")
            conn.execute("SET temp_directory=''")
            conn.execute("SET enable_external_access=false")
            conn.execute("SET lock_configuration=true")
        return conn

    def open(self, database: str, *, read_only: bool = True) -> None:
        """Switch to another database file (a course database is read-only unless asked otherwise).
        Registered DataFrames and temporary tables of the previous connection are gone."""
        with self._lock:
            self.close()
            self.database, self.read_only = database, read_only
            _ = self.connection

    def register(self, name: str, data: Any) -> None:
        """Expose a DataFrame / Arrow table to SQL as view ``name`` (the sandbox forbids implicit scans)."""
        if not name.isidentifier():
            raise EngineError(f"{name!r} is not a valid SQL view name: use letters, digits and '_'.")
        with self._lock:
            self.connection.register(name, data)

    def unregister(self, name: str) -> None:
        with self._lock:
            self.connection.unregister(name)

    def close(self) -> None:
        with self._lock:
            if self._watchdog is not None:
                self._watchdog.close()
                self._watchdog = None
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    # -- running -----------------------------------------------------------------------------------

    def run(self, job: Job) -> Result:
        import duckdb

        timeout = job.limits.run_timeout or self.timeout
        limits = Limits(run_timeout=timeout, memory=self.memory_limit if self.sandbox else None)
        with self._lock:
            conn = self.connection
            assert self._watchdog is not None
            started = time.perf_counter()
            self._watchdog.arm(timeout)
            try:
                cursor = conn.execute(job.source)
                table = self._fetch(cursor) if cursor.description is not None else None
            except duckdb.Error as exc:
                timed_out = self._watchdog.disarm()
                return self._failure(job, exc, timed_out, time.perf_counter() - started, limits)
            self._watchdog.disarm()
            wall = time.perf_counter() - started
        stdout = _as_csv(table) if table is not None else ""
        run = Stage(stdout=stdout, output=stdout, exit_code=0, wall_time=wall)
        return replace(self._judge(job, run, limits), table=table)

    def _judge(self, job: Job, run: Stage, limits: Limits) -> Result:
        # the same verdict policy as every engine (expected output is compared with the table as CSV)
        return judge(job, engine=self.name, version=self._version, compile=None, run=run, limits=limits)

    def _fetch(self, cursor: duckdb.DuckDBPyConnection) -> Table:
        description = cursor.description or []
        columns = tuple(str(d[0]) for d in description)
        types = tuple(str(d[1]) for d in description)
        rows = cursor.fetchmany(self.max_rows + 1)
        if len(rows) <= self.max_rows:
            return Table(columns, types, tuple(rows), total_rows=len(rows))
        head = rows[: self.max_rows]
        rest: Any = None
        try:
            # the full result stays reachable (df()/arrow()) without holding millions of Python tuples
            import pyarrow  # noqa: F401

            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)  # "extra copy of the rows": fine for the remainder
                rest = cursor.to_arrow_table()
            total = self.max_rows + 1 + rest.num_rows
            rest = _prepend_row(rest, rows[self.max_rows], columns)
        except ImportError:
            total = len(rows)
            while chunk := cursor.fetchmany(100_000):
                total += len(chunk)
        return Table(columns, types, tuple(head), total_rows=total, truncated=True, _rest=rest)

    def _failure(self, job: Job, exc: Exception, timed_out: bool, wall: float, limits: Limits) -> Result:
        import duckdb

        message = str(exc)
        if timed_out or isinstance(exc, duckdb.InterruptException):
            status = "TO"
            message = f"query interrupted after the {limits.run_timeout:g} s time limit"
        elif isinstance(exc, duckdb.OutOfMemoryException):
            status = "ML"
        else:
            status = "RE"
        run = Stage(stderr=message, output=message, exit_code=1, status=status, message=message, wall_time=wall)
        return replace(self._judge(job, run, limits), error=message)

    def info(self) -> EngineInfo:
        import duckdb

        where = self.database + (" (read-only)" if self.read_only else "")
        isolation = (
            f"in-process DuckDB on {where}; sandboxed: memory limit {self.memory_limit} bytes, no file or network "
            "access, no extensions, configuration locked"
            if self.sandbox
            else f"in-process DuckDB on {where}; NOT sandboxed (files and network reachable)"
        )
        return EngineInfo(name=self.name, isolation=isolation, languages={"sql": duckdb.__version__})


def _prepend_row(rest: Any, row: tuple[Any, ...], columns: tuple[str, ...]) -> Any:
    import pyarrow as pa

    first = pa.table({c: [row[i]] for i, c in enumerate(columns)})
    return pa.concat_tables([first.cast(rest.schema), rest]) if rest.num_rows else first


def _as_csv(table: Table) -> str:
    """The displayed rows as CSV with a header: what ``expect=`` is compared with for SQL."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(table.columns)
    writer.writerows(table.rows)
    return buf.getvalue()
