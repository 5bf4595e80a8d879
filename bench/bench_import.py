"""``import codecapsule`` vs a bare interpreter start, in fresh processes: prints both medians and the ratio.

    python -m bench.bench_import [--runs N]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time


def timed(code: str) -> float:
    started = time.perf_counter()
    subprocess.run([sys.executable, "-c", code], check=True)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=15)
    args = parser.parse_args()
    timed("pass"), timed("import codecapsule")
    bare, imp = [], []
    for _ in range(args.runs):
        bare.append(timed("pass"))
        imp.append(timed("import codecapsule"))
    mb, mi = statistics.median(bare) * 1e3, statistics.median(imp) * 1e3
    print(f"bare interpreter        {mb:6.1f} ms")
    print(f"import codecapsule      {mi:6.1f} ms  (+{mi - mb:.1f} ms)")
    print(f"ratio {mi / mb:.2f}x")


if __name__ == "__main__":
    main()
