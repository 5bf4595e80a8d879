"""Local engine vs the bare toolchain, per language: prints the ratio of medians measured in the same run.

Baseline: the same compile and run commands (same flags, same work directory layout), launched with
``subprocess.run`` and no sandbox. Measured: ``LocalEngine.run`` — sandbox set-up (bwrap, cgroup, prlimit),
streaming capture, judging and clean-up included. Runs alternate between the two so machine noise hits both.
Targets from the issue: ≤ 1.5× for Python and JavaScript, ≤ 1.15× for C, C++ and Java (issue #12: Python ≤ 1.5×,
C first run ≤ 1.3×, which the table shows for C). ``cold`` is the same engine with ``standby=False`` (every stage
moves its sandbox into a new cgroup itself, as before launchers were prepared ahead) and ``standby`` the same with
``primed=False`` (launchers prepared ahead, bubblewrap not), measured in the same run. Every run is a program not seen
before (a counter in a comment): a first run, which the C/C++ compile cache cannot answer (bench_compile.py
measures re-runs).

    python -m bench.bench_local [--runs N] [--languages python,c]
"""

from __future__ import annotations

import argparse
import itertools
import shutil
import statistics
import subprocess
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path

from codecapsule import Job
from codecapsule.engines._toolchains import compile_plan, run_plan
from codecapsule.engines.local import LocalEngine

PROGRAMS = {
    "python": "print(40 + 2)",
    "javascript": "console.log(40 + 2)",
    "c": '#include <stdio.h>\nint main(void){ printf("%d\\n", 40 + 2); return 0; }',
    "c++": "#include <iostream>\nint main(){ std::cout << 40 + 2 << std::endl; }",
    "java": "public class Main { public static void main(String[] a) { System.out.println(40 + 2); } }",
}
TARGETS = {"python": 1.5, "javascript": 1.5, "c": 1.3, "c++": 1.15, "java": 1.15}
# Ratios measured before the root hardening (unprivileged uid, seccomp, tmpfs work dir, CPU quota): it must not
# make Python or C slower than these.
BEFORE_HARDENING = {"python": 2.4, "javascript": 1.5, "c": 1.7, "c++": 1.13, "java": 1.07}


def _prints_42(out: bytes | str) -> bool:
    return out in (b"42\n", "42\n")


def bare(
    engine: LocalEngine, job: Job, extra: tuple[str, ...] = (), expect: Callable[[bytes], bool] = _prints_42
) -> float:
    """Compile (with ``extra`` flags after the compiler's name) and run with the engine's own commands, no sandbox,
    and return the wall time; ``expect`` checks the program's stdout."""
    tc = engine.toolchain(job.language)
    workdir = tempfile.mkdtemp(prefix="bench-bare-")
    try:
        for f in job.files:
            (Path(workdir) / f.name).write_bytes(f.data)
        started = time.perf_counter()
        plan = compile_plan(tc, job, workdir)
        if plan is not None:
            argv = [plan.argv[0], *extra, *plan.argv[1:]]
            subprocess.run(argv, cwd=workdir, env=plan.env, capture_output=True, check=True)
        runp = run_plan(tc, job, workdir, job.limits.memory)
        out = subprocess.run(runp.argv, cwd=workdir, env=runp.env, capture_output=True, check=True)
        elapsed = time.perf_counter() - started
        assert expect(out.stdout), out
        return elapsed
    finally:
        shutil.rmtree(workdir)


def sandboxed(engine: LocalEngine, job: Job, expect: Callable[[str], bool] = _prints_42) -> float:
    """``engine.run(job)``'s wall time; ``expect`` checks the program's stdout."""
    started = time.perf_counter()
    result = engine.run(job)
    elapsed = time.perf_counter() - started
    assert result.ok and expect(result.stdout), result
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--languages", default=",".join(PROGRAMS))
    args = parser.parse_args()
    engine = LocalEngine()
    # "cold": every stage starts the way it did before launchers were prepared ahead (standby=False), measured
    # in the same run, alternating with the others, so the before/after ratio is not a comparison across days
    cold = LocalEngine(standby=False)
    standby = LocalEngine(primed=False)  # launchers prepared ahead, but no sandbox (_primed)
    print(f"isolation: {engine.caps.level}; runs per side: {args.runs}")
    print(
        f"{'language':<11} {'bare ms':>9} {'cold ms':>9} {'stdby ms':>9} {'local ms':>9} {'cold':>7} {'standby':>7} "
        f"{'ratio':>7} {'target':>7} {'hardening':>9}"
    )
    runs = itertools.count()
    token = uuid.uuid4().hex[:12]  # new programs in every invocation too: the compile cache outlives the process
    for language in args.languages.split(","):

        def fresh(language: str = language) -> Job:
            comment = "#" if language == "python" else "//"
            source = f"{PROGRAMS[language]}\n{comment} run {token}-{next(runs)}"
            return Job.create(source, language, memory=DEFAULT_MEMORY)

        bare(engine, fresh()), sandboxed(engine, fresh()), sandboxed(cold, fresh())  # warm toolchain lookup
        sandboxed(standby, fresh())
        b, c, w, s = [], [], [], []
        for _ in range(args.runs):
            for other, into in ((cold, c), (standby, w), (engine, s)):
                job = fresh()
                b.append(bare(engine, job))  # a gap between runs, as between a student's cells
                into.append(sandboxed(other, job))
        mb, mc, mw, ms = (statistics.median(x) * 1000 for x in (b, c, w, s))
        ratio = ms / mb
        flag = "ok" if ratio <= TARGETS[language] else "OVER"
        if ratio > BEFORE_HARDENING[language]:
            flag += " (slower than before hardening)"
        print(
            f"{language:<11} {mb:9.1f} {mc:9.1f} {mw:9.1f} {ms:9.1f} {mc / mb:6.2f}x {mw / mb:6.2f}x {ratio:6.2f}x "
            f"{TARGETS[language]:6.2f}x {BEFORE_HARDENING[language]:8.2f}x {flag}"
        )
    compare_bench()


def compare_bench() -> None:
    """``expect=`` on a 1 MB wrong answer: the host-side comparison must stay far below 100 ms."""
    from codecapsule._verdicts import compare_output

    expected = "".join(f"{i}\n" for i in range(150_000))  # ~1 MB
    wrong = expected.replace("\n77777\n", "\n77778\n") + "extra\n"
    times = []
    for _ in range(5):
        started = time.perf_counter()
        compare_output(wrong, expected)
        times.append(time.perf_counter() - started)
    equal = []
    for _ in range(5):
        started = time.perf_counter()
        compare_output(expected, expected)
        equal.append(time.perf_counter() - started)
    print(
        f"compare 1 MB: wrong answer {statistics.median(times) * 1000:.1f} ms, "
        f"equal {statistics.median(equal) * 1000:.2f} ms (bound: 100 ms)"
    )


DEFAULT_MEMORY = 512 * 1024 * 1024

if __name__ == "__main__":
    main()
