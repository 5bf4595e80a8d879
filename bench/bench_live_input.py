"""Typed input on the local engine: how fast a line sent reaches the program, and how soon it is asked.

``echo``: the time from ``send()`` to the program's echo of that line (an interactive live run of a Python echo
loop), against the same round trip through a bare pipe to the same program started with ``subprocess`` and no
sandbox — the ratio of medians, measured in the same run. ``ask``: the time from the program's prompt (its
Output) to ``InputWanted`` — measured in /proc once the run has been quiet for ``QUIET_BEFORE_PROBE`` — against
Piston's quiet-time rule (``QUIET_FOR_INPUT``, what the local engine falls back to where /proc cannot tell).

    python -m bench.bench_live_input [--lines N]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time

import codecapsule as cc
from codecapsule._events import InputWanted, Output
from codecapsule.engines._stdin_wait import QUIET_FOR_INPUT
from codecapsule.engines.local import LocalEngine

ECHO = "import sys\nfor line in sys.stdin:\n    print('got', line.strip(), flush=True)\n"
ASK = "import sys\nwhile True:\n    print('next?', flush=True)\n    if not sys.stdin.readline():\n        break\n"


def bare_echo(lines: int) -> list[float]:
    proc = subprocess.Popen([sys.executable, "-c", ECHO], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    assert proc.stdin is not None and proc.stdout is not None
    took = []
    for i in range(lines):
        started = time.perf_counter()
        proc.stdin.write(f"{i}\n".encode())
        proc.stdin.flush()
        proc.stdout.readline()
        took.append(time.perf_counter() - started)
    proc.stdin.close()
    proc.wait()
    return took


def engine_echo(engine: LocalEngine, lines: int) -> list[float]:
    took: list[float] = []
    with engine.stream(cc.Job.create(ECHO, "python", timeout=120), interactive=True) as run:
        started = time.perf_counter()
        run.send("0\n")
        for event in run:
            if isinstance(event, Output) and event.stream == "stdout":
                took.append(time.perf_counter() - started)
                if len(took) == lines:
                    run.close_stdin()
                else:
                    started = time.perf_counter()
                    run.send(f"{len(took)}\n")
    return took


def engine_ask(engine: LocalEngine, lines: int) -> list[float]:
    took: list[float] = []
    prompt_at = 0.0
    with engine.stream(cc.Job.create(ASK, "python", timeout=120), interactive=True) as run:
        for event in run:
            if isinstance(event, Output):
                prompt_at = time.perf_counter()
            elif isinstance(event, InputWanted):
                took.append(time.perf_counter() - prompt_at)
                if len(took) == lines:
                    run.close_stdin()
                else:
                    run.send("x\n")
    return took


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lines", type=int, default=40)
    args = parser.parse_args()
    root = tempfile.mkdtemp(prefix="capsule-bench-")
    os.chmod(root, 0o755)
    engine = LocalEngine(workroot=root)
    print(f"isolation: {engine.caps.level}, {args.lines} lines")
    bare = statistics.median(bare_echo(args.lines))
    echo = statistics.median(engine_echo(engine, args.lines))
    print(f"echo: bare pipe {bare * 1e6:.0f} µs, engine {echo * 1e6:.0f} µs per line: ×{echo / bare:.2f}")
    ask = statistics.median(engine_ask(engine, args.lines))
    print(
        f"ask: InputWanted {ask * 1000:.1f} ms after the prompt; Piston's quiet rule {QUIET_FOR_INPUT * 1000:.0f} ms: "
        f"×{ask / QUIET_FOR_INPUT:.2f}"
    )


if __name__ == "__main__":
    main()
