"""Grading: compile once and run every test vs the naive loop of ``execute()`` per test — prints the ratio.

The issue's size is 100 distinct C++ submissions × 10 tests (``--submissions 100``); the default is smaller so
the script runs in well under a minute on a shared 2-core machine. Each submission differs (a constant in the
source), so no compile is reused between students. Both sides run on the same local engine, in the same
process, with the same concurrency; the naive side compiles each submission once per test, as a loop of
``execute(source, stdin=..., expect=...)`` does.

    python -m bench.bench_grading [--submissions 10] [--tests 10] [--concurrency 2]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import codecapsule as cc
from codecapsule import Client

SOURCE = """#include <iostream>
#include <vector>
#include <numeric>
int main() {{
    long n; std::cin >> n;
    std::vector<long> v(n);
    std::iota(v.begin(), v.end(), {offset}L);
    std::cout << std::accumulate(v.begin(), v.end(), 0L) - {offset}L * n << std::endl;
}}
"""


def expected(n: int) -> str:
    return f"{n * (n - 1) // 2}\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--submissions", type=int, default=2, help="distinct C++ submissions (issue: 100)")
    parser.add_argument("--tests", type=int, default=10, help="tests per submission (issue: 10)")
    parser.add_argument("--concurrency", type=int, default=2, help="students (and naive jobs) at once")
    args = parser.parse_args()

    tests = [
        cc.TestCase(stdin=str(10 * (i + 1)), expect=expected(10 * (i + 1)), name=f"t{i}") for i in range(args.tests)
    ]
    suite = cc.TestSuite(tuple(tests), language="c++", limits=cc.Limits(run_timeout=5))
    with tempfile.TemporaryDirectory() as tmp, Client(engine="local") as client:
        folder = Path(tmp) / "submissions"
        folder.mkdir()
        sources = {}
        for s in range(args.submissions):
            sources[f"student{s:03d}"] = SOURCE.format(offset=s + 1)
            (folder / f"student{s:03d}.cpp").write_text(sources[f"student{s:03d}"])
        client.execute("int main() {}", "c++")  # warm up: toolchain lookup, sandbox detection

        started = time.perf_counter()
        book = cc.grade_many(folder, suite, concurrency=args.concurrency, client=client)
        graded = time.perf_counter() - started
        assert all(float(r["score"]) == args.tests for r in book.rows), book

        started = time.perf_counter()
        jobs = [
            {"source": src, "language": "c++", "stdin": t.stdin, "expect": t.expect, "timeout": 5}
            for src in sources.values()
            for t in tests
        ]
        results = client.execute_many(jobs, concurrency=args.concurrency)
        naive = time.perf_counter() - started
        assert all(r.ok for r in results), [r.verdict for r in results if not r.ok][:3]

    runs = args.submissions * args.tests
    print(f"{args.submissions} C++ submissions x {args.tests} tests, concurrency {args.concurrency}")
    print(f"  grade_many (compile once):    {graded:7.2f} s  ({graded / runs * 1000:6.1f} ms per test)")
    print(f"  execute() per test (naive):   {naive:7.2f} s  ({naive / runs * 1000:6.1f} ms per test)")
    print(f"  ratio naive / grade_many:     {naive / graded:7.2f}x")


if __name__ == "__main__":
    main()
