"""What sandboxes prepared ahead (``engines/_primed.py``) cost besides the latency they save: CPU per run and the
whole process's time to start, run one job per language and exit. Prints ``primed`` against ``primed=False``
(standbys only) as ratios, measured in the same run.

- CPU per run: this process and its waited-for children (launchers, bubblewrap, PID 1, the programs), over
  ``--runs`` new programs per language, the engine closed at the end (the sandboxes it left waiting are counted);
  and over ``--runs`` re-runs of one C program (compile-cache hits: no compile stage, its slot let go).
- Process: a fresh interpreter that runs one Python and one C job and exits (closing what waits at exit),
  alternating the two settings.

    python -m bench.bench_primed [--runs 30] [--processes 7]
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import time
import uuid

import codecapsule as cc
from codecapsule.engines import _forker
from codecapsule.engines.local import LocalEngine

PROGRAMS = {"python": ("print(1)", "#"), "c": ('#include <stdio.h>\nint main(void){ puts("1"); }', "//")}
PROCESS = (
    "import codecapsule as cc\n"
    "from codecapsule.engines.local import LocalEngine\n"
    "engine = LocalEngine(primed={primed})\n"
    "for language, source in (('python', 'print(1) # {tag}'), ('c', 'int main(void){{ return 0; }} // {tag}')):\n"
    "    assert engine.run(cc.Job.create(source, language)).ok\n"
)


def _cpu() -> float:
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def cpu_per_run(primed: bool, language: str, runs: int, same: bool = False) -> float:
    """``same``: the same program every run (for C: compile-cache hits after the first)."""
    source, comment = PROGRAMS[language]
    token = uuid.uuid4().hex[:12]  # new programs: no compile-cache hit
    engine = LocalEngine(primed=primed)
    engine.run(cc.Job.create(f"{source}\n{comment} warm {token}", language))
    _forker.wait_idle()
    started = _cpu()
    for n in range(runs):
        text = f"{source}\n{comment} warm {token}" if same else f"{source}\n{comment} {token} {n}"
        assert engine.run(cc.Job.create(text, language)).ok
    engine.close()
    _forker.wait_idle()
    return (_cpu() - started) / runs


def one_process(primed: bool) -> float:
    # a comment per process: the C compile cache outlives processes, and a hit would not be a first run
    code = PROCESS.format(primed=primed, tag=uuid.uuid4().hex)
    env = {**os.environ, "PYTHONPATH": os.getcwd()}
    started = time.perf_counter()
    subprocess.run([sys.executable, "-c", code], check=True, env=env)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--processes", type=int, default=7)
    args = parser.parse_args()
    if not LocalEngine().primed:
        print("no prepared sandboxes here (they need bubblewrap, cgroups, perl and the compiled PID 1)")
        return
    print(f"{'case':<36} {'standby':>9} {'primed':>9} {'ratio':>7}")
    for language, same, name in (
        ("python", False, "CPU per python run, ms"),
        ("c", False, "CPU per c run, ms"),
        ("c", True, "CPU per cached c re-run, ms"),
    ):
        base, measured = cpu_per_run(False, language, args.runs, same), cpu_per_run(True, language, args.runs, same)
        print(f"{name:<36} {base * 1000:9.1f} {measured * 1000:9.1f} {measured / base:6.2f}x")
    off: list[float] = []
    on: list[float] = []
    for _ in range(args.processes):
        off.append(one_process(False))
        on.append(one_process(True))
    base, measured = statistics.median(off), statistics.median(on)
    name = "process: python + c run and exit, ms"
    print(f"{name:<36} {base * 1000:9.0f} {measured * 1000:9.0f} {measured / base:6.2f}x")


if __name__ == "__main__":
    main()
