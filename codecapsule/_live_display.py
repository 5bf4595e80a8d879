"""A ``%%capsule`` cell while its program runs: echo the output, ask for input, stop on interrupt.

The output is echoed as the kernel's own stream messages (``sys.stdout``/``sys.stderr``: ipykernel coalesces them,
so the front end gets a bounded rate of updates), and the magic clears them when the run is over and shows the
verdict and the usual rendering instead: the saved notebook holds the output once, in the final display.

Input goes through the kernel's stdin channel (``input()`` in a kernel sends an ``input_request``; the front end
shows its input box). A line holding only :data:`END_OF_INPUT` ends the input (the program's next read sees EOF);
the prompt says so. Where nobody can type (ipykernel's ``StdinNotImplementedError`` under nbclient, ``--no-input``,
``Capsule.interactive = False``) the program sees end-of-input and the outcome says it wanted input.

A kernel interrupt (Stop) cancels the run; the stream still ends with its Result (verdict interrupted, the
output so far kept), so the cell shows that rather than a ``KeyboardInterrupt`` traceback.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, NamedTuple, TextIO

from IPython.core.error import StdinNotImplementedError

from ._display_budget import DEFAULT_BUDGET
from ._events import Finished, InputWanted, Output
from ._results import Result, Stage, Verdict

if TYPE_CHECKING:
    from ._events import Event, RunStream

__all__ = ["END_OF_INPUT", "INPUT_PROMPT", "Ask", "Echo", "LiveOutcome", "follow", "interrupted_result"]

END_OF_INPUT = "^D"  # typed as the two characters ^ and D: a terminal's Ctrl-D, which a browser box cannot send
INPUT_PROMPT = f"input (a line with only {END_OF_INPUT} ends the input): "

Ask = Callable[[str], str]  # input(): raises StdinNotImplementedError (or OSError) where nobody can type

# Where nobody can answer: ipykernel without allow_stdin, a captured or closed stdin in a terminal shell.
_CANNOT_ASK: tuple[type[BaseException], ...] = (StdinNotImplementedError, OSError)


class LiveOutcome(NamedTuple):
    result: Result
    echoed: bool  # something was written to the cell while it ran (the magic clears it before the final view)
    unasked: bool  # the program waited for input and nobody could type: it got end-of-input


class Echo:
    """The live copy of the output: each stream up to ``budget`` bytes, then one line saying the rest comes
    with the final view (a runaway program must not flood the front end either)."""

    def __init__(self, budget: int = DEFAULT_BUDGET, streams: dict[str, TextIO] | None = None) -> None:
        self._budget = budget
        self._streams = streams
        self._written: dict[str, int] = {"stdout": 0, "stderr": 0}
        self.echoed = False

    def _target(self, name: str) -> TextIO:
        if self._streams is not None:
            return self._streams[name]
        return sys.stdout if name == "stdout" else sys.stderr  # looked up late: the kernel swaps them per cell

    def write(self, name: str, text: str) -> None:
        used = self._written[name]
        if used > self._budget:
            return
        size = len(text.encode())
        self._written[name] = used + size
        target = self._target(name)
        if used + size <= self._budget:
            target.write(text)
        else:
            target.write(f"\n… (more {name}: shown when the program ends)\n")
        self.echoed = True

    def flush(self) -> None:
        for name in self._written:
            self._target(name).flush()


class _Run:
    """What one live run has seen so far."""

    def __init__(self, stream: RunStream, ask: Ask | None, echo: Echo) -> None:
        self.stream = stream
        self.ask = ask
        self.echo = echo
        self.stopped = False
        self.unasked = False
        self.stdin_closed = False
        self.seen: dict[tuple[str, str], list[str]] = {}  # (stage, stream) → chunks, for a stream cut short

    def stop(self) -> None:
        self.stopped = True
        self.stream.cancel()

    def end_input(self) -> None:
        self.stdin_closed = True
        self.stream.close_stdin()

    def on_output(self, event: Output) -> None:
        self.seen.setdefault((event.stage, event.stream), []).append(event.text)
        self.echo.write(event.stream, event.text)

    def on_input_wanted(self) -> None:
        if self.stdin_closed:
            return
        if self.ask is None:
            self.unasked = True
            self.end_input()
            return
        self.echo.flush()  # the program's prompt before the input box
        try:
            line = self.ask(INPUT_PROMPT)
        except _CANNOT_ASK:
            self.ask = None
            self.unasked = True
            self.end_input()
            return
        except EOFError:  # Ctrl-D in a terminal shell
            self.end_input()
            return
        if line.strip() == END_OF_INPUT:
            self.end_input()
        else:
            self.stream.send(line + "\n")

    def on_event(self, event: Event) -> None:
        if isinstance(event, Output):
            self.on_output(event)
        elif isinstance(event, InputWanted):
            self.on_input_wanted()

    def cut_short(self, language: str) -> Result:
        """The Result of a stream that ended without ``Finished`` after an interrupt: what it had printed."""
        return interrupted_result(
            language,
            stdout="".join(self.seen.get(("run", "stdout"), [])),
            stderr="".join(self.seen.get(("run", "stderr"), [])),
        )


def interrupted_result(language: str, *, stdout: str = "", stderr: str = "") -> Result:
    """A run the user stopped before its engine could report it (what it had printed, if anything)."""
    run = Stage(stdout=stdout, stderr=stderr, message="stopped by the user before the program finished")
    return Result(language=language, version="", engine="", verdict=Verdict.INTERRUPTED, run=run)


def follow(stream: RunStream, *, language: str, ask: Ask | None, echo: Echo) -> LiveOutcome:
    """Run ``stream`` to its end: echo its output, answer its input with ``ask`` (None: nobody can type),
    cancel it on KeyboardInterrupt (also a second one while it winds down)."""
    run = _Run(stream, ask, echo)
    events = iter(stream)
    with stream:  # leaving it (any way) stops the run: no process left behind
        while True:
            try:
                event = next(events)
            except StopIteration:
                if not run.stopped:
                    raise RuntimeError("a run stream ended without its Finished event") from None  # an engine bug
                return LiveOutcome(run.cut_short(language), echo.echoed, run.unasked)
            except KeyboardInterrupt:
                # raised inside the stream's iterator: a generator is done for, so ask the stream for its
                # events again (a stream that cannot go on ends at once, and the output seen so far is kept)
                run.stop()
                events = iter(stream)
                continue
            if isinstance(event, Finished):
                return LiveOutcome(event.result, echo.echoed, run.unasked)
            try:
                run.on_event(event)
            except KeyboardInterrupt:  # Stop while the input box waits
                run.stop()
