"""Shared test set-up: the Piston test-server fixtures and a clean CODECAPSULE_* environment."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

pytest_plugins = ["tests.piston_fixtures"]


@pytest.fixture(scope="session", autouse=True)
def engine_cache_dir() -> Iterator[str]:
    """The local engine's cache directory for the session (compile cache, precompiled headers): never the machine's
    own, and in /tmp so the sandbox's uids can reach its precompiled headers (pytest's tmp dirs are 0700). Set in
    the environment for the whole session, so module-scoped engines (made before any test's own set-up) use it."""
    import os
    import tempfile

    from codecapsule.engines._workdir import remove_tree

    path = tempfile.mkdtemp(prefix="capsule-engine-cache-")
    os.chmod(path, 0o755)
    before = os.environ.get("CODECAPSULE_CACHE_DIR")
    os.environ["CODECAPSULE_CACHE_DIR"] = path
    yield path
    if before is None:
        os.environ.pop("CODECAPSULE_CACHE_DIR", None)
    else:
        os.environ["CODECAPSULE_CACHE_DIR"] = before
    remove_tree(path)


@pytest.fixture(autouse=True)
def _clean_codecapsule_env(
    monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory, engine_cache_dir: str
) -> Iterator[None]:
    """Tests never pick up a developer's own Piston URL, tokens, config or cache directory."""
    import os

    for name in list(os.environ):
        if name.startswith(("CODECAPSULE_", "CLOUDFLARE_", "AZURE_")):
            monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("CODECAPSULE_CONFIG_DIR", str(tmp_path_factory.mktemp("capsule-config")))
    monkeypatch.setenv("CODECAPSULE_CACHE_DIR", engine_cache_dir)
    yield
