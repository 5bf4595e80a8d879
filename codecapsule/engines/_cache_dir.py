"""The local engine's machine-wide cache: things built once per machine and toolchain (the warm javac's classes,
the run JVM's CDS archive), read-only to the sandbox.

Each entry is a directory built in a temporary sibling and renamed into place, so a half-built entry is never seen;
its ``MANIFEST`` lists every file's SHA-256, checked once per process before the entry is used (a truncated CDS
archive crashes the JVM even with ``-Xshare:auto``), and an entry that fails the check is rebuilt. Entry names carry
what they were built for (the JVM's version and a digest of its files), so a JDK upgrade gets a new entry.

Where: the engine's ``cache_dir`` (:func:`codecapsule._settings.local_cache_dir`: ``CODECAPSULE_CACHE_DIR``, else
``/var/cache/codecapsule`` as root — the sandbox's unprivileged uids must reach it, /root is closed to them — else
``$XDG_CACHE_HOME/codecapsule`` or ``~/.cache/codecapsule``).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import shutil
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path

_MANIFEST = "MANIFEST"
_checked: dict[Path, bool] = {}  # entries verified (True) or found broken (False) in this process
_lock = threading.Lock()


def digest(*parts: bytes) -> str:
    """A short hex digest naming an entry by what it was built from."""
    h = hashlib.sha256()
    for part in parts:
        h.update(len(part).to_bytes(8, "big") + part)
    return h.hexdigest()[:16]


def entry(where: str | Path, name: str, build: Callable[[Path], None]) -> Path | None:
    """The directory ``name`` of the cache, built by ``build(folder)`` if it is missing or damaged; None when it
    cannot be built here (the engine then does without it). ``build`` fills the folder it is given; files end up
    world-readable and read-only."""
    base = Path(where)
    path = base / name
    with _lock:
        if _checked.get(path):
            return path
        try:
            base.mkdir(mode=0o755, parents=True, exist_ok=True)
            if not trusted(base, follow_symlinks=True):
                raise BuildFailed(f"{base} is not ours alone: what it holds may not have been built by us")
            with _flock(base / f".{name}.lock"):  # another process may be building the same entry
                if not _intact(path):
                    _rebuild(path, build)
        except (OSError, BuildFailed):
            _checked[path] = False
            return None
        _checked[path] = True
        return path


class BuildFailed(Exception):
    """``build`` could not produce the entry (say why in the message)."""


def trusted(path: str | Path, *, follow_symlinks: bool = False) -> bool:
    """Ours and not writable by anyone else (a directory or file another user could change is never used): only
    we (and root) can have written in it."""
    try:
        info = os.stat(path, follow_symlinks=follow_symlinks)
    except OSError:
        return False
    return info.st_uid == os.geteuid() and not info.st_mode & 0o022


@contextlib.contextmanager
def _flock(lock_path: Path):  # type: ignore[no-untyped-def]
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.name != _MANIFEST)


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _intact(path: Path) -> bool:
    try:
        lines = (path / _MANIFEST).read_text().splitlines()
        listed = dict(line.split("  ", 1)[::-1] for line in lines)
        present = {str(p.relative_to(path)): p for p in _files(path)}
        return listed.keys() == present.keys() and all(_sha(present[n]) == sha for n, sha in listed.items())
    except (OSError, ValueError):
        return False


def _rebuild(path: Path, build: Callable[[Path], None]) -> None:
    staging = Path(tempfile.mkdtemp(prefix=f".{path.name}-", dir=path.parent))
    try:
        build(staging)
        manifest = "".join(f"{_sha(p)}  {p.relative_to(staging)}\n" for p in _files(staging))
        (staging / _MANIFEST).write_text(manifest)
        for p in staging.rglob("*"):
            p.chmod(0o755 if p.is_dir() else 0o444)
        staging.chmod(0o755)
        if path.exists():
            shutil.rmtree(path)
        os.rename(staging, path)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
