"""Copy files between a directory of ours and one a sandboxed process can write into, as root, without ever
following a link: every step is relative to an open directory (``openat``, ``O_NOFOLLOW``), so a process that swaps
a file or directory for a symlink meanwhile cannot make us read or write outside its own directory.

Used by the warm javac (``_javac_server``): a job's files go into the server's directory, its class files come out.
"""

from __future__ import annotations

import contextlib
import os
import stat
from collections.abc import Callable

_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_CHUNK = 1 << 20


class CopyRefused(Exception):
    """What the other side holds is not a plain file or directory, or is larger than allowed."""


def open_dir(name: str, dir_fd: int) -> int:
    """``name`` (in ``dir_fd``) opened as a directory, refusing a symlink."""
    return os.open(name, _DIR, dir_fd=dir_fd)


def copy_in(source: str, target_fd: int, owner: int | None) -> None:
    """Copy every regular file under ``source`` (ours) into the directory ``target_fd`` (theirs), same relative
    paths, files 0644 and directories 0755 owned by ``owner`` (None: ours)."""
    for folder, dirs, names in os.walk(source):
        rel = os.path.relpath(folder, source)
        dirs[:] = [d for d in dirs if not os.path.islink(os.path.join(folder, d))]
        wanted = [n for n in names if stat.S_ISREG(os.lstat(os.path.join(folder, n)).st_mode)]
        if not wanted:
            continue
        here = _descend(target_fd, [] if rel == "." else rel.split(os.sep), owner)
        try:
            for name in wanted:
                with open(os.path.join(folder, name), "rb") as src:
                    fd = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644,
                                 dir_fd=here)  # fmt: skip
                    try:
                        while chunk := src.read(_CHUNK):
                            os.write(fd, chunk)
                        if owner is not None:
                            os.fchown(fd, owner, owner)
                    finally:
                        os.close(fd)
        finally:
            if here != target_fd:
                os.close(here)


def _descend(top_fd: int, parts: list[str], owner: int | None) -> int:
    """The directory ``parts`` below ``top_fd``, made where missing (0755, ``owner``); a new fd unless ``parts``
    is empty."""
    fd = top_fd
    for part in parts:
        with contextlib.suppress(FileExistsError):
            os.mkdir(part, 0o755, dir_fd=fd)
        child = open_dir(part, fd)
        if owner is not None:
            os.fchown(child, owner, owner)
        if fd != top_fd:
            os.close(fd)
        fd = child
    return fd


def copy_out(source_fd: int, target: str, owner: int | None, wanted: Callable[[str], bool], limit: int) -> None:
    """Copy the regular files ``wanted`` under the directory ``source_fd`` (theirs) into ``target`` (ours), same
    relative paths, files 0644 and directories 0755 owned by ``owner``; at most ``limit`` bytes in all."""
    left = limit
    for folder, _, names, dir_fd in os.fwalk(".", dir_fd=source_fd, follow_symlinks=False):
        for name in names:
            if not wanted(name):
                continue
            data = _read_regular(name, dir_fd, left)
            left -= len(data)
            dest_dir = os.path.normpath(os.path.join(target, folder))
            _make_dirs(target, dest_dir, owner)
            dest = os.path.join(dest_dir, name)
            with contextlib.suppress(FileNotFoundError):
                os.unlink(dest)
            fd = os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
            try:
                os.write(fd, data)
                if owner is not None:
                    os.fchown(fd, owner, owner)
            finally:
                os.close(fd)


def _read_regular(name: str, dir_fd: int, limit: int) -> bytes:
    fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, dir_fd=dir_fd)
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise CopyRefused(f"{name!r} is not a regular file")
        if info.st_size > limit:
            raise CopyRefused(f"{name!r} is larger than the {limit} bytes allowed")
        data = bytearray()
        while len(data) <= limit and (chunk := os.read(fd, _CHUNK)):
            data += chunk
        if len(data) > limit:
            raise CopyRefused(f"{name!r} grew past the {limit} bytes allowed")
        return bytes(data)
    finally:
        os.close(fd)


def _make_dirs(top: str, folder: str, owner: int | None) -> None:
    """``folder`` (below ``top``, ours) and its missing parents, 0755, owned by ``owner``."""
    if folder == top or os.path.isdir(folder):
        return
    _make_dirs(top, os.path.dirname(folder), owner)
    os.mkdir(folder, 0o755)
    if owner is not None:
        os.chown(folder, owner, owner)
