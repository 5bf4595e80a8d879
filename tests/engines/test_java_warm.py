"""The warm Java paths of the local engine (issue #12): the javac server in the sandbox and the run JVM's CDS archive.

Warm on and off must give the same Results; the server must never carry one job's classes into another, never run
a job's code, fall back to a cold compile when it dies or cannot be trusted, and never outlive the engine.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import select
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from codecapsule import Job, Limits, Result
from codecapsule._events import Finished, Output
from codecapsule.engines._javac_server import WarmJavac
from codecapsule.engines._jvm_fast import run_options
from codecapsule.engines.local import LocalEngine

from .test_javac_server import processor_class  # noqa: F401 (a fixture)

pytestmark = pytest.mark.skipif(shutil.which("javac") is None, reason="javac not installed")

_MAIN = "public class Main {\n  public static void main(String[] a) {\n    %s\n  }\n}\n"
HELLO = _MAIN % 'System.out.println("hello");'
USES_HELPER = _MAIN % "System.out.println(Helper.greet());"
HELPER = 'public class Helper {\n  static String greet() { return "hi from Helper"; }\n}\n'

VERDICTS = {
    "ok": "ok",
    "compile_error": "compile_error",
    "runtime_error": "runtime_error",
    "multi_file": "ok",
    "error_in_second_file": "compile_error",
    "package": "ok",
    "stdin": "ok",
    "notes": "ok",
}
CASES = {
    "ok": Job.create(_MAIN % 'System.out.println("sum " + (40 + 2));', "java"),
    "compile_error": Job.create(_MAIN % 'int x = "s";\n    undefined();', "java"),
    "runtime_error": Job.create(_MAIN % 'throw new IllegalStateException("boom");', "java"),
    "multi_file": Job.create(USES_HELPER, "java", files={"Helper.java": HELPER}),
    "error_in_second_file": Job.create(USES_HELPER, "java", files={"Helper.java": "class Helper {\n  int x(\n}\n"}),
    "package": Job.create(
        "package app;\n" + _MAIN % "System.out.println(new app.model.Point().x);",
        "java",
        files={"app/model/Point.java": "package app.model;\npublic class Point { public int x = 7; }\n"},
    ),
    "notes": Job.create(  # javac's notes name the file too
        _MAIN
        % "java.util.List l = new java.util.ArrayList(); l.add(1);\n    System.out.println(new Integer(3) + l.size());",
        "java",
    ),
    "stdin": Job.create(
        "import java.util.*;\n" + _MAIN % "Scanner s = new Scanner(System.in); System.out.println(s.nextInt() * 2);",
        "java",
        stdin="21\n",
    ),
}


def outcome(r: Result) -> tuple[object, ...]:
    """Everything a student sees of a Result (not the times and memory figures, which differ run to run)."""
    stages = tuple(
        (s.stdout, s.stderr, s.output, s.exit_code, s.signal, s.status, s.message, s.truncated) if s else None
        for s in (r.compile, r.run)
    )
    return (r.verdict, r.stdout, r.stderr, r.exit_code, r.error, *stages)


@pytest.fixture(scope="module")
def warm() -> Iterator[LocalEngine]:
    e = LocalEngine(warm=True)
    yield e
    e.close()


@pytest.fixture(scope="module")
def cold() -> Iterator[LocalEngine]:
    e = LocalEngine(warm=False)
    yield e
    e.close()


def _server(engine: LocalEngine) -> WarmJavac:
    server = engine.warm_javac
    if server is None:
        pytest.skip("this sandbox cannot hold a warm javac (it needs bubblewrap and cgroups)")
    return server


def _warm_run(engine: LocalEngine, job: Job) -> Result:
    """Run ``job`` and check that its compile went through the server (not the cold fallback)."""
    server = _server(engine)
    result = engine.run(job)
    assert server.last_failure is None, server.last_failure
    assert server.pid is not None
    return result


@pytest.mark.parametrize("name", list(CASES))
def test_warm_and_cold_give_the_same_result(name: str, warm: LocalEngine, cold: LocalEngine) -> None:
    job = CASES[name]
    here, there = _warm_run(warm, job), cold.run(job)
    assert outcome(here) == outcome(there), (here, there)
    assert here.verdict == VERDICTS[name], here


def test_diagnostics_name_the_students_files_only(warm: LocalEngine) -> None:
    result = _warm_run(warm, CASES["error_in_second_file"])
    assert result.verdict == "compile_error"
    assert result.compile is not None
    assert result.compile.stderr.startswith("Helper.java:3: error: illegal start of type")
    assert "capsule-job" not in result.compile.output


def test_a_job_never_sees_the_classes_of_the_job_before(warm: LocalEngine) -> None:
    first = _warm_run(warm, Job.create(USES_HELPER, "java", files={"Helper.java": HELPER}))
    assert first.verdict == "ok" and first.stdout == "hi from Helper\n", first
    second = _warm_run(warm, Job.create(USES_HELPER, "java"))
    assert second.verdict == "compile_error", second
    assert second.compile is not None and "cannot find symbol" in second.compile.stderr


def test_the_class_files_reach_the_compiled_artifact(warm: LocalEngine) -> None:
    with warm.compile(CASES["package"]) as artifact:
        assert _server(warm).last_failure is None
        names = {name for name, _, _ in artifact.files}
        assert {"app/Main.class", "app/model/Point.class"} <= names, names
        assert warm.run_compiled(artifact).stdout == "7\n"


def test_an_annotation_processor_never_runs_in_the_server(warm: LocalEngine, processor_class: bytes) -> None:  # noqa: F811
    job = Job.create(
        HELLO,
        "java",
        files={"Proc.class": processor_class, "META-INF/services/javax.annotation.processing.Processor": "Proc\n"},
    )
    with warm.compile(job) as artifact:
        assert _server(warm).last_failure is None  # compiled by the server
        assert not artifact.failed and artifact.compile is not None, artifact.result
        assert "PROCESSOR-RAN" not in artifact.compile.output
        assert "PROCESSOR-RAN" not in {name for name, _, _ in artifact.files}
        assert warm.run_compiled(artifact).stdout == "hello\n"


def test_a_killed_server_is_replaced_and_the_job_still_compiles() -> None:
    engine = LocalEngine(warm=True)
    try:
        server = _server(engine)
        assert _warm_run(engine, Job.create(HELLO, "java")).verdict == "ok"
        pid = server.pid
        assert pid is not None
        os.kill(pid, signal.SIGKILL)
        after = engine.run(Job.create(HELLO, "java"))  # falls back to cold, or finds the server gone and restarts
        assert after.verdict == "ok" and after.stdout == "hello\n", after
        again = _warm_run(engine, Job.create(HELLO, "java"))
        assert again.verdict == "ok"
        assert server.pid not in (None, pid) and server.starts == 2
    finally:
        engine.close()


def test_a_warm_compile_over_a_limit_gets_the_cold_verdict(warm: LocalEngine, cold: LocalEngine) -> None:
    """The CPU limit is reached by the warm compile too: it is killed, and the cold compile gives the verdict."""
    job = Job.create(HELLO, "java", limits=Limits(compile_cpu_time=0.01))
    server = _server(warm)
    _warm_run(warm, Job.create(HELLO, "java"))
    here, there = warm.run(job), cold.run(job)
    assert server.last_failure is not None and "CPU-time limit" in server.last_failure
    assert outcome(here) == outcome(there) and here.verdict == "compile_error", (here, there)
    assert here.compile is not None and here.compile.status == "TO"


def test_a_memory_limit_the_server_cannot_meet_compiles_cold(warm: LocalEngine, cold: LocalEngine) -> None:
    """The server already uses more than this job's compile memory limit: the job compiles cold, as it would."""
    job = Job.create(HELLO, "java", limits=Limits(compile_memory=48 * 1024 * 1024))
    _warm_run(warm, Job.create(HELLO, "java"))
    here = warm.run(job)
    assert _server(warm).last_failure is not None  # not compiled by the server
    there = cold.run(job)
    assert outcome(here) == outcome(there), (here, there)


def test_no_server_is_left_after_close() -> None:
    engine = LocalEngine(warm=True)
    _warm_run(engine, Job.create(HELLO, "java"))
    server = _server(engine)
    pid = server.pid
    assert pid is not None and Path(f"/proc/{pid}/comm").read_text().strip() == "java"
    running = server._server
    assert running is not None
    engine.close()
    assert server.pid is None
    assert not _alive(pid)  # close() kills and reaps every process of the server before it returns
    assert not [d for d in running.cgroup.dirs if d.exists()]  # its group is gone, not left for a later sweep
    assert not os.path.exists(running.directory)


def test_warm_false_starts_no_server() -> None:
    before = _servers()
    engine = LocalEngine(warm=False)
    try:
        assert engine.warm_javac is None
        result = engine.run(Job.create(HELLO, "java"))
        assert result.verdict == "ok" and result.stdout == "hello\n"
        assert engine.warm_javac is None and _servers() <= before
        assert result.run is not None
    finally:
        engine.close()


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ")[1][0] not in "ZX"
    except (OSError, IndexError):
        return False


def _servers() -> int:
    return len([t for t in threading.enumerate() if t.name == "codecapsule-javac-server" and t.is_alive()])


def test_a_live_run_streams_the_warm_compilers_output(warm: LocalEngine, cold: LocalEngine) -> None:
    job = CASES["compile_error"]
    _warm_run(warm, CASES["ok"])  # the server is up
    with warm.stream(job) as run:
        events = list(run)
    assert _server(warm).last_failure is None
    assert isinstance(events[-1], Finished)
    live = events[-1].result
    assert outcome(live) == outcome(cold.run(job))
    assert live.compile is not None
    text = "".join(e.text for e in events if isinstance(e, Output) and e.stage == "compile" and e.stream == "stderr")
    assert text == live.compile.stderr and "error: incompatible types" in text


# A student program that finds the CDS archive in its own JVM's flags and tries to change it.
_TAMPER = _MAIN % (
    "for (String f : java.lang.management.ManagementFactory.getRuntimeMXBean().getInputArguments()) {\n"
    '      if (!f.startsWith("-XX:SharedArchiveFile=")) continue;\n'
    "      String path = f.substring(f.indexOf('=') + 1);\n"
    '      System.out.println("archive " + new java.io.File(path).isFile());\n'
    "      try (var out = new java.io.FileOutputStream(path, true)) { out.write(1); System.out.println(\"WROTE\"); }\n"
    '      catch (java.io.IOException e) { System.out.println("refused"); }\n'
    "      try { java.nio.file.Files.delete(java.nio.file.Path.of(path)); System.out.println(\"DELETED\"); }\n"
    '      catch (java.io.IOException e) { System.out.println("refused"); }\n'
    "    }"
)


def test_the_run_jvm_gets_the_cds_archive_read_only(warm: LocalEngine) -> None:
    flags, _ = run_options(warm.toolchain("java"), warm.cache_dir)
    if not flags:
        pytest.skip("no CDS archive could be built on this machine")
    archive = Path(flags[0].split("=", 1)[1])
    before = hashlib.sha256(archive.read_bytes()).hexdigest()
    result = warm.run(Job.create(_TAMPER, "java"))
    assert result.verdict == "ok" and result.stdout == "archive true\nrefused\nrefused\n", result
    assert hashlib.sha256(archive.read_bytes()).hexdigest() == before


def test_warm_false_runs_the_jvm_without_the_archive(cold: LocalEngine) -> None:
    result = cold.run(Job.create(_TAMPER, "java"))
    assert result.verdict == "ok" and result.stdout == "", result


_HOST = """
import sys
from codecapsule import Job
from codecapsule.engines.local import LocalEngine
engine = LocalEngine(warm=True)
result = engine.run(Job.create(sys.argv[1], "java"))
assert result.verdict == "ok", result
print(engine.warm_javac.pid, flush=True)
sys.stdin.read()  # until the test kills us
"""


def test_the_server_dies_with_a_sigkilled_host(tmp_path: Path) -> None:
    """PR_SET_PDEATHSIG (bwrap --die-with-parent) takes the server down when its engine's process is SIGKILLed."""
    if not WarmJavac.usable(LocalEngine(warm=False).caps):
        pytest.skip("this sandbox cannot hold a warm javac")
    host = subprocess.Popen(
        [sys.executable, "-c", _HOST, HELLO], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).parents[2])},
    )  # fmt: skip
    try:
        assert host.stdout is not None
        pid = int(host.stdout.readline())  # the server is up
        assert _alive(pid)
        orphans = _children_of(host.pid)  # its standbys: reparented to us (the subreaper) when it dies
    finally:
        host.kill()
        host.wait()
    deadline = time.monotonic() + 30
    while _alive(pid) and time.monotonic() < deadline:  # bounded poll on the process state
        _reap_orphans()
        select.select([], [], [], 0.02)
    assert not _alive(pid)
    # they exit once the host's end of their control pipe is gone: reap each, or it stays a zombie of ours that a
    # later test's zombie check would find
    while orphans and time.monotonic() < deadline:
        _reap_orphans()
        orphans = [child for child in orphans if _is_our_child(child)]
        select.select([], [], [], 0.02)


def _children_of(pid: int) -> list[int]:
    found: list[int] = []
    for task in os.listdir(f"/proc/{pid}/task"):
        with contextlib.suppress(OSError):
            found += [int(c) for c in Path(f"/proc/{pid}/task/{task}/children").read_text().split()]
    return found


def _is_our_child(pid: int) -> bool:
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(") ", 1)[1].split()[1]) == os.getpid()
    except (OSError, IndexError, ValueError):
        return False


def _reap_orphans() -> None:
    """Reap the host's children that were reparented to us (we are a child subreaper as root) and have died."""
    for task in os.listdir("/proc/self/task"):
        with contextlib.suppress(OSError):
            for child in Path(f"/proc/self/task/{task}/children").read_text().split():
                if Path(f"/proc/{child}/stat").read_text().split(") ")[1][0] == "Z":
                    with contextlib.suppress(ChildProcessError):
                        os.waitpid(int(child), os.WNOHANG)


def test_without_bubblewrap_or_cgroups_java_compiles_cold() -> None:
    """The server's isolation and its per-request limits rest on both: without one, every compile is cold."""
    for engine in (LocalEngine(bwrap=False), LocalEngine(cgroups=False)):
        try:
            assert engine.warm_javac is None
            result = engine.run(CASES["compile_error"])
            assert result.verdict == "compile_error" and engine.warm_javac is None
        finally:
            engine.close()
