"""A hostile "Piston" on 127.0.0.1: answers built to hurt a client (for the client-hardening tests).

Modes (``server.mode = ...``), each answering every request:

* ``huge``   — 200 with a 1 GB body of spaces, chunked with no length (``sent`` counts what got out before the
  client hung up); ``long`` — the same with a ``Content-Length`` saying so;
* ``bomb``   — 200, ``Content-Encoding: gzip``, 128 MB of zeros compressed to ~130 KB;
* ``drip``   — 200 with a JSON body sent one byte every 0.2 s;
* ``echo``   — 403 whose body echoes the request's headers (a misconfigured proxy), secrets included;
* ``nan``    — 200 with ``NaN``/``Infinity`` in an execute answer;
* ``deep``   — 200 with JSON nested 100 000 levels deep.
"""

from __future__ import annotations

import contextlib
import threading
import time
import zlib
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

__all__ = ["MaliciousServer"]

_CHUNK = b" " * 65536
_GIGABYTE = 1 << 30


def _gzip_bomb(size: int) -> bytes:
    compressor = zlib.compressobj(1, zlib.DEFLATED, 31)
    block = bytes(1 << 20)
    parts = [compressor.compress(block) for _ in range(size >> 20)]
    parts.append(compressor.flush())
    return b"".join(parts)


class MaliciousServer:
    def __init__(self, mode: str = "huge") -> None:
        self.mode = mode
        self.sent = 0  # body bytes written in the last answer before the client went away
        self._bomb: bytes | None = None
        self._httpd: ThreadingHTTPServer | None = None

    @property
    def bomb(self) -> bytes:
        if self._bomb is None:
            self._bomb = _gzip_bomb(128 << 20)
        return self._bomb

    @property
    def url(self) -> str:
        assert self._httpd is not None
        return f"http://127.0.0.1:{self._httpd.server_address[1]}"

    def __enter__(self) -> MaliciousServer:
        owner = self

        class Handler(_Handler):
            server_owner = owner

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._httpd is not None
        self._httpd.shutdown()
        self._httpd.server_close()


class _Handler(BaseHTTPRequestHandler):
    server_owner: MaliciousServer
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _answer(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)
        owner = self.server_owner
        owner.sent = 0
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            getattr(self, f"_{owner.mode}")()
        self.close_connection = True

    def _start(self, status: int, length: int, **headers: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(length))
        for k, v in headers.items():
            self.send_header(k.replace("_", "-"), v)
        self.end_headers()

    def _huge(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        frame = b"%x\r\n" % len(_CHUNK) + _CHUNK + b"\r\n"
        for _ in range(_GIGABYTE // len(_CHUNK)):
            self.wfile.write(frame)
            self.server_owner.sent += len(_CHUNK)

    def _long(self) -> None:
        self._start(200, _GIGABYTE)
        for _ in range(_GIGABYTE // len(_CHUNK)):
            self.wfile.write(_CHUNK)
            self.server_owner.sent += len(_CHUNK)

    def _bomb(self) -> None:
        body = self.server_owner.bomb
        self._start(200, len(body), Content_Encoding="gzip")
        self.wfile.write(body)

    def _drip(self) -> None:
        body = b'[{"language":"python","version":"3.11.2","aliases":[]}]'
        self._start(200, len(body))
        for byte in body:
            self.wfile.write(bytes([byte]))
            self.wfile.flush()
            self.server_owner.sent += 1
            time.sleep(0.2)  # the attack itself (a slow sender), not test synchronisation

    def _echo(self) -> None:
        body = ("request headers: " + "; ".join(f"{k}: {v}" for k, v in self.headers.items())).encode()
        self._start(403, len(body))
        self.wfile.write(body)

    def _nan(self) -> None:
        body = (
            b'{"language":"python","version":"3.11.2","run":{"stdout":"","stderr":"","code":0,"wall_time":NaN,'
            b'"memory":Infinity}}'
        )
        self._start(200, len(body))
        self.wfile.write(body)

    def _deep(self) -> None:
        body = b"[" * 100_000 + b"]" * 100_000
        self._start(200, len(body))
        self.wfile.write(body)

    do_GET = do_POST = _answer
