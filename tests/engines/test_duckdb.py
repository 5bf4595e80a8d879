"""The DuckDB worker on a real DuckDB: hostile queries in a memory-capped child, restarts, bounded fetches,
the course-data allowlist, parameters and what a multi-statement call says it did."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import codecapsule as cc
from codecapsule.engines.duckdb import ADDRESS_SPACE_MARGIN

pytestmark = pytest.mark.timeout(180)
ROOT = Path(__file__).resolve().parents[2]

# The host runs in its own python whose address space is capped (RLIMIT_AS); it reports what it saw as JSON.
HOSTILE = textwrap.dedent(
    """
    import json, resource, sys
    resource.setrlimit(resource.RLIMIT_AS, (HOST_CAP, HOST_CAP))
    import codecapsule as cc

    out = {}
    with cc.Client(settings=cc.Settings(sql_memory="200MB")) as c:
        c.execute("CREATE TABLE keep AS SELECT 42 AS x", "sql")
        for name, query in QUERIES.items():
            r = c.execute(query, "sql", timeout=20)
            keep = c.execute("SELECT x FROM keep", "sql")
            out[name] = [r.verdict.value, r.error or "", keep.table.rows[0][0] if keep.table else None,
                         len(r.table.rows) if r.table else 0]
        out["after"] = c.execute("SELECT 1 + 1 AS two", "sql").table.rows[0][0]
        # VmHWM: this image's own peak (ru_maxrss would carry the forking pytest's peak across exec)
        out["host_peak_kb"] = int([l for l in open("/proc/self/status") if l.startswith("VmHWM")][0].split()[1])
    out["worker_peak_kb"] = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss  # the closed worker's peak
    print(json.dumps(out))
    """
)
QUERIES = {
    "list": "SELECT len(range(100000000))",
    "repeat": "SELECT length(repeat('x', 1500000000))",
    "rows": "SELECT range AS n FROM range(80000000)",
    "cross": "SELECT list(a.range) FROM range(100000) a, range(10000) b",
}


def test_hostile_queries_end_with_a_verdict_and_neither_process_grows_past_the_limit() -> None:
    host_cap = 2 << 30
    code = HOSTILE.replace("HOST_CAP", str(host_cap)).replace("QUERIES", repr(QUERIES))
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=150)
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    for name in QUERIES:
        verdict, error, kept, _ = out[name]
        assert verdict == "memory_limit", out
        assert "Out of Memory" in error or "does not fit" in error, out
        assert kept == 42, out  # earlier tables intact
    assert out["after"] == 2
    # in-process DuckDB peaks at 1.2-1.5 GB on the first two queries; here the host holds no result
    assert out["host_peak_kb"] * 1024 < 200 << 20, out
    # the worker: its start-up (~70 MB resident) + the SQL limit + the documented margin
    assert out["worker_peak_kb"] * 1024 < 200_000_000 + ADDRESS_SPACE_MARGIN + (100 << 20), out


@pytest.fixture
def client() -> cc.Client:
    with cc.Client(settings=cc.Settings(max_rows=10)) as c:
        yield c


def worker_pid(client: cc.Client) -> int:
    client.sql.start()
    worker = client.sql._worker
    assert worker is not None
    return int(worker.process.pid)


def test_a_killed_worker_is_a_verdict_and_the_next_query_finds_the_tables(client: cc.Client) -> None:
    client.execute("CREATE TABLE t AS SELECT range AS x FROM range(5); INSERT INTO t VALUES (99)", "sql")
    first = worker_pid(client)
    os.kill(first, signal.SIGKILL)  # as the kernel's OOM killer would
    r = client.execute("SELECT count(*) FROM t", "sql")
    assert r.verdict == "signal" and "SIGKILL" in (r.error or "") and "committed tables are kept" in (r.error or "")
    again = client.execute("SELECT count(*) AS n, max(x) AS top FROM t", "sql")
    assert again.table is not None and again.table.rows == ((6, 99),)
    assert worker_pid(client) != first


def test_ctrl_c_like_interrupt_keeps_the_worker(client: cc.Client) -> None:
    client.execute("CREATE TABLE t AS SELECT 1 AS x", "sql")
    pid = worker_pid(client)
    r = client.execute("SELECT count(*) FROM range(100000000000)", "sql", timeout=0.3)
    assert r.verdict == "time_limit" and r.error == "query interrupted after the 0.3 s time limit"
    assert worker_pid(client) == pid  # interrupted, not killed
    assert client.execute("SELECT x FROM t", "sql").table.rows == ((1,),)  # type: ignore[union-attr]


def test_results_are_fetched_bounded_and_reachable_until_evicted() -> None:
    with cc.Client(settings=cc.Settings(max_rows=10, sql_memory="64MB")) as c:
        a = c.execute("SELECT range AS n FROM range(2000000)", "sql")  # 16 MB kept in the worker
        assert a.table is not None and (len(a.table.rows), a.table.total_rows, a.table.truncated) == (10, 2000000, True)
        assert a.table.arrow().num_rows == 2000000 and int(a.table.df()["n"].iloc[-1]) == 1999999
        b = c.execute("SELECT range AS n, range AS m FROM range(1500000)", "sql")  # 24 MB: A no longer fits
        assert b.table is not None and len(b.table.df()) == 1500000
        with pytest.raises(cc.EngineError, match="no longer kept"):
            a.table.df()
        big = c.execute("SELECT range AS n, range AS m FROM range(4000000)", "sql")  # 64 MB > the 32 MB kept
        assert big.verdict == "memory_limit" and "LIMIT" in (big.error or "")
        assert big.table is not None and len(big.table.rows) == 10 and big.table.truncated


def test_multi_statement_calls_say_what_they_did(client: cc.Client) -> None:
    r = client.execute(
        "CREATE OR REPLACE TABLE s(id INT, name TEXT); INSERT INTO s VALUES (1, 'a'), (2, 'b');"
        "UPDATE s SET name = 'c' WHERE id = 2; DELETE FROM s WHERE id = 1; CREATE VIEW v AS SELECT * FROM s",
        "sql",
    )
    assert r.ok and r.table is None
    assert r.stdout == "created table s; inserted 2 rows; updated 1 row; deleted 1 row; created view v"
    again = client.execute("CREATE OR REPLACE TABLE s(id INT); INSERT INTO s VALUES (7)", "sql")
    assert again.ok and again.stdout == "created table s; inserted 1 row"


def test_a_failing_statement_says_what_ran_before_it(client: cc.Client) -> None:
    r = client.execute("CREATE TABLE f(x INT); INSERT INTO f VALUES (1); SELECT * FROM nope", "sql")
    assert r.verdict == "runtime_error"
    assert "(before it: created table f; inserted 1 row)" in (r.error or "")
    assert 'Did you mean "pg_' not in (r.error or "")


def test_parameters_are_values_never_sql(client: cc.Client) -> None:
    client.execute("CREATE TABLE users(name TEXT, age INT); INSERT INTO users VALUES ('ada', 36), ('bob', 20)", "sql")
    r = client.sql.execute("SELECT name FROM users WHERE age > $min ORDER BY name", {"min": 30})
    assert r.table is not None and r.table.rows == (("ada",),)
    hostile = "x' OR '1'='1"
    r = client.sql.execute("SELECT count(*) AS n FROM users WHERE name = $name", {"name": hostile})
    assert r.table is not None and r.table.rows == ((0,),)
    import datetime

    r = client.sql.execute("SELECT $day + 1 AS next", {"day": datetime.date(2025, 1, 31)})
    assert r.table is not None and r.table.rows == ((datetime.date(2025, 2, 1),),)
    missing = client.sql.execute("SELECT $nothing")
    assert missing.verdict == "runtime_error" and "nothing" in (missing.error or "")


@pytest.fixture
def course(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    data = tmp_path / "data"
    data.mkdir()
    (data / "grades.csv").write_text("name,grade\nada,9\nbob,6\n")
    (tmp_path / "secret.csv").write_text("password\nhunter2\n")
    return data


def test_course_data_is_readable_and_nothing_else(course: Path) -> None:
    with cc.Client(settings=cc.Settings(sql_data=("data",))) as c:
        r = c.execute("SELECT name FROM read_csv('data/grades.csv') WHERE grade > 8", "sql")
        assert r.table is not None and r.table.rows == (("ada",),)
        assert "reads files only under" in c.sql.info().isolation
        for query in (
            "SELECT * FROM read_csv('secret.csv')",
            "SELECT * FROM read_csv('data/../secret.csv')",
            "SELECT * FROM read_csv('/etc/passwd')",
            "COPY (SELECT 'x' AS y) TO 'data/out.csv'",
            "CREATE TABLE g AS SELECT 1 AS x; COPY g TO 'data/grades.csv'",
            "EXPORT DATABASE 'data/dump'",
            "ATTACH 'data/new.duckdb'",
        ):
            r = c.execute(query, "sql")
            assert r.verdict == "runtime_error", query
        assert sorted(p.name for p in course.iterdir()) == ["grades.csv"]
        assert (course / "grades.csv").read_text() == "name,grade\nada,9\nbob,6\n"


def test_course_data_from_the_environment_and_bad_directories(course: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CODECAPSULE_SQL_DATA", str(course))
    assert cc.Settings.from_env().sql_data == (str(course),)
    with pytest.raises(cc.ConfigurationError, match="does not exist"):
        cc.Settings(sql_data=("no-such-dir",))


def test_the_allowlist_can_grow_without_losing_the_session(course: Path) -> None:
    with cc.Client() as c:
        c.execute("CREATE TABLE t AS SELECT 5 AS x", "sql")
        assert c.execute("SELECT * FROM read_csv('data/grades.csv')", "sql").verdict == "runtime_error"
        c.sql.allow_directories([course])
        assert c.execute("SELECT count(*) FROM read_csv('data/grades.csv')", "sql").table.rows == ((2,),)  # type: ignore[union-attr]
        assert c.execute("SELECT x FROM t", "sql").table.rows == ((5,),)  # type: ignore[union-attr]


def test_registered_frames_survive_a_restart(client: cc.Client) -> None:
    import pandas as pd

    client.sql.register("people", pd.DataFrame({"name": ["ada", "alan"], "age": [36, 41]}))
    os.kill(worker_pid(client), signal.SIGKILL)
    client.execute("SELECT 1", "sql")  # notices the dead worker
    r = client.execute("SELECT name FROM people WHERE age > 40", "sql")
    assert r.table is not None and r.table.rows == (("alan",),)


def test_closing_removes_the_private_session_directory() -> None:
    c = cc.Client()
    c.execute("CREATE TABLE t AS SELECT 1", "sql")
    directory = c.sql._dir
    assert directory is not None and (directory / "session.duckdb").exists()
    assert oct(directory.stat().st_mode & 0o777) == "0o700"
    c.close()
    assert not directory.exists()


def test_the_worker_dies_with_the_notebook_even_mid_query() -> None:
    host = textwrap.dedent(
        """
        import sys, threading
        import codecapsule as cc
        c = cc.Client()
        c.sql.start()
        print(c.sql._worker.process.pid, flush=True)
        c.execute("SELECT count(*) FROM range(100000000000) a, range(1000) b", "sql", timeout=120)
        """
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-c", host], stdout=subprocess.PIPE, text=True, env=env)
    assert proc.stdout is not None
    worker = int(proc.stdout.readline())
    proc.kill()
    proc.wait()
    import time

    deadline = time.monotonic() + 30
    while Path(f"/proc/{worker}").exists() and "Z" not in _state(worker) and time.monotonic() < deadline:
        time.sleep(0.05)  # polling for the kernel's PDEATHSIG to land (not synchronising our own code)
    assert not Path(f"/proc/{worker}").exists() or "Z" in _state(worker)


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return "gone"


def test_a_query_that_ignores_the_interrupt_is_killed_and_the_tables_survive() -> None:
    with cc.Client(settings=cc.Settings(sql_memory="2GB")) as c:
        c.execute("CREATE TABLE t AS SELECT 7 AS x", "sql")
        first = worker_pid(c)
        c.sql.kill_grace = 0.05
        # building one 100M-element list is a single step: DuckDB looks at the interrupt only after it
        r = c.execute("SELECT len(range(100000000))", "sql", timeout=0.01)
        assert r.verdict == "time_limit" and "committed tables are kept" in (r.error or ""), r.error
        assert c.execute("SELECT x FROM t", "sql").table.rows == ((7,),)  # type: ignore[union-attr]
        assert worker_pid(c) != first
