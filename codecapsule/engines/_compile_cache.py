"""The C/C++ compile cache: content-addressed, bounded (LRU), written and read only by the engine process.

An entry is what one compile stage produced — its Stage (status, exit code, stdout/stderr diagnostics) and the
files it wrote (the executable) — stored under the hash of everything that determines that output (see
:func:`cache_key`). The directory is the engine's own (0700, entries 0600) and is never bound into a sandbox: a run
gets a *copy* of the binary in its fresh work directory. Each entry carries the SHA-256 of its body; a read checks
it, so a truncated or altered entry is a miss (and is deleted), never a binary handed to a run. Writes are atomic
(a temporary file in the same directory, then rename). Hits refresh the entry's mtime; when the total size passes
the bound the least recently used entries go first.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import secrets
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from .._results import Stage
from . import _forker

_MAGIC = b"codecapsule-compile-cache 1\n"
_SUFFIX = ".entry"
_RESCAN_AFTER = 60.0  # seconds: other engines (other kernels) store into the same cache
# (relative name, content, permission bits)
FileImage = tuple[str, bytes, int]


def cache_key(parts: Iterable[object]) -> str:
    """SHA-256 over the JSON of ``parts`` (each part must be JSON-serialisable: str, int, lists, dicts)."""
    digest = hashlib.sha256()
    for part in parts:
        digest.update(json.dumps(part, sort_keys=True, separators=(",", ":")).encode())
        digest.update(b"\0")
    return digest.hexdigest()


@dataclass(frozen=True)
class Entry:
    stage: Stage
    files: tuple[FileImage, ...]


def sweep_temporaries(root: str) -> None:
    """Remove what a writer killed mid-write left in ``root`` (``.tmp-<pid>-...`` of a process that is gone)."""
    from ._workdir import pid_alive, remove_path

    with contextlib.suppress(OSError):
        for item in os.scandir(root):
            parts = item.name.split("-")
            if (
                item.name.startswith(".tmp-")
                and len(parts) >= 3
                and parts[1].isdigit()
                and not pid_alive(int(parts[1]))
            ):
                with contextlib.suppress(OSError):
                    if item.is_dir(follow_symlinks=False):
                        remove_path(item.path)
                    else:
                        os.unlink(item.path)


def private_dir(path: str) -> None:
    """Create ``path`` (and parents) as a directory only its owner can enter, and make sure it is one now."""
    os.makedirs(path, mode=0o700, exist_ok=True)
    os.chmod(path, 0o700)


class CompileCache:
    """Entries under ``root`` (created 0700), at most ``max_bytes`` in total."""

    def __init__(self, root: str, max_bytes: int) -> None:
        self.root = root
        self.max_bytes = max_bytes
        self._scan_lock = threading.Lock()  # one eviction scan at a time in this process
        self._lock = threading.Lock()  # guards the eviction bookkeeping below
        self._evict_queued = False
        self._estimate = 0  # bytes: the total at the last scan plus what this process stored since
        self._scanned = -math.inf  # when the last scan ended (monotonic): the first put scans
        private_dir(root)
        sweep_temporaries(root)

    def _path(self, key: str) -> str:
        return os.path.join(self.root, key + _SUFFIX)

    def get(self, key: str) -> Entry | None:
        path = self._path(key)
        try:
            with open(path, "rb") as f:
                info = os.fstat(f.fileno())
                blob = f.read()
        except OSError:
            return None
        entry = None
        if info.st_uid == os.geteuid() and not info.st_mode & 0o077:  # only what this engine user stored, privately
            entry = _decode(blob)
        if entry is None:  # altered, truncated or not ours: never used, recompiled and stored again
            with contextlib.suppress(OSError):
                os.unlink(path)
            return None
        with contextlib.suppress(OSError):
            os.utime(path)  # most recently used
        return entry

    def put(self, key: str, stage: Stage, files: Sequence[FileImage]) -> None:
        blob = _encode(stage, files)
        if len(blob) > self.max_bytes:
            return
        tmp = os.path.join(self.root, f".tmp-{os.getpid()}-{secrets.token_hex(6)}")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(blob)
            os.replace(tmp, self._path(key))
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
        self._evict_if_due(len(blob))

    def _evict_if_due(self, added: int) -> None:
        """Scan (on the forker thread) only when this process's estimate of the total passes the bound, or the last
        scan is old enough that other processes' entries may have: the scan stats every entry (~4 ms for 750),
        and run on each put it cost every new compile that much. One queued scan serves every put before it."""
        with self._lock:
            self._estimate += added
            due = self._estimate > self.max_bytes or time.monotonic() - self._scanned > _RESCAN_AFTER
            if not due or self._evict_queued:
                return
            self._evict_queued = True
        _forker.later(self.evict)

    def evict(self) -> None:
        """Remove least recently used entries until the total size is within the bound."""
        with self._scan_lock:
            with self._lock:
                self._evict_queued = False  # a put from now on asks for another scan
            entries = []
            for item in os.scandir(self.root):
                if item.name.endswith(_SUFFIX):
                    with contextlib.suppress(OSError):
                        info = item.stat(follow_symlinks=False)
                        entries.append((info.st_mtime_ns, info.st_size, item.path))
            total = sum(size for _, size, _ in entries)
            for _, size, path in sorted(entries):
                if total <= self.max_bytes:
                    break
                with contextlib.suppress(OSError):
                    os.unlink(path)
                total -= size
            with self._lock:
                self._estimate, self._scanned = total, time.monotonic()

    def size(self) -> int:
        """Bytes the entries take now."""
        total = 0
        for item in os.scandir(self.root):
            if item.name.endswith(_SUFFIX):
                with contextlib.suppress(OSError):
                    total += item.stat(follow_symlinks=False).st_size
        return total


def _encode(stage: Stage, files: Sequence[FileImage]) -> bytes:
    meta = {"stage": stage.to_dict(), "files": [[name, len(data), mode] for name, data, mode in files]}
    body = json.dumps(meta, separators=(",", ":")).encode() + b"\n" + b"".join(data for _, data, _ in files)
    return _MAGIC + hashlib.sha256(body).hexdigest().encode() + b"\n" + body


def _decode(blob: bytes) -> Entry | None:
    if not blob.startswith(_MAGIC):
        return None
    head, sep, body = blob[len(_MAGIC) :].partition(b"\n")
    if not sep or hashlib.sha256(body).hexdigest().encode() != head:
        return None
    meta_line, _, data = body.partition(b"\n")
    try:
        meta = json.loads(meta_line)
        files: list[FileImage] = []
        offset = 0
        for name, size, mode in meta["files"]:
            files.append((str(name), data[offset : offset + int(size)], int(mode)))
            offset += int(size)
        if offset != len(data):
            return None
        return Entry(Stage.from_dict(meta["stage"]), tuple(files))
    except (ValueError, KeyError, TypeError):
        return None
