"""Piston's live path, ``/api/v2/connect`` over WebSocket: the messages, pure (no I/O).

What the engines' I/O loops (:mod:`.piston`) use: the socket's URL, the messages we send, the messages the server
sends parsed by a table, and :class:`LiveAnswer`, which folds what arrived into the same answer shape as
``POST /api/v2/execute`` gives, so one judge (:func:`.piston_protocol.result_from_response`) rules both paths.

Facts of Piston v3.1.1 (``shared/reference/piston.md``) this module is built on: the ``init`` message carries the
execute fields, but its ``stdin`` is never written — only ``data`` messages are, and the server never closes stdin;
``exit`` says only ``code`` and ``signal`` (no status, time or memory); there is no output cap on this path; the
``signal`` message has no effect, and closing the socket does not stop the job either (it runs to its
``run_timeout``).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from .._errors import PistonError, ProtocolError, RequestTimeout, TransportError
from .._jobs import Job, Limits
from .._redact import display_url
from ._stdin_wait import QUIET_FOR_INPUT  # the one quiet-time rule, shared with the local engine's fallback
from .piston_protocol import API_PREFIX, PISTON_DEFAULT_RUN_TIMEOUT

__all__ = [
    "CONNECT_PATH",
    "PISTON_DEFAULT_OUTPUT_MAX_SIZE",
    "QUIET_FOR_INPUT",
    "LiveAnswer",
    "error_from_close",
    "init_message",
    "parse_message",
    "signal_message",
    "stdin_message",
    "ws_url",
]

CONNECT_PATH = f"{API_PREFIX}/connect"
PISTON_DEFAULT_OUTPUT_MAX_SIZE = 1024  # PISTON_OUTPUT_MAX_SIZE's default: what execute() gets per stream
SERVER_FINISHES_NOTE = (
    "the Piston server finishes a stopped job on its own, within its run_timeout of {seconds:g} s (Piston v3.1.1 "
    "stops a job neither on a signal nor when the connection closes)"
)


def ws_url(base_url: str) -> str:
    """``http(s)://host/base`` → ``ws(s)://host/base/api/v2/connect`` (the base path kept)."""
    parts = urlsplit(base_url)
    scheme = {"http": "ws", "https": "wss"}.get(parts.scheme, parts.scheme)
    return urlunsplit((scheme, parts.netloc, parts.path.rstrip("/") + CONNECT_PATH, "", ""))


def _dumps(message: Mapping[str, Any]) -> str:
    return json.dumps(message, separators=(",", ":"))


def init_message(payload: Mapping[str, Any]) -> str:
    """The first message: the execute payload as ``init`` (its stdin goes as a ``data`` message: see the module)."""
    return _dumps({"type": "init", **{k: v for k, v in payload.items() if k != "stdin"}})


def stdin_message(text: str) -> str:
    return _dumps({"type": "data", "stream": "stdin", "data": text})


def signal_message(name: str = "SIGKILL") -> str:
    return _dumps({"type": "signal", "signal": name})


def piston_stdin(stdin: str) -> str:
    """What execute() feeds a program: Piston adds a trailing newline, also to an empty stdin."""
    return stdin if stdin.endswith("\n") else stdin + "\n"


# -- what the server sends -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Message:
    type: str
    fields: dict[str, Any]


_STR = (str,)
_CODE = (int, type(None))
_OPT_STR = (str, type(None))
# message type → the fields it must carry and their JSON types (anything else the server adds is ignored)
MESSAGE_FIELDS: dict[str, dict[str, tuple[type, ...]]] = {
    "runtime": {"language": _STR, "version": _STR},
    "stage": {"stage": _STR},
    "data": {"stream": _STR, "data": _STR},
    "exit": {"stage": _STR, "code": _CODE, "signal": _OPT_STR},
    "error": {"message": _STR},
}
_STAGES = frozenset({"compile", "run"})
_STREAMS = frozenset({"stdout", "stderr"})


def parse_message(raw: str | bytes, *, url: str) -> Message:
    """One server message, checked against :data:`MESSAGE_FIELDS`; ProtocolError when it is not Piston's."""
    where = display_url(url)
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise ProtocolError(
            f"{where} sent a WebSocket message that is not JSON ({str(raw)[:80]!r}): check that the URL is the "
            "cluster's Piston server.",
            url=where,
        ) from None
    kind = data.get("type") if isinstance(data, dict) else None
    spec = MESSAGE_FIELDS.get(kind) if isinstance(kind, str) else None
    if spec is None:
        raise ProtocolError(
            f"{where} sent a WebSocket message of unknown type ({str(data)[:80]!r}): not Piston v3's live protocol.",
            url=where,
        )
    for name, types in spec.items():
        value = data.get(name)
        if isinstance(value, bool) or not isinstance(value, types):
            raise ProtocolError(f"{where} sent a {kind!r} message whose {name!r} is {value!r}.", url=where)
    if (kind in ("stage", "exit") and data["stage"] not in _STAGES) or (
        kind == "data" and data["stream"] not in _STREAMS
    ):
        raise ProtocolError(f"{where} sent a {kind!r} message for an unknown stage or stream: {data!r}.", url=where)
    return Message(str(kind), {name: data.get(name) for name in spec})


# -- close codes ------------------------------------------------------------------------------------------

_CloseRule = Callable[[str, str], PistonError | None]

# Piston's close codes (v3.1.1, api/src/api/v2.js) → what they mean for us. 4999 is the normal end.
CLOSE_CODES: dict[int, tuple[str, _CloseRule]] = {
    4999: ("job completed", lambda url, reason: None),
    4000: (
        "already initialized",
        lambda url, reason: ProtocolError(
            f"{url} closed the live connection: 'already initialized' (4000). This is a bug in CodeCapsule's live "
            "path: please report it.",
            url=url,
        ),
    ),
    4001: (
        "no init in time",
        lambda url, reason: RequestTimeout(
            f"{url} closed the live connection before the job started: the init message did not arrive within "
            "Piston's 1 s (4001). The network to the cluster is too slow: try again, or use execute().",
            url=url,
        ),
    ),
    4002: (
        "error",
        lambda url, reason: PistonError(
            f"{url} refused the live job ({reason or 'no reason given'}, close 4002): the same request through "
            "execute() says why in full.",
            url=url,
        ),
    ),
    4003: (
        "not initialized",
        lambda url, reason: ProtocolError(
            f"{url} closed the live connection: 'not yet initialized' (4003). This is a bug in CodeCapsule's live "
            "path: please report it.",
            url=url,
        ),
    ),
    4004: (
        "can only write to stdin",
        lambda url, reason: ProtocolError(
            f"{url} closed the live connection: 'can only write to stdin' (4004). This is a bug in CodeCapsule's "
            "live path: please report it.",
            url=url,
        ),
    ),
    4005: (
        "invalid signal",
        lambda url, reason: ProtocolError(
            f"{url} closed the live connection: 'invalid signal' (4005). This is a bug in CodeCapsule's live path: "
            "please report it.",
            url=url,
        ),
    ),
}


def error_from_close(code: int | None, reason: str, *, url: str) -> PistonError | None:
    """The error a close code means (None for 4999, the normal end); unknown codes are the server's fault."""
    where = display_url(url)
    rule = CLOSE_CODES.get(code) if code is not None else None
    if rule is not None:
        return rule[1](where, reason)
    return TransportError(
        f"{where} closed the live connection before the job ended (close code {code}, {reason or 'no reason'}): "
        "the server or the tunnel dropped it. Run the cell again; execute() gives the whole result at once.",
        url=where,
    )


# -- folding the messages into an execute-shaped answer -----------------------------------------------------


@dataclass
class _Stage:
    stdout: list[str] = field(default_factory=list)
    stderr: list[str] = field(default_factory=list)
    output: list[str] = field(default_factory=list)
    kept: dict[str, int] = field(default_factory=lambda: {"stdout": 0, "stderr": 0})
    code: int | None = None
    signal: str | None = None
    status: str | None = None
    message: str | None = None
    started: float = 0.0
    ended: float | None = None
    memory: int | None = None

    def answer(self) -> dict[str, Any]:
        wall = None if self.ended is None else round((self.ended - self.started) * 1000)
        return {
            "stdout": "".join(self.stdout),
            "stderr": "".join(self.stderr),
            "output": "".join(self.output),
            "code": self.code,
            "signal": self.signal,
            "status": self.status,
            "message": self.message,
            "wall_time": wall,
            "cpu_time": None,
            "memory": self.memory,
        }


_WALL_SHARE = 0.95  # the client's clock starts a little after the box's: a kill this close to the limit is the limit
_OVER_CAP = {"stdout": ("OL", "stdout length exceeded"), "stderr": ("EL", "stderr length exceeded")}


class LiveAnswer:
    """What the live messages said, folded into an execute answer (``result_from_response`` judges it).

    The output cap is applied here (the server has none on this path): each stream keeps at most the job's
    ``output`` limit (Piston's default cap when the job sets none); what crosses it ends the run as ``OL``/``EL``
    — the loop then stops reading and closes. A stage the server ends with SIGKILL after its wall limit is a
    ``TO``, as the execute answer says (the live ``exit`` carries no status)."""

    def __init__(self, job: Job, limits: Limits) -> None:
        self.job = job
        self.limits = limits
        self.cap = limits.output if limits.output is not None else PISTON_DEFAULT_OUTPUT_MAX_SIZE
        self.runtime: tuple[str, str] | None = None
        self.stages: dict[str, _Stage] = {}
        self.current: str | None = None
        self.error: str | None = None
        self.over_cap = False

    @property
    def done(self) -> bool:
        """The job is over as far as we care: run exited, compile failed, or the cap was crossed."""
        run = self.stages.get("run")
        compile_ = self.stages.get("compile")
        failed_compile = compile_ is not None and compile_.ended is not None and compile_.code != 0
        return self.over_cap or failed_compile or (run is not None and run.ended is not None)

    def feed(self, message: Message, now: float) -> str | None:
        """Take one message; the text to show for a ``data`` message (what was kept of it), else None."""
        f = message.fields
        if message.type == "runtime":
            self.runtime = (f["language"], f["version"])
        elif message.type == "stage":
            self.current = f["stage"]
            self.stages[f["stage"]] = _Stage(started=now)
        elif message.type == "exit":
            stage = self.stages.setdefault(f["stage"], _Stage(started=now))
            stage.code, stage.signal, stage.ended = f["code"], f["signal"], now
            self._judge_kill(f["stage"], stage)
        elif message.type == "error":
            self.error = f["message"]
        elif message.type == "data" and self.current is not None and not self.over_cap:
            return self._take(self.stages[self.current], f["stream"], f["data"])
        return None

    def _take(self, stage: _Stage, stream: str, text: str) -> str:
        room = self.cap - stage.kept[stream]
        data = text.encode()
        if len(data) > room:
            data = data[: max(room, 0)]
            text = data.decode("utf-8", "ignore")
            stage.status, stage.message = _OVER_CAP[stream]
            stage.signal, stage.code = "SIGKILL", None
            self.over_cap = True
        stage.kept[stream] += len(data)
        getattr(stage, stream).append(text)
        stage.output.append(text)
        return text

    def _judge_kill(self, name: str, stage: _Stage) -> None:
        """``exit`` with SIGKILL and no code: the box killed it (a program's own death shows as bash's 128+n code).
        Past the wall limit it was the time limit; under a memory limit, the memory (the answer then says so as
        execute's does: status SG, memory at the limit); else the CPU-time limit."""
        if stage.signal != "SIGKILL" or stage.code is not None or stage.ended is None:
            return
        timeout = self.limits.compile_timeout if name == "compile" else self.limits.run_timeout
        budget = timeout if timeout is not None else PISTON_DEFAULT_RUN_TIMEOUT
        memory = self.limits.compile_memory if name == "compile" else self.limits.memory
        if stage.ended - stage.started >= budget * _WALL_SHARE:
            stage.status, stage.message = "TO", "Time limit exceeded (wall clock)"
        elif memory is not None:
            stage.status, stage.message, stage.memory = "SG", "Out of memory (killed by signal 9)", memory
        else:
            stage.status, stage.message = "TO", "Time limit exceeded"

    def stopped(self, now: float, why: str) -> None:
        """The user stopped the run: the open stage ends here with status ``IN`` (the interrupted verdict)."""
        if self.current is not None:
            stage = self.stages[self.current]
            if stage.ended is None:
                stage.ended, stage.status, stage.message = now, "IN", why

    def answer(self) -> dict[str, Any]:
        """The execute-shaped answer (``run`` copies a failed ``compile``, as Piston's execute does)."""
        language, version = self.runtime or (self.job.language, self.job.version)
        out: dict[str, Any] = {"language": language, "version": version}
        compile_ = self.stages.get("compile")
        if compile_ is not None:
            out["compile"] = compile_.answer()
        run = self.stages.get("run")
        if run is not None:
            out["run"] = run.answer()
        elif compile_ is not None:
            out["run"] = dict(out["compile"])
        else:
            out["run"] = _Stage().answer()
        return out
