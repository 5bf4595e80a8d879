"""The SQL worker's wire format over a real pipe: framing, large bodies, EOF, deadlines, Arrow round trips."""

from __future__ import annotations

import contextlib
import os
import struct
import threading
import time

import pytest

from codecapsule.engines._sql_wire import (
    Reader,
    WireError,
    WireTimeout,
    arrow_to_bytes,
    bytes_to_arrow,
    write_message,
)


@pytest.fixture
def pipe() -> tuple[int, int]:
    r, w = os.pipe()
    yield r, w
    for fd in (r, w):
        with contextlib.suppress(OSError):
            os.close(fd)


def test_small_and_large_messages_arrive_whole_and_in_order(pipe: tuple[int, int]) -> None:
    r, w = pipe
    big = os.urandom(3 << 20)  # larger than a pipe's buffer: written from its own buffer while we read
    writer = threading.Thread(
        target=lambda: [write_message(w, {"n": 1}, b"abc"), write_message(w, {"n": 2}, big), write_message(w, {})]
    )
    writer.start()
    reader = Reader(r)
    assert reader.read(time.monotonic() + 10) == ({"n": 1}, bytearray(b"abc"))
    header, body = reader.read(time.monotonic() + 10)
    assert header == {"n": 2} and bytes(body) == big
    assert reader.read() == ({}, b"")
    writer.join()


def test_a_closed_pipe_and_a_silent_one_are_wire_errors(pipe: tuple[int, int]) -> None:
    r, w = pipe
    reader = Reader(r)
    with pytest.raises(WireTimeout):
        reader.read(time.monotonic() + 0.05)
    assert not reader.readable(time.monotonic() + 0.01)
    os.write(w, struct.pack("!II", 5, 0) + b"{}")  # a frame cut short
    os.close(w)
    with pytest.raises(WireError, match="closed"):
        reader.read(time.monotonic() + 5)


def test_an_out_of_step_stream_is_refused(pipe: tuple[int, int]) -> None:
    r, w = pipe
    os.write(w, struct.pack("!II", 1 << 30, 0))
    with pytest.raises(WireError, match="out of step"):
        Reader(r).read(time.monotonic() + 5)
    os.write(w, struct.pack("!II", 2, 0) + b"[]")
    with pytest.raises(WireError, match="not a JSON object"):
        Reader(r).read(time.monotonic() + 5)


def test_arrow_tables_keep_their_types() -> None:
    import datetime
    import decimal

    import pyarrow as pa

    table = pa.table({"d": [datetime.date(2025, 1, 2)], "x": [decimal.Decimal("9.5")], "s": ["ä"]})
    back = bytes_to_arrow(arrow_to_bytes(table))
    assert back.equals(table) and back.schema == table.schema
