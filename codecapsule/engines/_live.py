"""The engine-neutral machinery of live runs (``Client.stream``): a producer on a background thread, its events
handed to the iterating thread through a queue.

The producer contract (every engine's live path implements one)::

    def producer(io: LiveIO) -> Result

runs the job, calls ``io.emit(event)`` for each ``StageStarted`` / ``Output`` / ``InputWanted`` as it happens,
watches ``io.cancelled`` (a ``threading.Event``; ``io.wake_fd`` becomes readable when it is set or input arrives,
for a ``select()`` loop) and returns the Result — with verdict ``interrupted`` when it stopped because of a cancel.
It never emits ``Finished``: :class:`LiveRun` does, exactly once, with the returned Result.

Errors: a codecapsule error (bad input, a missing toolchain, a sandbox that cannot start) raised by the producer
is re-raised from the iterating thread — as ``execute()`` raises it; any other exception becomes an internal_error
Result in ``Finished`` (the stream always ends with one).
"""

from __future__ import annotations

import codecs
import contextlib
import os
import queue
import threading
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from dataclasses import replace
from typing import TYPE_CHECKING

from .._errors import CodeCapsuleError, InvalidRequest
from .._events import Event, Finished, Output, StageName, StageStarted, StreamName
from .._jobs import Limits
from .._results import Result

if TYPE_CHECKING:
    import asyncio

Producer = Callable[["LiveIO"], Result]

END_OF_INPUT = None  # what read_input() gives once close_stdin() was called
# seconds an interactive live run may take where the job sets no run_timeout (a student typing), on every engine
INTERACTIVE_RUN_TIMEOUT = 60.0


def interactive_limits(limits: Limits) -> Limits:
    """An interactive run's limits: :data:`INTERACTIVE_RUN_TIMEOUT` where the job sets no ``run_timeout``."""
    return limits if limits.run_timeout is not None else replace(limits, run_timeout=INTERACTIVE_RUN_TIMEOUT)


class IncrementalText:
    """Bytes → text per stream, never splitting a UTF-8 character across chunks (invalid bytes → U+FFFD, as the
    Stage's own ``decode(errors="replace")``: the chunks concatenate to exactly the Stage's text)."""

    def __init__(self) -> None:
        self._decoders = {
            "stdout": codecs.getincrementaldecoder("utf-8")(errors="replace"),
            "stderr": codecs.getincrementaldecoder("utf-8")(errors="replace"),
        }

    def decode(self, stream: StreamName, data: bytes, *, final: bool = False) -> str:
        return str(self._decoders[stream].decode(data, final))


class LiveIO:
    """The producer's side of a live run: emit events, see input and cancellation."""

    def __init__(self, deliver: Callable[[Event | BaseException], None]) -> None:
        self._deliver = deliver
        self._input: queue.SimpleQueue[str | None] = queue.SimpleQueue()
        self.cancelled = threading.Event()
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        os.set_blocking(self._wake_w, False)
        self._closed = False
        self._lock = threading.Lock()

    @property
    def wake_fd(self) -> int:
        """Readable when input arrived or the run was cancelled (drain it with :meth:`drain_wake`)."""
        return self._wake_r

    def emit(self, event: Event) -> None:
        self._deliver(event)

    def read_input(self) -> str | bool | None:
        """The next text sent, ``END_OF_INPUT`` (None) after ``close_stdin``, or False when nothing is waiting."""
        try:
            return self._input.get_nowait()
        except queue.Empty:
            return False

    def drain_wake(self) -> None:
        with contextlib.suppress(BlockingIOError, OSError):
            while os.read(self._wake_r, 4096):
                pass

    def stage_sink(self, stage: StageName, markers: Mapping[bytes, StageName] | None = None) -> StageOutput:
        """The sink one stage's capture loop feeds (``_sandbox.run_stage(sink=...)``); announces the stage."""
        return StageOutput(self, stage, markers)

    # the consumer's side (LiveRun)

    def _put_input(self, text: str | None) -> None:
        self._input.put(text)
        self._wake()

    def _cancel(self) -> None:
        self.cancelled.set()
        self._wake()

    def _wake(self) -> None:
        with self._lock:
            if self._closed:
                return
            with contextlib.suppress(BlockingIOError):  # a full pipe already wakes the reader
                os.write(self._wake_w, b"!")

    def _close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
            os.close(self._wake_w)
            os.close(self._wake_r)


class StageOutput:
    """Turns one stage's raw chunks (as the capture loop read and kept them) into ``StageStarted`` + ``Output``.

    ``markers``: a line a bootstrap writes first on stderr to say which stage this really is (Python's compile
    check: ``{COMPILED: "run", SYNTAX: "compile"}``). Until stderr tells, the chunks are held; the marker itself is
    never shown (as ``split_compile_outcome`` removes it from the Stage)."""

    def __init__(self, io: LiveIO, stage: StageName, markers: Mapping[bytes, StageName] | None = None) -> None:
        self._io = io
        self._stage: StageName = stage
        self._text = IncrementalText()
        self._markers = dict(markers or {})
        self._held: list[tuple[StreamName, bytes]] = []
        self._head = b""
        self._decided = not self._markers
        if self._decided:
            io.emit(StageStarted(stage))

    @property
    def wake_fd(self) -> int:
        return self._io.wake_fd

    def stopped(self) -> bool:
        self._io.drain_wake()
        return self._io.cancelled.is_set()

    def chunk(self, stream: StreamName, data: bytes) -> None:
        if self._decided:
            self._emit(stream, self._text.decode(stream, data))
            return
        self._held.append((stream, data))
        if stream == "stderr":
            self._head += data
            for marker, stage in self._markers.items():
                if self._head.startswith(marker):
                    return self._decide(stage, len(marker))
            if not any(marker.startswith(self._head[: len(marker)]) for marker in self._markers):
                self._decide(self._stage, 0)  # no bootstrap line: shown as it came

    def _decide(self, stage: StageName, skip: int) -> None:
        self._decided, self._stage = True, stage
        self._io.emit(StageStarted(stage))
        held, self._held = self._held, []
        for stream, data in held:
            if stream == "stderr" and skip:
                data, skip = data[skip:], max(0, skip - len(data))
            self.chunk(stream, data)

    def flush(self) -> None:
        """The end of the stage: what a cut character left in the decoders (as U+FFFD, like the Stage's text)."""
        if not self._decided:
            self._decide(self._stage, 0)
        for stream in ("stdout", "stderr"):
            self._emit(stream, self._text.decode(stream, b"", final=True))  # type: ignore[arg-type]

    def _emit(self, stream: StreamName, text: str) -> None:
        if text:
            self._io.emit(Output(self._stage, stream, text))


class _Producing:
    """The producer's thread, shared by the sync and async runs: they differ only in how events reach the
    consumer (``deliver``: a queue's put, or a put scheduled on the event loop)."""

    def __init__(
        self,
        producer: Producer,
        on_error: Callable[[BaseException], Result],
        deliver: Callable[[Event | BaseException], None],
    ) -> None:
        self.io = LiveIO(deliver)
        self._deliver = deliver
        self.thread = threading.Thread(target=self._run, args=(producer, on_error), name="capsule-live", daemon=True)
        self.thread.start()

    def _run(self, producer: Producer, on_error: Callable[[BaseException], Result]) -> None:
        try:
            result = producer(self.io)
        except CodeCapsuleError as exc:
            self._deliver(exc)  # bad input or an engine that cannot run it: raised where execute() would raise
            return
        except Exception as exc:  # a bug of ours: the stream still ends with a Result
            result = on_error(exc)
        self._deliver(Finished(result))

    def send(self, text: str, interactive: bool) -> None:
        if not interactive:
            raise InvalidRequest("send() needs an interactive run: call stream(..., interactive=True).")
        self.io._put_input(text)

    def close_stdin(self, interactive: bool) -> None:
        if interactive:
            self.io._put_input(END_OF_INPUT)

    def ended(self) -> None:
        """The consumer saw the last item: the thread is done with everything but returning."""
        self.thread.join()
        self.io._close()


class LiveRun:
    """A live run (implements ``RunStream``): iterate for its events; ``Finished`` is always the last one."""

    def __init__(
        self, producer: Producer, on_error: Callable[[BaseException], Result], *, interactive: bool = False
    ) -> None:
        self._events: queue.SimpleQueue[Event | BaseException] = queue.SimpleQueue()
        self._interactive = interactive
        self._finished = False
        self._core = _Producing(producer, on_error, self._events.put)

    def __iter__(self) -> Iterator[Event]:
        while not self._finished:
            item = self._events.get()
            if isinstance(item, BaseException):
                self._end()
                raise item
            if isinstance(item, Finished):
                self._end()
            yield item

    def _end(self) -> None:
        self._finished = True
        self._core.ended()

    def send(self, text: str) -> None:
        """Write ``text`` to the program's stdin (interactive runs only)."""
        self._core.send(text, self._interactive)

    def close_stdin(self) -> None:
        self._core.close_stdin(self._interactive)

    def cancel(self) -> None:
        """Stop the run (thread-safe, idempotent): the stream then ends with an interrupted Result."""
        self._core.io._cancel()

    def close(self) -> None:
        """Stop the run if it is still going and wait until nothing of it is left."""
        if self._finished:
            return
        self.cancel()
        with contextlib.suppress(CodeCapsuleError):
            for _ in self:
                pass

    def __enter__(self) -> LiveRun:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class AsyncLiveRun:
    """``LiveRun`` for asyncio (implements ``AsyncRunStream``), for engines without a native async live path: the
    producer runs on its thread, its events are put on the event loop's queue. The thread starts on first use
    (``async with`` / ``async for``), inside the loop. Cancelling the task awaiting an event cancels the run."""

    def __init__(
        self, producer: Producer, on_error: Callable[[BaseException], Result], *, interactive: bool = False
    ) -> None:
        self._producer, self._on_error = producer, on_error
        self._interactive = interactive
        self._finished = False
        self._core: _Producing | None = None
        self._events: asyncio.Queue[Event | BaseException] | None = None

    def _started(self) -> _Producing:
        if self._core is None:
            import asyncio  # here: sync live runs never pay for it

            loop = asyncio.get_running_loop()
            events: asyncio.Queue[Event | BaseException] = asyncio.Queue()
            self._events = events

            def deliver(item: Event | BaseException) -> None:
                loop.call_soon_threadsafe(events.put_nowait, item)

            self._core = _Producing(self._producer, self._on_error, deliver)
        return self._core

    async def __aiter__(self) -> AsyncIterator[Event]:
        import asyncio

        core = self._started()
        assert self._events is not None
        while not self._finished:
            try:
                item = await self._events.get()
            except asyncio.CancelledError:
                self.cancel()  # the thread kills the run and ends by itself
                raise
            if isinstance(item, BaseException):
                await self._end(core)
                raise item
            if isinstance(item, Finished):
                await self._end(core)
            yield item

    async def _end(self, core: _Producing) -> None:
        import asyncio

        self._finished = True
        await asyncio.to_thread(core.ended)

    async def send(self, text: str) -> None:
        self._started().send(text, self._interactive)

    async def close_stdin(self) -> None:
        self._started().close_stdin(self._interactive)

    def cancel(self) -> None:
        if self._core is not None:
            self._core.io._cancel()
        else:
            self._finished = True  # never started: nothing to stop

    async def aclose(self) -> None:
        if self._finished or self._core is None:
            self._finished = True
            return
        self.cancel()
        with contextlib.suppress(CodeCapsuleError):
            async for _ in self:
                pass

    async def __aenter__(self) -> AsyncLiveRun:
        self._started()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()


def result_producer(run: Callable[[], Result]) -> Producer:
    """A producer for engines without a live path (Piston until its WebSocket path, SQL): run to the end, then
    emit StageStarted and one Output per stream for each stage the Result has."""

    def producer(io: LiveIO) -> Result:
        result = run()
        for name, stage in (("compile", result.compile), ("run", result.run)):
            if stage is None:
                continue
            io.emit(StageStarted(name))  # type: ignore[arg-type]
            for stream, text in (("stdout", stage.stdout), ("stderr", stage.stderr)):
                if text:
                    io.emit(Output(name, stream, text))  # type: ignore[arg-type]
        return result

    return producer
