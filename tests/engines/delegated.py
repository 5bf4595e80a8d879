"""Driver for the delegated-cgroup test: run as an unprivileged user, it prints one JSON line with what the
engine found and the verdicts of a memory hog and a CPU hog. Run by test_cgroups_delegated under setpriv."""

from __future__ import annotations

import json
import os

import codecapsule as cc
from codecapsule.engines.local import LocalEngine


def main() -> None:
    engine = LocalEngine()
    cg = engine.caps.cgroups
    hog = engine.run(cc.Job.create("x = bytearray(400 * 1024 * 1024)\nprint(len(x))", "python", memory="64MB"))
    # CPU spent in two processes: only cgroup accounting sees the sum (RLIMIT_CPU is per process)
    spin = "import os\nos.fork()\nwhile True:\n    pass\n"
    cpu = engine.run(cc.Job.create(spin, "python", timeout=1))
    print(json.dumps({
        "uid": os.getuid(),
        "cgroup": None if cg is None else {"version": cg.version, "memory_parent": str(cg.memory_parent)},
        "facts": engine.caps.facts(),
        "hog": [hog.verdict, hog.run.status if hog.run else None],
        "cpu": [cpu.verdict, cpu.run.message if cpu.run else None],
    }))  # fmt: skip


if __name__ == "__main__":
    main()
