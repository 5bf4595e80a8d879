"""PistonEngine and AsyncPistonEngine: the Piston v2 API over one pooled keep-alive httpx client each.

The two engines share everything except I/O. Each operation is written once, as a *flow*: a generator that
yields what it needs done (``_Send`` a request, ``_Sleep`` before a retry) and receives the outcome. The sync
engine drives flows with ``httpx.Client`` and ``time.sleep``; the async one with ``httpx.AsyncClient`` and
``asyncio.sleep``. Request building and answer parsing are the pure functions of :mod:`.piston_protocol`.

Retries (bounded by ``Settings.retries``, exponential backoff with jitter, every one logged at WARNING on the
``codecapsule.piston`` logger): connection refused/reset, 429 (after ``Retry-After``), 502, 503, 504 and 530.
Never retried: 4xx validation answers, DNS and TLS failures (a retry cannot fix them), 524 and read timeouts
(Piston has the job and is slow: repeating it doubles the load on an overloaded cluster).
The whole call — every attempt and every wait — fits in one deadline: ``Settings.request_timeout`` plus the
time the job may legitimately take (its compile + run limits, or Piston's defaults).

The Cloudflare Access service-token headers are set once on the httpx client; they are never logged, never in
a repr and never in a message.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import json
import logging
import random
import socket
import threading
import time
from collections.abc import Generator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from .._errors import (
    BadRequest,
    NoEndpointConfigured,
    PistonError,
    ProtocolError,
    RequestTimeout,
    RuntimeNotInstalled,
    TransportError,
)
from .._jobs import Job
from .._redact import display_url, redact, url_secrets
from .._results import Result
from .._settings import Settings
from .base import EngineInfo
from .piston_protocol import (
    API_PREFIX,
    AnswerReader,
    Package,
    Runtime,
    clamp_to_server,
    configured_limit_in,
    error_from_status,
    error_from_transport,
    execute_payload,
    install_payload,
    job_time_budget,
    parse_json,
    parse_packages,
    parse_runtimes,
    resolve_runtime,
    result_from_response,
    retry_delay,
    runtime_not_installed,
)
from .piston_shape import shape

if TYPE_CHECKING:
    import httpx

    from ._live import AsyncLiveRun, LiveIO, LiveRun

__all__ = ["AsyncPistonEngine", "Package", "PistonEngine", "Runtime"]

log = logging.getLogger("codecapsule.piston")
T = TypeVar("T")

# Installing a runtime downloads and unpacks a package on every VM: minutes, not seconds.
INSTALL_DEADLINE = 900.0
_CONNECT_TIMEOUT = 10.0


@dataclass(frozen=True)
class _Send:
    method: str
    path: str
    body: bytes | None
    timeout: float  # seconds left before the call's deadline


@dataclass(frozen=True)
class _Sleep:
    seconds: float


@dataclass(frozen=True)
class _Answer:
    status: int
    headers: Mapping[str, str]  # httpx.Headers: case-insensitive
    body: bytes


_Outcome = _Answer | TransportError | None
_Flow = Generator[_Send | _Sleep, _Outcome, T]


def _version() -> str:
    from .. import __version__

    return __version__


class _PistonCore:
    """What both engines share: settings, headers, the runtimes cache and every flow."""

    name = "piston"

    def __init__(self, settings: Settings) -> None:
        if not settings.piston_url:
            raise NoEndpointConfigured(
                "no Piston URL is configured: set CODECAPSULE_PISTON_URL or pass "
                "Client(piston_url='https://tunnel.example.edu'), or use the local engine (engine='local')."
            )
        self.settings = settings
        self.base_url: str = settings.piston_url
        self._access = bool(settings.access_headers)
        self._headers = {
            "Content-Type": "application/json",
            "Accept": "application/json",
            "Accept-Encoding": "gzip",  # the only compression AnswerReader inflates (under its size cap)
            "User-Agent": f"codecapsule/{_version()}",
            **settings.access_headers,
        }
        # every value that must never be shown, even when a proxy echoes the request's headers back
        self._secrets = (*settings.access_headers.values(), *url_secrets(settings.piston_url))
        self._runtimes: list[Runtime] | None = None
        self._names: dict[str, str] = {}  # our language → the server's name for it, learnt from /runtimes
        self._caps: dict[str, dict[str, int]] = {}  # language → Piston limit field → the server's configured limit
        self._rng = random.Random()
        self._rng_lock = threading.Lock()

    def __repr__(self) -> str:
        access = "with Access service token" if self._access else "no Access token"
        return f"<{type(self).__name__} {display_url(self.base_url)} ({access})>"

    @property
    def cached_runtimes(self) -> list[Runtime] | None:
        """The runtimes list from the last fetch (None before the first)."""
        return None if self._runtimes is None else list(self._runtimes)

    def _redacted(self, error: PistonError) -> PistonError:
        """``error`` with every secret blanked from its message and the answer excerpt it keeps."""
        if self._secrets:
            error.args = tuple(redact(a, self._secrets) if isinstance(a, str) else a for a in error.args)
            if isinstance(getattr(error, "body", None), str):
                error.body = redact(error.body, self._secrets)  # type: ignore[attr-defined]
        return error

    def _jitter(self) -> float:
        with self._rng_lock:
            return self._rng.random()

    # -- the one request loop: deadline, retries, logging --------------------------------------------

    def _call(
        self, method: str, path: str, body: bytes | None, deadline: float, *, packages: bool = False
    ) -> _Flow[Any]:
        """Send one API request (retrying transient failures) and return its decoded JSON."""
        url = self.base_url + path
        attempt = 0
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise RequestTimeout(
                    f"{display_url(url)} gave no usable answer before the deadline: the cluster is "
                    "overloaded or "
                    "down — scale up (`codecapsule cluster scale`) or raise CODECAPSULE_REQUEST_TIMEOUT.",
                    url=display_url(url),
                )
            outcome = yield _Send(method, path, body, remaining)
            if isinstance(outcome, _Answer):
                if 200 <= outcome.status < 300:
                    return parse_json(outcome.body, url=url, what=f"the answer to {method} {path}")
                error: PistonError = error_from_status(
                    outcome.status,
                    outcome.body,
                    outcome.headers,
                    url=url,
                    base_url=self.base_url,
                    access_sent=self._access,
                    packages=packages,
                )
            else:
                assert outcome is not None
                error = outcome
            error = self._redacted(error)
            delay = retry_delay(error, attempt, jitter=self._jitter()) if attempt < self.settings.retries else None
            if delay is None:
                raise error
            if time.monotonic() + delay >= deadline:
                log.warning(
                    "Piston %s %s failed (%s); not retrying: the deadline is too close", method, path, _brief(error)
                )
                raise error
            attempt += 1
            log.warning(
                "Piston %s %s failed (%s); retry %d/%d in %.2f s",
                method,
                path,
                _brief(error),
                attempt,
                self.settings.retries,
                delay,
            )
            yield _Sleep(delay)

    # -- flows --------------------------------------------------------------------------------------

    def _runtimes_flow(self) -> _Flow[list[Runtime]]:
        deadline = time.monotonic() + self.settings.request_timeout
        data = yield from self._call("GET", f"{API_PREFIX}/runtimes", None, deadline)
        runtimes = parse_runtimes(data, url=self.base_url + f"{API_PREFIX}/runtimes")
        self._runtimes = runtimes
        return list(runtimes)

    def _execute_flow(self, job: Job) -> _Flow[Result]:
        deadline = time.monotonic() + self.settings.request_timeout + job_time_budget(job)
        path = f"{API_PREFIX}/execute"
        name = self._names.get(job.language, job.language)
        shaped = shape(job)
        refreshed = False
        while True:
            # Limits above what the server allows are lowered to its limits (learnt from its 400 answers), with
            # a note on the Result: the same job gives the same note every time, never a BadRequest.
            sent, notes = clamp_to_server(job, self._caps.get(job.language, {}))
            body = json.dumps(execute_payload(sent, language=name, shaped=shaped), separators=(",", ":")).encode()
            try:
                data = yield from self._call("POST", path, body, deadline)
            except RuntimeNotInstalled as exc:
                if refreshed:
                    raise
                refreshed = True
                # The server may know the language under another name or alias: refresh once and look.
                try:
                    runtimes: list[Runtime] | None = yield from self._runtimes_flow()
                except PistonError:
                    runtimes = None
                found = resolve_runtime(runtimes or (), job.language, job.version)
                if found is not None and found.language != name:
                    log.info("Piston knows %s as %r; using that name", job.language, found.language)
                    self._names[job.language] = name = found.language
                    continue
                raise runtime_not_installed(
                    exc.language or job.language,
                    exc.version or job.version,
                    runtimes,
                    url=self.base_url + path,
                    body=exc.body.encode(),
                ) from None
            except BadRequest as exc:
                learnt = configured_limit_in(400, exc.body.encode())
                caps = self._caps.setdefault(job.language, {})
                if learnt is None or caps.get(learnt[0]) == learnt[1]:
                    raise
                log.info("Piston allows at most %s=%d for %s; lowering it", learnt[0], learnt[1], job.language)
                caps[learnt[0]] = learnt[1]
                continue
            return result_from_response(
                job, data, url=self.base_url + path, limits=sent.limits, shaped=shaped, notes=notes
            )

    def _root_flow(self) -> _Flow[str]:
        deadline = time.monotonic() + self.settings.request_timeout
        data = yield from self._call("GET", "/", None, deadline)
        message = data.get("message") if isinstance(data, dict) else None
        if not isinstance(message, str) or "piston" not in message.lower():
            raise ProtocolError(
                f"{display_url(self.base_url)}/ answered {str(data)[:80]!r}, not Piston's version message: check "
                "that the URL is the cluster's Piston server.",
                url=display_url(self.base_url),
            )
        return message

    def _packages_flow(self) -> _Flow[list[dict[str, Any]]]:
        deadline = time.monotonic() + self.settings.request_timeout
        path = f"{API_PREFIX}/packages"
        data = yield from self._call("GET", path, None, deadline, packages=True)
        return [p.to_dict() for p in parse_packages(data, url=self.base_url + path)]

    def _package_change_flow(self, method: str, language: str, version: str) -> _Flow[dict[str, Any]]:
        deadline = time.monotonic() + max(self.settings.request_timeout, INSTALL_DEADLINE)
        path = f"{API_PREFIX}/packages"
        body = json.dumps(install_payload(language, version)).encode()
        data = yield from self._call(method, path, body, deadline, packages=True)
        self._runtimes = None  # the installed set changed
        self._names.clear()
        return data if isinstance(data, dict) else {"answer": data}

    # -- live runs (/api/v2/connect): one loop for both engines, on the LiveRun's thread ----------------

    def _live(self, job: Job, interactive: bool, io: LiveIO) -> Result:
        """The producer of a live run (:mod:`._live`): the messages moved by ``websockets``' sync client, what
        they mean decided by :class:`.piston_live.LiveSession`."""
        from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus
        from websockets.sync.client import connect

        from .piston_live import RETRY, LiveSession

        while True:
            session = LiveSession(self, job, interactive, io)
            try:
                # our own socket: websockets then never follows a redirect (a 302 to Access's login is an
                # AccessDenied, as on the execute path, and the Access headers never go to another host)
                sock = socket.create_connection(session.address, timeout=self.settings.request_timeout)
            except OSError as exc:
                raise session.transport_error(exc) from None
            try:
                ws = connect(
                    session.url,
                    sock=sock,
                    additional_headers=session.headers,
                    user_agent_header=None,
                    open_timeout=self.settings.request_timeout,
                    max_size=None,
                    compression=None,
                )
            except Exception as exc:
                sock.close()
                refused = next((e for e in (exc, exc.__cause__, exc.__context__) if isinstance(e, InvalidStatus)), None)
                if refused is not None:
                    answer = refused.response
                    raise session.handshake_error(
                        answer.status_code, bytes(answer.body or b""), answer.headers
                    ) from None
                if isinstance(exc, OSError | InvalidHandshake | TimeoutError):
                    raise session.transport_error(exc) from None
                raise
            with ws:
                try:
                    for message in session.opening():
                        ws.send(message)
                    while not session.over:
                        try:
                            raw: str | bytes | None = ws.recv(timeout=session.tick)
                        except TimeoutError:
                            raw = None
                        now = time.monotonic()
                        if raw is not None:
                            session.on_message(raw, now)
                        for message in session.due(now):
                            try:
                                ws.send(message)
                            except ConnectionClosed:
                                # a send can be the first to hear of the close: what the server sent before it is
                                # still queued, and the next recv() returns it before it raises ConnectionClosed
                                break
                except ConnectionClosed as exc:
                    said = exc.rcvd
                    session.closed(said.code if said else None, said.reason if said else "")
            outcome = session.outcome()
            if outcome != RETRY:
                assert isinstance(outcome, Result)
                return outcome

    def _live_run(self, job: Job, interactive: bool, *, asynchronous: bool) -> Any:
        from .._verdicts import internal_error
        from ._live import AsyncLiveRun, LiveRun

        kind = AsyncLiveRun if asynchronous else LiveRun
        return kind(
            lambda io: self._live(job, interactive, io),
            lambda exc: internal_error(job, self.name, exc),
            interactive=interactive,
        )

    def _info(self, runtimes: list[Runtime] | None, note: str | None) -> EngineInfo:
        languages: dict[str, str] = {}
        for rt in runtimes or ():
            languages[rt.language] = (
                f"{languages[rt.language]}, {rt.version}" if rt.language in languages else rt.version
            )
        notes = [note] if note else []
        if self._access:
            notes.append("requests carry a Cloudflare Access service token")
        return EngineInfo(
            name=self.name,
            isolation="each program runs in Piston's isolate sandbox on the cluster's VMs (no network, "
            "process, "
            "time and memory limits), reached through the Cloudflare Tunnel",
            endpoint=display_url(self.base_url),
            languages=languages,
            notes=tuple(notes),
        )


def _too_slow(url: str, seconds: float) -> RequestTimeout:
    return RequestTimeout(
        f"{display_url(url)} did not finish its answer within the deadline ({seconds:.3g} s): the server is "
        "overloaded, or something between here and Piston holds the answer back. Scale up (`codecapsule cluster "
        "scale`) or raise CODECAPSULE_REQUEST_TIMEOUT.",
        url=display_url(url),
    )


class _Watchdog:
    """Shuts a request's socket down at its deadline: one thread per engine, started on first use (a
    ``threading.Timer`` per request would cost a thread start on every call)."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._heap: list[tuple[float, int, socket.socket]] = []
        self._live: set[int] = set()
        self._count = 0
        self._thread: threading.Thread | None = None
        self._closed = False

    def arm(self, deadline: float, sock: socket.socket) -> int:
        with self._cond:
            self._count += 1
            heapq.heappush(self._heap, (deadline, self._count, sock))
            self._live.add(self._count)
            if self._thread is None:
                self._thread = threading.Thread(target=self._loop, name="codecapsule-piston-deadlines", daemon=True)
                self._thread.start()
            self._cond.notify()
            return self._count

    def disarm(self, token: int) -> None:
        with self._cond:
            self._live.discard(token)

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify()

    def _loop(self) -> None:
        with self._cond:
            while not self._closed:
                while self._heap and self._heap[0][1] not in self._live:
                    heapq.heappop(self._heap)
                if not self._heap:
                    self._cond.wait()
                    continue
                delay = self._heap[0][0] - time.monotonic()
                if delay > 0:
                    self._cond.wait(delay)
                    continue
                _, token, sock = heapq.heappop(self._heap)
                self._live.discard(token)
                _shutdown(sock)


def _socket_of(response: httpx.Response) -> socket.socket | None:
    stream = response.extensions.get("network_stream")
    sock = stream.get_extra_info("socket") if stream is not None else None
    return sock if isinstance(sock, socket.socket) else None


def _shutdown(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)


def _brief(error: PistonError) -> str:
    status = getattr(error, "status_code", None)
    head = str(error).split(": ", 1)[-1] if status else str(error)
    head = head if len(head) <= 160 else head[:159] + "…"
    return f"{type(error).__name__}{f' {status}' if status else ''}: {head}"


def _limits(max_connections: int = 100) -> httpx.Limits:
    import httpx

    return httpx.Limits(max_connections=max_connections, max_keepalive_connections=64, keepalive_expiry=30.0)


def _timeout(seconds: float) -> httpx.Timeout:
    import httpx

    return httpx.Timeout(seconds, connect=min(seconds, _CONNECT_TIMEOUT))


class PistonEngine(_PistonCore):
    """Runs jobs on a Piston server, synchronously. Thread-safe: one pooled keep-alive connection set.

    >>> engine = PistonEngine(Settings(piston_url="https://tunnel.example.edu"))   # doctest: +SKIP
    >>> engine.run(Job.create("print(42)", "python")).stdout                       # doctest: +SKIP
    '42\\n'
    """

    def __init__(self, settings: Settings, *, transport: httpx.BaseTransport | None = None) -> None:
        super().__init__(settings)
        import httpx

        self._watchdog = _Watchdog()
        self._http = httpx.Client(
            headers=self._headers,
            limits=_limits(),
            http1=True,
            http2=False,
            follow_redirects=False,
            transport=transport,
        )

    def __enter__(self) -> PistonEngine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _drive(self, flow: _Flow[T]) -> T:

        try:
            action = next(flow)
            while True:
                if isinstance(action, _Sleep):
                    time.sleep(action.seconds)
                    action = flow.send(None)
                    continue
                action = flow.send(self._exchange(action))
        except StopIteration as stop:
            value: T = stop.value
            return value
        except PistonError as exc:
            raise self._redacted(exc) from None
        finally:
            flow.close()

    def _exchange(self, action: _Send) -> _Outcome:
        """One request; the body streamed under the caps, and the whole exchange within ``action.timeout``."""
        import httpx

        url = self.base_url + action.path
        deadline = time.monotonic() + action.timeout
        token: int | None = None
        try:
            with self._http.stream(action.method, url, content=action.body, timeout=_timeout(action.timeout)) as r:
                # a server dripping its body byte by byte resets every read timeout: at the deadline the socket
                # is shut down under the read
                sock = _socket_of(r)
                if sock is not None:
                    token = self._watchdog.arm(deadline, sock)
                reader = AnswerReader(r.headers.get("content-encoding"), r.headers.get("content-length"), url=url)
                for chunk in r.iter_raw():
                    reader.feed(chunk)
                    if time.monotonic() > deadline:
                        return _too_slow(url, action.timeout)
                return _Answer(r.status_code, r.headers, reader.body())
        except httpx.HTTPError as exc:
            if time.monotonic() >= deadline:
                return _too_slow(url, action.timeout)
            return error_from_transport(exc, url=url)
        finally:
            if token is not None:
                self._watchdog.disarm(token)

    def run(self, job: Job) -> Result:
        """Execute ``job`` on the server and judge the answer."""
        return self._drive(self._execute_flow(job))

    def stream(self, job: Job, *, interactive: bool = False) -> LiveRun:
        """Run ``job`` live over ``/api/v2/connect``: its events as they happen (see :mod:`.piston_live`)."""
        run: LiveRun = self._live_run(job, interactive, asynchronous=False)
        return run

    def runtimes(self) -> list[Runtime]:
        """The runtimes installed on the server, fetched now (and cached for alias resolution)."""
        return self._drive(self._runtimes_flow())

    def server_version(self) -> str:
        """Piston's answer to ``GET /`` (``"Piston v3.1.1"``); ProtocolError when the address is not Piston."""
        return self._drive(self._root_flow())

    def packages(self) -> list[dict[str, Any]]:
        """Packages the server's index offers: ``{"language", "language_version", "installed"}`` each."""
        return self._drive(self._packages_flow())

    def install(self, language: str, version: str) -> dict[str, Any]:
        """Install a package (``"python", "3.12.0"``; names as :meth:`packages` lists them)."""
        return self._drive(self._package_change_flow("POST", language, version))

    def uninstall(self, language: str, version: str) -> dict[str, Any]:
        return self._drive(self._package_change_flow("DELETE", language, version))

    def info(self) -> EngineInfo:
        """What this engine is; fetches the runtimes (a failure becomes a note, not an exception)."""
        try:
            return self._info(self.runtimes(), None)
        except PistonError as exc:
            return self._info(self.cached_runtimes, f"runtimes unavailable: {exc}")

    def close(self) -> None:
        self._watchdog.close()
        self._http.close()


class AsyncPistonEngine(_PistonCore):
    """The asyncio twin of :class:`PistonEngine` (``arun``, ``aruntimes``, ...), one pooled AsyncClient."""

    def __init__(self, settings: Settings, *, transport: httpx.AsyncBaseTransport | None = None) -> None:
        super().__init__(settings)
        import httpx

        self._http = httpx.AsyncClient(
            headers=self._headers,
            limits=_limits(),
            http1=True,
            http2=False,
            follow_redirects=False,
            transport=transport,
        )

    async def __aenter__(self) -> AsyncPistonEngine:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def _drive(self, flow: _Flow[T]) -> T:

        try:
            action = next(flow)
            while True:
                if isinstance(action, _Sleep):
                    await asyncio.sleep(action.seconds)
                    action = flow.send(None)
                    continue
                action = flow.send(await self._exchange(action))
        except StopIteration as stop:
            value: T = stop.value
            return value
        except PistonError as exc:
            raise self._redacted(exc) from None
        finally:
            flow.close()

    async def _exchange(self, action: _Send) -> _Outcome:
        """One request; the body streamed under the caps, and the whole exchange within ``action.timeout``."""
        import httpx

        url = self.base_url + action.path
        try:
            async with asyncio.timeout(action.timeout):
                async with self._http.stream(
                    action.method, url, content=action.body, timeout=_timeout(action.timeout)
                ) as r:
                    reader = AnswerReader(r.headers.get("content-encoding"), r.headers.get("content-length"), url=url)
                    async for chunk in r.aiter_raw():
                        reader.feed(chunk)
                    return _Answer(r.status_code, r.headers, reader.body())
        except TimeoutError:
            return _too_slow(url, action.timeout)
        except httpx.HTTPError as exc:
            return error_from_transport(exc, url=url)

    async def arun(self, job: Job) -> Result:
        return await self._drive(self._execute_flow(job))

    def astream(self, job: Job, *, interactive: bool = False) -> AsyncLiveRun:
        """:meth:`PistonEngine.stream` for asyncio: the same loop on the run's thread, events handed to the loop."""
        run: AsyncLiveRun = self._live_run(job, interactive, asynchronous=True)
        return run

    async def aruntimes(self) -> list[Runtime]:
        return await self._drive(self._runtimes_flow())

    async def apackages(self) -> list[dict[str, Any]]:
        return await self._drive(self._packages_flow())

    async def ainstall(self, language: str, version: str) -> dict[str, Any]:
        return await self._drive(self._package_change_flow("POST", language, version))

    async def auninstall(self, language: str, version: str) -> dict[str, Any]:
        return await self._drive(self._package_change_flow("DELETE", language, version))

    def info(self) -> EngineInfo:
        """What this engine is, from the cached runtimes (no I/O: call :meth:`aruntimes` first to fill it)."""
        note = None if self._runtimes is not None else "runtimes not fetched yet (await aruntimes())"
        return self._info(self._runtimes, note)

    async def aclose(self) -> None:
        await self._http.aclose()
