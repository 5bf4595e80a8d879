"""A run's work directory: created, filled, bounded and removed without recursion; stale ones swept.

As root it is a fresh tmpfs of fixed size (``size=``, ``nr_inodes=``), owned by the sandbox uid: the quota holds for
both stages, the pages the program writes count against its memory cgroup, the sandbox sees it at ``/box`` without
any host path in ``/proc/self/mountinfo``, and removal is one lazy unmount. Elsewhere it is a plain directory under
the system temporary directory (the file-size limit bounds each file, not the total) removed by an iterative walk
that never recurses in Python, so a 3000-deep tree cannot raise RecursionError or ENAMETOOLONG.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import re
import secrets
import stat
import tempfile
from collections.abc import Iterable
from pathlib import Path

_MS_NOSUID, _MS_NODEV = 2, 4
_MNT_DETACH = 2
_NAME = re.compile(r"^codecapsule-(\d+)-[0-9a-f]+$")
_libc: ctypes.CDLL | None = None


def _c() -> ctypes.CDLL:
    global _libc
    if _libc is None:
        _libc = ctypes.CDLL(None, use_errno=True)
    return _libc


def _mount_tmpfs(path: str, options: str) -> None:
    if _c().mount(b"tmpfs", path.encode(), b"tmpfs", _MS_NOSUID | _MS_NODEV, options.encode()) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err), path)


def _unmount(path: str) -> bool:
    return bool(_c().umount2(path.encode(), _MNT_DETACH) == 0)


def _is_mountpoint(path: str) -> bool:
    try:
        return os.stat(path).st_dev != os.stat(os.path.dirname(path.rstrip("/")) or "/").st_dev
    except OSError:
        return False


class WorkDir:
    """One run's directory on the host. ``owner`` is the uid the sandboxed program runs as (None: our own)."""

    def __init__(self, root: str | None, *, size: int | None, owner: int | None) -> None:
        base = root or tempfile.gettempdir()
        self.path = os.path.join(base, f"codecapsule-{os.getpid()}-{secrets.token_hex(5)}")
        os.mkdir(self.path, 0o700)
        self.owner = owner
        self.quota: int | None = None
        if size is not None and os.geteuid() == 0:
            uid = owner if owner is not None else 0
            try:
                _mount_tmpfs(self.path, f"size={size},nr_inodes=16384,mode=0700,uid={uid},gid={uid}")
                self.quota = size
            except OSError:
                pass  # no mount permission here (a container): a plain directory, bounded per file only
        if self.quota is None and owner is not None:
            os.chown(self.path, owner, owner)

    def write(self, files: Iterable[tuple[str, bytes]]) -> None:
        """Write the job's files (names already validated and normalised), readable and writable by the owner."""
        root = Path(self.path)
        for name, data in files:
            target = root / name
            for parent in reversed(target.relative_to(root).parents[:-1]):
                d = root / parent
                if not d.is_dir():
                    d.mkdir()
                    self._own(d)
            target.write_bytes(data)
            self._own(target)

    def _own(self, path: Path) -> None:
        if self.owner is not None and self.owner != os.geteuid():
            os.chown(path, self.owner, self.owner)

    def remove(self) -> None:
        remove_path(self.path)


def reachable_by_others(path: str) -> bool:
    """Whether a uid other than the owner can traverse to ``path`` (every directory on the way has o+x)."""
    p = os.path.abspath(path)
    while True:
        try:
            if not os.stat(p).st_mode & stat.S_IXOTH:
                return False
        except OSError:
            return False
        if p == "/":
            return True
        p = os.path.dirname(p)


def remove_path(path: str) -> None:
    """Remove a work directory: unmount it if it is a tmpfs, else delete its tree iteratively."""
    if _is_mountpoint(path):
        _unmount(path)
    with contextlib.suppress(FileNotFoundError):
        remove_tree(path)


def remove_tree(path: str) -> None:
    """Delete a directory tree with one open directory at a time and an explicit stack of names (no recursion,
    no long paths); read-only or unreadable directories a program left are made accessible first."""
    flags = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW
    with contextlib.suppress(OSError):
        os.chmod(path, 0o700)
    fd = os.open(path, flags)
    names: list[str] = []
    try:
        while True:
            descended = False
            with os.scandir(fd) as entries:
                pending = list(entries)
            for entry in pending:
                try:
                    is_dir = stat.S_ISDIR(os.stat(entry.name, dir_fd=fd, follow_symlinks=False).st_mode)
                except FileNotFoundError:
                    continue
                if is_dir:
                    with contextlib.suppress(OSError):
                        os.chmod(entry.name, 0o700, dir_fd=fd)  # a directory (checked without following links)
                    child = os.open(entry.name, flags, dir_fd=fd)
                    os.close(fd)
                    fd, descended = child, True
                    names.append(entry.name)
                    break
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(entry.name, dir_fd=fd)
            if descended:
                continue
            if not names:
                break
            parent = os.open("..", flags, dir_fd=fd)
            os.close(fd)
            fd = parent
            os.rmdir(names.pop(), dir_fd=fd)
    finally:
        os.close(fd)
    os.rmdir(path)


def sweep(root: str | None) -> int:
    """Remove work directories of engines whose process is gone (a host process killed mid-run); returns how many."""
    base = root or tempfile.gettempdir()
    removed = 0
    try:
        entries = list(os.scandir(base))
    except OSError:
        return 0
    for entry in entries:
        m = _NAME.match(entry.name)
        if m is None or pid_alive(int(m.group(1))):
            continue
        with contextlib.suppress(OSError):
            remove_path(entry.path)
            removed += 1
    return removed


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
