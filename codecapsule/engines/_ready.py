"""Things prepared ahead for stages to take: the one pool behind standbys (``_standby``) and prepared sandboxes
(``_primed``).

A pool keeps at most ``ready_max`` items waiting, oldest first. ``refill`` hands the forker thread (``_forker``:
bubblewrap's ``--die-with-parent`` follows the thread that forked it) one more preparation when fewer items wait
or are being prepared; ``take`` hands out the oldest still alive (one killed from outside while it waited is
stopped on the forker thread, off the stage's path). A failed preparation leaves the pool as it was; after
``give_up`` of them in a row it prepares no more (stages then start the usual way). ``close`` stops what waits and
prepares no more; ``release`` only stops what waits.

A kind of item is a subclass: ``make`` prepares one (on the forker thread), ``alive`` says whether one that waited
is still usable, ``stop`` ends one that no stage took.
"""

from __future__ import annotations

import functools
import threading
from typing import Generic, TypeVar

from . import _forker

T = TypeVar("T")


class ReadyPool(Generic[T]):
    def __init__(self, ready_max: int, give_up: int | None = None) -> None:
        self.ready_max = ready_max
        self.give_up = give_up
        self.ready: list[T] = []
        self.preparing = 0
        self.failures = 0  # preparations failed in a row
        self.closed = False
        self.lock = threading.Lock()
        self.changed = threading.Condition(self.lock)

    def make(self) -> T:
        raise NotImplementedError

    def alive(self, item: T) -> bool:
        raise NotImplementedError

    def stop(self, item: T) -> None:
        raise NotImplementedError

    def take(self) -> T | None:
        """The oldest item waiting that is still alive (the one surely done preparing), or None."""
        with self.lock:
            while self.ready:
                got = self.ready.pop(0)
                if self.alive(got):
                    return got
                _forker.later(functools.partial(self.stop, got))
        return None

    def refill(self) -> None:
        """Have one more prepared if fewer than ``ready_max`` wait or are being prepared."""
        with self.lock:
            broken = self.give_up is not None and self.failures >= self.give_up
            go = not (broken or self.closed) and self.preparing + len(self.ready) < self.ready_max
            if go:
                self.preparing += 1
        if go:
            _forker.later(self._prepare)

    def _prepare(self) -> None:
        try:
            item: T | None = self.make()
        except Exception:
            item = None  # none now: stages start the usual way (one may be passing: say, all uids taken)
        with self.lock:
            self.preparing -= 1
            self.failures = 0 if item is not None else self.failures + 1
            self.changed.notify_all()
            if item is not None and not self.closed:
                self.ready.append(item)
                return
        if item is not None:
            self.stop(item)

    def wait_prepared(self, timeout: float = 10.0) -> list[T]:
        """Wait until none is being prepared; those waiting then (for tests, benchmarks and ``engine info``)."""
        with self.lock:
            self.changed.wait_for(lambda: self.preparing == 0, timeout)
            return list(self.ready)

    def release(self, timeout: float = 10.0) -> None:
        """Stop the items waiting, once none is being prepared (the next ``refill`` prepares anew unless closed)."""
        with self.lock:
            self.changed.wait_for(lambda: self.preparing == 0, timeout)
        self._stop_ready()

    def close(self, timeout: float = 10.0, *, wait: bool = True) -> None:
        """Prepare no more and stop the items waiting; ``wait=False``: on the forker thread, after what it was given
        before (a finalizer must not block; a preparation queued before then finds the pool closed)."""
        with self.lock:
            self.closed = True
        if wait:
            self.release(timeout)
        else:
            _forker.later(self._stop_ready)

    def _stop_ready(self) -> None:
        with self.lock:
            ready, self.ready = self.ready, []
        for item in ready:
            self.stop(item)

    def forget(self) -> None:
        """In a forked child: what waits is the parent's; this pool prepares nothing more."""
        self.ready.clear()
        self.preparing = 0
        self.closed = True
        self.lock = threading.Lock()
        self.changed = threading.Condition(self.lock)
