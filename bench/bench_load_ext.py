"""What ``%load_ext codecapsule`` adds to a kernel, against a bare ``import IPython`` in the same run.

Each sample is a fresh interpreter (no warm module cache inside the process), alternating between:

* baseline: ``import IPython`` and create the InteractiveShell (what every kernel does anyway);
* extension: the same, then ``%load_ext codecapsule``.

The time is measured inside the child from interpreter start-up (``time.perf_counter`` at the top of the
script) to the end, so process creation noise is left out; the whole-process wall time is printed too.
Target: the median extension cost stays under 150 ms. Prints numbers only; no assertion.

    .venv/bin/python bench/bench_load_ext.py [--runs 11]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from typing import Any

BASELINE = """
import time; t0 = time.perf_counter()
import IPython
from IPython.core.interactiveshell import InteractiveShell
{setup}
shell = InteractiveShell.instance()
t1 = time.perf_counter()
{extra}
t2 = time.perf_counter()
import json, sys
heavy = ("duckdb", "httpx", "pandas", "pyarrow", "ipywidgets", "azure", "cloudflare")
print(json.dumps({{"shell_ms": (t1 - t0) * 1000, "ext_ms": (t2 - t1) * 1000,
                  "modules": sorted(m for m in sys.modules if m.split(".")[0] in heavy)}}))
"""
LOAD = "shell.run_line_magic('load_ext', 'codecapsule')"
KERNEL_SETUP = "import asyncio, concurrent.futures  # already imported in every ipykernel"


def sample(extra: str, setup: str = "") -> tuple[dict[str, Any], float]:
    started = time.perf_counter()
    code = BASELINE.format(extra=extra, setup=setup)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    wall = (time.perf_counter() - started) * 1000
    return json.loads(out.strip().splitlines()[-1]), wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=11)
    runs = parser.parse_args().runs

    sample(LOAD)  # warm the OS file cache and the .pyc files once
    base_total, ext_total, ext_only, kernel_only, base_wall, ext_wall = [], [], [], [], [], []
    heavy: list[str] = []
    for _ in range(runs):
        b, bw = sample("pass")
        e, ew = sample(LOAD)
        k, _ = sample(LOAD, KERNEL_SETUP)
        base_total.append(b["shell_ms"] + b["ext_ms"])
        ext_total.append(e["shell_ms"] + e["ext_ms"])
        ext_only.append(e["ext_ms"])
        kernel_only.append(k["ext_ms"])
        base_wall.append(bw)
        ext_wall.append(ew)
        heavy = list(e["modules"])

    med = statistics.median
    added = med(ext_total) - med(base_total)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(
        f"runs: {runs} fresh interpreters per variant ({sys.executable}); load average {load:.1f} "
        f"on {os.cpu_count()} CPUs"
    )
    rows = [
        ("baseline: import IPython + shell", f"median {med(base_total):7.1f} ms (process {med(base_wall):.0f} ms)"),
        ("with %load_ext codecapsule", f"median {med(ext_total):7.1f} ms (process {med(ext_wall):.0f} ms)"),
        ("added by the extension", f"       {added:7.1f} ms, ratio {med(ext_total) / med(base_total):.2f}x"),
        ("%load_ext alone, in-process", f"median {med(ext_only):7.1f} ms (min {min(ext_only):.1f})"),
        (
            "  same, asyncio already loaded",
            f"median {med(kernel_only):7.1f} ms (min {min(kernel_only):.1f}) <- what an ipykernel pays",
        ),
    ]
    for label, value in rows:
        print(f"{label:<34} {value}")
    print(f"target < 150 ms added: {'met' if added < 150 else 'NOT met'}")
    print(f"heavy modules imported by loading: {', '.join(heavy) if heavy else 'none'}")


if __name__ == "__main__":
    main()
