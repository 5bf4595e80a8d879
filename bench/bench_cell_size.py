"""What a notebook file stores for a cell whose program prints ~900 KB: bounded (the default
``Capsule.output_budget``) against unbounded (a budget of 1 TiB), in the same real kernel, same run.

Sizes are the JSON bytes of the cell's outputs as a front end stores them (tests/test_kernel_live.py's front
end, ``clear_output`` included). Prints numbers only; no assertion.

    PYTHONPATH=. .venv/bin/python bench/bench_cell_size.py
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from tests.test_kernel_live import RUNAWAY_PRINT, live_kernel, run_cell


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp, live_kernel(Path(tmp) / "jupyter", Path(tmp)) as (km, kc):
        sizes = {}
        for label, budget in (("unbounded", 1 << 40), ("default", 65536)):
            run_cell(km, kc, f"%config Capsule.output_budget = {budget}")
            cell = run_cell(km, kc, f"%%capsule python --engine local\n{RUNAWAY_PRINT}", allow_stdin=False)
            sizes[label] = cell.stored_bytes
            print(f"{label:<10} {cell.stored_bytes:>9,} bytes stored")
        print(f"ratio      {sizes['unbounded'] / sizes['default']:.1f}x smaller")


if __name__ == "__main__":
    main()
