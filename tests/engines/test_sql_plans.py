"""The SQL worker's statement cache on a real DuckDB worker: a repeated query runs prepared, sees the session as
it is, fails with DuckDB's own message, and a student's statements cannot touch the cache's names."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from codecapsule.engines._sql_plans import PREFIX
from codecapsule.engines.duckdb import DuckDBEngine

pytestmark = pytest.mark.timeout(120)
PLANS = (
    "SELECT statement FROM duckdb_prepared_statements() WHERE name LIKE '__codecapsule_plan_%' "
    "AND statement NOT LIKE '%duckdb_prepared_statements%' ORDER BY name"
)


@pytest.fixture
def engine() -> Iterator[DuckDBEngine]:
    e = DuckDBEngine()
    yield e
    e.close()


def plans(engine: DuckDBEngine) -> list[str]:
    table = engine.execute(PLANS).table
    assert table is not None
    return [row[0].strip() for row in table.rows]


def test_a_query_is_prepared_when_it_comes_again_and_sees_replaced_tables(engine: DuckDBEngine) -> None:
    engine.execute("CREATE TABLE t AS SELECT 1 AS a")
    query = "SELECT * FROM t"
    first = engine.execute(query)
    assert plans(engine) == []  # run once: nothing prepared
    second, third = engine.execute(query), engine.execute(query)
    assert plans(engine) == [query]
    assert [r.table.rows if r.table else r.error for r in (first, second, third)] == [((1,),)] * 3
    engine.execute("CREATE OR REPLACE TABLE t AS SELECT 'x' AS b, 2 AS c; INSERT INTO t VALUES ('y', 3)")
    replaced = engine.execute(query)  # the prepared statement is bound again by DuckDB
    assert replaced.table is not None
    assert (replaced.table.columns, replaced.table.rows) == (("b", "c"), (("x", 2), ("y", 3)))


def test_a_prepared_query_that_fails_says_what_the_plain_query_says(engine: DuckDBEngine) -> None:
    engine.execute("CREATE TABLE gone AS SELECT 'abc' AS v")
    for query in ("SELECT * FROM gone", "SELECT v::INT + 0 AS n FROM gone WHERE v <> 'abc'"):
        assert engine.execute(query).ok and engine.execute(query).ok
    assert len(plans(engine)) == 2
    engine.execute("INSERT INTO gone VALUES ('x')")
    cast = engine.execute("SELECT v::INT + 0 AS n FROM gone WHERE v <> 'abc'")
    assert cast.verdict == "runtime_error"
    assert "Could not convert string 'x'" in (cast.error or "") and "LINE 1: SELECT v::INT" in (cast.error or "")
    engine.execute("DROP TABLE gone")
    dropped = engine.execute("SELECT * FROM gone")
    assert dropped.verdict == "runtime_error"
    assert "Table with name gone does not exist" in (dropped.error or "")
    assert "LINE 1: SELECT * FROM gone" in (dropped.error or "")  # DuckDB's own message, not the EXECUTE's
    assert plans(engine) == []  # both dropped; the plain path runs them until they succeed twice again


@pytest.mark.parametrize(
    "statement",
    [
        f"PREPARE {PREFIX}1 AS SELECT 'not yours'",
        f"EXECUTE {PREFIX}1",
        f'DEALLOCATE "{PREFIX.upper()}1"',
        f"/* hidden */ PREPARE {PREFIX}2 AS SELECT 1",
    ],
)
def test_a_students_statement_cannot_replace_the_caches_own(engine: DuckDBEngine, statement: str) -> None:
    for _ in range(2):
        engine.execute("SELECT 40 + 2 AS answer")  # prepared as PREFIX + "1"
    r = engine.execute(statement)
    assert r.verdict == "runtime_error" and "refused" in (r.error or "")
    again = engine.execute("SELECT 40 + 2 AS answer")
    assert again.table is not None and again.table.rows == ((42,),)


def test_a_students_own_prepared_statements_and_parameters_still_work(engine: DuckDBEngine) -> None:
    mine = engine.execute("PREPARE mine AS SELECT 7 AS seven; EXECUTE mine")
    assert mine.table is not None and mine.table.rows == ((7,),)
    values = [engine.execute("SELECT $x * 2 AS y", {"x": x}).table for x in range(3)]
    assert [t.rows if t else None for t in values] == [((0,),), ((2,),), ((4,),)]
    assert plans(engine) == []  # with parameters, or several statements: never cached
