"""The cost of stoppable runs: ``Client.execute`` on the local engine (waited on as a live run, so that Ctrl-C can
stop it, see codecapsule/_interrupt.py) vs ``LocalEngine.run`` (the plain run it used before), ratio of medians
measured in the same run, alternating so that machine noise hits both. Target: ≤ 1.05× for small output;
a 1 MB output costs ~2 ms more (about 1.10×: its chunks are decoded and handed over as events on the way).

    python -m bench.bench_interrupt [--runs N]
"""

from __future__ import annotations

import argparse
import statistics
import time

from codecapsule import Client

PROGRAMS = {
    "python print": ("python", "print(40 + 2)"),
    "python 1 MB out": ("python", "import sys\nsys.stdout.write('x' * 1_000_000)"),
    "c print": ("c", '#include <stdio.h>\nint main(void){ printf("%d\\n", 40 + 2); return 0; }'),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=21)
    args = parser.parse_args()
    with Client(engine="local") as client:
        engine = client._local_engine()
        for label, (language, source) in PROGRAMS.items():
            job = client.job(source, language, limits={"output": 2_000_000})
            assert engine.run(job).ok and client.run(job).ok  # warm both paths up
            plain, stoppable = [], []
            for _ in range(args.runs):
                started = time.perf_counter()
                engine.run(job)
                plain.append(time.perf_counter() - started)
                started = time.perf_counter()
                client.run(job)
                stoppable.append(time.perf_counter() - started)
            p, s = statistics.median(plain), statistics.median(stoppable)
            print(f"{label:16} LocalEngine.run {p * 1000:7.2f} ms   Client.run {s * 1000:7.2f} ms   ratio {s / p:.3f}×")


if __name__ == "__main__":
    main()
