"""C/C++ warm compiles (precompiled header, compile cache) vs the bare toolchain: ratios measured in the same run.

Cases (issue #12):
  1. ``#include <bits/stdc++.h>`` hello, a new program every time (no cache hit: the precompiled header is what
     is measured) vs bare ``g++ -std=c++17 -O2`` + run.                                       target ≤ 0.3×
  2. re-running an unchanged C program (a cache hit) vs bare gcc (the compile profile's flags) + run. target ≤ 0.5×
  3. N distinct C++ submissions (half ``<bits/stdc++.h>``, half ``<iostream>``/``<vector>``) run at concurrency =
     cores: wall time vs the sum of their bare compile + run times / cores (in rounds of 2 × cores, bare then
     engine, so noise hits both).                                                               target ≤ 1.1×

The engine starts from an empty cache directory; the one-time PCH build is timed and reported apart. Bare runs
use ``subprocess.run`` in a plain temporary directory, no sandbox. Cases 1–2 alternate bare and engine runs so
machine noise hits both. ``--cold`` adds the same cases on a ``warm=False`` engine (today's behaviour).

    python -m bench.bench_compile [--runs 5] [--submissions 20 | --full] [--cold] [--cases 1,2,3]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor

from bench import bench_local
from codecapsule import Job
from codecapsule.engines._workdir import remove_tree
from codecapsule.engines.local import LocalEngine

TARGETS = {"bits": 0.3, "rerun": 0.5, "concurrent": 1.1}


def bits_program(n: int) -> str:
    return (
        "#include <bits/stdc++.h>\n"
        f'int main() {{ std::vector<int> v{{{n}, 1}}; std::cout << "hello " << v[0] << "\\n"; }}\n'
    )


def iostream_program(n: int) -> str:
    return (
        "#include <iostream>\n#include <vector>\n#include <algorithm>\n"
        f"int main() {{ std::vector<int> v{{3, {n}, 1}}; std::sort(v.begin(), v.end());"
        ' std::cout << "hello " << v[2] << "\\n"; }\n'
    )


C_PROGRAM = '#include <stdio.h>\nint main(void){ printf("hello %d\\n", 42); return 0; }\n'


def bare(engine: LocalEngine, job: Job, extra: tuple[str, ...] = ()) -> float:
    """The engine's own compile and run commands (plus ``extra`` flags), no sandbox; the wall time."""
    return bench_local.bare(engine, job, extra, expect=lambda out: out.startswith(b"hello "))


def on_engine(engine: LocalEngine, job: Job) -> float:
    return bench_local.sandboxed(engine, job, expect=lambda out: out.startswith("hello "))


def row(name: str, base: float, measured: float, target: float | None) -> None:
    ratio = measured / base
    flag = "" if target is None else ("ok" if ratio <= target else "OVER")
    shown = f"{target:6.2f}x" if target is not None else "      -"
    print(f"{name:<34} {base * 1000:9.0f} {measured * 1000:9.0f} {ratio:6.2f}x {shown} {flag}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--submissions", type=int, default=20)
    parser.add_argument("--full", action="store_true", help="200 submissions (the issue's figure)")
    parser.add_argument("--cold", action="store_true", help="also measure a warm=False engine")
    parser.add_argument("--cases", default="1,2,3", help="which cases to run, e.g. 2 or 1,3")
    args = parser.parse_args()
    cases = {int(c) for c in args.cases.split(",")}
    submissions = 200 if args.full else args.submissions
    cores = os.cpu_count() or 1
    root = tempfile.mkdtemp(prefix="bench-compile-cache-")
    os.chmod(root, 0o755)  # the sandbox's uids read the precompiled headers from here
    try:
        engine = LocalEngine(cache_dir=root)
        warm = engine.warm_compiler(engine.caps)
        started = time.perf_counter()
        ready = warm.pch.wait_ready(engine.toolchain("c++"), "c++") if warm is not None else None
        print(f"isolation: {engine.caps.level}; cores: {cores}; runs per side: {args.runs}")
        print(f"one-time PCH build: {time.perf_counter() - started:.1f} s ({'ready' if ready else 'NOT AVAILABLE'})")
        engines = [("warm", engine)] + ([("cold (warm=False)", LocalEngine(warm=False))] if args.cold else [])
        print(f"{'case':<34} {'bare ms':>9} {'eng ms':>9} {'ratio':>7} {'target':>7}")
        serial = 0
        for label, eng in engines:
            b, s = [], []
            for _ in range(args.runs if 1 in cases else 0):
                serial += 1
                b.append(bare(eng, Job.create(bits_program(serial), "c++"), ("-O2",)))
                serial += 1
                s.append(on_engine(eng, Job.create(bits_program(serial), "c++")))
            if 1 in cases:
                row(f"1. bits/stdc++.h hello [{label}]", statistics.median(b), statistics.median(s), TARGETS["bits"])
            if 2 not in cases:
                continue
            job = Job.create(C_PROGRAM, "c")
            on_engine(eng, job)  # the first run compiles (and, warm, stores)
            b, s = [], []
            for _ in range(args.runs * 3):
                b.append(bare(eng, job))
                s.append(on_engine(eng, job))
            row(f"2. unchanged C re-run [{label}]", statistics.median(b), statistics.median(s), TARGETS["rerun"])
        if 3 not in cases:
            return
        jobs = [
            Job.create((bits_program if n % 2 else iostream_program)(100_000 + n), "c++") for n in range(submissions)
        ]
        # in rounds of 2 × cores submissions, bare then engine, so the machine's noise hits both sides alike
        bare_sum = wall = 0.0
        with ThreadPoolExecutor(cores) as pool:
            for at in range(0, len(jobs), 2 * cores):
                chunk = jobs[at : at + 2 * cores]
                bare_sum += sum(bare(engine, j) for j in chunk)
                started = time.perf_counter()
                list(pool.map(lambda j: on_engine(engine, j), chunk))
                wall += time.perf_counter() - started
        row(f"3. {submissions} distinct C++ at {cores} [warm]", bare_sum / cores, wall, TARGETS["concurrent"])
    finally:
        remove_tree(root)


if __name__ == "__main__":
    main()
