"""``execute("SELECT 1+1", "sql")`` vs a raw DuckDB cursor on one connection: prints the ratio of medians.

Baseline: ``conn.execute("SELECT 1+1 AS result").fetchall()`` on a sandboxed DuckDB connection.
Measured: ``Client.execute`` (Job building, routing, the round trip to the DuckDB worker process, fetching,
Result) on its own session with the same sandbox. Interleaved batches; target ≤ 2× (the price of the worker
process; see bench_sql_isolation.py for what it buys) and well under 1 ms absolute.

    python -m bench.bench_sql [--runs N]
"""

from __future__ import annotations

import argparse
import statistics
import time

import duckdb

import codecapsule as cc

SQL = "SELECT 1+1 AS result"


def per_call(fn: object, n: int) -> float:
    started = time.perf_counter()
    for _ in range(n):
        fn()  # type: ignore[operator]
    return (time.perf_counter() - started) / n


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--batch", type=int, default=200)
    args = parser.parse_args()

    raw = duckdb.connect()
    for stmt in ("SET memory_limit='1000000000B'", "SET temp_directory=''", "SET enable_external_access=false",
                 "SET lock_configuration=true"):
        raw.execute(stmt)
    client = cc.Client()
    assert client.execute(SQL, "sql").table.rows == ((2,),)  # type: ignore[union-attr]

    def baseline() -> None:
        raw.execute(SQL).fetchall()

    def capsule() -> None:
        client.execute(SQL, "sql")

    per_call(baseline, 50), per_call(capsule, 50)
    b, c = [], []
    for _ in range(args.runs):
        b.append(per_call(baseline, args.batch))
        c.append(per_call(capsule, args.batch))
    mb, mc = statistics.median(b) * 1e3, statistics.median(c) * 1e3
    print(f"raw DuckDB cursor   {mb:.3f} ms per query")
    print(f"codecapsule.execute {mc:.3f} ms per query")
    print(f"ratio {mc / mb:.2f}x (target <= 2x; absolute target well under 1 ms)")
    client.close()


if __name__ == "__main__":
    main()
