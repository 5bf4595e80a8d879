"""Shared test set-up: the Piston test-server fixtures and a clean CODECAPSULE_* environment."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

pytest_plugins = ["tests.piston_fixtures"]


@pytest.fixture(autouse=True)
def _clean_codecapsule_env(monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Tests never pick up a developer's own Piston URL, tokens or config directory."""
    import os

    for name in list(os.environ):
        if name.startswith(("CODECAPSULE_", "CLOUDFLARE_", "AZURE_")):
            monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("CODECAPSULE_CONFIG_DIR", str(tmp_path_factory.mktemp("capsule-config")))
    yield
