"""The Piston client against a hostile server on loopback (tests/fakes/malicious_http.py), sync and async."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import pytest

from codecapsule import Job, Settings
from codecapsule._errors import AccessDenied, ProtocolError, RequestTimeout
from codecapsule.engines.piston import AsyncPistonEngine, PistonEngine
from codecapsule.engines.piston_protocol import MAX_ANSWER_BYTES
from tests.fakes.malicious_http import MaliciousServer

SECRET = "hunter2-access-secret-0123456789"
PASSWORD = "url-password-s3cret"


@pytest.fixture
def hostile() -> Iterator[MaliciousServer]:
    with MaliciousServer() as server:
        yield server


def settings(server: MaliciousServer, **kw: object) -> Settings:
    return Settings(piston_url=server.url, engine="piston", retries=0, **kw)  # type: ignore[arg-type]


def test_a_huge_body_is_cut_off_while_streaming(hostile: MaliciousServer) -> None:
    hostile.mode = "huge"  # chunked, no length: only counting while reading can stop it
    with PistonEngine(settings(hostile)) as engine, pytest.raises(ProtocolError, match="larger than 64 MiB"):
        engine.runtimes()
    assert hostile.sent < 2 * MAX_ANSWER_BYTES


def test_a_huge_body_is_refused_from_its_content_length_too(hostile: MaliciousServer) -> None:
    hostile.mode = "long"
    with PistonEngine(settings(hostile)) as engine, pytest.raises(ProtocolError, match="larger than"):
        engine.runtimes()
    assert hostile.sent < MAX_ANSWER_BYTES  # nothing near the gigabyte was read


@pytest.mark.parametrize("driver", ["sync", "async"])
def test_a_gzip_bomb_is_not_inflated_past_the_cap(hostile: MaliciousServer, driver: str) -> None:
    hostile.mode = "bomb"
    assert len(hostile.bomb) < 1 << 20  # 128 MB of zeros in well under 1 MB on the wire
    with pytest.raises(ProtocolError, match="decompressed"):
        if driver == "sync":
            with PistonEngine(settings(hostile)) as engine:
                engine.runtimes()
        else:

            async def go() -> None:
                async with AsyncPistonEngine(settings(hostile)) as engine:
                    await engine.aruntimes()

            asyncio.run(go())


@pytest.mark.parametrize("driver", ["sync", "async"])
def test_the_deadline_holds_while_the_body_drips(hostile: MaliciousServer, driver: str) -> None:
    hostile.mode = "drip"  # ~55 bytes at 0.2 s each: 11 s if the client waited for all of it
    started = time.monotonic()
    with pytest.raises(RequestTimeout, match="did not finish its answer within the deadline"):
        if driver == "sync":
            with PistonEngine(settings(hostile, request_timeout=1.0)) as engine:
                engine.runtimes()
        else:

            async def go() -> None:
                async with AsyncPistonEngine(settings(hostile, request_timeout=1.0)) as engine:
                    await engine.aruntimes()

            asyncio.run(go())
    assert time.monotonic() - started < 3.0
    assert hostile.sent < 20


def test_secrets_echoed_by_a_proxy_are_redacted(hostile: MaliciousServer) -> None:
    hostile.mode = "echo"
    url = hostile.url.replace("http://", f"http://student:{PASSWORD}@")
    s = Settings(
        piston_url=url, engine="piston", retries=0, access_client_id="client-id.access", access_client_secret=SECRET
    )
    with PistonEngine(s) as engine, pytest.raises(AccessDenied) as e:
        engine.run(Job.create("print(1)", "python"))
    shown = f"{e.value} {e.value.body} {e.value.url} {e.value!r} {engine!r} {s!r}"
    assert "cf-access-client-secret: [redacted]" in shown.lower()  # the echo is there, the secret is not
    assert SECRET not in shown and PASSWORD not in shown


@pytest.mark.parametrize("mode", ["nan", "deep"])
def test_nan_infinity_and_deep_nesting_are_protocol_errors(hostile: MaliciousServer, mode: str) -> None:
    hostile.mode = mode
    with PistonEngine(settings(hostile)) as engine, pytest.raises(ProtocolError, match="not JSON"):
        engine.run(Job.create("print(1)", "python"))
