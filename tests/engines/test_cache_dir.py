"""The local engine's machine-wide cache: entries built once, checked against their manifest, rebuilt if damaged."""

from __future__ import annotations

import os
from pathlib import Path

from codecapsule.engines import _cache_dir


def test_the_cache_entry_is_rebuilt_when_damaged(tmp_path: Path) -> None:
    builds: list[Path] = []

    def build(folder: Path) -> None:
        builds.append(folder)
        (folder / "data.bin").write_bytes(b"x" * 1000)

    first = _cache_dir.entry(tmp_path, "thing-1", build)
    assert first is not None and (first / "data.bin").read_bytes() == b"x" * 1000
    assert oct((first / "data.bin").stat().st_mode & 0o777) == "0o444"
    assert _cache_dir.entry(tmp_path, "thing-1", build) == first and len(builds) == 1  # checked once per process
    os.chmod(first / "data.bin", 0o644)
    (first / "data.bin").write_bytes(b"x" * 10)  # truncated, as a crash mid-write would leave it
    _cache_dir._checked.clear()  # a new process
    assert _cache_dir.entry(tmp_path, "thing-1", build) == first and len(builds) == 2
    assert (first / "data.bin").read_bytes() == b"x" * 1000


def test_a_cache_directory_others_can_write_is_not_used(tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o777)  # another user could have planted what it holds
    assert _cache_dir.entry(shared, "thing-2", lambda folder: (folder / "x").write_text("x")) is None
    assert list(shared.iterdir()) == []
