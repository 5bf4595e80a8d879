"""Piston's v2 wire protocol as pure functions: no sockets, no clocks, no sleeping.

Everything the sync and async engines share lives here (the way h11/hishel keep protocol logic apart from
I/O):

* building the ``POST /api/v2/execute`` body from a :class:`~codecapsule.Job` (limits only when the job sets
  them, so the server's own defaults and caps apply otherwise; seconds → ms);
* parsing ``/runtimes`` and ``/packages`` answers, and resolving a language or alias through the runtimes
list;
* turning an execute answer into our :class:`~codecapsule.Result` through the shared :func:`judge` policy
  (ms → seconds, the compile/run copy, shell-reported signals, the output cap that can leave a stream
  empty...);
* turning HTTP error answers and httpx transport errors into CodeCapsule exceptions whose message names the
fix;
* the retry decision (which failures are worth repeating, and after how long).

The facts these functions follow are in ``shared/reference/piston.md`` (observed on Piston v3.1.1).
Secrets never enter this module: the Access headers are added by the engine and never formatted anywhere.
"""

from __future__ import annotations

import email.utils
import json
import math
import re
import shlex
import signal as _signal
import socket
import ssl
import time
import zlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from .._errors import (
    AccessDenied,
    BadRequest,
    ClientBug,
    ConnectFailure,
    DNSFailure,
    HTTPStatusError,
    OriginDown,
    OriginTimeout,
    PackageError,
    PayloadTooLarge,
    PistonError,
    ProtocolError,
    RateLimited,
    RequestTimeout,
    RuntimeNotInstalled,
    TLSFailure,
    TransportError,
    TunnelNotConnected,
    UnsupportedMediaType,
    WrongEndpoint,
)
from .._jobs import Job, Limits
from .._languages import resolve as resolve_language
from .._redact import display_url
from .._results import Result, Stage
from .._verdicts import judge, stage_failed
from ._python_boot import split_compile_outcome
from .piston_shape import Shaped, shape

if TYPE_CHECKING:
    import httpx

__all__ = [
    "API_PREFIX",
    "MAX_ANSWER_BYTES",
    "PACKAGE_INSTALL_ANSWERS",
    "PISTON_DEFAULT_COMPILE_TIMEOUT",
    "PISTON_DEFAULT_RUN_TIMEOUT",
    "RETRY_STATUSES",
    "STATUS_RULES",
    "SYMPTOMS",
    "AnswerReader",
    "Package",
    "Runtime",
    "backoff_delay",
    "clamp_to_server",
    "configured_limit_in",
    "display_url",
    "error_from_status",
    "error_from_transport",
    "execute_payload",
    "install_answer_shell",
    "install_outcome",
    "install_payload",
    "job_time_budget",
    "loads",
    "parse_json",
    "parse_packages",
    "parse_retry_after",
    "parse_runtimes",
    "parse_stage",
    "resolve_runtime",
    "result_from_response",
    "retry_delay",
    "runtime_not_installed",
    "symptom",
    "unknown_runtime_in",
]

API_PREFIX = "/api/v2"
ENGINE_NAME = "piston"
# Piston's defaults (PISTON_COMPILE_TIMEOUT / PISTON_RUN_TIMEOUT) — used only to size the client's own
# deadline.
PISTON_DEFAULT_COMPILE_TIMEOUT = 10.0
PISTON_DEFAULT_RUN_TIMEOUT = 3.0
# Answers worth repeating: the request never reached a working Piston, so repeating it cannot run a job twice
# (429 rate limit, 502/503 origin down, 504 gateway timeout before the origin answered, 530 tunnel without a
# connector — cloudflared reconnects within seconds). 524 is *not* here: Piston received the job and took more
# than 100 s, so repeating it doubles the load on a cluster that is already overloaded.
RETRY_STATUSES = frozenset({429, 502, 503, 504, 530})
_BODY_EXCERPT = 300


# -- small helpers -----------------------------------------------------------------------------------


def _quote(value: Any, limit: int = 200) -> str:
    """A short, readable excerpt of a JSON value for error messages."""
    try:
        text = json.dumps(value, ensure_ascii=False, default=repr)
    except (TypeError, ValueError):  # pragma: no cover - default=repr makes this unreachable in practice
        text = repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _excerpt(body: bytes | str) -> str:
    text = body.decode("utf-8", "replace") if isinstance(body, bytes) else body
    text = text.strip()
    return text if len(text) <= _BODY_EXCERPT else text[: _BODY_EXCERPT - 1] + "…"


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def loads(body: bytes | str) -> Any:
    """Strict JSON: ``NaN``/``Infinity`` refused (ValueError), nesting too deep for Python refused (ValueError)."""
    try:
        return json.loads(body, parse_constant=_no_constant)
    except RecursionError:
        raise ValueError("the JSON is nested too deeply") from None


def parse_json(body: bytes, *, url: str, what: str) -> Any:
    """The JSON value of a 2xx answer; :class:`ProtocolError` quoting the start of the body otherwise."""
    try:
        return loads(body)
    except ValueError as exc:  # JSONDecodeError and UnicodeDecodeError are ValueErrors too
        raise ProtocolError(
            f"{what} from {display_url(url)} is not JSON "
            f"({exc.msg if isinstance(exc, json.JSONDecodeError) else exc})"
            f": {_excerpt(body)!r}. Is the URL a Piston server? It should be the host alone, e.g. "
            "https://tunnel.example.edu.",
            url=display_url(url),
        ) from None


# The most a Piston answer may be, decompressed: far above any output cap a classroom server uses, far below
# what would hurt the machine (a hostile or broken server cannot make the client buffer gigabytes).
MAX_ANSWER_BYTES = 64 * 1024 * 1024
_DECODERS = {"gzip": 16 + zlib.MAX_WBITS, "x-gzip": 16 + zlib.MAX_WBITS, "deflate": zlib.MAX_WBITS}


class AnswerReader:
    """Collects an HTTP answer's body as it streams in, decompressing it, never holding more than ``limit`` bytes.

    ``feed`` the raw (still encoded) chunks, then take :meth:`body`. A body larger than ``limit`` — sent or after
    decompression (a gzip bomb) — or in an encoding Piston never uses raises :class:`ProtocolError` at once.
    """

    def __init__(
        self, content_encoding: str | None, content_length: str | None, *, url: str, limit: int = MAX_ANSWER_BYTES
    ) -> None:
        self.url, self.limit = display_url(url), limit
        self._parts: list[bytes] = []
        self._size = 0
        encodings = [e.strip().lower() for e in (content_encoding or "").split(",") if e.strip()]
        encodings = [e for e in encodings if e != "identity"]
        if len(encodings) > 1 or (encodings and encodings[0] not in _DECODERS):
            raise ProtocolError(
                f"the answer from {self.url} uses the content encoding {content_encoding!r}, which CodeCapsule did "
                "not ask for: this is not a Piston server (or a proxy is rewriting answers).",
                url=self.url,
            )
        self._decoder = zlib.decompressobj(_DECODERS[encodings[0]]) if encodings else None
        if content_length is not None and content_length.strip().isdigit() and int(content_length) > limit:
            self._too_large()

    def _too_large(self) -> None:
        raise ProtocolError(
            f"the answer from {self.url} is larger than {self.limit // (1024 * 1024)} MiB (decompressed): no "
            "Piston answer is that big, so it was not read. Check that the URL is the cluster's Piston server.",
            url=self.url,
        )

    def _keep(self, data: bytes) -> None:
        self._size += len(data)
        if self._size > self.limit:
            self._too_large()
        if data:
            self._parts.append(data)

    def feed(self, chunk: bytes) -> None:
        if self._decoder is None:
            self._keep(chunk)
            return
        try:
            while chunk:
                # at most one byte past the limit is ever inflated, however well the chunk compresses
                self._keep(self._decoder.decompress(chunk, self.limit - self._size + 1))
                chunk = self._decoder.unconsumed_tail
        except zlib.error as exc:
            raise ProtocolError(f"the compressed answer from {self.url} is corrupt ({exc}).", url=self.url) from None

    def body(self) -> bytes:
        if self._decoder is not None:
            self._keep(self._decoder.flush(self.limit - self._size + 1))
        return b"".join(self._parts)


def _ms(seconds: float) -> int:
    """Seconds → Piston's whole milliseconds (at least 1: Piston reads 0 as 'no limit')."""
    return max(1, round(seconds * 1000))


# -- requests -----------------------------------------------------------------------------------------

# Our limit field → Piston's request field, and the unit conversion. Limits Piston has no request field for
# (processes, output, file_size) are server configuration (PISTON_MAX_PROCESS_COUNT, PISTON_OUTPUT_MAX_SIZE,
# PISTON_MAX_FILE_SIZE) and are not sent.
_LIMIT_FIELDS: tuple[tuple[str, str, bool], ...] = (
    ("compile_timeout", "compile_timeout", True),
    ("run_timeout", "run_timeout", True),
    ("compile_cpu_time", "compile_cpu_time", True),
    ("run_cpu_time", "run_cpu_time", True),
    ("compile_memory", "compile_memory_limit", False),
    ("memory", "run_memory_limit", False),
)


def execute_payload(job: Job, *, language: str | None = None, shaped: Shaped | None = None) -> dict[str, Any]:
    """The JSON body of ``POST /api/v2/execute`` for ``job``.

    ``language`` overrides the name sent (a runtime name learnt from the server's runtimes list); by default the
    job's canonical name, which is Piston's own (python, javascript, java, c, c++). The files are shaped for
    Piston's runtimes (:mod:`.piston_shape`). Only the limits the job sets are sent; the server's defaults (and
    its configured caps) apply to the rest.
    """
    shaped = shaped if shaped is not None else shape(job)
    payload: dict[str, Any] = {
        "language": language or job.language,
        "version": job.version,
        "files": [dict(f) for f in shaped.files],
        "stdin": job.stdin,
        "args": list(job.args),
    }
    for ours, theirs, is_time in _LIMIT_FIELDS:
        value = getattr(job.limits, ours)
        if value is not None:
            payload[theirs] = _ms(value) if is_time else int(value)
    return payload


_CONFIGURED_LIMIT = re.compile(r"^(?P<field>\w+) cannot exceed the configured limit of (?P<limit>\d+)$")


def configured_limit_in(status: int, body: bytes) -> tuple[str, int] | None:
    """``(Piston field, the server's limit)`` when the answer is "<field> cannot exceed the configured limit of N"."""
    if status != 400:
        return None
    message, _ = _body_message(body)
    m = _CONFIGURED_LIMIT.match(message or "")
    return (m.group("field"), int(m.group("limit"))) if m else None


def clamp_to_server(job: Job, caps: Mapping[str, int]) -> tuple[Job, tuple[str, ...]]:
    """``job`` with every limit above what the server allows (``caps``: Piston field → its limit) lowered to it.

    The notes say what was lowered; the engine puts them on the Result, so the run is never silently different
    from what was asked.
    """
    changes: dict[str, Any] = {}
    notes: list[str] = []
    for ours, theirs, is_time in _LIMIT_FIELDS:
        value = getattr(job.limits, ours)
        cap = caps.get(theirs)
        if value is None or cap is None or cap < 0:
            continue
        sent = _ms(value) if is_time else int(value)
        if sent <= cap:
            continue
        allowed: float | int = cap / 1000 if is_time else cap
        changes[ours] = allowed
        asked_text = f"{value:g} s" if is_time else f"{int(value)} bytes"
        allowed_text = f"{allowed:g} s" if is_time else f"{int(allowed)} bytes"
        notes.append(
            f"{ours} lowered from {asked_text} to {allowed_text}, the most this Piston server allows "
            f"(PISTON_{theirs.upper()}; raise it in the cluster spec's piston_limits)"
        )
    if not changes:
        return job, ()
    return replace(job, limits=replace(job.limits, **changes)), tuple(notes)


def install_payload(language: str, version: str) -> dict[str, str]:
    """The body of ``POST``/``DELETE /api/v2/packages``."""
    return {"language": language, "version": version}


def job_time_budget(job: Job) -> float:
    """Seconds the server may legitimately spend on ``job`` (its compile + run wall limits, Piston's

    defaults)."""
    lim = job.limits
    compile_budget = lim.compile_timeout if lim.compile_timeout is not None else PISTON_DEFAULT_COMPILE_TIMEOUT
    run_budget = lim.run_timeout if lim.run_timeout is not None else PISTON_DEFAULT_RUN_TIMEOUT
    return compile_budget + run_budget


# -- runtimes and packages ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Runtime:
    """One installed language on a Piston server (an item of ``GET /api/v2/runtimes``)."""

    language: str
    version: str
    aliases: tuple[str, ...] = ()
    # the package behind it when it differs: c/c++ → gcc, javascript → node
    runtime: str | None = None

    def names(self) -> tuple[str, ...]:
        return (self.language, *self.aliases)

    def __str__(self) -> str:
        return f"{self.language} {self.version}"


@dataclass(frozen=True)
class Package:
    """One item of ``GET /api/v2/packages``: a package name (gcc, node, python, java), its version,

    installed?"""

    language: str
    language_version: str
    installed: bool

    def to_dict(self) -> dict[str, Any]:
        return {"language": self.language, "language_version": self.language_version, "installed": self.installed}


def _need(item: Mapping[str, Any], key: str, kind: type | tuple[type, ...], where: str, url: str) -> Any:
    if key not in item:
        raise ProtocolError(
            f"{where} has no {key!r}: {_quote(item)}. The server is not speaking Piston's v2 API.", url=url
        )
    value = item[key]
    if not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool):
        raise ProtocolError(f"{where}.{key} has an unexpected type: {_quote(value)} in {_quote(item)}.", url=url)
    return value


def parse_runtimes(data: Any, *, url: str = "") -> list[Runtime]:
    """``GET /api/v2/runtimes`` → Runtime objects (ProtocolError quoting the part that is not Piston's

    shape)."""
    url = display_url(url)
    if not isinstance(data, list):
        raise ProtocolError(f"the runtimes list should be a JSON array, got {_quote(data)}.", url=url)
    runtimes = []
    for i, item in enumerate(data):
        where = f"runtimes[{i}]"
        if not isinstance(item, dict):
            raise ProtocolError(f"{where} should be an object, got {_quote(item)}.", url=url)
        aliases = item.get("aliases", [])
        if not isinstance(aliases, list) or not all(isinstance(a, str) for a in aliases):
            raise ProtocolError(f"{where}.aliases should be a list of strings, got {_quote(aliases)}.", url=url)
        runtime = item.get("runtime")
        if runtime is not None and not isinstance(runtime, str):
            raise ProtocolError(f"{where}.runtime should be a string, got {_quote(runtime)}.", url=url)
        runtimes.append(
            Runtime(
                _need(item, "language", str, where, url),
                _need(item, "version", str, where, url),
                tuple(aliases),
                runtime,
            )
        )
    return runtimes


def parse_packages(data: Any, *, url: str = "") -> list[Package]:
    """``GET /api/v2/packages`` → Package objects."""
    url = display_url(url)
    if not isinstance(data, list):
        raise ProtocolError(f"the packages list should be a JSON array, got {_quote(data)}.", url=url)
    out = []
    for i, item in enumerate(data):
        where = f"packages[{i}]"
        if not isinstance(item, dict):
            raise ProtocolError(f"{where} should be an object, got {_quote(item)}.", url=url)
        out.append(
            Package(
                _need(item, "language", str, where, url),
                _need(item, "language_version", str, where, url),
                _need(item, "installed", bool, where, url),
            )
        )
    return out


def _version_key(version: str) -> tuple[tuple[int, int | str], ...]:
    return tuple((0, int(p)) if p.isdigit() else (1, p) for p in re.split(r"[.\-+]", version))


def _version_matches(version: str, wanted: str) -> bool:
    """Piston's semver-style match, the common cases: ``*``/``x``, exact, or a prefix of dotted parts (3.11 ~

    3.11.2)."""
    if wanted in ("*", "x", "", "latest"):
        return True
    wanted = wanted.lstrip("=v^~").removesuffix(".x").removesuffix(".*")
    have, want = version.split("."), wanted.split(".")
    return have[: len(want)] == want


def resolve_runtime(runtimes: Sequence[Runtime], language: str, version: str = "*") -> Runtime | None:
    """The runtime a user's ``language`` (name or alias, case-insensitive) and ``version`` would get: the
    newest match.

    Besides the server's own names and aliases, CodeCapsule's aliases for the language count too (so ``cpp``
    finds ``c++`` even on a server whose runtimes list spells its aliases differently).
    """
    key = language.strip().lower()
    candidates = {key}
    try:
        lang = resolve_language(key)
    except Exception:
        pass
    else:
        candidates.update((lang.name, *lang.aliases))
    matches = [
        rt for rt in runtimes if candidates & {n.lower() for n in rt.names()} and _version_matches(rt.version, version)
    ]
    # The server's exact name wins over an alias match, then the newest version.
    matches.sort(key=lambda rt: (rt.language.lower() == key or key in rt.aliases, _version_key(rt.version)))
    return matches[-1] if matches else None


# -- execute answers ----------------------------------------------------------------------------------

_STAGE_STRINGS = ("stdout", "stderr", "output")


def _signal_name(number: int) -> str | None:
    try:
        return _signal.Signals(number).name
    except ValueError:
        return None


def _seconds(value: Any, where: str, url: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ProtocolError(f"{where} should be a number of milliseconds, got {_quote(value)}.", url=url)
    return float(value) / 1000.0


def parse_stage(data: Any, *, where: str = "run", url: str = "") -> Stage:
    """One Piston stage → our Stage: ms → seconds, shell-reported signals decoded, output caps said clearly.

    Older Piston versions have no ``cpu_time``/``memory`` (or even ``status``/``message``): those become None.
    """
    url = display_url(url)
    if not isinstance(data, dict):
        raise ProtocolError(f"the {where!r} stage should be an object, got {_quote(data)}.", url=url)
    texts: dict[str, str] = {}
    for key in _STAGE_STRINGS:
        value = data.get(key)
        if value is None:
            value = ""
        if not isinstance(value, str):
            raise ProtocolError(f"{where}.{key} should be a string, got {_quote(value)}.", url=url)
        texts[key] = value
    code = data.get("code")
    if code is not None and (isinstance(code, bool) or not isinstance(code, int)):
        raise ProtocolError(f"{where}.code should be an integer or null, got {_quote(code)}.", url=url)
    sig, status, message = data.get("signal"), data.get("status"), data.get("message")
    for key, value in (("signal", sig), ("status", status), ("message", message)):
        if value is not None and not isinstance(value, str):
            raise ProtocolError(f"{where}.{key} should be a string or null, got {_quote(value)}.", url=url)
    memory = data.get("memory")
    if memory is not None and (isinstance(memory, bool) or not isinstance(memory, int | float)):
        raise ProtocolError(f"{where}.memory should be a number of bytes, got {_quote(memory)}.", url=url)
    truncated = False

    # Piston runs programs through a shell, so a program killed by signal n shows as exit 128+n with no signal
    # (a segfault is code 139, status RE). Report it as what it is: a signal.
    if sig is None and code is not None and status in (None, "RE") and 128 < code <= 128 + 64:
        name = _signal_name(code - 128)
        if name is not None:
            # exit_code keeps 128+n, as the local engine reports it, so both engines give the same Result
            sig, status = name, "SG"
            message = f"Killed by signal {name} (the shell reported exit status {code})"
    if status in ("OL", "EL"):
        stream = "stdout" if status == "OL" else "stderr"
        truncated = True
        shown = "nothing" if not texts[stream] else "only what came before the cap"
        message = (
            f"output limit exceeded: the program wrote more than the server allows on {stream} "
            f"(PISTON_OUTPUT_MAX_SIZE, 1024 bytes per stream by default) and was stopped; {shown} is "
            "shown" + (f" (Piston: {data.get('message')})" if data.get("message") else "")
        )
    return Stage(
        stdout=texts["stdout"],
        stderr=texts["stderr"],
        output=texts["output"],
        exit_code=code,
        signal=sig,
        status=status,
        message=message,
        wall_time=_seconds(data.get("wall_time"), f"{where}.wall_time", url),
        cpu_time=_seconds(data.get("cpu_time"), f"{where}.cpu_time", url),
        memory=int(memory) if memory is not None else None,
        truncated=truncated,
    )


def _java_launcher_compile_failure(language: str, stage: Stage) -> bool:
    """Piston's Java runs through the single-file source launcher: a compile error is a failed *run* stage."""
    return (
        language == "java"
        and stage.exit_code == 1
        and stage.status in (None, "RE")
        and "error: compilation failed" in stage.stderr
    )


# Piston reports memory as kB × 1000 (so a limit of 128 MiB comes back as ~98% of it); a SIGKILL with the memory
# at this share of the limit was the memory limit, not a crash.
_MEMORY_KILL_SHARE = 0.9


def _memory_killed(stage: Stage, limits: Limits) -> bool:
    return (
        stage.status == "SG"
        and stage.signal == "SIGKILL"
        and limits.memory is not None
        and stage.memory is not None
        and stage.memory >= _MEMORY_KILL_SHARE * limits.memory
    )


def _restored(stage: Stage, shaped: Shaped) -> Stage:
    return replace(
        stage,
        stdout=stage.stdout,
        stderr=shaped.restore(stage.stderr),
        output=shaped.restore(stage.output),
    )


def result_from_response(
    job: Job,
    data: Any,
    *,
    url: str = "",
    limits: Limits | None = None,
    shaped: Shaped | None = None,
    notes: Sequence[str] = (),
) -> Result:
    """An execute answer (the decoded JSON of a 200) → our Result, judged by the shared verdict policy.

    ``shaped`` is how the request was shaped (:func:`.piston_shape.shape`): diagnostics are read back through it.
    ``notes`` (e.g. limits lowered to the server's) are put on the Result.
    """
    url = display_url(url)
    limits = limits if limits is not None else job.limits
    shaped = shaped if shaped is not None else shape(job)
    if not isinstance(data, dict):
        raise ProtocolError(f"the execute answer should be an object, got {_quote(data)}.", url=url)
    if "run" not in data:
        if "message" in data:  # a 200 carrying an error message: not Piston, but say what it said
            raise ProtocolError(f"the execute answer has no run stage, only a message: {_quote(data)}.", url=url)
        raise ProtocolError(f"the execute answer has no 'run' stage: {_quote(data)}.", url=url)
    version = data.get("version", job.version)
    if not isinstance(version, str):
        raise ProtocolError(f"the execute answer's version should be a string, got {_quote(version)}.", url=url)
    raw_compile = data.get("compile")
    compile_stage = parse_stage(raw_compile, where="compile", url=url) if raw_compile is not None else None
    run_stage: Stage | None = parse_stage(data["run"], where="run", url=url)
    assert run_stage is not None
    if compile_stage is not None and raw_compile == data["run"] and stage_failed(compile_stage):
        # The run never happened: Piston copies `compile` into `run` when compilation fails.
        run_stage = None
    elif compile_stage is None and _java_launcher_compile_failure(job.language, run_stage):
        compile_stage, run_stage = replace(run_stage, message="Compilation failed"), None
    else:
        compile_stage, run_stage = split_compile_outcome(job.language, compile_stage, run_stage)
    if run_stage is not None and _memory_killed(run_stage, limits):
        run_stage = replace(
            run_stage,
            status="ML",
            message=f"memory limit exceeded: the program used more than {limits.memory} bytes and was killed",
        )
    compile_stage = _restored(compile_stage, shaped) if compile_stage is not None else None
    run_stage = _restored(run_stage, shaped) if run_stage is not None else None
    result = judge(
        job,
        engine=ENGINE_NAME,
        version=version,
        compile=compile_stage,
        run=run_stage,
        limits=limits,
    )
    if notes:
        result = replace(result, notes=(*result.notes, *notes))
    if result.verdict == "internal_error" and result.error is None:
        stage = run_stage or compile_stage
        said = f": {stage.message}" if stage is not None and stage.message else ""
        result = replace(
            result,
            error=f"Piston reported an internal error (status XX){said}. This is the server's fault, not the "
            "program's: run it again, and if it persists check the server's logs (docker logs piston on the VMs).",
        )
    return result


# -- errors -------------------------------------------------------------------------------------------

_UNKNOWN_RUNTIME = re.compile(r"^(?P<language>.+?)-(?P<version>[^-]*) runtime is unknown$")
_INSTALL_HINT = (
    "install it with client.install({language!r}, VERSION) or `codecapsule cluster install "
    "{language}` "
    "(client.packages() lists the versions the package index has), or add it to the cluster "
    "spec's "
    "runtimes"
)


def _body_message(body: bytes) -> tuple[str | None, Any]:
    """Piston's ``{"message": ...}`` text, and the decoded JSON (or None)."""
    try:
        data = loads(body) if body else None
    except ValueError:
        return None, None
    if isinstance(data, dict) and isinstance(data.get("message"), str):
        return data["message"], data
    return None, data


def unknown_runtime_in(status: int, body: bytes) -> tuple[str, str] | None:
    """``(language, version)`` when the answer is Piston's "<language>-<version> runtime is unknown"."""
    if status != 400:
        return None
    message, _ = _body_message(body)
    m = _UNKNOWN_RUNTIME.match(message or "")
    return (m.group("language"), m.group("version")) if m else None


def runtime_not_installed(
    language: str, version: str, runtimes: Sequence[Runtime] | None, *, url: str = "", body: bytes = b""
) -> RuntimeNotInstalled:
    """The error for an unknown runtime, listing what the server has and how to install what is missing."""
    url = display_url(url)
    installed = tuple(str(rt) for rt in runtimes) if runtimes is not None else ()
    want = language if version in ("*", "") else f"{language} {version}"
    same = [str(rt) for rt in runtimes or () if resolve_runtime([rt], language) is not None]
    if runtimes is None:
        have = "The list of installed runtimes could not be fetched."
    elif not runtimes:
        have = "The server has no runtimes installed at all."
    else:
        have = f"Installed: {', '.join(installed)}."
    if same and version not in ("*", ""):
        have += f" Versions of {language} available: {', '.join(same)} (use version='*' for the newest)."
    hint = _INSTALL_HINT.format(language=language)
    return RuntimeNotInstalled(
        f"the Piston server at {url} has no runtime for {want}. {have} To add it, {hint}.",
        url=url,
        status_code=400,
        body=_excerpt(body),
        language=language,
        version=version,
        installed=installed,
    )


def _validation_hint(message: str) -> str:
    if "cannot exceed the configured limit" in message:
        return (
            "lower that limit on the job, or raise the server's cap (PISTON_RUN_TIMEOUT, "
            "PISTON_COMPILE_TIMEOUT, "
            "..., or PISTON_LIMIT_OVERRIDES per language in the cluster spec's piston_limits)"
        )
    if "utf8 encoded file" in message:
        return "the first file is the entry point and must be text, not bytes"
    if "must be a number" in message or "non-negative" in message or "is required" in message:
        return "CodeCapsule should have caught this before sending: please report it, with the job"
    return "change the request as the message says"


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """Seconds from a ``Retry-After`` header (delta-seconds or an HTTP date); None when absent or

    unreadable."""
    if value is None:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        seconds = when.timestamp() - (time.time() if now is None else now)
    if not math.isfinite(seconds):
        return None
    return max(0.0, seconds)


@dataclass(frozen=True)
class _ErrorAnswer:
    """An HTTP error answer, with what every rule of :data:`STATUS_RULES` looks at."""

    status: int
    body: bytes
    headers: Mapping[str, str]
    url: str
    base_url: str
    access_sent: bool
    packages: bool
    message: str | None
    data: Any
    excerpt: str

    @property
    def said(self) -> str:
        return f" ({self.message})" if self.message else (f" ({self.excerpt})" if self.excerpt else "")

    @property
    def kw(self) -> dict[str, Any]:
        return {"url": self.url, "status_code": self.status, "body": self.excerpt}

    @property
    def via_cloudflare(self) -> bool:
        return self.headers.get("cf-ray") is not None or self.headers.get("server", "").lower() == "cloudflare"


def _redirect(a: _ErrorAnswer) -> PistonError:
    location = a.headers.get("location", "")
    if "cloudflareaccess.com" in location or "/cdn-cgi/access/" in location:
        return AccessDenied(
            f"{a.url} is protected by Cloudflare Access and redirected to its login page: "
            + (
                "the service token that was sent was not accepted — check that it is valid, not expired, and "
                "allowed by the Access policy (a 'Service Auth' rule)."
                if a.access_sent
                else "set CODECAPSULE_ACCESS_CLIENT_ID and CODECAPSULE_ACCESS_CLIENT_SECRET (or pass "
                "access_client_id=/access_client_secret= to the Client) to the cluster's service token."
            ),
            **a.kw,
        )
    return WrongEndpoint(
        f"{a.url} answered {a.status} with a redirect to {display_url(location) or '(nowhere)'}: the Piston URL "
        "should be the final address of the host (use https:// if the server redirects there), with no path.",
        **a.kw,
    )


def _bad_request(a: _ErrorAnswer) -> PistonError:
    lang_ver = unknown_runtime_in(a.status, a.body)
    if lang_ver is not None:
        return runtime_not_installed(lang_ver[0], lang_ver[1], None, url=a.url, body=a.body)
    if isinstance(a.data, dict) and "stack" in a.data and a.message is None:
        first = str(a.data["stack"]).strip().splitlines()[0] if str(a.data["stack"]).strip() else "?"
        return ClientBug(
            f"Piston could not parse the request CodeCapsule sent ({first}). This is a bug in CodeCapsule, "
            "not in your code or settings: please report it with the job that triggered it.",
            **a.kw,
        )
    if a.message is not None:
        return BadRequest(f"Piston refused the request: {a.message}. To fix: {_validation_hint(a.message)}.", **a.kw)
    return BadRequest(f"Piston refused the request (400){a.said}.", **a.kw)


def _refused(a: _ErrorAnswer) -> PistonError:
    if a.access_sent:
        fix = (
            "the service token that was sent was refused: check CODECAPSULE_ACCESS_CLIENT_ID/SECRET hold a "
            "current token of the cluster and that the Access policy allows it (a 'Service Auth' rule)."
        )
    else:
        fix = (
            "the host is protected (Cloudflare Access): set CODECAPSULE_ACCESS_CLIENT_ID and "
            "CODECAPSULE_ACCESS_CLIENT_SECRET (or access_client_id=/access_client_secret= on the Client) to "
            "the cluster's service token."
        )
    return AccessDenied(f"{a.url} refused access ({a.status}): {fix}", **a.kw)


def _not_found(a: _ErrorAnswer) -> PistonError:
    if a.packages and a.message and "does not exist" in a.message:
        return PackageError(
            f"{a.message}. client.packages() lists the packages the server's index offers "
            "(names are package names: gcc, node, python, java).",
            **a.kw,
        )
    path = urlsplit(a.base_url).path if a.base_url else ""
    extra = f" Your base URL has a path ({path!r}); remove it." if path not in ("", "/") else ""
    return WrongEndpoint(
        f"{a.url} answered 404 Not Found: the Piston base URL must end at the host (e.g. "
        f"https://tunnel.example.edu) — CodeCapsule adds {API_PREFIX}/... itself.{extra} Check "
        "CODECAPSULE_PISTON_URL, and that the host really routes to a Piston server.",
        **a.kw,
    )


def _too_large(a: _ErrorAnswer) -> PistonError:
    return PayloadTooLarge(
        f"{a.url} refused the request as too large (413){a.said}: make the files smaller (Piston's "
        "PISTON_MAX_FILE_SIZE, Cloudflare's request size limit), or send big data files another way.",
        **a.kw,
    )


def _media_type(a: _ErrorAnswer) -> PistonError:
    return UnsupportedMediaType(
        f"{a.url} refused the request's content type (415){a.said}: Piston needs Content-Type: application/json. "
        "This is a bug in CodeCapsule (or a proxy rewriting requests): please report it.",
        **a.kw,
    )


def _rate_limited(a: _ErrorAnswer) -> PistonError:
    retry_after = parse_retry_after(a.headers.get("retry-after"))
    wait = f" The server asks to wait {retry_after:g} s." if retry_after is not None else ""
    return RateLimited(
        f"{a.url} is rate limiting requests (429).{wait} Lower the batch concurrency (execute_many(..., "
        "concurrency=...)) or raise the rate limit on the Cloudflare side.",
        url=a.url,
        status_code=a.status,
        body=a.excerpt,
        retry_after=retry_after,
    )


def _no_connector(a: _ErrorAnswer) -> PistonError:
    return TunnelNotConnected(
        f"{a.url} answered {a.status}: Cloudflare has no connector for this tunnel (error 1033) — cloudflared is "
        "not running on any VM. Check `codecapsule cluster status`; start VMs or scale up "
        "(`codecapsule cluster scale`), or redeploy if the tunnel token changed.",
        **a.kw,
    )


def _origin_down(a: _ErrorAnswer) -> PistonError:
    behind = "the tunnel is up but nothing answers behind it" if a.via_cloudflare else "the server is unavailable"
    return OriginDown(
        f"{a.url} answered {a.status}: {behind} — Piston or cloudflared is down on the VMs (starting, crashed, or "
        "still installing runtimes). Check `codecapsule cluster status` / `codecapsule doctor`; if it lasts, "
        "restart the VMs.",
        **a.kw,
    )


def _origin_timeout(a: _ErrorAnswer) -> PistonError:
    return OriginTimeout(
        f"{a.url} answered {a.status}: Piston took too long to answer — the cluster is overloaded. Scale up "
        "(`codecapsule cluster scale` or the scaling panel), lower the batch concurrency, or lower the jobs' "
        "time limits.",
        **a.kw,
    )


def _package_refused(a: _ErrorAnswer) -> PistonError:
    return PackageError(f"the packages API refused: {a.message}. client.packages() shows what is installed.", **a.kw)


def _server_error(a: _ErrorAnswer) -> PistonError:
    return HTTPStatusError(
        f"{a.url} failed with an internal server error (500){a.said or ' and an empty answer'}. Piston answers "
        "this way to file names it cannot write (e.g. containing '../') and when a package index is "
        "unreachable; check the request's file names and the server's logs.",
        **a.kw,
    )


def _not_piston(a: _ErrorAnswer) -> PistonError:
    return HTTPStatusError(
        f"{a.url} answered HTTP {a.status}{a.said}, which is not a Piston answer: check the URL.", **a.kw
    )


_CLOUDFLARE_1033 = re.compile(r"\b1033\b")

# THE status → error table, first match wins. Everything that reads Piston's (or Cloudflare's) HTTP answers —
# the engines, `codecapsule doctor`, Cluster.install_runtime — goes through it, so a 502 has one name everywhere.
STATUS_RULES: tuple[tuple[str, Callable[[_ErrorAnswer], bool], Callable[[_ErrorAnswer], PistonError]], ...] = (
    ("3xx redirect (Access login page, or a wrong address)", lambda a: 300 <= a.status < 400, _redirect),
    ("400 validation / unknown runtime / unparsable request", lambda a: a.status == 400, _bad_request),
    ("401/403 refused by Cloudflare Access", lambda a: a.status in (401, 403), _refused),
    ("404 wrong path, or no such package", lambda a: a.status == 404, _not_found),
    ("413 request too large", lambda a: a.status == 413, _too_large),
    ("415 not JSON", lambda a: a.status == 415, _media_type),
    ("429 rate limited", lambda a: a.status == 429, _rate_limited),
    (
        "530 / error 1033: no tunnel connector",
        lambda a: a.status == 530 or (a.status >= 500 and bool(_CLOUDFLARE_1033.search(a.excerpt))),
        _no_connector,
    ),
    ("502/503 origin down", lambda a: a.status in (502, 503), _origin_down),
    ("504/524 origin timeout", lambda a: a.status in (504, 524), _origin_timeout),
    ("500 from the packages API", lambda a: a.packages and a.status == 500 and a.message is not None, _package_refused),
    ("500 internal server error", lambda a: a.status == 500, _server_error),
)


def error_from_status(
    status: int,
    body: bytes,
    headers: Mapping[str, str],
    *,
    url: str,
    base_url: str = "",
    access_sent: bool = False,
    packages: bool = False,
) -> PistonError:
    """The exception for an HTTP error answer (status ≥ 300) by :data:`STATUS_RULES`, its message naming the fix.

    ``access_sent``: whether Cloudflare Access headers were sent (changes the advice on 401/403).
    ``packages``: the call was to the packages API (its 404/500 answers mean "no such package"/"already
    installed"). An unknown-runtime 400 gives a :class:`RuntimeNotInstalled` without the installed list; the
    engine refreshes its runtimes and rebuilds it with :func:`runtime_not_installed`.
    """
    message, data = _body_message(body)
    answer = _ErrorAnswer(
        status, body, headers, display_url(url), base_url, access_sent, packages, message, data, _excerpt(body)
    )
    for _, matches, build in STATUS_RULES:
        if matches(answer):
            return build(answer)
    return _not_piston(answer)


# What each error means in the troubleshooting table (docs/piston.md, `codecapsule doctor`'s fixes), first
# match wins: (error class, symptom key, short description).
SYMPTOMS: tuple[tuple[type[PistonError], str, str], ...] = (
    (RuntimeNotInstalled, "unknown runtime", "the runtime is not installed"),
    (TunnelNotConnected, "530", "no connector for the tunnel (error 1033)"),
    (OriginDown, "502", "tunnel up, origin down"),
    (OriginTimeout, "524", "origin timeout"),
    (AccessDenied, "access", "blocked by Cloudflare Access"),
    (WrongEndpoint, "404", "wrong path"),
    (DNSFailure, "dns", "the name does not resolve"),
    (TLSFailure, "tls", "TLS failure"),
    (RequestTimeout, "timeout", "timed out"),
    (ConnectFailure, "connect", "cannot connect"),
    (PistonError, "not piston", "not a Piston answer"),
)


def symptom(error: PistonError) -> tuple[str, str]:
    """(symptom key, short description, with the HTTP status when there was one) for ``error``."""
    status = getattr(error, "status_code", None)
    for cls, key, text in SYMPTOMS:
        if isinstance(error, cls):
            return key, f"HTTP {status}: {text}" if status else text
    return "not piston", str(error)  # pragma: no cover - PistonError closes the table


# What the packages API's answers to an install mean, one table for every installer (Cluster.install_runtime's
# outcome and the shell installer the VMs' cloud-init runs): (status, text the body must contain, outcome,
# what the installer does: "done", "give up" or — for anything not listed — retry).
PACKAGE_INSTALL_ANSWERS: tuple[tuple[int, str, str, str], ...] = (
    (200, "", "installed", "done"),
    (500, "Already installed", "already installed", "done"),
    (404, "", "the package index has no such package", "give up"),
)


def install_outcome(status: int | None, body: str) -> tuple[str, str]:
    """(outcome, action) for an answer to ``POST /api/v2/packages`` (status None: no answer at all)."""
    for code, needle, outcome, action in PACKAGE_INSTALL_ANSWERS:
        if status == code and needle in body:
            return outcome, action
    if status is None:
        return "Piston did not answer on 127.0.0.1:2000", "retry"
    return f"HTTP {status}", "retry"


def install_answer_shell(status_var: str, body_file: str) -> list[str]:
    """The shell lines (for the VMs' installer) that act on :data:`PACKAGE_INSTALL_ANSWERS`: ``return 0`` for
    "done", ``return 2`` for "give up"; anything else falls through to the retry."""
    lines = []
    for code, needle, outcome, action in PACKAGE_INSTALL_ANSWERS:
        test = f'[ "${status_var}" = {code} ]'
        if needle:
            test += f" && grep -q {shlex.quote(needle)} {body_file}"
        result = "return 0" if action == "done" else "return 2"
        lines.append(f'if {test}; then log "$language $version: {outcome}"; {result}; fi')
    return lines


def _chain(exc: BaseException) -> list[BaseException]:
    seen: list[BaseException] = []
    cur: BaseException | None = exc
    while cur is not None and cur not in seen:
        seen.append(cur)
        cur = cur.__cause__ or cur.__context__
    return seen


_DNS_TEXT = re.compile(
    r"name or service not known|nodename nor servname|getaddrinfo failed|name resolution|"
    r"no address associated|\[Errno -[235]\]",
    re.IGNORECASE,
)
_TLS_TEXT = re.compile(r"\bSSL\b|\bTLS\b|certificate|CERTIFICATE_VERIFY_FAILED|WRONG_VERSION_NUMBER", re.IGNORECASE)


def error_from_transport(exc: httpx.HTTPError, *, url: str) -> TransportError:
    """An httpx exception with no HTTP answer → DNSFailure / TLSFailure / ConnectFailure / RequestTimeout."""
    import httpx

    url = display_url(url)
    host = urlsplit(url).hostname or url
    chain = _chain(exc)
    reason = str(exc) or type(exc).__name__
    if any(isinstance(e, socket.gaierror) for e in chain) or _DNS_TEXT.search(reason):
        return DNSFailure(
            f"the host name {host!r} does not resolve ({reason}): the tunnel's CNAME record is missing or "
            "not yet "
            "propagated. Check the hostname in CODECAPSULE_PISTON_URL, and `codecapsule cluster status` for "
            "the "
            "DNS record (re-run deploy to recreate it).",
            url=url,
        )
    if any(isinstance(e, ssl.SSLError | ssl.CertificateError) for e in chain) or (
        isinstance(exc, httpx.ConnectError) and _TLS_TEXT.search(reason)
    ):
        return TLSFailure(
            f"the TLS connection to {host!r} failed ({reason}): the certificate is not trusted or the "
            "server does "
            "not speak https on that port. Use the tunnel's https:// hostname (Cloudflare serves a valid "
            "certificate), or http:// for a plain local server; check the clock and any TLS-intercepting "
            "proxy.",
            url=url,
        )
    if isinstance(exc, httpx.ConnectTimeout):
        return ConnectFailure(
            f"could not connect to {host!r} in time ({reason}): the host is unreachable from here. Check "
            "the URL "
            "and your network (firewall, proxy).",
            url=url,
        )
    if isinstance(exc, httpx.TimeoutException):
        return RequestTimeout(
            f"{url} did not answer within the deadline ({type(exc).__name__}): the cluster is overloaded or "
            "a job "
            "runs much longer than its limits — scale up (`codecapsule cluster scale`), lower the batch "
            "concurrency, or raise CODECAPSULE_REQUEST_TIMEOUT.",
            url=url,
        )
    if isinstance(exc, httpx.ConnectError):
        return ConnectFailure(
            f"could not connect to {url} ({reason}): nothing is listening there. Check "
            "CODECAPSULE_PISTON_URL "
            "(host and port); for a local Piston, that it is running.",
            url=url,
        )
    return ConnectFailure(
        f"the connection to {url} broke before an answer came ({type(exc).__name__}: {reason}): the server "
        "or a "
        "proxy reset it. This is usually transient; if it persists, check `codecapsule cluster "
        "status`.",
        url=url,
    )


# -- retries ------------------------------------------------------------------------------------------


def retry_delay(
    error: PistonError, attempt: int, *, jitter: float, base: float = 0.2, cap: float = 5.0
) -> float | None:
    """Seconds to wait before repeating a request that failed with ``error``; None = do not repeat.

    ``attempt`` counts from 0 (the first retry); ``jitter`` is a number in [0, 1) from the caller's RNG, so
    this stays a pure function. Retried: connection failures (refused/reset — never DNS or TLS, which a retry
    cannot fix; never read timeouts, whose job is still running) and the statuses in :data:`RETRY_STATUSES`.
    A 429 waits what ``Retry-After`` says (plus a little jitter so a whole class does not come back at once).
    """
    if isinstance(error, RateLimited) and error.retry_after is not None:
        return float(error.retry_after) + 0.1 * jitter * min(1.0, float(error.retry_after))
    retryable = isinstance(error, ConnectFailure) or (
        isinstance(error, HTTPStatusError) and error.status_code in RETRY_STATUSES
    )
    if not retryable:
        return None
    return backoff_delay(attempt, jitter=jitter, base=base, cap=cap)


def backoff_delay(attempt: int, *, jitter: float, base: float = 0.2, cap: float = 5.0) -> float:
    """Exponential backoff with "equal jitter": half of ``base·2^attempt`` (capped) fixed, half random."""
    delay: float = min(cap, base * 2.0**attempt)
    return delay / 2 + delay / 2 * jitter
