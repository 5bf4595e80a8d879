"""Per-run host uids for running as root (as isolate does): each run's programs get a uid no other run, account or
process of this machine holds, so runs cannot signal, trace or read one another even outside bubblewrap, and
RLIMIT_NPROC (which root ignores) limits each run's processes where no pids cgroup does.

A uid is taken with an exclusive ``flock`` on ``<lock dir>/<uid>.lock`` (root-only directory), so engines in other
processes never take the same one; uids are handed out round-robin, so a uid is reused as late as possible.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import os
import pwd
import tempfile
import threading
from collections.abc import Iterator

from .._errors import SandboxError

UID_RANGE = range(64000, 65000)


class UidPool:
    def __init__(self, uids: range = UID_RANGE, lock_dir: str | None = None) -> None:
        self.uids = _free(uids)
        self.lock_dir = lock_dir or _default_lock_dir()
        self._next = os.getpid() % max(1, len(self.uids))
        self._lock = threading.Lock()

    @property
    def first(self) -> int | None:
        return self.uids[0] if self.uids else None

    @contextlib.contextmanager
    def take(self) -> Iterator[int]:
        """A uid held for the duration of the block."""
        fd, uid = self._acquire()
        try:
            yield uid
        finally:
            os.close(fd)  # releases the flock

    def _acquire(self) -> tuple[int, int]:
        os.makedirs(self.lock_dir, mode=0o700, exist_ok=True)
        for _ in range(len(self.uids)):
            with self._lock:
                uid = self.uids[self._next]
                self._next = (self._next + 1) % len(self.uids)
            fd = os.open(os.path.join(self.lock_dir, f"{uid}.lock"), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                continue
            return fd, uid
        raise SandboxError(
            f"all {len(self.uids)} sandbox uids ({self.uids[0] if self.uids else '-'}...) are in use by other runs: "
            "lower the batch concurrency or wait for running programs to finish."
        )


@functools.cache
def _free(uids: range) -> list[int]:
    """The uids of the range no account uses (read once per process)."""
    return [u for u in uids if not _has_account(u)]


def _has_account(uid: int) -> bool:
    try:
        pwd.getpwuid(uid)
    except KeyError:
        return False
    return True


def _default_lock_dir() -> str:
    run = "/run" if os.access("/run", os.W_OK) else tempfile.gettempdir()
    return os.path.join(run, "codecapsule-uids")
