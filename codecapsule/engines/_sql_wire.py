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

_FRAME = struct.Struct("!II")
SEQ = struct.Struct("!Q")  # on the interrupt pipe: the sequence number of the query to interrupt
MAX_HEADER = 16 << 20  # a header is a few hundred bytes; more means the stream is out of step


class WireError(Exception):
    """The other side closed the pipe, sent a malformed frame, or did not answer in time."""


class WireTimeout(WireError):
    """No complete answer before the deadline."""


def encode(header: dict[str, Any], body: bytes = b"") -> bytes:
    head = json.dumps(header, separators=(",", ":"), default=str).encode()
    return _FRAME.pack(len(head), len(body)) + head + body


def write_message(fd: int, header: dict[str, Any], body: bytes = b"") -> None:
    data = memoryview(encode(header, body))
    try:
        while data:
            data = data[os.write(fd, data) :]
    except (BrokenPipeError, OSError) as exc:
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

    def _take(self, n: int, deadline: float | None) -> bytes:
        while len(self._buffer) < n:
            if deadline is not None:
                wait = deadline - time.monotonic()
                if wait <= 0 or not select.select([self.fd], [], [], wait)[0]:
                    raise WireTimeout("no answer before the deadline")
            chunk = os.read(self.fd, max(1 << 16, n - len(self._buffer)))
            if not chunk:
                raise WireError("the other side closed the pipe")
            self._buffer += chunk
        data = bytes(self._buffer[:n])
        del self._buffer[:n]
        return data

    def read(self, deadline: float | None = None) -> tuple[dict[str, Any], bytes]:
        """The next message; ``deadline`` is a ``time.monotonic()`` instant (None: wait for ever)."""
        head_len, body_len = _FRAME.unpack(self._take(_FRAME.size, deadline))
        if head_len > MAX_HEADER:
            raise WireError(f"a header of {head_len} bytes: the stream is out of step")
        header = json.loads(self._take(head_len, deadline))
        if not isinstance(header, dict):
            raise WireError("a header that is not a JSON object")
        body = self._take(body_len, deadline) if body_len else b""
        return header, body


def arrow_to_bytes(table: Any) -> bytes:
    """A pyarrow Table or RecordBatch as an IPC stream."""
    import pyarrow as pa

    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema, options=pa.ipc.IpcWriteOptions()) as writer:
        writer.write(table)
    return bytes(sink.getvalue())


def bytes_to_arrow(data: bytes) -> Any:
    import pyarrow as pa

    return pa.ipc.open_stream(pa.py_buffer(data)).read_all()
