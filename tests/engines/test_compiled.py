"""LocalEngine.compile / run_compiled: one build, many runs, each in a fresh sandbox and work directory."""

from __future__ import annotations

import shutil
from collections.abc import Iterator

import pytest

from codecapsule import EngineError, Job
from codecapsule.engines.local import LocalEngine

needs_gcc = pytest.mark.skipif(shutil.which("gcc") is None, reason="gcc not installed")
needs_java = pytest.mark.skipif(shutil.which("javac") is None, reason="javac not installed")

# Each run leaves a file behind and reports whether it found one: a fresh work directory never has it.
C_STATEFUL = r"""
#include <stdio.h>
int main(void) {
    int a, b;
    FILE *seen = fopen("left-behind", "r");
    FILE *mark = fopen("left-behind", "w");
    if (mark) fclose(mark);
    if (scanf("%d %d", &a, &b) != 2) return 3;
    printf("%d %s\n", a + b, seen ? "dirty" : "fresh");
    return 0;
}
"""


@pytest.fixture
def engine() -> Iterator[LocalEngine]:
    e = LocalEngine()
    yield e
    e.close()


@needs_gcc
def test_compile_once_run_many_in_fresh_directories(engine: LocalEngine) -> None:
    job = Job.create(C_STATEFUL, "c", timeout="2s")
    with engine.compile(job) as artifact:
        assert not artifact.failed and artifact.compile is not None
        assert "main" in {name for name, _, _ in artifact.files}  # the executable, kept from the one build
        results = [engine.run_compiled(artifact, stdin=f"{n} {n}", name=f"t{n}") for n in range(3)]
        assert "left-behind" not in {name for name, _, _ in artifact.files}  # runs do not write into the build
    assert artifact.closed and not artifact.files
    assert [r.stdout for r in results] == ["0 fresh\n", "2 fresh\n", "4 fresh\n"]
    assert [r.name for r in results] == ["t0", "t1", "t2"]
    assert all(r.compile is artifact.compile for r in results)  # the one compile stage, not three
    with pytest.raises(EngineError, match="closed"):
        engine.run_compiled(artifact, stdin="1 1")


@needs_gcc
def test_a_compile_error_is_every_runs_result(engine: LocalEngine) -> None:
    with engine.compile(Job.create("int main( {", "c")) as artifact:
        assert artifact.failed
        result = engine.run_compiled(artifact, stdin="1", name="small")
    assert result.verdict == "compile_error" and result.name == "small" and result.run is None


@needs_gcc
def test_limits_hold_for_each_run(engine: LocalEngine) -> None:
    job = Job.create("int main(void) { for (;;) {} }", "c", timeout="300ms")
    with engine.compile(job) as artifact:
        result = engine.run_compiled(artifact)
    assert result.verdict == "time_limit"


def test_python_has_no_compile_stage(engine: LocalEngine) -> None:
    with engine.compile(Job.create("print(int(input()) * 2)", "python")) as artifact:
        assert artifact.compile is None
        assert engine.run_compiled(artifact, stdin="21").stdout == "42\n"
        assert engine.run_compiled(artifact, stdin="x").verdict == "runtime_error"


@needs_java
def test_java_classes_are_reused(engine: LocalEngine) -> None:
    job = Job.create(
        "public class Main { public static void main(String[] a) { System.out.println(Helper.twice(a.length)); } }",
        "java",
        files={"Helper.java": "class Helper { static int twice(int n) { return 2 * n; } }"},
    )
    with engine.compile(job) as artifact:
        assert not artifact.failed
        assert engine.run_compiled(artifact, args=["x", "y"]).stdout == "4\n"


def test_sql_is_refused(engine: LocalEngine) -> None:
    with pytest.raises(EngineError, match="DuckDB"):
        engine.compile(Job.create("SELECT 1", "sql"))
