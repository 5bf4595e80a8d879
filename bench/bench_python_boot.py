"""What the shared Python bootstrap costs: a hello world started through it vs the bare script, same process.

Baseline: ``python3 -E -s -S -B main.py`` (the interpreter running the file itself, no bootstrap). Measured: the
local engine's command, ``python3 -E -s -S -B -c BOOT`` (compile first, the marker line, then the program), both
launched with ``subprocess.run`` outside any sandbox, alternating so machine noise hits both. Prints the medians,
their difference and ratio. The target: a few milliseconds at most.

    python -m bench.bench_python_boot [--runs N]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

from codecapsule import Job
from codecapsule.engines._toolchains import find, run_plan


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--runs", type=int, default=60)
    runs = parser.parse_args().runs
    job = Job.create("print(40 + 2)", "python")
    tc = find("python")
    with tempfile.TemporaryDirectory() as work:
        Path(work, "main.py").write_text(job.source)
        booted = run_plan(tc, job, work, None).argv
        bare = [tc.executables["python3"], "-E", "-s", "-S", "-B", "main.py"]
        times: dict[str, list[float]] = {"bare": [], "bootstrap": []}
        for i in range(runs):
            for name in ("bare", "bootstrap") if i % 2 else ("bootstrap", "bare"):
                argv = bare if name == "bare" else booted
                started = time.perf_counter()
                done = subprocess.run(argv, cwd=work, capture_output=True, check=True)
                times[name].append(time.perf_counter() - started)
                assert done.stdout == b"42\n", done
    bare_ms, boot_ms = (statistics.median(times[k]) * 1000 for k in ("bare", "bootstrap"))
    print(f"python hello world, median of {runs}: bare {bare_ms:.2f} ms, through the bootstrap {boot_ms:.2f} ms")
    print(f"bootstrap cost {boot_ms - bare_ms:+.2f} ms, ratio {boot_ms / bare_ms:.3f}")


if __name__ == "__main__":
    main()
