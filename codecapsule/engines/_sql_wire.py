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
    """Reads framed messages from a pipe; one ``os.read`` usually brings a whole small answer."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self._buffer = bytearray()

    def readable(self, deadline: float) -> bool:
        """True when a message has started (or the pipe closed) before the ``time.monotonic()`` deadline."""
        if self._buffer:
            return True
        if not select.select([self.fd], [], [], max(0.0, deadline - time.monotonic()))[0]:
            return False
        self._buffer += os.read(self.fd, 1 << 16)  # cannot block now; usually the whole answer (EOF: empty)
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
                if wait <= 0 or not select.select([self.fd], [], [], wait)[0]:
                    raise WireTimeout("no answer before the deadline")
            if n - have < _SMALL:  # small: read ahead into the buffer (often the whole next message)
                chunk = os.read(self.fd, _SMALL)
                if not chunk:
                    raise WireError("the other side closed the pipe")
                take = min(len(chunk), n - have)
                view[have : have + take] = chunk[:take]
                self._buffer += chunk[take:]
                have += take
            else:
                got = os.readv(self.fd, [view[have:]])
                if not got:
                    raise WireError("the other side closed the pipe")
                have += got
        return out

    def read(self, deadline: float | None = None) -> tuple[dict[str, Any], Buffer]:
        """The next message; ``deadline`` is a ``time.monotonic()`` instant (None: wait for ever)."""
        head_len, body_len = _FRAME.unpack(self._take(_FRAME.size, deadline))
        if head_len > MAX_HEADER:
            raise WireError(f"a header of {head_len} bytes: the stream is out of step")
        header = json.loads(self._take(head_len, deadline))
        if not isinstance(header, dict):
            raise WireError("a header that is not a JSON object")
        body: Buffer = self._take(body_len, deadline) if body_len else b""
        return header, body


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
