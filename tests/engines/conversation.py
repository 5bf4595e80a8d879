"""Drive an interactive live run the way a person at the input box does: answer each InputWanted in turn."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from codecapsule._events import Event, Finished, InputWanted, Output
from codecapsule._results import Result
from codecapsule.engines._live import LiveRun

END = None  # an answer that closes the program's stdin (what the notebook's ^D line does)


def converse(
    run: LiveRun, answers: Sequence[str | None], on_output: Callable[[LiveRun, Output], None] | None = None
) -> tuple[list[Event], Result]:
    """Iterate ``run`` to its end; the n-th InputWanted gets ``answers[n]`` (sent with a newline; END closes
    stdin; none left: left unanswered). Returns every event and the final Result."""
    events: list[Event] = []
    todo = list(answers)
    with run:
        for event in run:
            events.append(event)
            if isinstance(event, InputWanted) and todo:
                answer = todo.pop(0)
                if answer is END:
                    run.close_stdin()
                else:
                    run.send(answer + "\n")
            elif isinstance(event, Output) and on_output is not None:
                on_output(run, event)
    assert isinstance(events[-1], Finished)
    return events, events[-1].result


def stdout_before(events: list[Event], nth_wait: int) -> str:
    """What the program printed before its ``nth_wait``-th InputWanted (0-based)."""
    text, waits = "", 0
    for event in events:
        if isinstance(event, InputWanted):
            if waits == nth_wait:
                return text
            waits += 1
        elif isinstance(event, Output) and event.stream == "stdout":
            text += event.text
    raise AssertionError(f"only {waits} InputWanted events: {events!r}")


def waits(events: list[Event]) -> int:
    return sum(isinstance(e, InputWanted) for e in events)
