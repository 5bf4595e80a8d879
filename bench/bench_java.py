"""Java through the local engine, warm paths on and off, vs the bare toolchain (issue #12): medians and ratios.

Baseline, measured in the same run: ``javac Main.java && java -cp . Main`` with no sandbox and no flags. Measured:
``LocalEngine.run`` of the same hello program with ``warm=True`` (the javac server in the sandbox and the CDS
archive; the first job, which starts the server and may build the cache, is reported apart) and ``warm=False``
(today's cold path). Runs alternate so machine noise hits all of them. Target: warm ≤ 150 ms after the first job.

``--flags`` also measures the run JVM alone (no sandbox) with and without the CDS archive and
``-XX:TieredStopAtLevel=1``, on hello, a classroom program (Scanner, collections, lambdas) and a CPU-bound one, to
back the choice of run flags (docs/local-engine.md).

    python -m bench.bench_java [--runs N] [--flags]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

from codecapsule import Job
from codecapsule.engines._jvm_fast import WARMUP, run_options
from codecapsule.engines._toolchains import _JVM_FAST
from codecapsule.engines.local import LocalEngine

HELLO = 'public class Main { public static void main(String[] a) { System.out.println("hello"); } }'
TARGET_MS = 150.0
# ~1 s of integer work at C2 speed: what a C1-only JVM (TieredStopAtLevel=1) makes slower
CPU_BOUND = """public class Main { public static void main(String[] a) {
  long h = 0; for (int r = 0; r < 40; r++) { int[] v = new int[1 << 20];
  for (int i = 0; i < v.length; i++) v[i] = (int) ((i * 2654435761L) >>> 7); java.util.Arrays.sort(v);
  for (int x : v) h = h * 31 + x; } System.out.println(h); } }"""


def _ms(samples: list[float]) -> float:
    return statistics.median(samples) * 1000


def bare(javac: str, java: str, folder: Path) -> float:
    """``javac Main.java && java -cp . Main`` in a fresh directory, no sandbox: the wall time."""
    work = Path(tempfile.mkdtemp(prefix="bench-java-", dir=folder))
    (work / "Main.java").write_text(HELLO)
    started = time.perf_counter()
    subprocess.run([javac, "Main.java"], cwd=work, check=True, capture_output=True)
    out = subprocess.run([java, "-cp", ".", "Main"], cwd=work, check=True, capture_output=True)
    elapsed = time.perf_counter() - started
    assert out.stdout == b"hello\n", out
    shutil.rmtree(work)
    return elapsed


def engine_run(engine: LocalEngine, stages: dict[str, list[float]]) -> float:
    started = time.perf_counter()
    result = engine.run(Job.create(HELLO, "java"))
    elapsed = time.perf_counter() - started
    assert result.verdict == "ok" and result.stdout == "hello\n", result
    assert result.compile is not None and result.run is not None
    stages["compile"].append(result.compile.wall_time or 0.0)
    stages["run"].append(result.run.wall_time or 0.0)
    return elapsed


def measure(runs: int) -> None:
    warm, cold = LocalEngine(warm=True), LocalEngine(warm=False)
    tc = warm.toolchain("java")
    javac, java = tc.executables["javac"], tc.executables["java"]
    folder = Path(tempfile.mkdtemp(prefix="bench-java-"))
    warm_stages: dict[str, list[float]] = {"compile": [], "run": []}
    cold_stages: dict[str, list[float]] = {"compile": [], "run": []}
    try:
        first = engine_run(warm, {"compile": [], "run": []})
        samples: dict[str, list[float]] = {"bare": [], "warm": [], "cold": []}
        for _ in range(runs):
            samples["bare"].append(bare(javac, java, folder))
            samples["warm"].append(engine_run(warm, warm_stages))
            samples["cold"].append(engine_run(cold, cold_stages))
        server = warm.warm_javac
        print(f"java {tc.version}, {runs} runs each (medians); warm server fell back: {server and server.last_failure}")
        print(f"  first warm job (starts the javac server): {first * 1000:7.1f} ms")
        base = _ms(samples["bare"])
        for name in ("bare", "warm", "cold"):
            print(f"  {name:5} {_ms(samples[name]):7.1f} ms   ratio to bare {_ms(samples[name]) / base:5.2f}")
        for label, st in (("warm", warm_stages), ("cold", cold_stages)):
            print(f"  {label} stages: compile {_ms(st['compile']):6.1f} ms, run {_ms(st['run']):6.1f} ms")
        verdict = "meets" if _ms(samples["warm"]) <= TARGET_MS else "MISSES"
        ratio = _ms(samples["warm"]) / _ms(samples["cold"])
        print(f"  warm {verdict} the target of {TARGET_MS:.0f} ms; warm/cold = {ratio:.2f}")
    finally:
        warm.close()
        cold.close()
        shutil.rmtree(folder)


def measure_flags(runs: int) -> None:
    """The run JVM alone (no sandbox): CDS archive and C1-only, on three programs."""
    engine = LocalEngine()
    tc = engine.toolchain("java")
    cds, _ = run_options(tc, engine.cache_dir)
    folder = Path(tempfile.mkdtemp(prefix="bench-java-flags-"))
    configs = {
        "jdk archive": [*(f for f in _JVM_FAST if f != "-XX:TieredStopAtLevel=1")],
        "jdk archive, C1 only": [*_JVM_FAST],
        "+ CDS archive": [*(f for f in _JVM_FAST if f != "-XX:TieredStopAtLevel=1"), *cds],
        "+ CDS archive, C1 only": [*_JVM_FAST, *cds],
    }
    programs = {"hello": (HELLO, b""), "classroom": (WARMUP, b"3 1 2\nhello world\n"), "cpu-bound": (CPU_BOUND, b"")}
    try:
        for name, (source, stdin) in programs.items():
            work = folder / name
            work.mkdir()
            (work / "Main.java").write_text(source)
            subprocess.run([tc.executables["javac"], "-d", ".", "Main.java"], cwd=work, check=True, capture_output=True)
            times: dict[str, list[float]] = {k: [] for k in configs}
            for _ in range(runs if name != "cpu-bound" else max(3, runs // 4)):
                for label, flags in configs.items():
                    times[label].append(_time(tc.executables["java"], flags, work, stdin))
            base = _ms(times["jdk archive"])
            print(f"{name}: " + ", ".join(f"{k} {_ms(v):.1f} ms ({_ms(v) / base:.2f})" for k, v in times.items()))
    finally:
        engine.close()
        shutil.rmtree(folder)


def _time(java: str, flags: list[str], work: Path, stdin: bytes) -> float:
    """One run of the compiled program in ``work`` with these JVM flags (no sandbox): its wall time."""
    started = time.perf_counter()
    subprocess.run([java, *flags, "-Xmx300m", "-cp", ".", "Main"], cwd=work, input=stdin, check=True,
                   capture_output=True)  # fmt: skip
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--flags", action="store_true", help="also compare the run JVM's flags (CDS, C1 only)")
    args = parser.parse_args()
    measure(args.runs)
    if args.flags:
        measure_flags(args.runs)


if __name__ == "__main__":
    main()
