"""``execute("SELECT 1+1", "sql")`` vs a raw DuckDB cursor on one connection: prints the ratios of medians.

Baseline: ``conn.execute("SELECT 1+1 AS result").fetchall()`` on a reused DuckDB connection with the worker's
settings (sandbox, memory limit, threads) — the same query and the same fetch of its one row, in this process.
Measured, interleaved with the baseline in batches so machine noise hits every line alike:

- ``Client.execute``: Job building, routing, the round trip to the DuckDB worker process, fetching, Result —
  the same text again and again, so the worker runs it as a prepared statement (its statement cache);
- ``Client.execute`` with a new text each call (a counter in a comment): the cache never hits, DuckDB parses
  and plans every query as the raw cursor does;
- ``AsyncClient.execute`` and ``cc.aexecute`` awaited in one event loop: the same, plus the hop to a thread that
  keeps the event loop free (both reuse one worker: no 0.4 s start per call);
- a bare pipe round trip to a child process that echoes 100 bytes: the floor any worker design pays per query
  on this machine (two process wake-ups), to read the other lines against;
- the raw cursor and ``Client.execute`` once more, each call after 1 ms idle (the calling thread asleep, as a
  notebook is between cells): a query after a sleep pays for cold caches and a wake-up, which the back-to-back
  lines above never do in the raw cursor but always do in the worker (it sleeps on its pipe between queries).

Target ≤ 2× for ``Client.execute`` (the price of the worker process; see bench_sql_isolation.py for what it buys).

    python -m bench.bench_sql [--runs N] [--batch N]
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable

import duckdb

import codecapsule as cc
from codecapsule.engines.duckdb import _THREADS

SQL = "SELECT 1+1 AS result"
TARGET = 2.0
_IDLE = 0.001
_ECHO = "import os\nwhile (d := os.read(0, 65536)):\n    os.write(1, d)\n"


def per_call(fn: Callable[[], object], n: int) -> float:
    started = time.perf_counter()
    for _ in range(n):
        fn()
    return (time.perf_counter() - started) / n


def after_idle(fn: Callable[[], object], n: int) -> float:
    """Per call, each call after 1 ms asleep; only the calls are timed."""
    spent = 0.0
    for _ in range(n):
        time.sleep(_IDLE)
        started = time.perf_counter()
        fn()
        spent += time.perf_counter() - started
    return spent / n


def raw_connection() -> duckdb.DuckDBPyConnection:
    """A connection set up as the worker sets up its own (DuckDBEngine's defaults)."""
    raw = duckdb.connect()
    for statement in (
        "SET enable_progress_bar=false",
        f"SET threads={min(os.cpu_count() or 1, _THREADS)}",
        "SET memory_limit='1000000000B'",
        "SET temp_directory=''",
        "SET enable_external_access=false",
        "SET lock_configuration=true",
    ):
        raw.execute(statement)
    return raw


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--batch", type=int, default=200)
    args = parser.parse_args()

    raw = raw_connection()
    client = cc.Client()
    assert client.execute(SQL, "sql").table.rows == ((2,),)  # type: ignore[union-attr]
    loop = asyncio.new_event_loop()
    aclient = cc.AsyncClient()
    echo = subprocess.Popen([sys.executable, "-c", _ECHO], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    assert echo.stdin is not None and echo.stdout is not None
    to_child, from_child, ping = echo.stdin.fileno(), echo.stdout.fileno(), b"x" * 100

    counter = itertools.count()

    def pipe_round_trip() -> None:
        os.write(to_child, ping)
        os.read(from_child, 65536)

    async def many(call: Callable[[], object], n: int) -> float:
        started = time.perf_counter()
        for _ in range(n):
            await call()  # type: ignore[misc]
        return (time.perf_counter() - started) / n

    lines: dict[str, Callable[[int], float]] = {
        "raw DuckDB cursor": lambda n: per_call(lambda: raw.execute(SQL).fetchall(), n),
        "Client.execute": lambda n: per_call(lambda: client.execute(SQL, "sql"), n),
        "Client, new text": lambda n: per_call(lambda: client.execute(f"{SQL} -- {next(counter)}", "sql"), n),
        "AsyncClient.execute": lambda n: loop.run_until_complete(many(lambda: aclient.execute(SQL, "sql"), n)),
        "cc.aexecute": lambda n: loop.run_until_complete(many(lambda: cc.aexecute(SQL, "sql"), n)),
        "bare pipe round trip": lambda n: per_call(pipe_round_trip, n),
        "raw, after 1 ms idle": lambda n: after_idle(lambda: raw.execute(SQL).fetchall(), n // 4),
        "Client, after 1 ms idle": lambda n: after_idle(lambda: client.execute(SQL, "sql"), n // 4),
    }
    samples: dict[str, list[float]] = {name: [] for name in lines}
    for measure in lines.values():
        measure(50)  # warm: the workers are started, caches filled
    for _ in range(args.runs):
        for name, measure in lines.items():
            samples[name].append(measure(args.batch))
    medians = {name: statistics.median(values) * 1e3 for name, values in samples.items()}
    base = medians["raw DuckDB cursor"]
    print(f"{'':<22} {'ms/query':>9} {'ratio':>7}   (runs {args.runs} x {args.batch}, load {os.getloadavg()[0]:.2f})")
    for name, ms in medians.items():
        print(f"{name:<22} {ms:9.3f} {ms / base:6.2f}x")
    idle = medians["Client, after 1 ms idle"] / medians["raw, after 1 ms idle"]
    print(f"after idle: Client.execute {idle:.2f}x the raw cursor after idle")
    print(f"target: Client.execute <= {TARGET:g}x the raw cursor (the same query again)")
    loop.run_until_complete(aclient.aclose())
    loop.close()
    client.close()
    echo.stdin.close()
    echo.wait()


if __name__ == "__main__":
    main()
