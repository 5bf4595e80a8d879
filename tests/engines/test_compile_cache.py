"""The C/C++ compile cache: a hit's Result is a miss's, its entries are the engine's alone, verified, and bounded."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator

import pytest

from codecapsule import Job, Result
from codecapsule._results import Stage
from codecapsule.engines import _forker
from codecapsule.engines._compile_cache import CompileCache
from codecapsule.engines._warm_compile import usable
from codecapsule.engines._workdir import remove_tree
from codecapsule.engines.local import LocalEngine

pytestmark = pytest.mark.skipif(shutil.which("gcc") is None, reason="gcc not installed")

C_OK = '#include <stdio.h>\nint main(void){ puts("hi there"); return 0; }\n'
C_WARNS = '#include <stdio.h>\nint main(void){\n    int unused;\n    puts("warned");\n    return 0;\n}\n'
C_ERROR = '#include <stdio.h>\nint main(void){\n    printf("%d\\n", missing);\n}\n'
CPP_WARNS = "#include <iostream>\nint main(){\n    int unused;\n    std::cout << 7 << '\\n';\n}\n"


@pytest.fixture
def root() -> Iterator[str]:
    path = tempfile.mkdtemp(prefix="capsule-cache-test-")
    os.chmod(path, 0o755)
    yield path
    remove_tree(path)


@pytest.fixture
def engine(root: str) -> Iterator[LocalEngine]:
    e = LocalEngine(cache_dir=root)
    if not usable(e.caps):
        pytest.skip("no warm compile here: a program would run as this user without bubblewrap")
    yield e
    e.close()


def entries(root: str) -> list[str]:
    folder = os.path.join(root, "compile")
    return sorted(os.path.join(folder, n) for n in os.listdir(folder) if n.endswith(".entry"))


def same_result(a: Result, b: Result) -> None:
    """Everything a student sees is equal (a run's own timings differ from run to run)."""
    assert (a.verdict, a.stdout, a.stderr, a.exit_code) == (b.verdict, b.stdout, b.stderr, b.exit_code)
    assert a.compile is not None and b.compile is not None
    for field in ("stdout", "stderr", "output", "exit_code", "signal", "status", "message", "truncated"):
        assert getattr(a.compile, field) == getattr(b.compile, field), field
    assert (a.run is None) == (b.run is None)
    if a.run is not None and b.run is not None:
        assert (a.run.stdout, a.run.stderr, a.run.status, a.run.exit_code) == (
            b.run.stdout,
            b.run.stderr,
            b.run.status,
            b.run.exit_code,
        )


def is_hit(result: Result) -> bool:
    # a hit's compile stage used no CPU (documented); a real gcc run always uses some
    return result.compile is not None and result.compile.cpu_time == 0.0


@pytest.mark.parametrize(
    ("source", "language", "verdict"),
    [(C_OK, "c", "ok"), (C_WARNS, "c", "ok"), (C_ERROR, "c", "compile_error"), (CPP_WARNS, "c++", "ok")],
    ids=["ok", "warnings", "compile-error", "cpp-warnings"],
)
def test_a_hit_gives_the_result_of_a_miss_and_of_a_cold_engine(
    engine: LocalEngine, root: str, source: str, language: str, verdict: str
) -> None:
    job = Job.create(source, language)
    miss = engine.run(job)
    assert len(entries(root)) == 1 and not is_hit(miss)
    hit = engine.run(job)
    assert is_hit(hit)
    assert miss.verdict == verdict
    same_result(hit, miss)
    cold = LocalEngine(warm=False, cache_dir=root).run(job)
    same_result(hit, cold)
    if "unused" in source:
        assert "warning: unused variable" in hit.compile.stderr  # type: ignore[union-attr]


def test_warm_off_reads_and_writes_no_cache(root: str) -> None:
    cold = LocalEngine(warm=False, cache_dir=os.path.join(root, "never"))
    assert cold.run(Job.create(C_OK, "c")).stdout == "hi there\n"
    assert not os.path.exists(os.path.join(root, "never"))


def test_entries_are_private_to_the_engine_user(engine: LocalEngine, root: str) -> None:
    engine.run(Job.create(C_OK, "c"))
    folder = os.path.join(root, "compile")
    assert os.stat(folder).st_mode & 0o777 == 0o700
    for path in entries(root):
        info = os.stat(path)
        assert info.st_uid == os.geteuid() and info.st_mode & 0o777 == 0o600


# A program that looks for the cache and tries to plant a file in it (argv: the paths to try).
C_PROBE = r"""
#include <stdio.h>
#include <sys/stat.h>
int main(int argc, char **argv) {
    for (int i = 1; i < argc; i++) {
        struct stat st;
        FILE *f = fopen(argv[i], "a");
        char planted[4096];
        snprintf(planted, sizeof planted, "%s/planted.entry", argv[i]);
        FILE *g = fopen(planted, "w");
        printf("%s %s\n", stat(argv[i], &st) == 0 ? "visible" : "absent", (f || g) ? "writable" : "locked");
        if (f) fclose(f);
        if (g) fclose(g);
    }
    return 0;
}
"""


def test_a_program_cannot_see_or_alter_the_cache(engine: LocalEngine, root: str) -> None:
    job = Job.create(C_OK, "c")
    first = engine.run(job)
    targets = [root, os.path.join(root, "compile"), os.path.join(root, "pch"), *entries(root)]
    probe = engine.run(Job.create(C_PROBE, "c", args=targets))
    assert probe.verdict == "ok", probe
    assert probe.stdout.splitlines() == ["absent locked"] * len(targets)
    assert not any(name.startswith("planted") for name in os.listdir(os.path.join(root, "compile")))
    again = engine.run(job)
    assert is_hit(again)
    same_result(again, first)


def test_a_corrupted_entry_is_detected_and_recompiled(engine: LocalEngine, root: str) -> None:
    job = Job.create(C_OK, "c")
    engine.run(job)
    (path,) = entries(root)
    with open(path, "rb") as f:
        stored = f.read()
    assert stored.count(b"hi there") == 1  # the string inside the stored executable
    with open(path, "wb") as f:
        f.write(stored.replace(b"hi there", b"HI there"))  # a poisoned binary that would print HI
    rerun = engine.run(job)
    assert rerun.stdout == "hi there\n" and not is_hit(rerun)
    with open(path, "rb") as f:
        restored = f.read()
    assert restored.count(b"hi there") == 1 and b"HI there" not in restored  # stored again from the fresh compile
    with open(path, "wb") as f:
        f.write(stored[: len(stored) // 2])  # truncated
    assert engine.run(job).stdout == "hi there\n"
    assert is_hit(engine.run(job))


def test_every_source_and_header_is_part_of_the_key(engine: LocalEngine) -> None:
    main = '#include <stdio.h>\n#include "value.h"\nint main(void){ printf("%d\\n", VALUE); return 0; }\n'
    one = Job.create(main, "c", files={"value.h": "#define VALUE 1\n"})
    two = Job.create(main, "c", files={"value.h": "#define VALUE 2\n"})
    assert [engine.run(j).stdout for j in (one, two, one, two)] == ["1\n", "2\n", "1\n", "2\n"]


def test_compile_once_run_many_uses_the_cache(engine: LocalEngine) -> None:
    job = Job.create('#include <stdio.h>\nint main(void){ int n; scanf("%d", &n); printf("%d\\n", n * 2); }\n', "c")
    with engine.compile(job) as first:
        assert not first.failed and not (first.compile and first.compile.cpu_time == 0.0)
    with engine.compile(job) as second:
        assert second.compile is not None and second.compile.cpu_time == 0.0
        assert [engine.run_compiled(second, stdin=str(n)).stdout for n in (2, 5)] == ["4\n", "10\n"]


def test_the_engine_keeps_the_cache_within_its_bound(root: str) -> None:
    engine = LocalEngine(cache_dir=root, compile_cache_size=40_000)  # about two small executables
    for n in range(4):
        assert engine.run(Job.create(C_OK.replace("hi there", f"hi {n}"), "c")).stdout == f"hi {n}\n"
    assert _forker.wait_idle()  # eviction runs on the forker thread, after the put
    assert 0 < CompileCache(os.path.join(root, "compile"), 40_000).size() <= 40_000
    assert 1 <= len(entries(root)) < 4


def test_least_recently_used_entries_go_first(root: str) -> None:
    cache = CompileCache(os.path.join(root, "lru"), 3 * 1500)
    blob = os.urandom(1000)
    for n, key in enumerate(("a", "b", "c")):
        cache.put(key, Stage(stdout=key), [("main", blob, 0o755)])
        os.utime(os.path.join(cache.root, key + ".entry"), ns=(n * 10**9, n * 10**9))  # a, then b, then c
    hit = cache.get("a")  # now the most recently used
    assert hit is not None and hit.stage.stdout == "a" and hit.files == (("main", blob, 0o755),)
    cache.put("d", Stage(stdout="d"), [("main", blob, 0o755)])
    assert _forker.wait_idle()
    assert [k for k in "abcd" if cache.get(k) is not None] == ["a", "c", "d"]


def test_an_entry_larger_than_the_bound_is_not_kept(root: str) -> None:
    cache = CompileCache(os.path.join(root, "small"), 100)
    cache.put("big", Stage(), [("main", b"x" * 1000, 0o755)])
    assert cache.get("big") is None and cache.size() == 0


def test_an_entry_someone_else_can_write_is_not_used(root: str) -> None:
    cache = CompileCache(os.path.join(root, "perm"), 10**6)
    cache.put("k", Stage(stdout="mine"), [])
    os.chmod(os.path.join(cache.root, "k.entry"), 0o666)
    assert cache.get("k") is None


def test_a_live_run_streams_a_hits_diagnostics_as_a_miss_does(engine: LocalEngine) -> None:
    from codecapsule._events import Finished, Output

    job = Job.create(C_WARNS, "c")

    def streamed() -> tuple[list[tuple[str, str]], Result]:
        with engine.stream(job) as run:
            events = list(run)
        outputs = [(e.stream, e.text) for e in events if isinstance(e, Output)]
        final = events[-1]
        assert isinstance(final, Finished)
        return outputs, final.result

    miss_events, miss = streamed()
    hit_events, hit = streamed()
    assert is_hit(hit) and not is_hit(miss)
    assert "".join(t for s, t in hit_events if s == "stderr") == "".join(t for s, t in miss_events if s == "stderr")
    assert "warning: unused variable" in "".join(t for _, t in hit_events)
    same_result(hit, miss)


def test_what_a_killed_writer_left_is_swept(root: str) -> None:
    folder = os.path.join(root, "sweep")
    CompileCache(folder, 10**6)
    dead = subprocess.Popen(["true"])
    dead.wait()  # a pid that is gone
    for name in (f".tmp-{dead.pid}-abc", f".tmp-{os.getpid()}-def"):
        with open(os.path.join(folder, name), "wb") as f:
            f.write(b"half an entry")
    CompileCache(folder, 10**6)
    assert sorted(os.listdir(folder)) == [f".tmp-{os.getpid()}-def"]  # a live writer's file stays


def test_a_cache_dir_others_can_write_is_not_used(root: str, engine: LocalEngine) -> None:
    os.chmod(root, 0o777)  # (the fixture's engine only skips this test where the warm path is off anyway)
    shared = LocalEngine(cache_dir=root)
    assert shared.run(Job.create(C_OK, "c")).stdout == "hi there\n"  # compiled cold
    assert os.listdir(root) == []
    assert "cannot be created, is not owned by this user only" in " ".join(shared.info().notes)


def test_a_cache_dir_every_sandbox_sees_is_not_used(engine: LocalEngine) -> None:
    visible = LocalEngine(cache_dir="/usr/local/share/codecapsule-cache-test")  # /usr is bound into sandboxes
    assert visible.run(Job.create(C_OK, "c")).stdout == "hi there\n"  # compiled cold
    assert not os.path.exists("/usr/local/share/codecapsule-cache-test")


def test_a_compile_cannot_read_another_jobs_entry(engine: LocalEngine, root: str) -> None:
    engine.run(Job.create(C_WARNS, "c"))
    (path,) = entries(root)
    spy = engine.run(Job.create(f'#include "{path}"\nint main(void){{ return 0; }}\n', "c"))
    assert spy.verdict == "compile_error"
    assert "No such file or directory" in spy.stderr  # the compile's sandbox has no such path


def test_the_same_job_from_two_threads_at_once(engine: LocalEngine) -> None:
    from concurrent.futures import ThreadPoolExecutor

    job = Job.create(C_OK.replace("hi there", "together"), "c")
    with ThreadPoolExecutor(2) as pool:
        results = list(pool.map(lambda _: engine.run(job), range(6)))
    assert [r.stdout for r in results] == ["together\n"] * 6
    assert any(is_hit(r) for r in results)
