"""Piston client benchmarks against the Piston-compatible test server (prints numbers; no assertions).

1. Client overhead per execute: ``PistonEngine.run(job)`` vs a raw ``httpx.Client.post`` of the same JSON to
the
   same server, which answers a fixed execute JSON after a fixed 1 ms (so local execution does not dominate).
   Target ≤ 1.10×.
2. A batch of 200 jobs at concurrency 16 against a fixed 50 ms service time, vs the ideal 200/16 × 50 ms.
   Target ≤ 1.2×. Both the sync ``Client.execute_many`` and the async ``AsyncClient.map``.
3. Request shaping (``piston_shape.shape``) for a two-file Java job that needs merging, against ``json.dumps`` of
   the same payload (what the client pays anyway).
4. Local Python start-up with the one Python launch (sibling modules, exit()/quit()) against the old
   ``python3 -I -S -B main.py``, both run directly (no sandbox), interleaved.

Run: ``.venv/bin/python -m bench.bench_piston`` from the repository root.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator

import httpx

from codecapsule import AsyncClient, Client, Job, Settings
from codecapsule.engines.piston import PistonEngine
from codecapsule.engines.piston_protocol import execute_payload

FIXED = json.dumps({"language": "python", "version": "3.11.2", "run": {
    "stdout": "42\n", "stderr": "", "output": "42\n", "code": 0, "signal": None, "message": None, "status": None,
    "cpu_time": 12, "wall_time": 12, "memory": 8000000}}).encode()


@contextlib.contextmanager
def server_process(service_time: float) -> Iterator[str]:
    """The test server in its own process (a real Piston is elsewhere too: no GIL shared with the client)."""
    with tempfile.NamedTemporaryFile("wb", suffix=".json", delete=False) as f:
        f.write(FIXED)
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    proc = subprocess.Popen([sys.executable, "-m", "tests.fakes.piston", "--fixed", f.name, "--service-time",
                             str(service_time)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=root)
    try:
        assert proc.stdout is not None
        yield proc.stdout.readline().strip()
    finally:
        assert proc.stdin is not None
        proc.stdin.close()
        proc.wait(10)
        os.unlink(f.name)


def overhead(n: int = 300, rounds: int = 7) -> None:
    with server_process(0.001) as base_url:
        job = Job.create("print(42)", "python")
        body = execute_payload(job)
        url = base_url + "/api/v2/execute"
        raw = httpx.Client()
        engine = PistonEngine(Settings(piston_url=base_url))
        for _ in range(50):  # warm both connections
            raw.post(url, json=body).json()
            engine.run(job)
        raw_t, ours_t = [], []
        for _ in range(rounds):  # interleaved rounds, so drift hits both sides alike
            t = time.perf_counter()
            for _ in range(n):
                raw.post(url, json=body).json()
            raw_t.append((time.perf_counter() - t) / n)
            t = time.perf_counter()
            for _ in range(n):
                engine.run(job)
            ours_t.append((time.perf_counter() - t) / n)
        raw.close()
        engine.close()
    r, o = statistics.median(raw_t), statistics.median(ours_t)
    print(f"execute round trip (server answers a fixed JSON after 1 ms): raw httpx POST {r * 1000:.3f} ms, "
          f"PistonEngine.run {o * 1000:.3f} ms, overhead {(o - r) * 1000:.3f} ms → ratio {o / r:.3f}× (target ≤ 1.10×)")


def batch(n: int = 200, concurrency: int = 16, service: float = 0.05) -> None:
    ideal = n / concurrency * service
    jobs = [Job.create("print(42)", "python", stdin=str(i)) for i in range(n)]
    with server_process(service) as base_url:
        with Client(piston_url=base_url, engine="piston") as c:
            c.execute_many(jobs[:concurrency], concurrency=concurrency)  # warm the pool
            t = time.perf_counter()
            results = c.execute_many(jobs, concurrency=concurrency)
            sync_t = time.perf_counter() - t
        assert len(results) == n and all(r.ok for r in results)

        async def run_async() -> float:
            async with AsyncClient(piston_url=base_url, engine="piston") as ac:
                await ac.map(jobs[:concurrency], concurrency=concurrency)
                t = time.perf_counter()
                res = await ac.map(jobs, concurrency=concurrency)
                assert len(res) == n and all(r.ok for r in res)
                return time.perf_counter() - t

        async_t = asyncio.run(run_async())
    print(f"batch of {n} at concurrency {concurrency}, {service * 1000:.0f} ms service time: ideal {ideal:.3f} s "
          f"(rounds: {-(-n // concurrency) * service:.3f} s)")
    print(f"  sync  Client.execute_many: {sync_t:.3f} s → ratio {sync_t / ideal:.3f}× (target ≤ 1.2×)")
    print(f"  async AsyncClient.map:     {async_t:.3f} s → ratio {async_t / ideal:.3f}× (target ≤ 1.2×)")


def shaping(n: int = 2000) -> None:
    from codecapsule.engines.piston_shape import shape

    helper = "import java.util.*;\nclass Helper {\n" + "  static int f(int x) { return x + 1; }\n" * 40 + "}\n"
    source = "class Pair { }\npublic class Main {\n  public static void main(String[] a) {\n" + \
        "    System.out.println(Helper.f(1));\n" * 40 + "  }\n}\n"
    job = Job.create(source, "java", files={"Helper.java": helper})
    payload = execute_payload(job)
    t = time.perf_counter()
    for _ in range(n):
        shape(job)
    ours = (time.perf_counter() - t) / n
    t = time.perf_counter()
    for _ in range(n):
        json.dumps(payload)
    base = (time.perf_counter() - t) / n
    print(f"shaping a 2-file Java job ({len(source) + len(helper)} chars): {ours * 1e6:.0f} µs vs json.dumps of the "
          f"payload {base * 1e6:.0f} µs → ratio {ours / base:.2f}×")


def python_start(n: int = 20, rounds: int = 5) -> None:
    from codecapsule.engines._toolchains import _PY_BOOT, find

    python = find("python").executables["python3"]
    with tempfile.TemporaryDirectory() as d:
        with open(os.path.join(d, "main.py"), "w") as f:
            f.write("pass\n")
        old = [python, "-I", "-S", "-B", "main.py"]
        new = [python, "-E", "-s", "-S", "-B", "-c", _PY_BOOT, "main.py"]
        times: dict[str, list[float]] = {"old": [], "new": []}
        for _ in range(rounds):
            for name, argv in (("old", old), ("new", new)):
                t = time.perf_counter()
                for _ in range(n):
                    subprocess.run(argv, cwd=d, check=True)
                times[name].append((time.perf_counter() - t) / n)
    o, w = statistics.median(times["old"]), statistics.median(times["new"])
    print(f"local python start: -I -S {o * 1000:.1f} ms, with sibling modules + exit()/quit() {w * 1000:.1f} ms "
          f"(+{(w - o) * 1000:.1f} ms) → ratio {w / o:.2f}×")


if __name__ == "__main__":
    overhead()
    batch()
    shaping()
    python_start()
