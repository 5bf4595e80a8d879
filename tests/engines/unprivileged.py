"""Driver for the hostile suite as an unprivileged user: ``python -m tests.engines.unprivileged`` prints one JSON
line (uid, modes, cases checked, failures). Run by test_sandbox_hostile under ``setpriv --reuid=65534``."""

from __future__ import annotations

import json
import os

import codecapsule as cc
from codecapsule.engines.local import LocalEngine

from .conversation import converse, stdout_before, waits
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
        checked += 1
        problem = _typed_input(engine)
        if problem is not None:
            failures.append(f"{engine.caps.level}/typed-input: {problem}")
    print(json.dumps({"uid": os.getuid(), "modes": modes, "checked": checked, "failures": failures}))


def _typed_input(engine: LocalEngine) -> str | None:
    """An interactive live run as this user: asked once, when /proc shows it blocked reading (not before)."""
    source = "x = sum(range(2_000_000))\nname = input('who? ')\nprint('hello', name)\n"
    events, r = converse(engine.stream(cc.Job.create(source, "python", timeout=30), interactive=True), ["Ada"])
    if waits(events) != 1 or (stdout_before(events, 0), r.verdict, r.stdout) != ("who? ", "ok", "who? hello Ada\n"):
        return f"{waits(events)} waits, {r.verdict}: {r.stdout!r} {r.stderr[-300:]!r}"
    return None


if __name__ == "__main__":
    main()
