"""The SQL worker's wire format: one message = a JSON header and an optional Arrow IPC stream, over a pipe.

Frame: ``!II`` (header length, body length), the UTF-8 JSON header, then the body bytes. The body is an Arrow IPC
stream (result rows, a registered table, query parameters) or empty. JSON and Arrow only — never pickle — so a
worker that misbehaves cannot make the notebook's process run code by answering.
"""

from __future__ import annotations

import json
import os
import select
import struct
import time
from typing import Any

# What a body is: bytes, a bytearray, or a pyarrow Buffer — anything with the buffer protocol
# (collections.abc.Buffer is Python 3.12+).
Buffer = Any

_FRAME = struct.Struct("!II")
SEQ = struct.Struct("!Q")  # on the interrupt pipe: the sequence number of the query to interrupt
MAX_HEADER = 16 << 20  # a header is a few hundred bytes; more means the stream is out of step


class WireError(Exception):
    """The other side closed the pipe, sent a malformed frame, or did not answer in time."""


class WireTimeout(WireError):
    """No complete answer before the deadline."""


def encode(header: dict[str, Any], body_length: int = 0) -> bytes:
    """The frame and JSON header of a message whose body (``body_length`` bytes) follows."""
    head = json.dumps(header, separators=(",", ":"), default=str).encode()
    return _FRAME.pack(len(head), body_length) + head


_SMALL = 1 << 16  # below this, header and body go in one write (one wake-up of the reader)


def write_message(fd: int, header: dict[str, Any], body: Buffer = b"") -> None:
    """Write one message. A large body is written from its own buffer, never copied into one big frame."""
    view = memoryview(body).cast("B")
    head = encode(header, len(view))
    parts = [memoryview(head + bytes(view))] if len(view) < _SMALL else [memoryview(head), view]
    try:
        for data in parts:
            while data:
                data = data[os.write(fd, data) :]
    except OSError as exc:
        raise WireError(f"the other side closed the pipe ({exc})") from None


class Reader:
    """Reads framed messages from a pipe; one read usually brings a whole small answer, parsed from one buffer."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self._buffer = bytearray()
        # every read of the pipe lands here first: a fresh 64 KB bytes object per read would cost a malloc, a
        # shrink and a free on both sides of every round trip
        self._chunk = bytearray(_SMALL)
        self._poll = select.poll()
        self._poll.register(fd, select.POLLIN)

    def _fill(self) -> int:
        """Append what one read of the pipe brings to the buffer: its size (0: the other side closed the pipe)."""
        got = os.readv(self.fd, [self._chunk])
        self._buffer += memoryview(self._chunk)[:got]
        return got

    def readable(self, deadline: float) -> bool:
        """True when a message has started (or the pipe closed) before the ``time.monotonic()`` deadline."""
        if self._buffer:
            return True
        if not self._poll.poll(max(0.0, deadline - time.monotonic()) * 1000):  # milliseconds, rounded up
            return False
        self._fill()  # cannot block now; usually the whole answer (EOF: nothing, and read() says so)
        return True

    def _take(self, n: int, deadline: float | None) -> bytearray:
        """The next ``n`` bytes; a large body is read straight into one buffer of its size."""
        out = bytearray(n)
        have = min(n, len(self._buffer))
        out[:have] = self._buffer[:have]
        del self._buffer[:have]
        view = memoryview(out)
        while have < n:
            if deadline is not None:
                wait = deadline - time.monotonic()
                if wait <= 0 or not self._poll.poll(wait * 1000):
                    raise WireTimeout("no answer before the deadline")
            if n - have < _SMALL:  # small: read ahead into the buffer (often the whole next message)
                if not self._fill():
                    raise WireError("the other side closed the pipe")
                take = min(len(self._buffer), n - have)
                view[have : have + take] = self._buffer[:take]
                del self._buffer[:take]
                have += take
            else:
                got = os.readv(self.fd, [view[have:]])
                if not got:
                    raise WireError("the other side closed the pipe")
                have += got
        return out

    def read(self, deadline: float | None = None) -> tuple[dict[str, Any], Buffer]:
        """The next message; ``deadline`` is a ``time.monotonic()`` instant (None: wait for ever)."""
        if not self._buffer and deadline is None:
            self._fill()  # blocking: usually brings the whole message (EOF: _take below says so)
        buffer = self._buffer
        if len(buffer) >= _FRAME.size:  # the usual small message, already whole in the buffer: no copies
            head_len, body_len = _FRAME.unpack_from(buffer)
            end = _FRAME.size + head_len + body_len
            if head_len <= MAX_HEADER and len(buffer) >= end:
                header = _header(buffer[_FRAME.size : _FRAME.size + head_len])
                whole: Buffer = buffer[end - body_len : end] if body_len else b""
                del buffer[:end]
                return header, whole
        head_len, body_len = _FRAME.unpack(self._take(_FRAME.size, deadline))
        if head_len > MAX_HEADER:
            raise WireError(f"a header of {head_len} bytes: the stream is out of step")
        header = _header(self._take(head_len, deadline))
        body: Buffer = self._take(body_len, deadline) if body_len else b""
        return header, body


def _header(data: bytearray) -> dict[str, Any]:
    header = json.loads(data)
    if not isinstance(header, dict):
        raise WireError("a header that is not a JSON object")
    return header


def arrow_to_bytes(table: Any) -> Buffer:
    """A pyarrow Table or RecordBatch as an IPC stream (a pyarrow Buffer: no copy into ``bytes``)."""
    import pyarrow as pa

    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema, options=pa.ipc.IpcWriteOptions()) as writer:
        writer.write(table)
    buffer: Buffer = sink.getvalue()
    return buffer


def bytes_to_arrow(data: Buffer) -> Any:
    import pyarrow as pa

    return pa.ipc.open_stream(pa.py_buffer(data)).read_all()
