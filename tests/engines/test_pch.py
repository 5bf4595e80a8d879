"""The precompiled <bits/stdc++.h>: gcc really uses it, diagnostics are a cold compile's, and a stale, foreign or
corrupt one is never used (rebuilt instead)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator

import pytest

from codecapsule import Job, Result
from codecapsule.engines._pch import PchStore, Ready
from codecapsule.engines._warm_compile import WarmCompiler, sandboxed_builder
from codecapsule.engines._workdir import remove_tree
from codecapsule.engines.local import LocalEngine

pytestmark = pytest.mark.skipif(shutil.which("g++") is None, reason="g++ not installed")

BITS_WARNS = "#include <bits/stdc++.h>\nint main() {\n    int unused;\n    std::cout << 1 << '\\n';\n}\n"
BITS_ERROR = "#include <bits/stdc++.h>\nint main() {\n    std::vector<int> v;\n\n    return missing;\n}\n"
# an error whose diagnostics point into the precompiled headers (their include chain must name main.cpp:1)
BITS_HEADER_ERROR = (
    "#include <bits/stdc++.h>\nstruct S {};\n"
    "int main() {\n    std::vector<S> v;\n    std::sort(v.begin(), v.end());\n}\n"
)
# gcc rejects the PCH here (a macro that changes the headers): it must fall back to the header, silently
BITS_REJECTED = (
    "#define _GLIBCXX_DEBUG 1\n#include <bits/stdc++.h>\n"
    "int main() { std::vector<int> v{4}; std::cout << v[0] << '\\n'; }\n"
)
BITS_NOT_FIRST = '#include <cstdio>\n#include <bits/stdc++.h>\nint main() { std::printf("%d\\n", std::max(2, 3)); }\n'


def _reachable_tempdir() -> str:
    path = tempfile.mkdtemp(prefix="capsule-pch-test-")
    os.chmod(path, 0o755)
    return path


@pytest.fixture(scope="module")
def built() -> Iterator[tuple[LocalEngine, WarmCompiler, Ready]]:
    """One engine with its PCH built (once for the module: the build takes seconds of CPU)."""
    root = _reachable_tempdir()
    engine = LocalEngine(cache_dir=root)
    warm = engine.warm_compiler(engine.caps)
    if warm is None:
        pytest.skip("no warm compile here: a program would run as this user without bubblewrap")
    ready = warm.pch.wait_ready(engine.toolchain("c++"), "c++")
    assert ready is not None
    yield engine, warm, ready
    engine.close()
    remove_tree(root)


def test_gcc_uses_the_stored_pch_with_the_compile_profile(built: tuple[LocalEngine, WarmCompiler, Ready]) -> None:
    engine, _, ready = built
    with tempfile.TemporaryDirectory() as d:
        with open(os.path.join(d, "main.cpp"), "w") as f:
            f.write(BITS_WARNS)
        cc = engine.toolchain("c++").executables["g++"]
        out = subprocess.run(
            [cc, "-I", ready.include_dir, "-std=c++17", "-Wall", "-pipe", "-H", "-fsyntax-only", "main.cpp"],
            cwd=d, capture_output=True, text=True, check=True,
        )  # fmt: skip
    assert out.stderr.startswith(f"! {ready.include_dir}/bits/stdc++.h.gch\n")  # "!": the PCH was valid and used


def test_the_store_is_readable_by_sandboxes_and_writable_by_the_engine_only(
    built: tuple[LocalEngine, WarmCompiler, Ready],
) -> None:
    _, warm, ready = built
    path = ready.include_dir
    while path != os.path.dirname(warm.pch.root):
        info = os.stat(path)
        assert info.st_uid == os.geteuid() and info.st_mode & 0o777 == 0o755, path
        path = os.path.dirname(path)
    gch = os.stat(os.path.join(ready.include_dir, "bits", "stdc++.h.gch"))
    assert gch.st_mode & 0o777 == 0o644


def _cold(job: Job) -> Result:
    return LocalEngine(warm=False).run(job)


@pytest.mark.parametrize(
    ("source", "verdict"),
    [
        (BITS_WARNS, "ok"),
        (BITS_ERROR, "compile_error"),
        (BITS_HEADER_ERROR, "compile_error"),
        (BITS_REJECTED, "ok"),
        (BITS_NOT_FIRST, "ok"),
    ],
    ids=["warning", "error", "error-inside-the-headers", "pch-rejected", "not-first-include"],
)
def test_diagnostics_are_those_of_a_cold_compile(
    built: tuple[LocalEngine, WarmCompiler, Ready], source: str, verdict: str
) -> None:
    engine, _, _ = built
    job = Job.create(source, "c++")
    warm, cold = engine.run(job), _cold(job)
    assert warm.verdict == cold.verdict == verdict, warm
    assert warm.compile is not None and cold.compile is not None
    assert warm.compile.stderr == cold.compile.stderr  # every warning and error, line numbers included
    assert (warm.stdout, warm.compile.exit_code) == (cold.stdout, cold.compile.exit_code)
    if source is BITS_ERROR:
        assert "main.cpp:5:12: error: ‘missing’ was not declared" in warm.compile.stderr
    if source is BITS_HEADER_ERROR:
        assert "from main.cpp:1:" in warm.compile.stderr


def _copy_store(engine: LocalEngine, warm: WarmCompiler) -> tuple[str, PchStore]:
    """A fresh store holding a copy of the built PCH (each test spoils its own)."""
    root = _reachable_tempdir()
    target = os.path.join(root, "pch")
    shutil.copytree(warm.pch.root, target, ignore=shutil.ignore_patterns("*.lock"))
    for folder, _, files in os.walk(target):
        os.chmod(folder, 0o755)
        for name in files:
            os.chmod(os.path.join(folder, name), 0o644)
    return root, PchStore(target, sandboxed_builder(engine))


def _pch_files(ready: Ready, store: PchStore) -> tuple[str, str]:
    folder = os.path.join(store.root, os.path.basename(os.path.dirname(ready.include_dir)))
    return os.path.join(folder, "include", "bits", "stdc++.h.gch"), os.path.join(folder, "manifest.json")


def _spoilers() -> dict[str, object]:
    def truncate(gch: str, manifest: str) -> None:
        with open(gch, "r+b") as f:
            f.truncate(1000)

    def flip(gch: str, manifest: str) -> None:
        with open(gch, "r+b") as f:
            f.seek(5000)
            byte = f.read(1)
            f.seek(5000)
            f.write(bytes([byte[0] ^ 0xFF]))

    def other_flags(gch: str, manifest: str) -> None:
        with open(manifest) as f:
            data = json.load(f)
        data["flags"] = ["-std=c++17", "-O2"]
        with open(manifest, "w") as f:
            json.dump(data, f)

    def other_compiler(gch: str, manifest: str) -> None:
        with open(manifest) as f:
            data = json.load(f)
        data["compiler"]["version"] = "0.0.1"
        with open(manifest, "w") as f:
            json.dump(data, f)

    def header_changed(gch: str, manifest: str) -> None:
        with open(manifest) as f:
            data = json.load(f)
        data["depends"][3][2] += 1  # one of the included headers has another mtime than at the build
        with open(manifest, "w") as f:
            json.dump(data, f)

    def writable_by_others(gch: str, manifest: str) -> None:
        os.chmod(gch, 0o666)

    def someone_elses(gch: str, manifest: str) -> None:
        os.chown(manifest, 65533, 65533)  # (as root) a manifest another user wrote

    spoilers = [truncate, flip, other_flags, other_compiler, header_changed, writable_by_others]
    if os.geteuid() == 0:
        spoilers.append(someone_elses)
    return {f.__name__: f for f in spoilers}


SPOILERS = _spoilers()


@pytest.mark.parametrize("spoil", list(SPOILERS), ids=list(SPOILERS))
def test_a_stale_foreign_or_corrupt_pch_is_never_used(
    built: tuple[LocalEngine, WarmCompiler, Ready], spoil: str
) -> None:
    engine, warm, ready = built
    root, store = _copy_store(engine, warm)
    try:
        tc = engine.toolchain("c++")
        assert store.verified(tc, "c++") is not None  # the copy is good
        gch, manifest = _pch_files(ready, store)
        SPOILERS[spoil](gch, manifest)  # type: ignore[operator]
        assert store.verified(tc, "c++") is None
        assert not os.path.exists(gch)  # removed, to be rebuilt
    finally:
        remove_tree(root)


def test_a_pch_spoiled_after_it_was_verified_is_not_used_and_the_compile_still_works() -> None:
    root = _reachable_tempdir()
    try:
        engine = LocalEngine(cache_dir=root)
        warm = engine.warm_compiler(engine.caps)
        if warm is None:
            pytest.skip("no warm compile here: a program would run as this user without bubblewrap")
        tc = engine.toolchain("c++")
        ready = warm.pch.wait_ready(tc, "c++")  # built here: this test also covers a build from nothing
        assert ready is not None and warm.pch.ready(tc, "c++") == ready
        gch = os.path.join(ready.include_dir, "bits", "stdc++.h.gch")
        with open(gch, "r+b") as f:
            f.truncate(1000)  # gcc would fail hard on this one ("while reading precompiled header")
        job = Job.create(BITS_WARNS, "c++")
        result = engine.run(job)
        assert result.verdict == "ok" and result.compile is not None
        assert result.compile.stderr == _cold(job).compile.stderr  # type: ignore[union-attr]
        rebuilt = warm.pch.wait_ready(tc, "c++")
        assert rebuilt is not None and os.path.getsize(gch) > 1000  # built again, in the background
    finally:
        remove_tree(root)


@pytest.mark.parametrize("raises", [False, True], ids=["fails", "raises"])
def test_a_build_that_fails_is_not_retried_for_every_compile(raises: bool) -> None:
    from tests.fakes.pch_builders import FailingBuilder

    root = _reachable_tempdir()
    try:
        builder = FailingBuilder(raises=raises)
        store = PchStore(os.path.join(root, "pch"), builder)
        tc = LocalEngine(warm=False).toolchain("c++")
        assert store.ready(tc, "c++") is None  # starts the background build
        assert builder.done.wait(60)
        deadline = time.monotonic() + 60
        while store._building and time.monotonic() < deadline:  # the build thread's bookkeeping is done
            time.sleep(0.01)
        assert not store._building
        for _ in range(3):
            assert store.ready(tc, "c++") is None
        assert builder.calls == 1 and not store._building
    finally:
        remove_tree(root)
