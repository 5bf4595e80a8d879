# ruff: noqa: E501
"""A fake Piston v3.1.1 on 127.0.0.1 whose *runtimes* behave like real Piston's (``shared/reference/piston.md``).

It never calls CodeCapsule's LocalEngine: it writes the request's files into a job directory and runs the real
toolchains (gcc 12, g++, java 17, python3, node) in a subprocess the way Piston's package scripts do, inside a
"box" that watches the limits from outside. Emulated, because parity tests must be able to fail on them:

* only ``utf8`` files are code files; ``base64``/``hex`` files are written untouched and passed to no script;
* c / c++ (gcc package): ``.c``/``.cpp`` is appended to **every** code file, then bash runs
  ``gcc -std=c11 *.c -lm`` (``g++ -std=c++17 *.cpp``) and ``chmod +x a.out`` — no optimisation, no warning flags,
  diagnostics name ``main.c.c``, a failed build's stderr ends with ``chmod: cannot access 'a.out'``, and the
  ``run`` stage is an exact copy of ``compile`` when it fails;
* java: no compile stage; the first code file is renamed ``<name>.java`` and run as ``java <name>.java args``
  (the single-file source launcher: it compiles that file only and starts its first top-level class);
* python / node: ``python3 <first file>`` / ``node <first file>`` in the job directory (siblings importable);
* stdin always gets a trailing newline, also when empty;
* programs killed by a signal show as exit status 128+n with no signal (bash runs them);
* run/compile wall and CPU limits → ``TO`` with SIGKILL and code null ("Time limit exceeded (wall clock)" /
  "Time limit exceeded"); memory over ``run_memory_limit`` (resident size of the process tree, sampled every
  5 ms) → status ``SG``, signal SIGKILL, code null, ``memory`` equal to the limit;
* the output cap (``output_max_size``, PISTON_OUTPUT_MAX_SIZE) per stream: the chunk that crosses it is dropped
  (not cut) and the program killed: ``OL``/``EL``, "stdout length exceeded";
* the HTTP API to the letter: endpoints, validation messages and their order, limits above the configured ones
  → 400 "... cannot exceed the configured limit of N", ``{"stack": ...}`` for malformed JSON, 415, 404, a 500
  with an empty body for ``../`` names, the runtimes list with aliases and ``runtime`` keys, the packages API.

* ``/api/v2/connect`` (WebSocket, same port, the real protocol through ``websockets``): init within 1 s or
  close 4001, a second init 4000, ``runtime``/``stage``/``data``/``exit`` in Piston's order, stdin ``data``
  written to the running stage (the init's ``stdin`` is not, and stdin is never closed), ``signal`` ignored,
  no output cap, close 4999 when done — and closing the socket does not stop the job (``server.jobs``).

Not emulated: the process limit (PISTON_MAX_PROCESS_COUNT), the network block, isolate's file-system view,
the "Sandbox keeper received fatal signal 6" line.

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
import math
import os
import random
import selectors
import shutil
import signal
import socket
import ssl
import struct
import subprocess
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from codecapsule import File, Job
from codecapsule._errors import CodeCapsuleError

__all__ = ["DEFAULT_PACKAGES", "FakePiston", "Faults", "PistonTestServer", "RequestRecord"]

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
    # the live path's frames held back and written in one piece with the close, as a buffering proxy (a tunnel)
    # delivers a fast job's messages: the client then learns of the close before it has read them
    coalesce_live: bool = False
    # a broken server: the live connection closes as "job completed" as soon as the run stage starts
    complete_live_at_run: bool = False
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

    ``output_max_size``: PISTON_OUTPUT_MAX_SIZE (bytes per stream). ``chunk_size``: how much output arrives
    at once
    from the program's pipes; the chunk that crosses the cap is dropped (Piston reads 64 KiB pipe chunks, so a
    cap of 1024 usually leaves the stream empty — as observed).
    """

    def __init__(
        self,
        *,
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
        self.packages: list[list[Any]] = [[spec, installed] for spec, installed in packages]
        self.output_max_size = output_max_size
        self.chunk_size = chunk_size
        self.config = {"compile_timeout": compile_timeout, "run_timeout": run_timeout,
                       "compile_cpu_time": compile_cpu_time, "run_cpu_time": run_cpu_time,
                       "compile_memory_limit": compile_memory_limit, "run_memory_limit": run_memory_limit}
        self.faults = Faults()
        self.log: list[RequestRecord] = []
        self.executions: list[Job] = []
        self.jobs: list[_JobRecord] = []   # every job run (both paths), in order: tests see whether one still runs
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
        runtime, problem = self._admit(data)
        if problem is not None:
            return problem
        return _json(200, self._run_job(runtime, data))

    def _admit(self, data: Any) -> tuple[dict[str, Any], tuple[int, bytes, dict[str, str]] | None]:
        """Piston's checks of a job (both paths), in its order; the runtime, or the HTTP answer refusing it."""
        if not isinstance(data, dict):
            return {}, _message(400, "language is required as a string")
        problem = _validate(data, self.config)
        if problem is not None:
            return {}, _message(400, problem)
        language, version = data["language"], data["version"]
        runtime = self._find_runtime(language, version)
        if runtime is None:
            return {}, _message(400, f"{language}-{version} runtime is unknown")
        files = data["files"]
        if any(".." in str(f.get("name", "")).split("/") for f in files):
            return {}, (500, b"", {})
        try:
            job = _record(runtime["language"], data)
        except CodeCapsuleError:  # a name Piston cannot write either
            return {}, (500, b"", {})
        with self._lock:
            self.executions.append(job)
        return runtime, None

    # -- the runtimes: what Piston's package scripts and its isolate box do --------------------------

    def _run_job(self, runtime: dict[str, Any], data: dict[str, Any], live: _LiveJob | None = None
                 ) -> dict[str, Any]:
        """One job, for both paths: ``live`` (the WebSocket) gets each stage's start, chunks and exit as they
        happen, feeds stdin while the stage runs (never closing it) and lifts the output cap."""
        language = runtime["language"]
        answer: dict[str, Any] = {"language": language, "version": runtime["version"]}
        lim = {name: data.get(name, self.config[name]) for name in _LIMIT_NAMES}
        stdin = data.get("stdin") or ""
        if not stdin.endswith("\n"):
            stdin += "\n"  # Piston always adds a trailing newline, also to an empty stdin
        args = [str(a) for a in data.get("args") or ()]
        jobdir = tempfile.mkdtemp(prefix="fake-piston-job-")
        record = _JobRecord(language)
        with self._lock:
            self.jobs.append(record)
        try:
            code_files = _write_files(jobdir, data["files"])
            script = _SCRIPTS[language]
            if script.compile is not None:
                for name in code_files:  # the gcc package's `rename 's/$/\.c/' "$@"`
                    os.rename(os.path.join(jobdir, name), os.path.join(jobdir, name + script.extension))
                answer["compile"] = self._box(
                    ["bash", "-c", script.compile], jobdir, b"", wall_ms=lim["compile_timeout"],
                    cpu_ms=lim["compile_cpu_time"], memory=lim["compile_memory_limit"], live=live,
                    stage_name="compile")
                if live is not None:
                    live.exited("compile", answer["compile"])
                if answer["compile"]["code"] != 0:
                    answer["run"] = dict(answer["compile"])  # the run never happens: `run` copies `compile`
                    return answer
            argv = script.run(jobdir, code_files[0]) + args
            answer["run"] = self._box(argv, jobdir, stdin.encode(), wall_ms=lim["run_timeout"],
                                      cpu_ms=lim["run_cpu_time"], memory=lim["run_memory_limit"], live=live,
                                      stage_name="run")
            if live is not None:
                live.exited("run", answer["run"])
            return answer
        finally:
            shutil.rmtree(jobdir, ignore_errors=True)
            record.ended.set()

    def _box(self, argv: list[str], cwd: str, stdin: bytes, *, wall_ms: int, cpu_ms: int,
             memory: int, live: _LiveJob | None = None, stage_name: str = "run") -> dict[str, Any]:
        """One stage in a "box": wall/CPU/memory limits watched from outside, the output cap per stream
        (none on the live path, which streams each chunk and writes stdin as it arrives)."""
        start = time.monotonic()
        proc = subprocess.Popen([_tool(argv[0]), *argv[1:]], cwd=cwd, stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True,
                                env={"PATH": _PATH, "HOME": cwd, "LANG": "C.UTF-8"})
        assert proc.stdin is not None and proc.stdout is not None and proc.stderr is not None
        cap = self.output_max_size if live is None else math.inf
        if live is None:
            threading.Thread(target=_feed, args=(proc.stdin, stdin), daemon=True).start()
        else:
            live.stage_started(stage_name, proc.stdin, stdin)
        streams = {proc.stdout.fileno(): "stdout", proc.stderr.fileno(): "stderr"}
        kept: dict[str, bytearray] = {"stdout": bytearray(), "stderr": bytearray()}
        output = bytearray()
        sel = selectors.DefaultSelector()
        for fd in streams:
            os.set_blocking(fd, False)
            sel.register(fd, selectors.EVENT_READ)
        killed: str | None = None
        peak = 0
        status: int | None = None
        usage: Any = None
        deadline = start + wall_ms / 1000 if wall_ms > 0 else math.inf

        def kill(why: str) -> None:
            nonlocal killed
            if killed is None:
                killed = why
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)

        while True:
            for key, _ in sel.select(timeout=_TICK):
                try:
                    chunk = os.read(key.fd, self.chunk_size)
                except BlockingIOError:
                    continue
                if not chunk:
                    sel.unregister(key.fd)
                    continue
                name = streams[key.fd]
                if killed is not None:
                    continue
                if len(kept[name]) + len(chunk) > cap:
                    kill("OL" if name == "stdout" else "EL")  # the crossing chunk is dropped, not cut
                    continue
                kept[name] += chunk
                output += chunk
                if live is not None:
                    live.chunk(name, chunk)
            if status is None:
                pid, raw, ru = os.wait4(proc.pid, os.WNOHANG)
                if pid:
                    status, usage = raw, ru
                    proc.returncode = 0  # reaped here; keep Popen from waiting again
                    kill_rest(proc.pid)  # the box ends with its first process: leftovers die
                else:
                    rss, cpu = _tree_usage(proc.pid)
                    peak = max(peak, rss)
                    if memory > 0 and rss > memory:
                        kill("ML")
                    elif cpu_ms > 0 and cpu * 1000 > cpu_ms:
                        kill("TO-cpu")
                    elif time.monotonic() > deadline:
                        kill("TO-wall")
            if status is not None and not sel.get_map():
                break
            if status is not None and time.monotonic() > max(deadline, start) + 5:
                break  # a stray grandchild holds a pipe: give up on its output
        sel.close()
        for pipe in (proc.stdout, proc.stderr):
            pipe.close()
        if live is not None:
            live.stage_ended()
        wall = time.monotonic() - start
        cpu_time = (usage.ru_utime + usage.ru_stime) if usage is not None else 0.0
        if not peak and usage is not None:  # exited before the first sample
            peak = usage.ru_maxrss * 1000  # Piston's unit: kB × 1000
        stage: dict[str, Any] = {
            "stdout": kept["stdout"].decode("utf-8", "replace"), "stderr": kept["stderr"].decode("utf-8", "replace"),
            "output": output.decode("utf-8", "replace"), "code": None, "signal": None, "message": None,
            "status": None, "cpu_time": round(cpu_time * 1000), "wall_time": round(wall * 1000), "memory": peak}
        if killed is not None:
            stage.update(signal="SIGKILL", **_KILLED[killed])
            if killed == "ML":
                stage["memory"] = memory
            return stage
        assert status is not None
        # Piston's scripts run the program from bash: a signal shows as exit status 128+n, no signal
        code = 128 + os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status)
        stage["code"] = code
        if code != 0:
            stage.update(status="RE", message=f"Exited with error status {code}")
        return stage

    def _find_runtime(self, language: str, version: str) -> dict[str, Any] | None:
        matches = [rt for rt in self.runtimes()
                   if language in (rt["language"], *rt["aliases"]) and _version_ok(rt["version"], version)]
        matches.sort(key=lambda rt: [int(p) if p.isdigit() else 0 for p in rt["version"].split(".")])
        return matches[-1] if matches else None

# -- runtime scripts (the packages' `compile` and `run` files) --------------------------------------------

_PATH = "/usr/local/bin:/usr/bin:/bin"
_TICK = 0.005  # how often the box samples memory and CPU time (isolate's cgroup sees every page at once)


@dataclass(frozen=True)
class _Script:
    run: Callable[[str, str], list[str]]   # (job dir, first code file) -> argv before the request's args
    compile: str | None = None              # the compile script, run by bash after the renames
    extension: str = ""                     # appended to every code file before compiling


def _java_run(jobdir: str, first: str) -> list[str]:
    # java's run script: `mv $1 $1.java; java $1.java "$@"` — the single-file source launcher
    os.rename(os.path.join(jobdir, first), os.path.join(jobdir, first + ".java"))
    return ["java", first + ".java"]


_SCRIPTS: dict[str, _Script] = {
    "c": _Script(lambda d, f: ["./a.out"], "gcc -std=c11 *.c -lm\nchmod +x a.out", ".c"),
    "c++": _Script(lambda d, f: ["./a.out"], "g++ -std=c++17 *.cpp\nchmod +x a.out", ".cpp"),
    "java": _Script(_java_run),
    "python": _Script(lambda d, f: ["python3", f]),
    "javascript": _Script(lambda d, f: ["node", f]),
}

_KILLED: dict[str, dict[str, Any]] = {
    "TO-wall": {"status": "TO", "message": "Time limit exceeded (wall clock)"},
    "TO-cpu": {"status": "TO", "message": "Time limit exceeded"},
    "OL": {"status": "OL", "message": "stdout length exceeded"},
    "EL": {"status": "EL", "message": "stderr length exceeded"},
    "ML": {"status": "SG", "message": "Out of memory (killed by signal 9)"},
}


def _tool(name: str) -> str:
    if name.startswith("./"):
        return name
    found = shutil.which(name, path=_PATH)
    if found is None:
        raise FileNotFoundError(name)
    return found


def _write_files(jobdir: str, files: list[dict[str, Any]]) -> list[str]:
    """Write the request's files; the names of the utf8 ("code") files, in order."""
    code = []
    for i, f in enumerate(files):
        name = f.get("name") or f"file{i}.code"
        enc = f.get("encoding", "utf8")
        content = f["content"]
        data = base64.b64decode(content) if enc == "base64" else bytes.fromhex(content) if enc == "hex" \
            else content.encode()
        path = os.path.join(jobdir, name)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as out:
            out.write(data)
        if enc == "utf8":
            code.append(name)
    return code


def _feed(pipe: Any, data: bytes) -> None:
    with contextlib.suppress(BrokenPipeError, OSError):
        pipe.write(data)
    with contextlib.suppress(BrokenPipeError, OSError):
        pipe.close()


def _children(pid: int) -> list[int]:
    out: list[int] = []
    with contextlib.suppress(OSError):
        for tid in os.listdir(f"/proc/{pid}/task"):
            with contextlib.suppress(OSError), open(f"/proc/{pid}/task/{tid}/children") as f:
                out.extend(int(c) for c in f.read().split())
    return out


_PAGE = os.sysconf("SC_PAGE_SIZE")
_HZ = os.sysconf("SC_CLK_TCK")


def _tree_usage(root: int) -> tuple[int, float]:
    """Resident bytes and CPU seconds of a process and all its descendants (what a cgroup would count)."""
    rss, cpu, todo, seen = 0, 0.0, [root], set()
    while todo:
        pid = todo.pop()
        if pid in seen:
            continue
        seen.add(pid)
        try:
            with open(f"/proc/{pid}/statm") as f:
                rss += int(f.read().split()[1]) * _PAGE
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            cpu += (int(fields[11]) + int(fields[12])) / _HZ
        except (OSError, IndexError, ValueError):
            continue
        todo.extend(_children(pid))
    return rss, cpu


def kill_rest(pgid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)


def _record(language: str, data: dict[str, Any]) -> Job:
    """The request as a Job, for tests to look at (``server.executions``); the job does not run through it."""
    files = []
    for i, f in enumerate(data["files"]):
        enc = f.get("encoding", "utf8")
        name = f.get("name") or f"file{i}.code"
        content = f["content"]
        if enc == "base64":
            files.append(File(name, base64.b64decode(content)))
        elif enc == "hex":
            files.append(File(name, bytes.fromhex(content)))
        else:
            files.append(File(name, content))
    entry = next(i for i, f in enumerate(files) if isinstance(f.content, str))  # first utf8 file
    files.insert(0, files.pop(entry))
    return Job(language, tuple(files), stdin=data.get("stdin") or "",
               args=tuple(str(a) for a in data.get("args") or ()))


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


@dataclass
class _JobRecord:
    """One job the server ran (``server.jobs``): ``ended`` is set when its last process is gone."""

    language: str
    ended: threading.Event = field(default_factory=threading.Event)


# Piston v3.1.1's close codes and reasons on /api/v2/connect (api/src/api/v2.js)
_CLOSE = {
    "done": (4999, "Job Completed"),
    "again": (4000, "Already Initialized"),
    "no-init": (4001, "Initialization Timeout"),
    "error": (4002, "Notified Error"),
    "not-init": (4003, "Not yet Initialized"),
    "not-stdin": (4004, "Can only write to stdin"),
    "bad-signal": (4005, "Invalid signal"),
}
_INIT_WITHIN = 1.0  # seconds Piston waits for the init message
_SIGNALS = frozenset(s.name for s in signal.Signals)


class _LiveJob:
    """A job's WebSocket side: stage/data/exit messages as the box sees them; stdin written as it arrives.

    As in v3.1.1, the init's ``stdin`` is not written (only ``data`` messages are) and stdin is never closed."""

    def __init__(self, send: Callable[[dict[str, Any]], None]) -> None:
        self._send = send
        self._stdin: Any = None
        self._lock = threading.Lock()

    def stage_started(self, stage: str, pipe: Any, initial: bytes) -> None:
        with self._lock:
            self._stdin = pipe
        self._send({"type": "stage", "stage": stage})

    def chunk(self, stream: str, data: bytes) -> None:
        self._send({"type": "data", "stream": stream, "data": data.decode("utf-8", "replace")})

    def stage_ended(self) -> None:
        with self._lock:
            pipe, self._stdin = self._stdin, None
        if pipe is not None:
            with contextlib.suppress(OSError):
                pipe.close()

    def exited(self, stage: str, answer: dict[str, Any]) -> None:
        self._send({"type": "exit", "stage": stage, "code": answer["code"], "signal": answer["signal"]})

    def write_stdin(self, text: str) -> None:
        with self._lock:
            if self._stdin is None:
                return
            with contextlib.suppress(OSError, ValueError):
                self._stdin.write(text.encode())
                self._stdin.flush()


class _Connection:
    """One /api/v2/connect: the real WebSocket protocol (``websockets``' sans-I/O server) over the handler's
    socket, Piston's message rules on top. The job runs on its own thread: closing the socket does not stop it."""

    def __init__(self, owner: PistonTestServer, handler: _Handler) -> None:
        from websockets.server import ServerProtocol

        self.owner = owner
        self.sock: socket.socket = handler.connection
        self.proto = ServerProtocol(max_size=None)
        self._lock = threading.Lock()
        head = f"{handler.command} {handler.path} HTTP/1.1\r\n".encode()
        head += b"".join(f"{k}: {v}\r\n".encode() for k, v in handler.headers.items()) + b"\r\n"
        self.proto.receive_data(head)
        [request] = self.proto.events_received()
        self.proto.send_response(self.proto.accept(request))
        self._flush()

    def _flush(self) -> None:
        for data in self.proto.data_to_send():
            if data:
                with contextlib.suppress(OSError):
                    self.sock.sendall(data)

    def send(self, message: dict[str, Any]) -> None:
        from websockets.exceptions import InvalidState

        with self._lock, contextlib.suppress(InvalidState):
            self.proto.send_text(json.dumps(message).encode())
            if not self.owner.faults.coalesce_live:
                self._flush()
        if self.owner.faults.complete_live_at_run and message == {"type": "stage", "stage": "run"}:
            self.close("done")

    def close(self, why: str) -> None:
        from websockets.exceptions import InvalidState

        code, reason = _CLOSE[why]
        with self._lock, contextlib.suppress(InvalidState):
            self.proto.send_close(code, reason)
            self._flush()

    def serve(self) -> None:
        from websockets.frames import Opcode

        deadline = time.monotonic() + _INIT_WITHIN
        live: _LiveJob | None = None
        while True:
            self.sock.settimeout(max(0.001, deadline - time.monotonic()) if live is None else None)
            try:
                data = self.sock.recv(65536)
            except TimeoutError:
                if live is None and self.proto.close_sent is None:
                    self.close("no-init")
                    deadline = time.monotonic() + 5.0  # read on: the client answers the close
                    continue
                return
            except OSError:
                return
            with self._lock:
                if data:
                    self.proto.receive_data(data)
                else:
                    self.proto.receive_eof()
                frames = self.proto.events_received()
                self._flush()  # pongs and the close answer
            for frame in frames:
                if frame.opcode is Opcode.TEXT:
                    live = self._message(frame.data, live)
            if not data or self.proto.close_rcvd is not None:
                return

    def _message(self, raw: bytes, live: _LiveJob | None) -> _LiveJob | None:
        try:
            message = json.loads(raw)
        except json.JSONDecodeError:
            return live
        kind = message.get("type") if isinstance(message, dict) else None
        if kind == "init":
            if live is not None:
                self.close("again")
                return live
            return self._start(message)
        if live is None:
            self.close("not-init")
            return None
        if kind == "data":
            if message.get("stream") != "stdin":
                self.close("not-stdin")
            else:
                live.write_stdin(str(message.get("data", "")))
        elif kind == "signal" and message.get("signal") not in _SIGNALS:
            self.close("bad-signal")
        # a valid `signal` has no effect in v3.1.1: the job runs on to its timeout
        return live

    def _start(self, data: dict[str, Any]) -> _LiveJob | None:
        owner = self.owner
        runtime, problem = owner._admit(data)
        if problem is not None:
            status, body, _ = problem
            text = json.loads(body).get("message", "") if body else f"Internal error ({status})"
            self.send({"type": "error", "message": text})
            self.close("error")
            return None
        live = _LiveJob(self.send)
        self.send({"type": "runtime", "language": runtime["language"], "version": runtime["version"]})

        def run() -> None:
            owner._run_job(runtime, data, live)
            self.close("done")

        threading.Thread(target=run, name="piston-test-live-job", daemon=True).start()
        return live


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
            if path == "/api/v2/connect" and headers.get("upgrade", "").lower() == "websocket":
                record.status = 101
                record.answered = time.monotonic()
                self.close_connection = True
                return _Connection(owner, self).serve()
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
FakePiston = PistonTestServer


def main(argv: list[str] | None = None) -> None:
    """``python -m tests.fakes.piston [--fixed FILE] [--service-time S]``: serve until stdin closes.

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
