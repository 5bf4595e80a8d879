"""pytest fixtures for the Piston test server (enable with ``pytest_plugins = ["tests.piston_fixtures"]``)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from codecapsule import Settings

from .fakes.piston import PistonTestServer


@pytest.fixture
def piston_server() -> Iterator[PistonTestServer]:
    """A fresh fake Piston on 127.0.0.1 whose runtimes behave like real Piston's (tests/fakes/piston.py)."""
    with PistonTestServer() as server:
        yield server


@pytest.fixture
def piston_settings(piston_server: PistonTestServer) -> Settings:
    """Settings pointing at :func:`piston_server`, with fast retries and no environment leaking in."""
    return Settings(piston_url=piston_server.url, engine="piston", retries=3, request_timeout=30.0)
