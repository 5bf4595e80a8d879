"""A live run on this terminal (``codecapsule run``): output shown as it arrives, Ctrl-C stops the run, the
terminal's lines are the program's input.

Ctrl-C does not raise KeyboardInterrupt while the run is on: it cancels the run, and the stream goes on to its
``Finished`` event (verdict interrupted, the output that arrived kept), so the command can print it and exit 130
with every process of the run gone. The signal handler itself only writes a byte to a pipe: it runs wherever the
main thread was interrupted, maybe inside a lock ``cancel()`` takes, so a watcher thread does the cancel.
"""

from __future__ import annotations

import codecs
import os
import signal
import sys
import threading
from typing import TYPE_CHECKING, Any, TextIO

from ._errors import EngineError
from ._events import Event, Finished, Output

if TYPE_CHECKING:
    from ._client import Client
    from ._events import RunStream
    from ._jobs import Job
    from ._results import Result


def _write(stream: TextIO, text: str) -> None:
    stream.write(text)
    stream.flush()


class Echo:
    """A run's output on this terminal as it arrives: the program's stdout on stdout; its stderr and the compiler's
    output on stderr, with the engine's file names replaced by the user's (``main.c:3:18`` → ``broken.c:3:18``).

    Names are replaced in whole lines only (a name cut across two chunks would escape): the last, unfinished line
    of stderr waits for the next event — more stderr, stdout, the program asking for input, the end."""

    def __init__(self, names: dict[str, str]) -> None:
        self._names = names
        self._held = ""  # the unfinished last line of stderr

    def show(self, event: Event) -> None:
        if not isinstance(event, Output):
            self.release()
        elif (event.stage, event.stream) == ("run", "stdout"):
            self.release()
            _write(sys.stdout, event.text)
        else:
            lines, newline, self._held = (self._held + event.text).rpartition("\n")
            if newline:
                _write(sys.stderr, self._named(lines + newline))

    def replay(self, result: Result) -> None:
        """The output of a run that was not live, stage by stage, once it is over."""
        for stage_name, stage in (("compile", result.compile), ("run", result.run)):
            for stream in ("stdout", "stderr"):
                text = getattr(stage, stream) if stage is not None else ""
                if text:
                    self.show(Output(stage_name, stream, text))  # type: ignore[arg-type]
        self.release()

    def release(self) -> None:
        held, self._held = self._held, ""
        if held:
            _write(sys.stderr, self._named(held))

    def _named(self, text: str) -> str:
        from ._render import name_files

        return name_files(text, self._names)


class CtrlC:
    """While the block runs, Ctrl-C (SIGINT) cancels the attached run instead of raising KeyboardInterrupt; a
    second Ctrl-C is ignored (the kill takes a moment; leaving before it ends would leave processes behind).
    ``pressed`` says afterwards whether Ctrl-C was pressed. Outside the main thread (where Python cannot take
    signals), or when SIGINT is ignored, it does nothing."""

    def __init__(self) -> None:
        self.pressed = False
        self._run: RunStream | None = None
        self._lock = threading.Lock()
        # as Python itself: a SIGINT ignored when we started (`nohup`, a background job) stays ignored
        in_main_thread = threading.current_thread() is threading.main_thread()
        self._active = in_main_thread and signal.getsignal(signal.SIGINT) is not signal.SIG_IGN
        self._previous: Any = None
        self._wake_r, self._wake_w = os.pipe()
        self._watcher = threading.Thread(target=self._watch, name="capsule-ctrl-c", daemon=True)

    def __enter__(self) -> CtrlC:
        self._watcher.start()
        if self._active:
            self._previous = signal.signal(signal.SIGINT, self._on_sigint)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._active and self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)
        os.close(self._wake_w)  # the watcher's read sees the end
        self._watcher.join()
        os.close(self._wake_r)

    def attach(self, run: RunStream) -> None:
        """The run Ctrl-C stops (cancelled at once when Ctrl-C came before it started)."""
        with self._lock:
            self._run = run
            due = self.pressed
        if due:
            run.cancel()

    def _on_sigint(self, signum: int, frame: object) -> None:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        self.pressed = True
        os.write(self._wake_w, b"!")

    def _watch(self) -> None:
        if not os.read(self._wake_r, 1):
            return  # the block ended without Ctrl-C
        with self._lock:
            run = self._run
        if run is not None:
            run.cancel()


def _feed_from_terminal(run: RunStream, fd: int) -> None:
    """The terminal's lines to the program as they are typed (the terminal itself echoes them); Ctrl-D (the end
    of the terminal's input) is the end of the program's input."""
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    while True:
        try:
            data = os.read(fd, 4096)
        except OSError:  # the terminal went away
            data = b""
        if not data:
            run.close_stdin()
            return
        text = decoder.decode(data)
        if text:
            run.send(text)


def _open_stream(client: Client, job: Job, interactive: bool) -> tuple[RunStream, bool]:
    """The live run, interactive when asked and the engine takes live input; whether it is interactive."""
    if interactive:
        try:
            return client.stream_job(job, interactive=True), True
        except EngineError:
            pass  # an engine without live input (SQL): the program reads an empty stdin
    return client.stream_job(job), False


def wait_on_terminal(client: Client, job: Job) -> tuple[Result, bool]:
    """Run ``job`` the plain way (a Piston execute request: its output comes with its answer). Ctrl-C stops the
    wait; the Result then says interrupted. Returns the Result and whether Ctrl-C stopped it."""
    from ._results import Stage
    from ._verdicts import judge

    try:
        return client.run(job), False
    except KeyboardInterrupt:
        stopped = Stage(
            status="IN",
            message="Interrupted: stopped waiting for the answer (the server finishes the job within its time limit)",
        )
        return judge(job, engine="piston", version=job.version, compile=None, run=stopped, limits=job.limits), True


def run_on_terminal(client: Client, job: Job, echo: Echo | None, *, interactive: bool) -> tuple[Result, bool]:
    """Run ``job`` live: its output through ``echo`` (None: not shown), the terminal's input to it when
    ``interactive``. Returns its Result and whether Ctrl-C stopped it."""
    result: Result | None = None
    with CtrlC() as ctrl_c:
        run, fed = _open_stream(client, job, interactive)
        with run:  # leaving early (the reader of our output went away) stops the run too
            ctrl_c.attach(run)
            if fed:
                threading.Thread(
                    target=_feed_from_terminal, args=(run, sys.stdin.fileno()), name="capsule-stdin", daemon=True
                ).start()
            for event in run:
                if echo is not None:
                    echo.show(event)
                if isinstance(event, Finished):
                    result = event.result
    assert result is not None  # a stream always ends with Finished
    return result, ctrl_c.pressed
