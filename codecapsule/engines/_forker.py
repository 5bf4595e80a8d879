"""One long-lived thread that forks every launcher prepared ahead, and does the clean-up a run need not wait for.

Why one thread, and a long-lived one: bubblewrap's ``--die-with-parent`` is PR_SET_PDEATHSIG, which fires when the
*thread* that forked the process exits, not the process. A launcher forked by a short-lived thread and exec'ing
bubblewrap while that thread still runs would be killed (with the run in it) a moment later, when the thread ends.
Standbys (``_standby``) and prepared sandboxes (``_primed``) are all forked here.

The clean-up: removing a run's emptied cgroup can wait ~10 ms for the kernel (an RCU grace period, when another
thread is moving a process into a group at that moment: this thread, preparing the next launcher), and an empty
group protects nothing; a prepared sandbox a run did not use is stopped here too, and the compile cache's eviction
scan (``_compile_cache``: it stats every entry) runs here after a put.
"""

from __future__ import annotations

import contextlib
import os
import queue
import threading
from collections.abc import Callable

_queue: queue.SimpleQueue[Callable[[], None]] | None = None
_lock = threading.Lock()
_idle = threading.Condition(_lock)
_pending = 0  # jobs handed to the thread and not yet done
_thread: threading.Thread | None = None


def later(job: Callable[[], None]) -> None:
    """Run ``job`` on the forker thread, after what was handed to it before (its exceptions are dropped: a job
    says what failed through its own state)."""
    global _queue, _pending, _thread
    with _lock:
        if _queue is None:
            _queue = queue.SimpleQueue()
            _thread = threading.Thread(target=_serve, args=(_queue,), name="codecapsule-forker", daemon=True)
            _thread.start()
        _pending += 1
        _queue.put(job)


def wait_idle(timeout: float = 10.0) -> bool:
    """Wait until the thread has done everything handed to it; whether it has."""
    if threading.current_thread() is _thread:
        return False  # called from a job on that thread: it would wait for itself
    with _idle:
        return _idle.wait_for(lambda: _pending == 0, timeout)


def native_id() -> int | None:
    """The thread's kernel id (the parent, in ``/proc/<pid>/task/<tid>/children``, of what it forked)."""
    return _thread.native_id if _thread is not None else None


def _serve(work: queue.SimpleQueue[Callable[[], None]]) -> None:
    global _pending
    while True:
        job = work.get()
        with contextlib.suppress(Exception):
            job()
        with _idle:
            _pending -= 1
            _idle.notify_all()


def _forget_after_fork() -> None:
    """In a forked child the thread does not exist: the next job starts one."""
    global _queue, _lock, _idle, _pending, _thread
    _queue, _lock, _pending, _thread = None, threading.Lock(), 0, None
    _idle = threading.Condition(_lock)


os.register_at_fork(after_in_child=_forget_after_fork)
