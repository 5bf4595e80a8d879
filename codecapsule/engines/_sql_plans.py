"""The SQL worker's statement cache: a query whose exact text comes again runs as a DuckDB prepared statement.

Like the statement cache of Python's ``sqlite3``: parsing, binding and planning are most of what a small query
costs in DuckDB (``SELECT 1+1``: 0.2 ms run as text, 0.03 ms as ``EXECUTE`` of a prepared statement, measured
in one process), and DuckDB's Python API prepares afresh on every ``execute``. Only a single ``SELECT`` without
parameters that has already run fine once is prepared (on its second run: a query run once costs nothing
extra). DuckDB binds a prepared statement again by itself when a table it reads was replaced, so a cached plan
sees the session as it is; and any error on the prepared path is answered by running the text the plain way
(see ``Worker._run``), so what a student sees never depends on the cache.

The statements are named with :data:`PREFIX`; the sandbox refuses student statements that name them.
"""

from __future__ import annotations

import contextlib
from collections import OrderedDict
from typing import Any

PREFIX = "__codecapsule_plan_"
PLANS = 64  # prepared statements kept; the least recently used is deallocated
_SEEN = 256  # texts remembered (run once) to be prepared when they come again


class Plans:
    """Prepared statements by query text, for one DuckDB connection."""

    def __init__(self, conn: Any, duckdb: Any) -> None:
        self._conn, self._duckdb = conn, duckdb
        self._plans: OrderedDict[str, tuple[str, Any]] = OrderedDict()  # text → (name, its EXECUTE statement)
        self._seen: OrderedDict[str, None] = OrderedDict()
        self._count = 0

    def get(self, sql: str) -> Any | None:
        """The ``EXECUTE`` statement for ``sql``, or None when it is not prepared."""
        entry = self._plans.get(sql)
        if entry is None:
            return None
        self._plans.move_to_end(sql)
        return entry[1]

    def ran(self, sql: str, query: str) -> None:
        """``sql`` (one SELECT, no parameters, ``query`` its statement text) ran fine: prepare it the second time."""
        if sql in self._plans:
            return
        if sql not in self._seen:
            self._seen[sql] = None
            if len(self._seen) > _SEEN:
                self._seen.popitem(last=False)
            return
        del self._seen[sql]
        self._count += 1
        name = f"{PREFIX}{self._count}"
        prepare = f"PREPARE {name} AS\n{query}"  # on its own line: a trailing "-- comment" ends with the text
        try:
            parsed = self._duckdb.extract_statements(prepare)
            if len(parsed) != 1 or parsed[0].type.name != "PREPARE":
                return  # the text does not stand on its own as one statement: never cached
            self._conn.execute(parsed[0])
            execute = self._duckdb.extract_statements(f"EXECUTE {name}")[0]
        except self._duckdb.Error:
            return
        self._plans[sql] = (name, execute)
        if len(self._plans) > PLANS:
            _, (oldest, _) = self._plans.popitem(last=False)
            self._deallocate(oldest)

    def drop(self, sql: str) -> None:
        """Forget ``sql``'s prepared statement (it failed: the plain path runs it from now on, until seen again)."""
        entry = self._plans.pop(sql, None)
        if entry is not None:
            self._deallocate(entry[0])

    def _deallocate(self, name: str) -> None:
        with contextlib.suppress(self._duckdb.Error):  # a student's DEALLOCATE may have been first
            self._conn.execute(f"DEALLOCATE {name}")
