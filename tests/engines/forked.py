"""Run a function in a forked child of the test process, as a program that forks after using an engine would."""

from __future__ import annotations

import os
from collections.abc import Callable

from codecapsule.engines import _standby


def in_forked_child(work: Callable[[], str]) -> str:
    """What ``work`` returned in a forked child; fails if it raised. The child leaves without the parent's atexit
    hooks, but stops its own standbys first (os._exit skips that; they would be orphans of the test process)."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            os.write(write_end, work().encode())
            code = 0
        finally:
            _standby.release_all()
            os._exit(code)
    os.close(write_end)
    with os.fdopen(read_end) as got:
        answer = got.read()
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0, answer
    return answer
