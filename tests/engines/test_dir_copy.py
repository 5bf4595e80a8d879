"""Copying into and out of a directory a sandboxed process controls: no link is ever followed."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from codecapsule.engines import _dir_copy


@pytest.fixture
def theirs(tmp_path: Path) -> Iterator[tuple[Path, int]]:
    folder = tmp_path / "theirs"
    folder.mkdir()
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    yield folder, fd
    os.close(fd)


@pytest.fixture
def secret(tmp_path: Path) -> Path:
    path = tmp_path / "secret.txt"
    path.write_text("host secret")
    return path


def _ours(tmp_path: Path) -> Path:
    ours = tmp_path / "ours"
    (ours / "app" / "model").mkdir(parents=True)
    (ours / "Main.java").write_text("class Main {}")
    (ours / "app" / "model" / "Point.java").write_text("class Point {}")
    return ours


def test_copy_in_and_out_keep_relative_paths(tmp_path: Path, theirs: tuple[Path, int]) -> None:
    folder, fd = theirs
    _dir_copy.copy_in(str(_ours(tmp_path)), fd, None)
    assert (folder / "app" / "model" / "Point.java").read_text() == "class Point {}"
    (folder / "app" / "model" / "Point.class").write_bytes(b"\xca\xfe")
    (folder / "Main.class").write_bytes(b"\xca\xfe\xba\xbe")
    back = tmp_path / "back"
    back.mkdir()
    _dir_copy.copy_out(fd, str(back), None, lambda n: n.endswith(".class"), 1 << 20)
    found = sorted(str(p.relative_to(back)) for p in back.rglob("*") if p.is_file())
    assert found == ["Main.class", "app/model/Point.class"]
    assert oct((back / "Main.class").stat().st_mode & 0o777) == "0o644"


def test_copy_in_never_writes_through_a_planted_link(tmp_path: Path, theirs: tuple[Path, int], secret: Path) -> None:
    folder, fd = theirs
    (folder / "Main.java").symlink_to(secret)
    with pytest.raises(FileExistsError):
        _dir_copy.copy_in(str(_ours(tmp_path)), fd, None)
    assert secret.read_text() == "host secret"


def test_copy_in_never_descends_a_planted_directory_link(tmp_path: Path, theirs: tuple[Path, int]) -> None:
    folder, fd = theirs
    outside = tmp_path / "outside"
    outside.mkdir()
    (folder / "app").symlink_to(outside)
    with pytest.raises(OSError):
        _dir_copy.copy_in(str(_ours(tmp_path)), fd, None)
    assert list(outside.iterdir()) == []


def test_copy_out_never_reads_through_a_link(tmp_path: Path, theirs: tuple[Path, int], secret: Path) -> None:
    folder, fd = theirs
    (folder / "Leak.class").symlink_to(secret)
    back = tmp_path / "back"
    back.mkdir()
    with pytest.raises(OSError):
        _dir_copy.copy_out(fd, str(back), None, lambda n: n.endswith(".class"), 1 << 20)
    assert list(back.iterdir()) == []


def test_copy_out_skips_directory_links_and_refuses_special_files(tmp_path: Path, theirs: tuple[Path, int]) -> None:
    folder, fd = theirs
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "Stolen.class").write_bytes(b"x")
    (folder / "pkg").symlink_to(outside)
    back = tmp_path / "back"
    back.mkdir()
    _dir_copy.copy_out(fd, str(back), None, lambda n: n.endswith(".class"), 1 << 20)
    assert list(back.rglob("*")) == []  # the link was not followed
    os.mkfifo(folder / "Fifo.class")
    with pytest.raises(_dir_copy.CopyRefused, match="not a regular file"):
        _dir_copy.copy_out(fd, str(back), None, lambda n: n.endswith(".class"), 1 << 20)


def test_copy_out_stops_at_its_byte_limit(tmp_path: Path, theirs: tuple[Path, int]) -> None:
    folder, fd = theirs
    (folder / "Big.class").write_bytes(b"x" * 5000)
    back = tmp_path / "back"
    back.mkdir()
    with pytest.raises(_dir_copy.CopyRefused, match="larger than"):
        _dir_copy.copy_out(fd, str(back), None, lambda n: n.endswith(".class"), 4096)
