# ruff: noqa: E501
"""A Piston-compatible HTTP server on 127.0.0.1 that executes through CodeCapsule's local engine.

It follows ``shared/reference/piston.md`` (Piston v3.1.1 as observed) to the letter: every endpoint, status
code
and message listed there, the runtimes list with aliases and ``runtime`` keys, the packages API, execute's
validation messages, ``{"stack": ...}`` for malformed JSON, 415 without a JSON content type, ``404 {"message":
"Not Found"}``, a 500 with an empty body for ``../`` file names, the per-stream output cap that kills the
program
and drops the chunk that crossed it, the compile stage copied into ``run`` when compilation fails, Java
without a
compile stage (a compile error is a failed run ending in ``error: compilation failed``), signals reported the
way a shell reports them (exit 128+n, no signal), and stdin with a trailing newline.

Fault switches (:class:`Faults`) imitate what a client meets behind Cloudflare: N× 502/503/530 then success,
429 with Retry-After, slow answers, connection resets, malformed JSON, and Cloudflare Access.

Speed: ``ThreadingHTTPServer`` with keep-alive stalls ~44 ms per request on Nagle + delayed ACK; Nagle is
disabled (``disable_nagle_algorithm``), so a keep-alive round trip costs well under a millisecond.

    with PistonTestServer() as server:
        client = Client(piston_url=server.url)
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import random
import socket
import ssl
import struct
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from codecapsule import File, Job, Limits, Result, Stage
from codecapsule._errors import CodeCapsuleError

__all__ = ["DEFAULT_PACKAGES", "Faults", "PistonTestServer", "RequestRecord"]

VERSION_MESSAGE = "Piston v3.1.1"

# package name, version, runtimes it provides: (language, aliases, runtime key or None)
_PackageSpec = tuple[str, str, tuple[tuple[str, tuple[str, ...], str | None], ...]]
DEFAULT_PACKAGES: tuple[tuple[_PackageSpec, bool], ...] = (
    (("gcc", "12.2.0", (("c", ("gcc",), "gcc"), ("c++", ("cpp", "g++"), "gcc"))), True),
    (("java", "17.0.15", (("java", (), None),)), True),
    (("node", "20.20.2", (("javascript", ("node-javascript", "node-js", "javascript", "js"), "node"),)), True),
    (("python", "3.11.2", (("python", ("py", "py3", "python3", "python3.11"), None),)), True),
    (("python", "3.12.0", (("python", ("py", "py3", "python3", "python3.12"), None),)), False),
    (("rust", "1.68.2", (("rust", ("rs",), None),)), False),
)
# languages with a compile stage on Piston (java 17 uses the source launcher)
_COMPILED = {"c", "c++"}
_LIMIT_NAMES = ("compile_timeout", "run_timeout", "compile_cpu_time", "run_cpu_time",
                "compile_memory_limit", "run_memory_limit")


@dataclass
class RequestRecord:
    """One request as the server saw it (for assertions: counts, order, timestamps, headers)."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    received: float                       # time.monotonic() when the request line arrived
    answered: float = 0.0                 # when the answer was written (or the connection dropped)
    status: int | None = None             # None: the connection was reset instead
    fault: str | None = None              # which injected fault answered, if any
    executed: bool = False                # the program really ran


@dataclass
class Faults:
    """Switches for failures. Queued faults apply to the next API requests, in order, before any execution."""

    queue: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    service_time: float = 0.0                       # seconds every API request takes before it is handled
    require_access: tuple[str, str] | None = None   # (client id, secret) Cloudflare Access demands
    fixed_response: bytes | None = None             # answer every execute with this body (benchmarks)
    transient_rate: float = 0.0                     # share of distinct requests that fail transiently
    transient_kinds: tuple[str, ...] = ("502", "503", "429", "reset", "530")
    transient_max: int = 1                          # failures per distinct request, at most
    seed: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _per_body: Counter[str] = field(default_factory=Counter, repr=False)

    def fail_next(self, n: int = 1, status: int = 502) -> None:
        """The next ``n`` requests get ``status`` (502, 503, 504, 524, 530...) with Cloudflare-like bodies."""
        with self._lock:
            self.queue.extend([("status", {"status": status})] * n)

    def rate_limit_next(self, n: int = 1, retry_after: str = "1") -> None:
        with self._lock:
            self.queue.extend([("status", {"status": 429, "retry_after": retry_after})] * n)

    def reset_next(self, n: int = 1) -> None:
        """Drop the connection (RST) without answering, ``n`` times."""
        with self._lock:
            self.queue.extend([("reset", {})] * n)

    def malformed_next(self, n: int = 1) -> None:
        """Answer 200 with a body that is not valid JSON."""
        with self._lock:
            self.queue.extend([("malformed", {})] * n)

    def answer_next(self, status: int, body: bytes, headers: dict[str, str] | None = None, n: int = 1) -> None:
        """Answer the next ``n`` requests with exactly this status, body and headers."""
        with self._lock:
            self.queue.extend([("raw", {"status": status, "body": body, "headers": headers or {}})] * n)

    def _take(self, body: bytes) -> tuple[str, dict[str, Any]] | None:
        with self._lock:
            if self.queue:
                return self.queue.pop(0)
            if self.transient_rate <= 0:
                return None
            key = hashlib.sha256(body).hexdigest()
            rng = random.Random(f"{self.seed}:{key}")
            if rng.random() >= self.transient_rate or self._per_body[key] >= self.transient_max:
                return None
            self._per_body[key] += 1
            kind = rng.choice(self.transient_kinds)
        if kind == "reset":
            return ("reset", {})
        if kind == "429":
            return ("status", {"status": 429, "retry_after": "0"})
        return ("status", {"status": int(kind)})


_CLOUDFLARE_BODIES = {
    502: "<html><title>502 Bad Gateway</title><body>Bad gateway. The web server reported a bad gateway error."
         "</body></html>",
    503: "<html><title>503 Service Unavailable</title><body>Service unavailable.</body></html>",
    504: "<html><title>504 Gateway Timeout</title><body>Gateway time-out.</body></html>",
    524: "<html><title>524: A timeout occurred</title><body>Error code 524</body></html>",
    530: "error code: 1033",
    429: '{"message":"Too many requests"}',
}


class PistonTestServer:
    """A Piston v3.1.1 look-alike on 127.0.0.1 (free port, own thread). Use as a context manager.

    ``execute``: how programs run — by default ``LocalEngine().run``; tests may pass another callable.
    ``output_max_size``: PISTON_OUTPUT_MAX_SIZE (bytes per stream). ``chunk_size``: how much output arrives
    at once
    from the program's pipes; the chunk that crosses the cap is dropped (Piston reads 64 KiB pipe chunks, so a
    cap of 1024 usually leaves the stream empty — as observed).
    """

    def __init__(
        self,
        *,
        execute: Callable[[Job], Result] | None = None,
        packages: Iterable[tuple[_PackageSpec, bool]] = DEFAULT_PACKAGES,
        output_max_size: int = 1024,
        chunk_size: int = 65536,
        compile_timeout: int = 10000,
        run_timeout: int = 3000,
        compile_cpu_time: int = 10000,
        run_cpu_time: int = 3000,
        compile_memory_limit: int = -1,
        run_memory_limit: int = -1,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self._execute = execute
        self._engine: Any = None
        self.packages: list[list[Any]] = [[spec, installed] for spec, installed in packages]
        self.output_max_size = output_max_size
        self.chunk_size = chunk_size
        self.config = {"compile_timeout": compile_timeout, "run_timeout": run_timeout,
                       "compile_cpu_time": compile_cpu_time, "run_cpu_time": run_cpu_time,
                       "compile_memory_limit": compile_memory_limit, "run_memory_limit": run_memory_limit}
        self.faults = Faults()
        self.log: list[RequestRecord] = []
        self.executions: list[Job] = []
        # client (host, port) pairs seen: one per TCP connection
        self.connections: set[tuple[str, int]] = set()
        self._lock = threading.Lock()
        self._ssl = ssl_context
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        # notified on every request (tests wait on it, not on sleep)
        self.request_seen = threading.Condition()

    # -- lifecycle -----------------------------------------------------------------------------------

    def start(self) -> PistonTestServer:
        server = self

        class Handler(_Handler):
            owner = server

        httpd = _Server(("127.0.0.1", 0), Handler)
        httpd.daemon_threads = True
        if self._ssl is not None:
            httpd.socket = self._ssl.wrap_socket(httpd.socket, server_side=True)
        self._httpd = httpd
        self._thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05},
                                        name="piston-test-server", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None
        if self._engine is not None:
            self._engine.close()
            self._engine = None

    def __enter__(self) -> PistonTestServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        assert self._httpd is not None, "server not started"
        return int(self._httpd.server_address[1])

    @property
    def url(self) -> str:
        return f"{'https' if self._ssl else 'http'}://127.0.0.1:{self.port}"

    # -- what tests look at --------------------------------------------------------------------------

    def requests(self, path: str | None = None) -> list[RequestRecord]:
        with self._lock:
            return [r for r in self.log if path is None or r.path == path]

    def execute_requests(self) -> list[RequestRecord]:
        return self.requests("/api/v2/execute")

    def wait_for_requests(self, n: int, timeout: float = 30.0) -> bool:
        """Block until at least ``n`` requests have arrived (a condition, not a sleep)."""
        with self.request_seen:
            return self.request_seen.wait_for(lambda: len(self.log) >= n, timeout)

    # -- state ---------------------------------------------------------------------------------------

    def runtimes(self) -> list[dict[str, Any]]:
        out = []
        for (_, version, provides), installed in self.packages:
            if not installed:
                continue
            for language, aliases, runtime in provides:
                item: dict[str, Any] = {"language": language, "version": version, "aliases": list(aliases)}
                if runtime is not None:
                    item["runtime"] = runtime
                out.append(item)
        return out

    def _engine_run(self, job: Job) -> Result:
        if self._execute is not None:
            return self._execute(job)
        with self._lock:
            if self._engine is None:
                from codecapsule.engines.local import LocalEngine

                self._engine = LocalEngine()
            engine = self._engine
        result: Result = engine.run(job)
        return result

    # -- the API -------------------------------------------------------------------------------------

    def handle(self, method: str, path: str, headers: dict[str, str], body: bytes
               ) -> tuple[int, bytes, dict[str, str]]:
        if path == "/" and method == "GET":
            return _json(200, {"message": VERSION_MESSAGE})
        if path == "/api/v2/runtimes" and method == "GET":
            return _json(200, self.runtimes())
        if path == "/api/v2/packages":
            if method == "GET":
                return _json(200, [{"language": spec[0], "language_version": spec[1], "installed": inst}
                                   for spec, inst in self.packages])
            if method in ("POST", "DELETE"):
                return self._package_change(method, headers, body)
        if path == "/api/v2/execute" and method == "POST":
            return self._execute_endpoint(headers, body)
        return _json(404, {"message": "Not Found"})

    def _parse(self, headers: dict[str, str], body: bytes) -> tuple[Any, tuple[int, bytes, dict[str, str]] | None]:
        if "application/json" not in headers.get("content-type", ""):
            return None, _json(415, {"message": "requests must be of type application/json"})
        try:
            return json.loads(body), None
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            pos = getattr(exc, "pos", 0)
            return None, _json(400, {"stack": f"SyntaxError: Unexpected token in JSON at position {pos}\n"
                                              "    at JSON.parse (<anonymous>)\n    at parse (body-parser/lib/types/json.js)"})

    def _package_change(self, method: str, headers: dict[str, str], body: bytes) -> tuple[int, bytes, dict[str, str]]:
        data, error = self._parse(headers, body)
        if error is not None:
            return error
        language, version = (data or {}).get("language"), (data or {}).get("version")
        with self._lock:
            for entry in self.packages:
                spec = entry[0]
                if spec[0] == language and (version in ("*", spec[1])):
                    if method == "POST":
                        if entry[1]:
                            return _json(500, {"message": "Already installed"})
                        entry[1] = True
                        return _json(200, {"language": spec[0], "version": spec[1]})
                    if not entry[1]:
                        return _json(500, {"message": f"{language}-{version} is not installed"})
                    entry[1] = False
                    return _json(200, {"language": spec[0], "version": spec[1]})
        if method == "POST":
            return _json(404, {"message": f"Requested package {language}-{version} does not exist"})
        return _json(500, {"message": f"{language}-{version} is not installed"})

    def _execute_endpoint(self, headers: dict[str, str], body: bytes) -> tuple[int, bytes, dict[str, str]]:
        data, error = self._parse(headers, body)
        if error is not None:
            return error
        if self.faults.fixed_response is not None:
            return 200, self.faults.fixed_response, {"Content-Type": "application/json; charset=utf-8"}
        if not isinstance(data, dict):
            return _message(400, "language is required as a string")
        problem = _validate(data, self.config)
        if problem is not None:
            return _message(400, problem)
        language, version = data["language"], data["version"]
        runtime = self._find_runtime(language, version)
        if runtime is None:
            return _message(400, f"{language}-{version} runtime is unknown")
        files = data["files"]
        if any(".." in str(f.get("name", "")).split("/") for f in files):
            return 500, b"", {}
        try:
            job = self._job(runtime["language"], data)
        except CodeCapsuleError:
            return 500, b"", {}
        with self._lock:
            self.executions.append(job)
        try:
            result = self._engine_run(job)
        except CodeCapsuleError as exc:  # e.g. a toolchain missing: Piston's own internal error
            stage = {"stdout": "", "stderr": "", "output": "", "code": None, "signal": None, "message": str(exc),
                     "status": "XX", "cpu_time": 0, "wall_time": 0, "memory": 0}
            return _json(200, {"language": runtime["language"], "version": runtime["version"], "run": stage})
        return _json(200, self._answer(runtime, result))

    def _find_runtime(self, language: str, version: str) -> dict[str, Any] | None:
        matches = [rt for rt in self.runtimes()
                   if language in (rt["language"], *rt["aliases"]) and _version_ok(rt["version"], version)]
        matches.sort(key=lambda rt: [int(p) if p.isdigit() else 0 for p in rt["version"].split(".")])
        return matches[-1] if matches else None

    def _job(self, language: str, data: dict[str, Any]) -> Job:
        files = []
        for f in data["files"]:
            enc = f.get("encoding", "utf8")
            name = f.get("name") or f"file{len(files)}"
            if enc == "base64":
                files.append(File(name, base64.b64decode(f["content"])))
            elif enc == "hex":
                files.append(File(name, bytes.fromhex(f["content"])))
            else:
                files.append(File(name, f["content"]))
        entry = next(i for i, f in enumerate(files) if isinstance(f.content, str))  # first utf8 file
        files.insert(0, files.pop(entry))
        stdin = data.get("stdin") or ""
        if not stdin.endswith("\n"):
            stdin += "\n"  # Piston always adds a trailing newline
        lim = {name: data.get(name, self.config[name]) for name in _LIMIT_NAMES}

        def seconds(ms: int) -> float:
            return 60.0 if ms == 0 else ms / 1000  # 0 means "no limit" on Piston; bounded here for safety

        limits = Limits(
            compile_timeout=seconds(lim["compile_timeout"]), run_timeout=seconds(lim["run_timeout"]),
            compile_cpu_time=seconds(lim["compile_cpu_time"]), run_cpu_time=seconds(lim["run_cpu_time"]),
            memory=lim["run_memory_limit"] if lim["run_memory_limit"] > 0 else None,
            compile_memory=lim["compile_memory_limit"] if lim["compile_memory_limit"] > 0 else None,
            output=max(1024, self.output_max_size), processes=64,
        )
        return Job(language, tuple(files), stdin=stdin, args=tuple(str(a) for a in data.get("args") or ()),
                   version="*", limits=limits)

    def _answer(self, runtime: dict[str, Any], result: Result) -> dict[str, Any]:
        language = runtime["language"]
        answer: dict[str, Any] = {"language": language, "version": runtime["version"]}
        compile_stage, run_stage = result.compile, result.run
        if language == "java":
            # Java 17's single-file source launcher: no compile stage; a compile error is a failed run.
            if run_stage is None and compile_stage is not None:
                stderr = compile_stage.stderr + ("" if compile_stage.stderr.endswith("\n") else "\n")
                stderr += "error: compilation failed\n"
                answer["run"] = {"stdout": "", "stderr": stderr, "output": stderr, "code": 1, "signal": None,
                                 "message": "Exited with error status 1", "status": "RE",
                                 "cpu_time": _ms(compile_stage.cpu_time), "wall_time": _ms(compile_stage.wall_time),
                                 "memory": compile_stage.memory or 0}
                return answer
            compile_stage = None
        if language in _COMPILED and compile_stage is not None:
            answer["compile"] = self._stage(compile_stage)
            if run_stage is None:  # compilation failed: `run` is an exact copy of `compile`
                answer["run"] = dict(answer["compile"])
                return answer
        answer["run"] = self._stage(run_stage) if run_stage is not None else {
            "stdout": "", "stderr": "", "output": "", "code": None, "signal": None, "status": "XX",
            "message": result.error or "internal error", "cpu_time": 0, "wall_time": 0, "memory": 0}
        return answer

    def _stage(self, s: Stage) -> dict[str, Any]:
        stdout, stderr, output = s.stdout, s.stderr, s.output
        code, sig, status, message = s.exit_code, s.signal, s.status, s.message
        if status in ("OL", "EL"):
            # The chunk that crossed the cap is dropped, not cut: keep whole chunks only.
            keep = self.chunk_size
            if status == "OL":
                stdout = stdout[: len(stdout.encode()) // keep * keep]
            else:
                stderr = stderr[: len(stderr.encode()) // keep * keep]
            output = stdout + stderr
            message = "stdout length exceeded" if status == "OL" else "stderr length exceeded"
            code, sig = None, "SIGKILL"
        elif status == "SG" and sig not in (None, "SIGKILL") and code is not None:
            # Piston runs the program through a shell: the signal shows as exit status 128+n and no signal.
            sig, status, message = None, "RE", f"Exited with error status {code}"
        elif status in ("SG", "ML"):
            code, sig, status, message = None, "SIGKILL", "SG", message
        elif status == "RE":
            message = f"Exited with error status {code}"
        return {"stdout": stdout, "stderr": stderr, "output": output, "code": code, "signal": sig,
                "message": message, "status": status, "cpu_time": _ms(s.cpu_time), "wall_time": _ms(s.wall_time),
                "memory": s.memory if s.memory is not None else 0}


def _ms(seconds: float | None) -> int:
    return round((seconds or 0.0) * 1000)


def _json(status: int, value: Any) -> tuple[int, bytes, dict[str, str]]:
    return status, json.dumps(value).encode(), {"Content-Type": "application/json; charset=utf-8"}


def _message(status: int, text: str) -> tuple[int, bytes, dict[str, str]]:
    return _json(status, {"message": text})


def _version_ok(have: str, want: str) -> bool:
    if want in ("*", "x", "latest"):
        return True
    return have.split(".")[: len(want.split("."))] == want.split(".")


def _validate(data: dict[str, Any], config: dict[str, int]) -> str | None:
    """Piston's validation, first failure wins, with its exact messages."""
    if not isinstance(data.get("language"), str):
        return "language is required as a string"
    if not isinstance(data.get("version"), str):
        return "version is required as a string"
    files = data.get("files")
    if not isinstance(files, list):
        return "files is required as an array"
    for i, f in enumerate(files):
        if not isinstance(f, dict) or not isinstance(f.get("content"), str):
            return f"files[{i}].content is required as a string"
    if not any(f.get("encoding", "utf8") == "utf8" for f in files):
        return "files must include at least one utf8 encoded file"
    for name in _LIMIT_NAMES:
        if name not in data:
            continue
        value = data[name]
        if isinstance(value, bool) or not isinstance(value, int | float):
            return f"If specified, {name} must be a number"
        configured = config[name]
        if name.endswith("memory_limit"):
            if value < -1:
                return f"{name} must be non-negative"
            if configured >= 0 and (value < 0 or value > configured):
                return f"{name} cannot exceed the configured limit of {configured}"
            continue
        if value < 0:
            return f"{name} must be non-negative"
        if value > configured:
            return f"{name} cannot exceed the configured limit of {configured}"
    return None


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 256   # the default backlog of 5 drops connections when a batch opens 16+ at once


class _Handler(BaseHTTPRequestHandler):
    owner: PistonTestServer
    protocol_version = "HTTP/1.1"      # keep-alive
    disable_nagle_algorithm = True     # without this, every keep-alive answer waits ~40 ms for a delayed ACK
    server_version = "piston-test"
    sys_version = ""

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _serve(self) -> None:
        owner = self.owner
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        headers = {k.lower(): v for k, v in self.headers.items()}
        path = self.path.split("?", 1)[0]
        record = RequestRecord(self.command, path, headers, body, time.monotonic())
        with owner._lock:
            owner.log.append(record)
            owner.connections.add(self.client_address)
        with owner.request_seen:
            owner.request_seen.notify_all()
        faults = owner.faults
        try:
            if faults.require_access is not None and path.startswith("/api/"):
                cid, secret = faults.require_access
                sent = (headers.get("cf-access-client-id"), headers.get("cf-access-client-secret"))
                if sent == (None, None):
                    record.fault = "access"
                    return self._send(record, 302, b"", {
                        "Location": "https://school.cloudflareaccess.com/cdn-cgi/access/login/piston?redirect_url=%2F"})
                if sent != (cid, secret):
                    record.fault = "access"
                    return self._send(record, 403, b"<html><body>Forbidden</body></html>",
                                      {"Content-Type": "text/html", "cf-ray": "8a1b2c3d4e5f-AMS"})
            fault = faults._take(body) if path.startswith("/api/") else None
            if fault is not None:
                kind, opts = fault
                record.fault = kind if kind != "status" else str(opts["status"])
                if kind == "reset":
                    return self._reset(record)
                if kind == "malformed":
                    return self._send(record, 200, b'{"language":"python","version":"3.11.2","run":{"stdout":',
                                      {"Content-Type": "application/json"})
                if kind == "raw":
                    return self._send(record, opts["status"], opts["body"], opts["headers"])
                status = opts["status"]
                extra = {"Content-Type": "text/html" if status != 429 else "application/json",
                         "Server": "cloudflare", "cf-ray": "8a1b2c3d4e5f-AMS"}
                if "retry_after" in opts:
                    extra["Retry-After"] = opts["retry_after"]
                return self._send(record, status, _CLOUDFLARE_BODIES.get(status, "error").encode(), extra)
            if faults.service_time > 0 and path.startswith("/api/"):
                threading.Event().wait(faults.service_time)  # simulated work, not synchronisation
            status, payload, extra = owner.handle(self.command, path, headers, body)
            record.executed = path == "/api/v2/execute" and status == 200 and faults.fixed_response is None
            self._send(record, status, payload, extra)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True

    def _send(self, record: RecordLike, status: int, body: bytes, headers: dict[str, str]) -> None:
        # recorded before the bytes go out: a client may read the log as soon as it has the answer
        record.status = status
        record.answered = time.monotonic()
        self.send_response(status)
        for k, v in headers.items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _reset(self, record: RequestRecord) -> None:
        # SO_LINGER 0 turns close() into a TCP RST: the client sees "connection reset", no answer.
        with contextlib.suppress(OSError):
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.close_connection = True
        record.answered = time.monotonic()
        with contextlib.suppress(OSError):
            self.connection.close()

    do_GET = do_POST = do_DELETE = do_PUT = do_PATCH = _serve


RecordLike = RequestRecord


def main(argv: list[str] | None = None) -> None:
    """``python -m tests.piston_server [--fixed FILE] [--service-time S]``: serve until stdin closes.

    Prints the URL on its first line. Benchmarks run the server in its own process so that its threads and the
    client do not compete for one GIL.
    """
    import argparse
    import sys

    parser = argparse.ArgumentParser()
    parser.add_argument("--fixed", help="file with the JSON to answer every execute with")
    parser.add_argument("--service-time", type=float, default=0.0)
    args = parser.parse_args(argv)
    with PistonTestServer() as server:
        if args.fixed:
            with open(args.fixed, "rb") as f:
                server.faults.fixed_response = f.read()
        server.faults.service_time = args.service_time
        print(server.url, flush=True)
        sys.stdin.read()


if __name__ == "__main__":
    main()
