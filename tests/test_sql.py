"""The SQL tier on a real DuckDB: session state, sandbox, timeouts, row caps, errors as Results."""

from __future__ import annotations

from pathlib import Path

import pytest

import codecapsule as cc


@pytest.fixture
def client() -> cc.Client:
    with cc.Client(settings=cc.Settings(max_rows=10)) as c:
        yield c


def test_select_returns_a_table(client: cc.Client) -> None:
    r = client.execute("SELECT 1+1 AS result", "sql")
    assert (r.verdict, r.engine, r.language) == ("ok", "duckdb", "sql")
    assert r.table is not None
    assert (r.table.columns, r.table.rows, r.table.types) == (("result",), ((2,),), ("INTEGER",))


def test_state_lives_across_calls_and_the_last_statement_is_returned(client: cc.Client) -> None:
    r = client.execute("CREATE TABLE t(x INT); INSERT INTO t VALUES (1), (2), (3); SELECT sum(x) AS s FROM t", "sql")
    assert r.table is not None and r.table.rows == ((6,),)
    assert client.execute("SELECT count(*) FROM t", "sql").table.rows == ((3,),)  # type: ignore[union-attr]
    ddl = client.execute("CREATE TABLE u(y INT)", "sql")
    assert ddl.ok


def test_large_results_are_capped_for_display_but_fully_reachable(client: cc.Client) -> None:
    r = client.execute("SELECT range AS n FROM range(5000)", "sql")
    assert r.table is not None
    assert (len(r.table.rows), r.table.total_rows, r.table.truncated) == (10, 5000, True)
    df = r.table.df()
    assert len(df) == 5000 and list(df["n"][:3]) == [0, 1, 2] and int(df["n"].iloc[-1]) == 4999
    assert r.table.arrow().num_rows == 5000


@pytest.mark.parametrize(
    ("sql", "needle"),
    [
        ("SELECT * FROM read_csv('/etc/passwd')", "/etc/passwd"),
        ("CREATE TABLE t AS SELECT 1; COPY t TO '/tmp/codecapsule-leak.csv'", "codecapsule-leak"),
        ("INSTALL httpfs", "extensions"),
        ("ATTACH 'other.db'", "other.db"),
        ("SET enable_external_access=true", "locked"),
        ("SET memory_limit='100GB'", "locked"),
    ],
)
def test_the_sandbox_refuses_files_extensions_and_settings(client: cc.Client, sql: str, needle: str) -> None:
    r = client.execute(sql, "sql")
    assert r.verdict == "runtime_error"
    assert r.error is not None and needle in r.error
    assert not Path("/tmp/codecapsule-leak.csv").exists()


def test_exploding_cross_join_is_a_memory_error_and_the_connection_survives() -> None:
    with cc.Client(settings=cc.Settings(sql_memory="200MB")) as c:
        r = c.execute("SELECT list(a.range) FROM range(100000) a, range(10000) b", "sql")
        assert r.verdict == "memory_limit" and "Out of Memory" in (r.error or "")
        assert c.execute("SELECT 42 AS x", "sql").table.rows == ((42,),)  # type: ignore[union-attr]


def test_query_timeout_interrupts_and_the_connection_survives(client: cc.Client) -> None:
    r = client.execute(
        "SELECT count(*) FROM range(100000000) a, range(100000000) b WHERE a.range * b.range = 7", "sql", timeout=0.3
    )
    assert r.verdict == "time_limit" and "0.3 s" in (r.error or "")
    assert client.execute("SELECT 1 AS one", "sql").ok


def test_sql_errors_are_results_with_duckdbs_message(client: cc.Client) -> None:
    r = client.execute("SELEC 1", "sql")
    assert r.verdict == "runtime_error" and r.error is not None and "syntax error" in r.error
    assert "LINE 1" in r.stderr


def test_dataframes_are_registered_explicitly(client: cc.Client) -> None:
    import pandas as pd

    client.sql.register("people", pd.DataFrame({"name": ["ada", "alan"], "age": [36, 41]}))
    r = client.execute("SELECT name FROM people WHERE age > 40", "sql")
    assert r.table is not None and r.table.rows == (("alan",),)


def test_read_only_course_database(tmp_path: Path) -> None:
    import duckdb

    path = tmp_path / "course.duckdb"
    with duckdb.connect(str(path)) as conn:
        conn.execute("CREATE TABLE students AS SELECT * FROM (VALUES ('ada'), ('grace')) t(name)")
    with cc.Client(settings=cc.Settings(database=str(path), database_read_only=True)) as c:
        assert c.execute("SELECT count(*) AS n FROM students", "sql").table.rows == ((2,),)  # type: ignore[union-attr]
        r = c.execute("DELETE FROM students", "sql")
        assert r.verdict == "runtime_error" and "read-only" in (r.error or "")


def test_expected_output_for_sql_compares_csv(client: cc.Client) -> None:
    assert client.execute("SELECT 1 AS a, 'x' AS b", "sql", expect="a,b\n1,x\n").verdict == "ok"
    assert client.execute("SELECT 2 AS a", "sql", expect="a\n1\n").verdict == "wrong_answer"


def test_unsandboxed_connection_is_an_explicit_opt_out(tmp_path: Path) -> None:
    csv_file = tmp_path / "data.csv"
    csv_file.write_text("x\n1\n2\n")
    with cc.Client(settings=cc.Settings(sql_sandbox=False)) as c:
        r = c.execute(f"SELECT sum(x) AS s FROM read_csv('{csv_file}')", "sql")
        assert r.table is not None and r.table.rows == ((3,),)
        assert "NOT sandboxed" in c.sql.info().isolation


async def test_module_aexecute_keeps_the_default_clients_sql_session() -> None:
    # one worker for every aexecute() (and execute()) call: the table of one call is there for the next
    created = await cc.aexecute("CREATE OR REPLACE TABLE aexecute_session AS SELECT 42 AS x", "sql")
    assert created.ok, created.error
    again = await cc.aexecute("SELECT x FROM aexecute_session", "sql")
    assert again.table is not None and again.table.rows == ((42,),)
    assert cc.execute("SELECT x FROM aexecute_session", "sql").table.rows == ((42,),)  # type: ignore[union-attr]


async def test_async_client_runs_concurrent_sql_on_its_one_session() -> None:
    import asyncio

    async with cc.AsyncClient() as client:
        assert (await client.execute("CREATE TABLE n AS SELECT range AS i FROM range(10)", "sql")).ok
        results = await asyncio.gather(
            *(client.execute(f"SELECT count(*) AS c FROM n WHERE i < {k}", "sql") for k in range(8))
        )
    assert [r.table.rows if r.table else r.error for r in results] == [((k,),) for k in range(8)]
