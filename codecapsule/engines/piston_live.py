"""One live run on Piston (``/api/v2/connect``): what to send, what the messages mean, and the Result — the logic
the sync and async engines share; they differ only in how they move messages (:mod:`.piston`).

The driver loop, the same in both::

    connect(session.url, session.headers)      # handshake errors: session.handshake_error(...)
    send each of session.opening()
    until session.over:
        receive one message (or nothing within session.tick seconds) → session.on_message(raw, now)
        send each of session.due(now)          # stdin the user typed, the stop signal
        (closed by the server → session.closed(code, reason))
    session.outcome() → a Result, or RETRY (the server told its limit: connect again)

Stop (``io.cancelled``): the ``signal`` message is sent (harmless: Piston v3.1.1 ignores it), then the
connection is closed; the Result keeps what arrived, has the verdict ``interrupted`` and a note that the server
finishes the job within its run_timeout. Interactive runs are given a bounded ``run_timeout``
(:data:`INTERACTIVE_RUN_TIMEOUT` unless the job sets one, lowered to the server's configured limit) so that a job
nobody answers, or one that was stopped, ends on the server too.

InputWanted: Piston cannot say that a program waits for input. An interactive run whose run stage went quiet —
no output and nothing sent for :data:`.piston_ws.QUIET_FOR_INPUT` seconds — is taken to wait for it (once per quiet
spell). A program computing silently for longer is asked too; what the user types then waits in its stdin.
"""

from __future__ import annotations

import json
from dataclasses import replace
from typing import TYPE_CHECKING, Any, Final
from urllib.parse import urlsplit

from .._errors import BadRequest, PistonError, ProtocolError
from .._events import InputWanted, StageName, StreamName
from .._jobs import Job
from .._redact import display_url
from .._results import Result
from ._live import interactive_limits
from ._python_boot import COMPILED, SYNTAX
from .piston_protocol import (
    clamp_to_server,
    configured_limit_in,
    error_from_status,
    error_from_transport,
    execute_payload,
    result_from_response,
)
from .piston_shape import shape
from .piston_ws import (
    QUIET_FOR_INPUT,
    SERVER_FINISHES_NOTE,
    LiveAnswer,
    error_from_close,
    init_message,
    parse_message,
    piston_stdin,
    signal_message,
    stdin_message,
    ws_url,
)

if TYPE_CHECKING:
    from ._live import LiveIO, StageOutput
    from .piston import _PistonCore

RETRY: Final = "retry"
TICK = 0.05  # how often the loop looks at the user's input and Stop while the server is silent
_PYTHON_MARKERS: dict[bytes, StageName] = {COMPILED.encode(): "run", SYNTAX.encode(): "compile"}
_STOP_MESSAGE = "stopped by the user"


class LiveSession:
    """One attempt at a live run (a new one after the server told a limit it allows)."""

    tick = TICK

    def __init__(self, engine: _PistonCore, job: Job, interactive: bool, io: LiveIO) -> None:
        self.engine, self.job, self.interactive, self.io = engine, job, interactive, io
        self.url = ws_url(engine.base_url)
        where = urlsplit(engine.base_url)
        self.address = (where.hostname or "", where.port or (443 if where.scheme == "https" else 80))
        skipped = ("content-type", "accept-encoding")  # an upgrade has no body
        self.headers = {k: v for k, v in engine._headers.items() if k.lower() not in skipped}
        if interactive:
            job = replace(job, limits=interactive_limits(job.limits))
        self.shaped = shape(job)
        self.sent, self.notes = clamp_to_server(job, engine._caps.get(job.language, {}))
        self.name = engine._names.get(job.language, job.language)
        self.answer = LiveAnswer(job, self.sent.limits)
        self.sinks: dict[str, StageOutput] = {}
        self.stopped = False
        self.over = False
        self.close_code: int | None = None
        self.close_reason = ""
        self._last_activity = 0.0
        self._asked = False
        # the job's own stdin, sent once the run stage started (with Piston's trailing newline unless interactive)
        self._stdin: str | None = job.stdin if interactive else piston_stdin(job.stdin)
        self._compile_held: list[tuple[StreamName, str]] = []

    # -- what goes out -------------------------------------------------------------------------------

    def opening(self) -> list[str]:
        """``init`` only: Piston writes only ``data`` messages to the program, and only to the stage running when
        they arrive — the job's stdin waits for the run stage (see :meth:`due`)."""
        payload = execute_payload(self.sent, language=self.name, shaped=self.shaped)
        return [init_message(payload)]

    def due(self, now: float) -> list[str]:
        """Messages to send now: the user's input, or the stop signal (then the loop closes: ``over``)."""
        if self.over:
            return []
        if self.io.cancelled.is_set():
            self.io.drain_wake()
            self.stopped = self.over = True
            self.answer.stopped(now, _STOP_MESSAGE)
            return [signal_message()]
        if self.answer.over_cap:
            self.over = True
            return [signal_message()]
        out: list[str] = []
        if self._stdin is not None and "run" in self.answer.stages:
            if self._stdin:
                out.append(stdin_message(self._stdin))
            self._stdin = None
        while True:
            text = self.io.read_input()
            if text is False:
                break
            if isinstance(text, str) and text:
                out.append(stdin_message(text))
            # end of input: Piston never closes a program's stdin, so there is nothing to send (see the docs)
        if out:
            self._activity(now)
        self._maybe_ask(now)
        return out

    # -- what comes in -------------------------------------------------------------------------------

    def on_message(self, raw: str | bytes, now: float) -> None:
        message = parse_message(raw, url=self.url)
        kind, fields = message.type, message.fields
        if kind == "stage":
            self._flush()
            stage: StageName = fields["stage"]
            markers = _PYTHON_MARKERS if self.job.language == "python" and stage == "run" else None
            self.sinks[stage] = self.io.stage_sink(stage, markers)
        kept = self.answer.feed(message, now)
        if kind == "data" and kept:
            stream: StreamName = fields["stream"]
            if self.answer.current == "compile":
                self._compile_held.append((stream, kept))  # shown whole at its exit: diagnostics mapped back
            else:
                self._show(stream, self.shaped.restore(kept) if stream == "stderr" else kept)
            self._activity(now)
        elif kind == "exit":
            self._release_compile()
            self._flush()
        if self.answer.done and not self.answer.over_cap:
            self.over = True

    def closed(self, code: int | None, reason: str) -> None:
        self.close_code, self.close_reason = code, reason
        self.over = True

    def _show(self, stream: StreamName, text: str) -> None:
        sink = self.sinks.get(self.answer.current or "")
        if sink is not None and text:
            sink.chunk(stream, text.encode())

    def _release_compile(self) -> None:
        held, self._compile_held = self._compile_held, []
        for stream in ("stdout", "stderr"):
            text = "".join(t for s, t in held if s == stream)
            self._show(stream, self.shaped.restore(text) if stream == "stderr" else text)  # type: ignore[arg-type]

    def _flush(self) -> None:
        for sink in self.sinks.values():
            sink.flush()
        self.sinks.clear()

    def _activity(self, now: float) -> None:
        self._last_activity, self._asked = now, False

    def _maybe_ask(self, now: float) -> None:
        run = self.answer.stages.get("run")
        if not self.interactive or self._asked or run is None or run.ended is not None:
            return
        if now - max(self._last_activity, run.started) >= QUIET_FOR_INPUT:
            self._asked = True
            self.io.emit(InputWanted("run"))

    # -- the end -------------------------------------------------------------------------------------

    def handshake_error(self, status: int, body: bytes, headers: Any) -> PistonError:
        """A refused upgrade, translated as the execute path translates the same status."""
        error = error_from_status(
            status, body, headers, url=self.url, base_url=self.engine.base_url, access_sent=self.engine._access
        )
        return self.engine._redacted(error)

    def transport_error(self, exc: BaseException) -> PistonError:
        """No answer to the upgrade (refused, reset, DNS, TLS, too slow): as execute() says it."""
        import httpx

        kind = httpx.ConnectTimeout if isinstance(exc, TimeoutError) else httpx.ConnectError
        wrapped = kind(str(exc) or type(exc).__name__)
        wrapped.__cause__ = exc
        return self.engine._redacted(error_from_transport(wrapped, url=self.url))

    def outcome(self) -> Result | str:
        """The Result, or :data:`RETRY` when the server refused a limit and told the one it allows."""
        self._release_compile()
        self._flush()
        if self.answer.error is not None and not self.answer.stages:
            error = self._refusal(self.answer.error)
            learnt = configured_limit_in(400, error.body.encode()) if isinstance(error, BadRequest) else None
            caps = self.engine._caps.setdefault(self.job.language, {})
            if learnt is not None and caps.get(learnt[0]) != learnt[1]:
                caps[learnt[0]] = learnt[1]
                return RETRY
            raise error
        if not self.stopped and not self.answer.done:
            problem = error_from_close(self.close_code, self.close_reason, url=self.url)
            if problem is None:  # "job completed", yet the job's end never came: not a Result to judge
                problem = ProtocolError(
                    f"{display_url(self.url)} closed the live connection as 'job completed' before the "
                    "program's exit was reported: the Result would be incomplete. Run it again; execute() gives "
                    "the whole result at once.",
                    url=display_url(self.url),
                )
            raise self.engine._redacted(problem)
        notes = self.notes
        if self.stopped or self.answer.over_cap:
            seconds = self.sent.limits.run_timeout or 3.0
            notes = (*notes, SERVER_FINISHES_NOTE.format(seconds=seconds))
        return result_from_response(
            self.job, self.answer.answer(), url=self.url, limits=self.sent.limits, shaped=self.shaped, notes=notes
        )

    def _refusal(self, message: str) -> PistonError:
        """Piston's ``error`` message before the job started: the same error execute() raises for that answer."""
        body = json.dumps({"message": message}).encode()
        return self.handshake_error(400, body, {})
