"""The scaling panel's background worker: one operation at a time in a thread, plus the auto-refresh timer.

It knows nothing about widgets or clouds: the controller gives it the work, a ``log`` sink, a ``changed``
callback (busy or idle now) and a ``finish`` step (read the status) that runs after every operation.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from ..._errors import CodeCapsuleError, OperationInProgress
from .layout import one_line

__all__ = ["Worker"]

_logger = logging.getLogger("codecapsule.widgets")

Work = Callable[[], str | None]


class Worker:
    """Runs ``work`` then ``finish(work is None)`` in a daemon thread, refusing a second one meanwhile."""

    def __init__(
        self,
        *,
        log: Callable[[str, bool], None],
        changed: Callable[[], None],
        finish: Callable[[bool], None],
    ) -> None:
        self.lock = threading.RLock()
        self.idle = threading.Event()
        self.idle.set()
        self.closed = threading.Event()
        self.operation: str | None = None  # what runs now, None when idle
        #: the last error an operation met (or the OperationInProgress of a refused click)
        self.last_error: Exception | None = None
        self._log, self._changed, self._finish = log, changed, finish
        self._timer: threading.Thread | None = None
        self._timer_stop = threading.Event()

    # -- one operation at a time ---------------------------------------------------------------------------

    def start(self, what: str, work: Work | None, *, announce: bool = False, quiet_if_busy: bool = False) -> bool:
        """Start ``what`` unless something already runs (then log why not, unless ``quiet_if_busy``)."""
        if self.closed.is_set():
            return False
        with self.lock:
            running = self.operation
            if running is None:
                self.operation = what
                self.idle.clear()
        if running is not None:
            if not quiet_if_busy:
                refused = OperationInProgress(
                    f"{what} not started: another operation is still running ({running[0].lower()}"
                    f"{running[1:]}). Wait until the spinner stops, then try again."
                )
                self.last_error = refused
                self._log(str(refused), True)
            return False
        if announce or work is not None:
            self._log(f"{what}…", False)
        self._changed()
        threading.Thread(target=self._run, args=(what, work), name="codecapsule-panel", daemon=True).start()
        return True

    def _run(self, what: str, work: Work | None) -> None:
        try:
            if work is not None:
                try:
                    message = work()
                    if message:
                        self._log(message, False)
                except CodeCapsuleError as exc:
                    self.last_error = exc
                    self._log(f"{what} failed: {one_line(exc)}", True)
                except Exception as exc:  # a bug or an unwrapped error: still plain words, details in logging
                    _logger.debug("panel operation failed", exc_info=True)
                    self.last_error = exc
                    self._log(f"{what} failed unexpectedly ({type(exc).__name__}): {one_line(exc)}", True)
            if not self.closed.is_set():
                self._finish(work is None)
        finally:
            with self.lock:
                self.operation = None
            self._changed()
            self.idle.set()

    # -- the auto-refresh timer ----------------------------------------------------------------------------

    @property
    def ticking(self) -> bool:
        timer = self._timer
        return timer is not None and timer.is_alive()

    def start_timer(self, period: Callable[[], float], tick: Callable[[], None]) -> None:
        with self.lock:
            if self.closed.is_set() or self.ticking:
                return
            stop = self._timer_stop = threading.Event()

            def loop() -> None:
                # Waits on the stop event, so closing ends the thread at once, not after a full period.
                while not stop.wait(period()):
                    if self.closed.is_set():
                        return
                    tick()

            self._timer = threading.Thread(target=loop, name="codecapsule-panel-timer", daemon=True)
            self._timer.start()

    def stop_timer(self) -> None:
        with self.lock:
            timer, self._timer = self._timer, None
            self._timer_stop.set()
        if timer is not None and timer is not threading.current_thread():
            timer.join(timeout=10)

    def close(self) -> None:
        self.closed.set()
        self.stop_timer()
