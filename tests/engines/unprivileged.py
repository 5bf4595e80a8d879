"""Driver for the hostile suite as an unprivileged user: ``python -m tests.engines.unprivileged`` prints one JSON
line (uid, modes, cases checked, failures). Run by test_sandbox_hostile under ``setpriv --reuid=65534``."""

from __future__ import annotations

import json
import os

import codecapsule as cc
from codecapsule.engines.local import LocalEngine

from .hostile import CASES

SLOW = {"java-heap-bomb", "node-heap-bomb", "compile-bomb-c", "forked-cpu-bypass", "fill-the-disk"}


def main() -> None:
    failures: list[str] = []
    checked = 0
    modes: list[str] = []
    for kw in ({"bwrap": True}, {"bwrap": False}):
        engine = LocalEngine(**kw)  # type: ignore[arg-type]
        modes.append(engine.caps.level)
        for case in CASES:
            if case.id in SLOW or not case.needs(engine.caps):
                continue
            r = engine.run(cc.Job.create(case.source, case.language, **case.kwargs))
            checked += 1
            problem = case.check(r, engine.caps)
            if problem is not None:
                failures.append(f"{engine.caps.level}/{case.id}: {problem}")
    print(json.dumps({"uid": os.getuid(), "modes": modes, "checked": checked, "failures": failures}))


if __name__ == "__main__":
    main()
