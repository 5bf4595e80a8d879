"""The stdin of an interactive live run on the local engine: a pipe the program reads as fd 0, fed from the
user's ``send()`` as the text arrives, and the one place that decides when the program is asked for input.

The capture loop (``_sandbox._capture``) drives it: :meth:`LiveStdin.turn` on every pass (take what was sent,
write what the pipe takes), :meth:`output_seen` for each chunk, :meth:`wants_input` when the loop found nothing to
read, then :meth:`ask`. Writes never block: what the pipe does not take stays pending (a program that never reads
only fills its pipe), and the loop waits for the pipe to become writable. ``close_stdin()`` closes the write end
once everything pending is written: the program's next read sees end of input.
"""

from __future__ import annotations

import array
import contextlib
import fcntl
import os
import termios
import time
from collections.abc import Callable

from .._events import InputWanted
from ._live import END_OF_INPUT, LiveIO
from ._stdin_wait import PROBE_EVERY, QUIET_BEFORE_PROBE, QUIET_FOR_INPUT, blocked_reading


class LiveStdin:
    """One run stage's stdin pipe. ``first``: the job's own ``stdin=`` text, written before anything sent."""

    def __init__(self, io: LiveIO, first: bytes = b"") -> None:
        self._io = io
        self.read_fd, self.write_fd = os.pipe()
        os.set_blocking(self.write_fd, False)
        self.inode = os.fstat(self.write_fd).st_ino
        self._pending = bytearray(first)
        self._ending = False  # close_stdin() was called: close the pipe once the pending text is written
        self._asked = False  # InputWanted emitted for the current wait
        self._quiet_since = time.monotonic()
        self._probed_at = 0.0

    def handed_over(self) -> None:
        """The program holds the read end now: ours would keep the pipe open after the program is gone."""
        if self.read_fd >= 0:
            os.close(self.read_fd)
            self.read_fd = -1

    @property
    def wants_write(self) -> bool:
        return self.write_fd >= 0 and bool(self._pending)

    def turn(self) -> None:
        """Take what the user sent, write what the pipe takes now, close it at end of input."""
        while (text := self._io.read_input()) is not False:
            if text is END_OF_INPUT:
                self._ending = True
            elif isinstance(text, str) and self.write_fd >= 0 and not self._ending:  # nothing after the end
                self._pending += text.encode()
        if self.write_fd < 0:
            return
        while self._pending:
            try:
                written = os.write(self.write_fd, self._pending)
            except BlockingIOError:
                return  # the pipe is full: the rest waits until the program reads
            except BrokenPipeError:  # (Python ignores SIGPIPE: a write to a pipe without readers fails instead)
                self._end()  # nobody holds the read end any more (closed, or every reader exited)
                return
            del self._pending[:written]
            self._activity()
        if self._ending:
            self._end()

    def output_seen(self) -> None:
        self._activity()

    def _activity(self) -> None:
        self._quiet_since, self._asked = time.monotonic(), False

    def next_look(self, now: float) -> float | None:
        """Seconds until :meth:`wants_input` may next look at the program (None: nothing to look for)."""
        if self._asked or self.write_fd < 0 or self._pending:
            return None
        return max(0.0, self._quiet_since + QUIET_BEFORE_PROBE - now, self._probed_at + PROBE_EVERY - now)

    def wants_input(self, pids: Callable[[], list[int]]) -> bool:
        """Whether the program is blocked reading its stdin now, with nothing left for it to read: measured in
        /proc (``_stdin_wait``); where /proc cannot tell, once it has been quiet for ``QUIET_FOR_INPUT``."""
        now = time.monotonic()
        wait = self.next_look(now)
        if wait is None or wait > 0:
            return False
        self._probed_at = now
        if self._in_pipe() > 0:
            return False  # it has not read what it was given yet
        blocked = blocked_reading(pids(), self.inode)
        return now - self._quiet_since >= QUIET_FOR_INPUT if blocked is None else blocked

    def ask(self) -> None:
        """Emit InputWanted, once per wait (until the program prints or is given input)."""
        self._asked = True
        self._io.emit(InputWanted("run"))

    def _in_pipe(self) -> int:
        count = array.array("i", [0])
        with contextlib.suppress(OSError):
            fcntl.ioctl(self.write_fd, termios.FIONREAD, count)
        return count[0]

    def _end(self) -> None:
        """Close the write end: the program's next read (once the pipe is empty) sees end of input."""
        if self.write_fd >= 0:
            os.close(self.write_fd)
            self.write_fd = -1
        self._pending.clear()

    def close(self) -> None:
        self.handed_over()
        self._end()
