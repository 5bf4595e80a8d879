"""A scripted ``RunStream`` (codecapsule._events): the events of one run played back in order, recording what the
consumer sent, closed and cancelled. For testing consumers of the stream interface (the notebook's live view)
apart from any engine; engines are tested with real processes.

A script item is an event, or ``KeyboardInterrupt`` (the class): raised from ``__next__`` there, as a Stop pressed
while the consumer waits for the next event. After ``cancel()`` the script is dropped and the stream ends with an
interrupted Result holding the output played so far — what the interface promises.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from codecapsule._events import Event, Finished, Output
from codecapsule._results import Result, Stage, Verdict


def result(verdict: str = "ok", stdout: str = "", stderr: str = "") -> Result:
    return Result(
        language="python", version="3", engine="scripted", verdict=Verdict(verdict), run=Stage(stdout, stderr)
    )


@dataclass
class ScriptedRun:
    script: list[Any]
    sent: list[str] = field(default_factory=list)
    closed: bool = False
    cancelled: int = 0
    exited: bool = False
    _played: list[Output] = field(default_factory=list)

    def __iter__(self) -> Iterator[Event]:
        return self

    def __next__(self) -> Event:
        if self.cancelled:
            if self.script is None:
                raise StopIteration
            self.script = None  # type: ignore[assignment]
            out = "".join(o.text for o in self._played if o.stream == "stdout")
            return Finished(result("interrupted", out))
        if not self.script:
            raise StopIteration
        item = self.script.pop(0)
        if item is KeyboardInterrupt:
            raise KeyboardInterrupt
        if isinstance(item, Output):
            self._played.append(item)
        return item  # type: ignore[no-any-return]

    def send(self, text: str) -> None:
        self.sent.append(text)

    def close_stdin(self) -> None:
        self.closed = True

    def cancel(self) -> None:
        self.cancelled += 1

    def close(self) -> None:
        self.exited = True

    def __enter__(self) -> ScriptedRun:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
