"""Precompiled headers for C++'s ``<bits/stdc++.h>``: built once per machine, verified before every use.

How gcc finds one (measured, gcc 12): looking for ``bits/stdc++.h`` in an ``-I`` directory it first tries
``bits/stdc++.h.gch`` there; it uses it when it is the first include of the unit and was built with the same
flags, and otherwise (not first, other flags, macros that differ) silently goes on down the search path to the
real header. So a compile that includes ``<bits/stdc++.h>`` gets ``-I <store>/include`` and nothing else changes.
Two things gcc does not forgive are handled here: a truncated ``.gch`` is a hard error ("while reading
precompiled header"), and gcc never checks whether the headers changed since the build. So every PCH has a
manifest — compiler identity, flags, the header and every file it includes (size, mtime), the ``.gch``'s SHA-256
and size — checked (hash included) before first use in a process and by ``stat`` on every later use; anything
stale, foreign (not owned by this user, or writable by others) or corrupt is removed and rebuilt.

The build runs sandboxed (the compile stage's sandbox, with room for a ~100 MB file) on a background thread,
once per machine (a lock file serialises processes); until it is there, compiles go without it. The store is
readable by the compile sandbox (bound read-only), never by a program's run.

One difference gcc makes is not in the flags: a diagnostic located inside the precompiled headers names the
include chain only up to ``stdc++.h`` (the PCH's own main file), not the student's ``from main.cpp:1``. Such a
compile is rerun without the PCH (:func:`needs_cold_rerun`), so diagnostics are always those of a cold compile.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import re
import secrets
import subprocess
import threading
from collections.abc import Callable
from dataclasses import dataclass

from .._jobs import Job
from . import _workdir
from ._cache_dir import trusted
from ._compile_cache import sweep_temporaries
from ._toolchains import Toolchain, compile_flags, compiler, compiler_identity

#: language → the header that gets a precompiled header, and how a source that includes it is recognised
PCH_HEADERS: dict[str, tuple[str, re.Pattern[str]]] = {
    "c++": ("bits/stdc++.h", re.compile(r"^\s*#\s*include\s*<bits/stdc\+\+\.h>", re.MULTILINE)),
}
_FORMAT = 1
_SYSTEM_PATH = "/usr/local/bin:/usr/bin:/bin"

# builds (toolchain, language, header path, output file name) in the sandbox: the output's bytes, None if it failed
Builder = Callable[[Toolchain, str, str, str], bytes | None]


def wanted(job: Job) -> bool:
    """Whether any source of ``job`` includes a header this module precompiles."""
    found = PCH_HEADERS.get(job.language)
    if found is None:
        return False
    return any(isinstance(f.content, str) and found[1].search(f.content) for f in job.files)


def needs_cold_rerun(output: str, header_path: str) -> bool:
    """Whether a compile that used the PCH must be redone without it for its diagnostics to be a cold compile's:
    a diagnostic inside the precompiled headers (its include chain would stop at the header) or a PCH gcc could
    not read."""
    return header_path in output or "precompiled header" in output


@dataclass(frozen=True)
class Ready:
    include_dir: str  # what goes after -I
    header_path: str  # the real header the PCH was built from
    digest: str  # the .gch's SHA-256 (part of a compile cache key)
    stat: tuple[tuple[int, ...], ...]  # the .gch's and the manifest's stat (_stat_of) when they were verified


def _stat_of(*paths: str) -> tuple[tuple[int, ...], ...]:
    """What a later use compares to decide whether to verify again: any write, replacement or chmod changes it."""
    out = []
    for path in paths:
        info = os.stat(path, follow_symlinks=False)
        out.append((info.st_ino, info.st_size, info.st_mtime_ns, info.st_ctime_ns, info.st_uid, info.st_mode))
    return tuple(out)


def public_dir(path: str) -> None:
    """Create ``path`` (and parents) readable by the sandbox's uids but writable by this user only."""
    os.makedirs(path, mode=0o755, exist_ok=True)
    os.chmod(path, 0o755)


class PchStore:
    """The precompiled headers under ``root`` (``root/<id>/include/...`` and ``root/<id>/manifest.json``)."""

    def __init__(self, root: str, build: Builder) -> None:
        self.root = root
        self._build = build
        self._lock = threading.Lock()
        self._ready: dict[str, Ready] = {}
        self._building: set[str] = set()
        self._failed: set[str] = set()  # builds that failed in this process: not tried again in the background
        public_dir(root)
        sweep_temporaries(root)

    def ready(self, tc: Toolchain, language: str) -> Ready | None:
        """The verified PCH for this toolchain, or None (then a build is started in the background, once)."""
        found = self.verified(tc, language)
        if found is None:
            self._start_build(tc, language, self._id(tc, language))
        return found

    def verified(self, tc: Toolchain, language: str) -> Ready | None:
        """The PCH for this toolchain if it is there and everything its manifest says holds (else it is removed)."""
        pid = self._id(tc, language)
        with self._lock:
            known = self._ready.get(pid)
        if known is not None:
            gch = os.path.join(known.include_dir, PCH_HEADERS[language][0] + ".gch")
            with contextlib.suppress(OSError):
                if _stat_of(gch, self._manifest_path(pid)) == known.stat:
                    return known
            with self._lock:
                self._ready.pop(pid, None)
        found = self._verify(tc, language, pid)
        if found is not None:
            with self._lock:
                self._ready[pid] = found
        return found

    def wait_ready(self, tc: Toolchain, language: str) -> Ready | None:
        """Build the PCH now if it is missing (on this thread) and return it (None if it cannot be built)."""
        found = self.ready(tc, language)
        if found is not None:
            return found
        self.build(tc, language, self._id(tc, language), wait=True)
        return self.ready(tc, language)

    def _id(self, tc: Toolchain, language: str) -> str:
        ident = {"format": _FORMAT, "language": language, "compiler": compiler_identity(tc, language),
                 "flags": compile_flags(language)}  # fmt: skip
        digest = hashlib.sha256(json.dumps(ident, sort_keys=True).encode()).hexdigest()
        return f"{language.replace('+', 'p')}-{digest[:20]}"

    def _manifest_path(self, pid: str) -> str:
        return os.path.join(self.root, pid, "manifest.json")

    def _verify(self, tc: Toolchain, language: str, pid: str) -> Ready | None:
        """The PCH of ``pid`` if everything its manifest says still holds; a PCH that fails is removed."""
        header = PCH_HEADERS[language][0]
        folder = os.path.join(self.root, pid)
        include = os.path.join(folder, "include")
        gch = os.path.join(include, header + ".gch")
        if not os.path.lexists(folder):
            return None
        try:
            checked = [folder, include, os.path.dirname(gch), gch, self._manifest_path(pid)]
            with open(self._manifest_path(pid), "rb") as f:
                manifest = json.load(f)
            ok = (
                all(trusted(p) for p in checked)
                and manifest.get("format") == _FORMAT
                and manifest.get("compiler") == json.loads(json.dumps(compiler_identity(tc, language)))
                and manifest.get("flags") == list(compile_flags(language))
                and all(_unchanged(path, size, mtime) for path, size, mtime in manifest["depends"])
                and os.path.getsize(gch) == manifest["size"]
                and _sha256(gch) == manifest["sha256"]
            )
            if ok:
                stat = _stat_of(gch, self._manifest_path(pid))
                return Ready(include, manifest["header_path"], manifest["sha256"], stat)
        except (OSError, ValueError, KeyError, TypeError):
            pass
        with contextlib.suppress(OSError):
            _remove(folder)
        return None

    def _start_build(self, tc: Toolchain, language: str, pid: str) -> None:
        with self._lock:
            if pid in self._building or pid in self._failed:
                return
            self._building.add(pid)
        threading.Thread(
            target=self._background_build, args=(tc, language, pid), name="codecapsule-pch", daemon=True
        ).start()

    def _background_build(self, tc: Toolchain, language: str, pid: str) -> None:
        try:
            self.build(tc, language, pid)
        except Exception:  # a sandbox or disk failure: compiles go on without the PCH, and it is not retried
            with self._lock:
                self._failed.add(pid)

    def build(self, tc: Toolchain, language: str, pid: str, *, wait: bool = False) -> None:
        """Build the PCH of ``pid`` unless another process is building it (``wait``: then wait for that one)."""
        try:
            lock_fd = os.open(os.path.join(self.root, pid + ".lock"), os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
            try:
                try:
                    fcntl.flock(lock_fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
                except BlockingIOError:
                    return  # another process builds it; a later compile finds it
                if self._verify(tc, language, pid) is None and not self._build_locked(tc, language, pid):
                    with self._lock:
                        self._failed.add(pid)
            finally:
                os.close(lock_fd)
        finally:
            with self._lock:
                self._building.discard(pid)

    def _build_locked(self, tc: Toolchain, language: str, pid: str) -> bool:
        """Build and store the PCH; False if the header or the build failed (compiles then go without it)."""
        header = PCH_HEADERS[language][0]
        depends = _dependencies(tc, language, header)
        if not depends:
            return False
        header_path = depends[0]
        data = self._build(tc, language, header_path, os.path.basename(header) + ".gch")
        if data is None:
            return False
        tmp = os.path.join(self.root, f".tmp-{os.getpid()}-{secrets.token_hex(6)}")
        gch = os.path.join(tmp, "include", header + ".gch")
        public_dir(os.path.dirname(gch))
        for d in (os.path.join(tmp, "include"), tmp):
            os.chmod(d, 0o755)
        fd = os.open(gch, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        manifest = {
            "format": _FORMAT, "language": language, "compiler": compiler_identity(tc, language),
            "flags": list(compile_flags(language)), "header_path": header_path,
            "depends": [[p, *_size_mtime(p)] for p in depends],
            "size": len(data), "sha256": hashlib.sha256(data).hexdigest(),
        }  # fmt: skip
        fd = os.open(os.path.join(tmp, "manifest.json"), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        with os.fdopen(fd, "w") as f:
            json.dump(manifest, f)
        final = os.path.join(self.root, pid)
        if os.path.lexists(final):
            _remove(final)
        os.rename(tmp, final)
        return True


def _dependencies(tc: Toolchain, language: str, header: str) -> list[str]:
    """The header's real path, then every file it includes (the preprocessor's own dependency list)."""
    out = subprocess.run(
        [compiler(tc, language), *compile_flags(language), "-x", language, "-M", "-"],
        input=f"#include <{header}>\n", capture_output=True, text=True, timeout=60, env={"PATH": _SYSTEM_PATH},
    )  # fmt: skip
    if out.returncode != 0:
        return []
    words = [os.path.normpath(w) for w in out.stdout.replace("\\\n", " ").split(":", 1)[-1].split() if w != "-"]
    headers = [w for w in words if w.endswith("/" + header)]
    return headers[:1] + [w for w in words if w not in headers[:1]]


def _size_mtime(path: str) -> tuple[int, int]:
    info = os.stat(path)
    return info.st_size, info.st_mtime_ns


def _unchanged(path: str, size: int, mtime: int) -> bool:
    try:
        return _size_mtime(path) == (size, mtime)
    except OSError:
        return False


def _sha256(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _remove(path: str) -> None:
    if os.path.isdir(path) and not os.path.islink(path):
        _workdir.remove_tree(path)
    else:
        os.unlink(path)
