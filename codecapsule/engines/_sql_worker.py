"""The SQL worker: one DuckDB connection in its own process, capped by ``RLIMIT_AS``, spoken to over a pipe.

Started by :class:`codecapsule.engines.duckdb.DuckDBEngine` as ``python -m codecapsule.engines._sql_worker``. The
first message configures it (database, sandbox, limits); after the sandbox is locked, the process caps its own
address space, so any allocation past the cap fails inside DuckDB (an ``Out of Memory Error``, the process lives
on) instead of growing the notebook's kernel. The host kills and restarts a worker that stops answering; the
session's tables live in a database file, so committed work survives the restart.

Answers carry measured facts only (what DuckDB raised, whether the host's interrupt hit the query, rows counted
here); the query text never decides a verdict.
"""

from __future__ import annotations

import contextlib
import gc
import os
import re
import resource
import sys
import threading
import time
from typing import Any

from . import _sql_plans
from ._sql_wire import SEQ as _SEQ
from ._sql_wire import Buffer, Reader, WireError, arrow_to_bytes, bytes_to_arrow, write_message

# Statements that write files or reach other databases: refused in the sandbox even under allowed directories
# (DuckDB's allowlist would let COPY ... TO write into a course-data directory).
REFUSED = {
    "COPY": "COPY reads or writes files directly: read course data with SELECT ... FROM read_csv('data/file.csv')",
    "COPY_DATABASE": "COPY FROM DATABASE is not available in the SQL sandbox",
    "EXPORT": "EXPORT DATABASE writes files: the SQL sandbox does not write files",
    "ATTACH": "ATTACH opens another database: use %%capsule sql --db PATH (or Client(database=...)) instead",
    "DETACH": "DETACH is not available in the SQL sandbox",
    "LOAD": "extensions cannot be loaded in the SQL sandbox",
}

_OBJECT = re.compile(
    r"^\s*(?:CREATE|DROP|ALTER)\s+(?:OR\s+REPLACE\s+)?(?:(?:TEMP|TEMPORARY|PERSISTENT)\s+)?"
    r"(?P<kind>TABLE|VIEW|SEQUENCE|MACRO|TYPE|SCHEMA|INDEX|UNIQUE\s+INDEX|FUNCTION)\s+"
    r"(?:IF\s+(?:NOT\s+)?EXISTS\s+)?(?P<name>[\w.\"]+)",
    re.IGNORECASE,
)
# PREPARE, EXECUTE and DEALLOCATE (a DROP) — the statements that could replace or drop the statement cache's own
_PLAN_KINDS = frozenset({"PREPARE", "EXECUTE", "DROP"})
_JSON_EXACT = frozenset({int, str, bool, type(None)})  # values JSON carries back unchanged (not float: NaN)
_VERB = {"CREATE": "created", "DROP": "dropped", "ALTER": "altered"}
_COUNTED = {"INSERT": "inserted", "UPDATE": "updated", "DELETE": "deleted"}


def describe(kind: str, query: str, count: int | None) -> str:
    """What one statement did, in a few words: ``created table students``, ``inserted 9 rows``."""
    if kind in _COUNTED:
        n = count or 0
        return f"{_COUNTED[kind]} {n} row{'' if n == 1 else 's'}"
    match = _OBJECT.match(query)
    if kind in _VERB and match:
        return f"{_VERB[kind]} {match['kind'].lower()} {match['name'].strip(chr(34))}"
    return {"SELECT": "ran a query", "CREATE": "created an object", "DROP": "dropped an object"}.get(
        kind, f"ran {kind.lower().replace('_', ' ')}"
    )


class _Interrupter:
    """Interrupts the running query when the host asks, on the interrupt pipe (at the query's deadline, or on
    Ctrl-C). The thread sleeps in ``read`` meanwhile: a query costs no thread wake-up at all.

    The host names the query (its sequence number), so a late request never interrupts the next query.
    """

    def __init__(self, fd: int, interrupt: Any) -> None:
        self._fd, self._interrupt = fd, interrupt
        self._lock = threading.Lock()
        self._running = 0
        self.fired = False
        threading.Thread(target=self._loop, name="codecapsule-sql-interrupter", daemon=True).start()

    def running(self, seq: int) -> None:
        """Mark query ``seq`` as running (0: none)."""
        with self._lock:
            self._running, self.fired = seq, False if seq else self.fired

    def _loop(self) -> None:
        while True:
            data = _read_n(self._fd, _SEQ.size)
            if data is None:
                return
            (seq,) = _SEQ.unpack(data)
            with self._lock:
                if seq and seq == self._running:
                    self.fired = True
                    self._interrupt()


def _read_n(fd: int, n: int) -> bytes | None:
    data = b""
    while len(data) < n:
        chunk = os.read(fd, n - len(data))
        if not chunk:
            return None
        data += chunk
    return data


class Worker:
    def __init__(self, config: dict[str, Any]) -> None:
        import duckdb

        self.duckdb = duckdb
        self.sandbox = bool(config["sandbox"])
        self.keep_budget = int(config["keep_budget"])
        self.conn = duckdb.connect(config["database"], read_only=bool(config["read_only"]))
        conn = self.conn
        conn.execute("SET enable_progress_bar=false")
        if config.get("threads"):
            conn.execute(f"SET threads={int(config['threads'])}")
        if self.sandbox:
            conn.execute(f"SET memory_limit='{int(config['memory_limit'])}B'")
            conn.execute("SET temp_directory=''")
            dirs = [str(d) for d in config.get("allowed_directories") or ()]
            if dirs:
                conn.execute("SET allowed_directories=$dirs", {"dirs": dirs})
            conn.execute("SET enable_external_access=false")
            conn.execute("SET lock_configuration=true")
        self.interrupter = _Interrupter(int(config["interrupt_fd"]), conn.interrupt)
        import pyarrow  # noqa: F401 - mapped now, so the address-space cap counts it as the baseline

        conn.execute("SELECT 1").fetchall()  # DuckDB's threads exist from here on
        self.kept: dict[int, Any] = {}  # result id → the whole result as a pyarrow Table
        self.next_id = 1
        self.plans = _sql_plans.Plans(conn, duckdb)

    # -- one request ----------------------------------------------------------------------------------

    def handle(self, header: dict[str, Any], body: Buffer) -> tuple[dict[str, Any], Buffer]:
        op = header.get("op")
        if op == "run":
            return self.run(header, body)
        if op == "fetch":
            rest = self.kept.get(int(header["result"]))
            if rest is None:
                return {"ok": False, "gone": True}, b""
            return {"ok": True}, arrow_to_bytes(rest)
        if op == "forget":
            for rid in header.get("results", ()):
                self.kept.pop(int(rid), None)
            return {"ok": True}, b""
        if op == "register":
            self.conn.register(str(header["name"]), bytes_to_arrow(body))
            return {"ok": True}, b""
        if op == "unregister":
            self.conn.unregister(str(header["name"]))
            return {"ok": True}, b""
        return {"ok": False, "error": f"unknown request {op!r}"}, b""

    def run(self, header: dict[str, Any], body: Buffer) -> tuple[dict[str, Any], Buffer]:
        started = time.perf_counter()
        self.interrupter.running(int(header["seq"]))
        done: list[str] = []
        try:
            answer, rows = self._run(header["sql"], body, int(header["head"]), done)
        except BaseException as exc:  # every failure is an answer; the worker lives on
            self.interrupter.running(0)
            status = self._status(exc, self.interrupter.fired)
            error = str(exc) if status != "XX" else f"{type(exc).__name__}: {exc}"
            answer, rows = {"ok": False, "status": status, "error": error}, b""
        else:
            self.interrupter.running(0)
        if not answer.get("ok"):
            self._release()
        if done:
            answer["done"] = done
        answer["wall"] = time.perf_counter() - started
        return answer, rows

    def _release(self) -> None:
        """Drop a failed query's pending result (and what it holds) before the next request."""
        with contextlib.suppress(Exception):
            self.conn.execute("SELECT 1").fetchall()

    def _status(self, exc: BaseException, interrupted: bool) -> str:
        duckdb = self.duckdb
        if interrupted or isinstance(exc, duckdb.InterruptException | KeyboardInterrupt):
            return "TO"
        if isinstance(exc, duckdb.OutOfMemoryException | MemoryError) or type(exc).__name__ == "ArrowMemoryError":
            return "ML"
        if isinstance(exc, duckdb.Error | _Refused):
            return "RE"
        return "XX"

    def _run(self, sql: str, params_body: Buffer, head: int, done: list[str]) -> tuple[dict[str, Any], Buffer]:
        if not params_body:
            prepared = self._run_prepared(sql, head)
            if prepared is not None:
                return prepared
        params: dict[str, Any] = {}
        if params_body:
            table = bytes_to_arrow(params_body)
            params = {name: table.column(name)[0].as_py() for name in table.column_names}
        statements = self.duckdb.extract_statements(sql)
        if self.sandbox:
            for statement in statements:
                reason = REFUSED.get(statement.type.name)
                if statement.type.name in _PLAN_KINDS and _sql_plans.PREFIX in statement.query.lower():
                    reason = "the names of CodeCapsule's prepared statements are its own: choose another name"
                if reason is not None:
                    raise _Refused(f"{statement.query.strip().rstrip(';')}: refused — {reason}.")
        cursor: Any = None
        description: Any = None
        for i, statement in enumerate(statements):
            names = statement.named_parameters
            bound = {k: params[k] for k in names if k in params}
            cursor = self.conn.execute(statement, bound) if names else self.conn.execute(statement)
            kind = statement.type.name
            last = i == len(statements) - 1
            description = cursor.description
            if not last or not _has_rows(kind, description):
                count = None
                if description is not None:
                    first = cursor.fetchmany(1)
                    count = int(first[0][0]) if kind in _COUNTED and first else None
                done.append(describe(kind, statement.query, count))
                cursor = None
        if cursor is None:
            return {"ok": True, "table": None}, b""
        answer = self._fetch(cursor, description, head)
        if answer[0]["ok"] and len(statements) == 1 and kind == "SELECT" and not names:
            self.plans.ran(sql, statements[0].query)  # after the fetch: a PREPARE ends the pending result
        return answer

    def _run_prepared(self, sql: str, head: int) -> tuple[dict[str, Any], Buffer] | None:
        """The answer from ``sql``'s prepared statement; None when there is none, or when it failed to run (the
        plain path then answers, with DuckDB's own message)."""
        plan = self.plans.get(sql)
        if plan is None:
            return None
        try:
            cursor = self.conn.execute(plan)
        except (self.duckdb.InterruptException, self.duckdb.OutOfMemoryException):
            raise  # the time or memory limit: the same verdict on either path, never run twice
        except self.duckdb.Error:
            self.plans.drop(sql)
            return None
        return self._fetch(cursor, cursor.description, head)

    def _fetch(self, cursor: Any, description: Any, head: int) -> tuple[dict[str, Any], Buffer]:
        """The first ``head`` rows for the answer; the whole result kept here when there are more.

        The head comes through ``fetchmany`` (DuckDB's own Python values, the cheapest path for the usual small
        result); only a larger result is streamed on as Arrow batches, and only up to the kept-results budget.
        """
        meta: dict[str, Any] = {"columns": [str(d[0]) for d in description], "types": [str(d[1]) for d in description]}
        first = cursor.fetchmany(head + 1)
        columns = [list(c) for c in zip(*first[:head], strict=True)] or [[] for _ in description]
        if len(first) <= head:
            meta["total_rows"] = len(first)
            if all(type(v) in _JSON_EXACT for row in first for v in row):
                meta["rows"] = first  # exact in JSON: spares Arrow on both sides for the usual small result
                return {"ok": True, "table": meta}, b""
            return {"ok": True, "table": meta}, _rows_to_bytes(meta["columns"], columns, None)
        import pyarrow as pa

        schema: Any = None
        head_batch: Any = None
        batches: list[Any] = []
        rows = size = len(first)
        try:
            reader = cursor.to_arrow_reader(8192)
            schema = reader.schema
            head_batch = _rows_to_batch(schema, first)
            if head_batch is not None:
                batches.append(head_batch)
                size = head_batch.nbytes
            for batch in reader:
                if head_batch is not None:
                    batches.append(batch)  # else: counted, not kept (df() then says the rest is not kept)
                rows += batch.num_rows
                size += batch.nbytes
                if size > self.keep_budget:
                    raise MemoryError(f"more than the {self.keep_budget} bytes kept for results")
        except BaseException as exc:  # out of memory, or interrupted: the first rows are still shown
            batches.clear()
            reader = batch = None  # let go of what was read before building the answer
            self._release()
            status = self._status(exc, self.interrupter.fired)
            error = str(exc) if status != "XX" else f"{type(exc).__name__}: {exc}"
            if status == "ML":
                error = (
                    f"the query's result does not fit in the SQL memory limit ({exc}); stopped after {rows} rows: "
                    "add a LIMIT, or aggregate"
                )
            return {
                "ok": False,
                "status": status,
                "error": error,
                "partial": {**meta, "rows_seen": rows},
            }, _rows_to_bytes(meta["columns"], columns, schema)
        if head_batch is None:
            meta["total_rows"] = rows
            return {"ok": True, "table": {**meta, "result": 0}}, _rows_to_bytes(meta["columns"], columns, schema)
        table = pa.Table.from_batches(batches, schema=schema)
        rid, self.next_id = self.next_id, self.next_id + 1
        self.kept[rid] = table
        self._evict(keep=rid)
        meta.update(total_rows=table.num_rows, result=rid)
        return {"ok": True, "table": meta}, _rows_to_bytes(meta["columns"], columns, schema)

    def _evict(self, keep: int) -> None:
        """Drop the oldest kept results until the rest fit the budget (the newest always stays)."""
        total = sum(t.nbytes for t in self.kept.values())
        for rid in list(self.kept):
            if total <= self.keep_budget or rid == keep:
                break
            total -= self.kept.pop(rid).nbytes


def _rows_to_bytes(names: list[str], columns: list[list[Any]], schema: Any) -> Buffer:
    """The head rows as an Arrow IPC stream: with DuckDB's schema when known, else types inferred from the values
    (DuckDB's Python values of one column share a type), with DuckDB's own conversion as the fallback."""
    import pyarrow as pa

    types = [field.type for field in schema] if schema is not None else [None] * len(columns)
    arrays = [_array(col, kind) for col, kind in zip(columns, types, strict=True)]
    return arrow_to_bytes(pa.Table.from_arrays(arrays, names=[f"c{i}" for i in range(len(names))]))


def _array(values: list[Any], kind: Any) -> Any:
    """One column of Python values as an Arrow array; a value Arrow cannot hold (a UUID, a HUGEINT past 64 bits)
    travels as its text."""
    import pyarrow as pa

    try:
        return pa.array(values, type=kind)
    except (pa.ArrowException, TypeError, ValueError, OverflowError):
        return pa.array([None if v is None else str(v) for v in values], pa.string())


def _rows_to_batch(schema: Any, rows: list[tuple[Any, ...]]) -> Any | None:
    """The head rows as a batch of the result's own schema, or None when they do not convert to it."""
    import pyarrow as pa

    columns = list(zip(*rows, strict=True))
    try:
        arrays = [pa.array(c, type=f.type) for c, f in zip(columns, schema, strict=True)]
    except (pa.ArrowException, TypeError, ValueError, OverflowError):
        return None
    return pa.RecordBatch.from_arrays(arrays, schema=schema)


def _has_rows(kind: str, description: Any) -> bool:
    """Whether a statement's result is a table to show, not a status (DDL's and DML's one "Count" column);
    ``INSERT ... RETURNING`` returns rows."""
    if description is None:
        return False
    status_only = len(description) == 1 and str(description[0][0]) == "Count"
    return not (status_only and kind in _STATUS_KINDS)


_STATUS_KINDS = frozenset({"CREATE", "DROP", "ALTER", "INSERT", "UPDATE", "DELETE", "CREATE_FUNC", "MERGE_INTO"})


class _Refused(Exception):
    """A statement the sandbox does not run."""


def _address_space() -> int:
    """This process's mapped address space now (VmSize), in bytes."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmSize:"):
                return int(line.split()[1]) * 1024
    return 0


def _cap_address_space(extra: int) -> None:
    """Cap the address space at what is mapped now (interpreter, DuckDB, pyarrow, threads) plus ``extra``."""
    if extra > 0:
        limit = _address_space() + extra
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))


def _die_with_parent() -> None:
    """Ask the kernel to kill this worker when the notebook's process dies (even in the middle of a query)."""
    parent = os.getppid()
    with contextlib.suppress(OSError, AttributeError):
        import ctypes
        import signal

        ctypes.CDLL(None, use_errno=True).prctl(1, int(signal.SIGKILL))  # PR_SET_PDEATHSIG
    if os.getppid() != parent:  # the parent died before the request took effect
        os._exit(0)


def main() -> None:
    _die_with_parent()
    # the protocol owns the original stdout; anything DuckDB or Python prints goes to stderr
    reader, fd_out = Reader(0), os.dup(1)
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    try:
        header, _ = reader.read()
        try:
            worker = Worker(header)
        except Exception as exc:
            write_message(fd_out, {"ok": False, "error": str(exc)})
            return
        _cap_address_space(int(header.get("address_space_extra") or 0))
        gc.freeze()  # the modules and the set-up are never garbage: collections scan only what queries make
        write_message(fd_out, {"ok": True, "version": worker.duckdb.__version__, "pid": os.getpid()})
        while True:
            header, body = reader.read()
            if header.get("op") == "close":
                return
            try:
                answer, data = worker.handle(header, body)
            except BaseException as exc:
                answer, data = {"ok": False, "status": "XX", "error": f"{type(exc).__name__}: {exc}"}, b""
            write_message(fd_out, answer, data)
    except WireError:
        return  # the host went away


if __name__ == "__main__":
    main()
