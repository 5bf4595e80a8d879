"""The run JVM's CDS archive: built once per JVM, rebuilt when damaged, never able to make a run fail."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from codecapsule.engines import _cache_dir, _jvm_fast
from codecapsule.engines._toolchains import _JVM_FAST, find

pytestmark = pytest.mark.skipif(shutil.which("javac") is None, reason="javac not installed")


HELLO = 'public class Main { public static void main(String[] a) { System.out.println("hi"); } }'


def _hello(folder: Path, java: str, javac: str, archive: Path) -> subprocess.CompletedProcess[bytes]:
    (folder / "Main.java").write_text(HELLO)
    subprocess.run([javac, "-d", ".", "Main.java"], cwd=folder, check=True, capture_output=True)
    return subprocess.run([java, *_JVM_FAST, f"-XX:SharedArchiveFile={archive}", "-cp", ".", "Main"], cwd=folder,
                          capture_output=True)  # fmt: skip


def test_a_damaged_archive_is_rebuilt_before_a_jvm_maps_it(tmp_path: Path) -> None:
    cache = str(tmp_path / "cache")
    tc = find("java")
    java, javac = tc.executables["java"], tc.executables["javac"]
    build = _jvm_fast._archive.__wrapped__  # the per-process memo aside: each call is a fresh process's first look
    archive = build(cache, java, javac, tc.version)
    assert archive is not None and archive.is_file() and str(archive).startswith(str(tmp_path / "cache"))
    assert f"java-{tc.version}-" in str(archive)  # named by the JVM it was built for
    good = archive.read_bytes()
    archive.chmod(0o644)
    archive.write_bytes(good[: len(good) // 3])  # truncated: this one crashes the JVM even with -Xshare:auto
    work = tmp_path / "work"
    work.mkdir()
    assert _hello(work, java, javac, archive).returncode != 0  # what the manifest check protects a run from
    _cache_dir._checked.clear()  # the next process
    again = build(cache, java, javac, tc.version)
    # rebuilt, whole again (not byte-identical to the first: each dump has its own header values)
    assert again == archive and len(archive.read_bytes()) > len(good) // 3
    done = _hello(work, java, javac, archive)
    assert done.returncode == 0 and done.stdout == b"hi\n", done


def test_another_jvm_gets_another_archive() -> None:
    tc = find("java")
    java = tc.executables["java"]
    assert _jvm_fast._identity(java, tc.version) != _jvm_fast._identity(java, tc.version + "-other")
    assert _jvm_fast._identity(java, tc.version) == _jvm_fast._identity(java, tc.version)


def test_no_archive_means_no_flags(tmp_path: Path) -> None:
    """Where the cache cannot be written the run JVM simply goes without (the run flags stay today's)."""
    blocked = tmp_path / "file"
    blocked.write_text("not a directory")
    tc = find("java")
    java, javac = tc.executables["java"], tc.executables["javac"]
    assert _jvm_fast._archive.__wrapped__(str(blocked / "cache"), java, javac, tc.version) is None
