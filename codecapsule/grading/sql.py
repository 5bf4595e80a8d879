"""Grading SQL: the student's query and each test's reference query, each on a fresh read-only copy of the
course database (so no student ever sees another's tables), compared by result equivalence."""

from __future__ import annotations

import os
import shutil
import tempfile
import threading
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from .._errors import InvalidTestSuite
from .._jobs import Job
from .._results import Result, Table, Verdict
from .equivalence import compare_tables
from .results import TestResult
from .runner import skipped
from .suite import TestCase, TestSuite

if TYPE_CHECKING:
    from .._client import Client

#: rows of a result that take part in the comparison; a larger result is reported, not compared
MAX_ROWS = 100_000

# reference results, shared by every student of a class: keyed by the database file's identity and the query
_references: dict[tuple[str | None, int, int, str, float], Result] = {}
_references_lock = threading.Lock()


def database_of(suite: TestSuite, test: TestCase) -> str | None:
    return test.database or suite.database


def check_databases(suite: TestSuite) -> None:
    """Every database the suite names exists (a teacher's mistake, reported before any student is graded)."""
    for test in suite.tests:
        path = database_of(suite, test)
        if path is not None and not Path(path).is_file():
            raise InvalidTestSuite(
                f"{suite.path or 'the test suite'}: test {test.name!r}: the database {path!r} does not exist; "
                "`database:` is relative to the test file."
            )


def run_on_copy(client: Client, job: Job, database: str | None) -> Result:
    """Run a SQL job on a fresh read-only copy of ``database`` (or a fresh in-memory database)."""
    from ..engines.duckdb import DuckDBEngine

    s = client.settings
    with tempfile.TemporaryDirectory(prefix="codecapsule-sql-") as tmp:
        target = ":memory:"
        if database is not None:
            target = str(Path(tmp) / Path(database).name)
            shutil.copyfile(database, target)
            wal = Path(database + ".wal")
            if wal.exists():
                shutil.copyfile(wal, target + ".wal")
        engine = DuckDBEngine(
            database=target,
            read_only=database is not None,
            sandbox=True,
            memory_limit=s.sql_memory,
            max_rows=MAX_ROWS,
        )
        try:
            return engine.run(job)
        finally:
            engine.close()


def _reference(client: Client, suite: TestSuite, test: TestCase, job: Job) -> Table:
    """The reference query's result, computed once per (database, query) for the whole class."""
    assert test.query is not None
    database = database_of(suite, test)
    stat = os.stat(database) if database is not None else None
    identity = (stat.st_mtime_ns, stat.st_size) if stat is not None else (0, 0)
    key = (database, *identity, test.query, job.limits.run_timeout or 0.0)
    with _references_lock:
        cached = _references.get(key)
    if cached is None:
        cached = run_on_copy(client, replace(job, files=(replace(job.files[0], content=test.query),)), database)
        with _references_lock:
            if len(_references) > 256:
                _references.clear()
            _references[key] = cached
    if cached.table is None or cached.verdict is not Verdict.OK:
        why = cached.error or "it returns no result set"
        raise InvalidTestSuite(
            f"{suite.path or 'the test suite'}: the reference query of test {test.name!r} fails: {why}"
        )
    return cached.table


def _score(suite: TestSuite, test: TestCase, mine: Result, want: Table) -> TestResult:
    if mine.verdict is not Verdict.OK:
        return TestResult(test, replace(mine, name=test.name), False, 0)
    if mine.table is None:
        diff: str | None = "your SQL returns no result set: the last statement must be a query (SELECT ...)."
    elif mine.table.truncated or want.truncated:
        diff = f"the result has more than {MAX_ROWS:,} rows: too large to compare."
    else:
        diff = compare_tables(mine.table, want, order=test.order, columns=test.columns, tolerance=test.tolerance)
    verdict = Verdict.OK if diff is None else Verdict.WRONG_ANSWER
    result = replace(mine, name=test.name, verdict=verdict, diff=diff)
    return TestResult(test, result, diff is None, test.points if diff is None else 0)


def grade_sql(client: Client, job: Job, suite: TestSuite, *, stop: bool) -> list[TestResult]:
    """Every SQL test: the student's query runs once per database (fresh copy), compared with each reference."""
    check_databases(suite)
    mine: dict[str | None, Result] = {}
    out: list[TestResult] = []
    for test in suite.tests:
        if stop and out and not out[-1].passed:
            out.append(skipped(test))
            continue
        want = _reference(client, suite, test, job)
        database = database_of(suite, test)
        if database not in mine:
            mine[database] = run_on_copy(client, job, database)
        out.append(_score(suite, test, mine[database], want))
    return out
