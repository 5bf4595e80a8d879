"""Live runs: the events one run emits while it happens (pure data, no I/O).

One run is one ordered stream of events, whatever the engine::

    StageStarted("compile")?  Output("compile", ...)*
    StageStarted("run")       Output("run", ...)*  InputWanted("run")*  ...
    Finished(result)                                  ← always last, exactly once

``execute()`` is this stream folded into the last event's Result; ``Client.stream()`` hands the events out as they
happen, with a handle to answer the program's input and to stop it. A stopped run still ends with ``Finished``:
its Result keeps the partial output and has the verdict ``interrupted``.

``Output.text`` chunks are decoded incrementally (a UTF-8 character split across two reads is never mangled); the
Result's stage output is the concatenation of its chunks, cut at the output limit the same way.
"""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Literal, Protocol, TypeAlias, runtime_checkable

from ._results import Result

StageName: TypeAlias = Literal["compile", "run"]
StreamName: TypeAlias = Literal["stdout", "stderr"]


@dataclass(frozen=True, slots=True)
class StageStarted:
    """A stage began (compile only for compiled languages)."""

    stage: StageName


@dataclass(frozen=True, slots=True)
class Output:
    """A chunk the program (or compiler) wrote, in the order the engine read it."""

    stage: StageName
    stream: StreamName
    text: str


@dataclass(frozen=True, slots=True)
class InputWanted:
    """The program is waiting for input and has read everything sent so far (locally: blocked reading an empty
    stdin pipe; on Piston, which cannot say, a best guess: the run went quiet).

    Answer with ``send`` or ``close_stdin``."""

    stage: StageName


@dataclass(frozen=True, slots=True)
class Finished:
    """The run is over; always the last event."""

    result: Result


Event: TypeAlias = StageStarted | Output | InputWanted | Finished


@runtime_checkable
class RunStream(Protocol):
    """A live run (from ``Client.stream``): iterate for its events; the iterator ends after ``Finished``.

    Leaving a ``with`` block (or ``close()``) before ``Finished`` stops the run and leaves no process behind."""

    def __iter__(self) -> Iterator[Event]: ...

    def send(self, text: str) -> None:
        """Write ``text`` to the program's stdin (interactive runs only)."""
        ...

    def close_stdin(self) -> None:
        """End of input: the program's next read sees EOF."""
        ...

    def cancel(self) -> None:
        """Stop the run (thread-safe, idempotent); the stream then ends with a Result whose verdict is interrupted."""
        ...

    def close(self) -> None: ...

    def __enter__(self) -> RunStream: ...

    def __exit__(self, *exc: object) -> None: ...


@runtime_checkable
class AsyncRunStream(Protocol):
    """``RunStream`` for ``AsyncClient.stream``: ``async for event in stream``."""

    def __aiter__(self) -> AsyncIterator[Event]: ...

    async def send(self, text: str) -> None: ...

    async def close_stdin(self) -> None: ...

    def cancel(self) -> None: ...

    async def aclose(self) -> None: ...

    async def __aenter__(self) -> AsyncRunStream: ...

    async def __aexit__(self, *exc: object) -> None: ...


_NO_FINISHED = "a run stream ended without its Finished event"  # a bug in an engine, never the program


def final_result(events: Iterator[Event]) -> Result:
    """Fold a stream into its Result (what ``execute()`` returns)."""
    for event in events:
        if isinstance(event, Finished):
            return event.result
    raise RuntimeError(_NO_FINISHED)


async def afinal_result(events: AsyncIterable[Event]) -> Result:
    """:func:`final_result` for an asyncio stream."""
    async for event in events:
        if isinstance(event, Finished):
            return event.result
    raise RuntimeError(_NO_FINISHED)
