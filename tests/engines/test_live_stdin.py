"""``_live_stdin.LiveStdin`` on a real pipe: writes never block (a full pipe keeps the rest pending), end of input
closes the pipe only once everything sent is written, and a reader that went away ends the feeding quietly."""

from __future__ import annotations

import os
import select

from codecapsule._events import Event
from codecapsule.engines._live import LiveIO
from codecapsule.engines._live_stdin import LiveStdin

_BIG = b"x" * (1 << 20)  # far more than a pipe holds (64 KiB)


def _feed(first: bytes = b"") -> tuple[LiveIO, LiveStdin]:
    seen: list[Event | BaseException] = []
    io = LiveIO(seen.append)
    return io, LiveStdin(io, first)


def _drain_until_eof(feed: LiveStdin) -> bytes:
    """Read the pipe as the program would, letting the feed write more each time there is room."""
    got = bytearray()
    while True:
        feed.turn()
        select.select([feed.read_fd], [], [], 10)
        chunk = os.read(feed.read_fd, 1 << 16)
        if not chunk:
            return bytes(got)
        got += chunk


def test_a_full_pipe_keeps_the_rest_pending_without_blocking() -> None:
    io, feed = _feed(b"first\n")
    try:
        io._put_input(_BIG.decode())
        feed.turn()  # returns although the pipe cannot take it all
        assert feed.wants_write
        io._put_input(None)
        assert _drain_until_eof(feed) == b"first\n" + _BIG  # in order, all of it, then EOF
        assert feed.write_fd == -1
    finally:
        feed.close()
        io._close()


def test_text_sent_after_the_end_is_dropped_even_while_the_rest_is_pending() -> None:
    io, feed = _feed()
    try:
        io._put_input(_BIG.decode())
        io._put_input(None)
        io._put_input("after the end\n")
        assert _drain_until_eof(feed) == _BIG
    finally:
        feed.close()
        io._close()


def test_end_of_input_closes_the_pipe() -> None:
    io, feed = _feed()
    try:
        io._put_input(None)
        feed.turn()
        assert feed.write_fd == -1 and os.read(feed.read_fd, 10) == b""
        io._put_input("late\n")
        feed.turn()  # text after the end is dropped
    finally:
        feed.close()
        io._close()


def test_a_reader_that_went_away_ends_the_feeding() -> None:
    io, feed = _feed()
    try:
        feed.handed_over()  # the program held the only read end, and closed it
        io._put_input("nobody reads this\n")
        feed.turn()  # EPIPE: no exception
        assert feed.write_fd == -1 and not feed.wants_write
    finally:
        feed.close()
        io._close()


def test_nothing_is_asked_while_input_waits_unread() -> None:
    io, feed = _feed(b"unread\n")
    try:
        feed.turn()
        assert feed.next_look(0.0) is not None
        assert not feed.wants_input(lambda: [])  # (no process at all) but the pipe still holds what it was given
    finally:
        feed.close()
        io._close()
