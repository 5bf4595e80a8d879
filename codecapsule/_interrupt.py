"""Ctrl-C (KeyboardInterrupt) during a run: every process of the run is gone before the interrupt goes on.

A plain run on the local engine is waited on as a live run (``LocalEngine.stream``): the only kind of run that can
be stopped from outside. When KeyboardInterrupt lands in the thread waiting for it (a script's Ctrl-C, a notebook's
Stop), the run is cancelled — the sandbox kills its processes and removes its work directory — and only then does
the KeyboardInterrupt propagate. A batch waits on its runs from worker threads (where Python never raises
KeyboardInterrupt): the waiting thread stops them all through their :class:`RunGroup`.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

from ._events import final_result

if TYPE_CHECKING:
    from concurrent.futures import ThreadPoolExecutor

    from ._events import RunStream
    from ._results import Result


def stop_patiently(run: RunStream) -> None:
    """Cancel ``run`` and wait until nothing of it is left. A further Ctrl-C meanwhile does not cut the wait short:
    leaving now would leave the run's processes behind, and the kill takes a moment only."""
    while True:
        try:
            run.close()
            return
        except KeyboardInterrupt:
            continue


def shutdown_patiently(pool: ThreadPoolExecutor) -> None:
    """Drop the jobs not started and wait for the running ones, whatever Ctrl-Cs arrive meanwhile."""
    while True:
        try:
            pool.shutdown(wait=True, cancel_futures=True)
            return
        except KeyboardInterrupt:
            continue


class RunGroup:
    """The live runs waited on for one call (one run, or a batch's): :meth:`stop` cancels them all, and any run
    that starts afterwards is cancelled as soon as it starts."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._running: set[RunStream] = set()
        self._stopping = False

    def wait(self, run: RunStream) -> Result:
        """The Result of ``run`` (its Finished event); on KeyboardInterrupt, stop it first, then re-raise."""
        with self._lock:
            self._running.add(run)
            stopping = self._stopping
        try:
            if stopping:
                run.cancel()
            return final_result(iter(run))
        except KeyboardInterrupt:
            stop_patiently(run)
            raise
        finally:
            with self._lock:
                self._running.discard(run)

    def stop(self) -> None:
        """Cancel every run of the group (from the thread that was interrupted; thread-safe)."""
        with self._lock:
            self._stopping = True
            running = list(self._running)
        for run in running:
            run.cancel()
