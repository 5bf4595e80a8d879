"""Which SQL design keeps a notebook alive: in-process DuckDB + a memory watchdog, or the DuckDB worker process.

Each case runs in a fresh child python (so its peak RSS is its own), with ``sql_memory`` = 200 MB:

- ``inproc``: DuckDB in the host process, ``memory_limit`` set, bounded fetch (``fetchmany``), and a watchdog
  thread that polls the process's RSS every 5 ms and calls ``interrupt()`` past limit + 256 MB.
- ``worker``: ``codecapsule.Client`` (the DuckDB worker, RLIMIT_AS = its start-up size + limit + margin).

Printed per case: the outcome, the host's peak RSS, the worker's peak RSS, wall time. Then ``SELECT 1+1`` per call
for both. The list and repeat() cases are smaller than issue 11's (1e8 elements, 1.5 GB) to keep the in-process
runs short: in-process, ``len(range(1e8))`` peaked at 7.3 GB and took 43 s although the watchdog fired.

    python -m bench.bench_sql_isolation
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

LIMIT = 200_000_000
CASES = {
    "len(range(3e7))": "SELECT len(range(30000000))",
    "repeat 500 MB": "SELECT length(repeat('x', 500000000))",
    "80M-row result": "SELECT range AS n FROM range(80000000)",
    "cross join list": "SELECT list(a.range) FROM range(100000) a, range(10000) b",
}

INPROC = textwrap.dedent(
    """
    import json, resource, sys, threading, time
    import duckdb
    LIMIT, QUERY = int(sys.argv[1]), sys.argv[2]
    conn = duckdb.connect()
    for s in (f"SET memory_limit='{LIMIT}B'", "SET temp_directory=''", "SET enable_external_access=false",
              "SET lock_configuration=true"):
        conn.execute(s)
    page = resource.getpagesize()
    fired, stop = [], threading.Event()
    def rss():
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * page
    def watch():
        while not stop.wait(0.005):
            if rss() > LIMIT + (256 << 20):
                fired.append(rss()); conn.interrupt(); return
    threading.Thread(target=watch, daemon=True).start()
    started = time.perf_counter()
    try:
        cur = conn.execute(QUERY); cur.fetchmany(1001); outcome = "ok"
    except duckdb.Error as exc:
        outcome = type(exc).__name__
    stop.set()
    if fired:
        outcome += " (watchdog fired)"
    def hwm():  # this image's own peak (ru_maxrss would carry the parent's across exec)
        with open("/proc/self/status") as f:
            return int([l for l in f if l.startswith("VmHWM")][0].split()[1]) * 1024
    print(json.dumps({"outcome": outcome, "host": hwm(),
                      "worker": 0, "wall": time.perf_counter() - started}))
    """
)
WORKER = textwrap.dedent(
    """
    import json, resource, sys, time
    import codecapsule as cc
    LIMIT, QUERY = int(sys.argv[1]), sys.argv[2]
    with cc.Client(settings=cc.Settings(sql_memory=LIMIT)) as client:
        client.execute("SELECT 1", "sql")
        started = time.perf_counter()
        r = client.execute(QUERY, "sql", timeout=60)
        wall = time.perf_counter() - started
        with open("/proc/self/status") as f:
            host = int([l for l in f if l.startswith("VmHWM")][0].split()[1]) * 1024
    print(json.dumps({"outcome": r.verdict.value, "host": host,
                      "worker": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024, "wall": wall}))
    """
)
LATENCY = textwrap.dedent(
    """
    import statistics, time
    import duckdb
    import codecapsule as cc
    raw = duckdb.connect()
    client = cc.Client()
    client.execute("SELECT 1", "sql")
    def per_call(fn, n=200):
        t = time.perf_counter()
        for _ in range(n):
            fn()
        return (time.perf_counter() - t) / n
    b, w = [], []
    for _ in range(15):
        b.append(per_call(lambda: raw.execute("SELECT 1+1").fetchall()))
        w.append(per_call(lambda: client.execute("SELECT 1+1", "sql")))
    mb, mw = statistics.median(b) * 1e3, statistics.median(w) * 1e3
    print(f"SELECT 1+1: in-process cursor {mb:.3f} ms, worker execute() {mw:.3f} ms, ratio {mw / mb:.2f}x")
    client.close()
    """
)


def main() -> None:
    print(f"SQL memory limit {LIMIT / 1e6:.0f} MB; peak RSS in MB")
    print(f"{'case':<18} {'design':<7} {'outcome':<34} {'host':>6} {'worker':>7} {'wall s':>7}")
    for name, query in CASES.items():
        for design, code in (("inproc", INPROC), ("worker", WORKER)):
            proc = subprocess.run(
                [sys.executable, "-c", code, str(LIMIT), query], capture_output=True, text=True, timeout=120
            )
            if proc.returncode != 0:
                line = proc.stderr.strip().splitlines()[-1:] or [f"exit {proc.returncode}"]
                print(f"{name:<18} {design:<7} CRASHED: {line[0][:60]}")
                continue
            out = json.loads(proc.stdout.strip().splitlines()[-1])
            print(
                f"{name:<18} {design:<7} {out['outcome']:<34} {out['host'] / 1e6:>6.0f} "
                f"{out['worker'] / 1e6:>7.0f} {out['wall']:>7.2f}"
            )
    print(subprocess.run([sys.executable, "-c", LATENCY], capture_output=True, text=True, timeout=120).stdout.strip())


if __name__ == "__main__":
    main()
