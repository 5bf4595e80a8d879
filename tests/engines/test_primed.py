"""Sandboxes prepared ahead (``engines/_primed.py``): a run really starts in one (its work directory, uid and
bubblewrap were there before the run), results equal a cold start's, a compiled run and a compiled program's test
runs use them, a sandbox killed while it waits is not used, one prepared from a thread that then ends stays up, a
forked child leaves its parent's alone, a failed preparation is tried again, and closing (or dropping) the engine
leaves no process, mount or group. The hostile suite (``test_sandbox_hostile.py``) runs through them too."""

from __future__ import annotations

import contextlib
import gc
import os
import resource
import select
import shutil
import signal
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

import codecapsule as cc
from codecapsule._events import Finished
from codecapsule.engines import _forker
from codecapsule.engines._primed import Launch, Primed, PrimedPool
from codecapsule.engines._uids import UID_RANGE, UidPool
from codecapsule.engines.local import LocalEngine

from .forked import in_forked_child
from .hostile import marker

WHO = "import os\nprint(os.getuid(), os.getcwd(), sorted(os.listdir('.')), len(os.listdir('/proc')))"
C_HELLO = '#include <stdio.h>\nint main(void){ puts("c"); return 4; }\n'


@pytest.fixture(scope="module")
def engine() -> LocalEngine:
    engine = LocalEngine()
    if not engine.primed:
        pytest.skip(f"prepared sandboxes need bubblewrap, cgroups, perl and a C compiler (here: {engine.caps.level})")
    yield engine
    engine.close()


def pool(engine: LocalEngine, job: cc.Job) -> PrimedPool:
    tc = engine.toolchain(job.language)
    stages = 2 if job.lang.compiled and job.language != "java" else 1
    got = engine._primed_pool(engine.run_roots(tc, job.language), stages)
    assert got is not None
    return got


def waiting(engine: LocalEngine, job: cc.Job) -> list[Primed]:
    """The prepared runs for ``job``'s language, once none is being prepared (asks for one first)."""
    p = pool(engine, job)
    p.refill()
    p.wait_prepared()
    return list(p.ready)


def outcome(r: cc.Result) -> tuple[object, ...]:
    stages = [s for s in (r.compile, r.run) if s is not None]
    return (r.verdict, *((s.stdout, s.stderr, s.exit_code, s.signal, s.status) for s in stages))


def test_a_run_starts_in_the_sandbox_prepared_for_it(engine: LocalEngine) -> None:
    job = cc.Job.create(WHO, "python")
    ready = waiting(engine, job)
    assert ready, "no sandbox was prepared"
    primed = ready[0]
    bwrap = primed.launches[0].standby.proc.pid
    assert "codecapsule-" in Path(f"/proc/{bwrap}/cgroup").read_text()  # up, in its run's group, before the run
    assert Path(primed.work.path).is_dir() and os.listdir(primed.work.path) == []
    r = engine.run(job)
    uid, cwd, files, _ = r.stdout.split(" ", 3)
    assert (r.verdict, cwd, files) == ("ok", "/box", "['main.py']"), r
    if primed.uid is not None:
        assert int(uid) == primed.uid  # the run had that sandbox's uid
    assert not Path(f"/proc/{bwrap}").exists() or Path(f"/proc/{bwrap}/stat").read_text().split()[2] == "Z"
    assert not Path(primed.work.path).exists()  # its work directory was this run's, and went with it


def test_prepared_and_cold_starts_give_the_same_results(engine: LocalEngine) -> None:
    cold = LocalEngine(standby=False)
    jobs = [
        cc.Job.create("import os, sys\nd = sys.stdin.read()\nprint(sorted(os.environ), len(d), d[-3:])\n"
                      "sys.stderr.write('err\\n')\nsys.exit(3)", "python", stdin="x" * 1_000_000 + "end"),
        cc.Job.create("import os, signal\nos.kill(os.getpid(), signal.SIGSEGV)", "python"),
        cc.Job.create("x = bytearray(400 * 1024 * 1024)", "python", memory=128 * 1024 * 1024),
        cc.Job.create("while True: pass", "python", limits={"run_cpu_time": 0.5}),
        cc.Job.create("print('x' * 100_000)", "python", limits={"output": 2000}),
        cc.Job.create("import sys\nprint(sys.argv[1:])", "python", args=["a b", "ü", ""]),
        cc.Job.create(C_HELLO, "c"),
        cc.Job.create("int main(void){ return *(volatile int *)0; }", "c"),
        cc.Job.create("int main(void){ syntax error }", "c"),
        cc.Job.create('#include <iostream>\nint main(){ std::string s; std::cin >> s; std::cout << s; }', "c++",
                      stdin="word"),
        cc.Job.create("console.log(process.argv.length); process.exit(5)", "javascript"),
    ]  # fmt: skip
    for job in jobs:
        waiting(engine, job)
        warm, base = engine.run(job), cold.run(job)
        assert outcome(warm) == outcome(base), (job.source, warm, base)


def test_a_compiled_run_uses_one_prepared_sandbox_per_stage(engine: LocalEngine) -> None:
    job = cc.Job.create(C_HELLO + f"// {marker()}\n", "c")  # new text: compiled, not a compile-cache hit
    primed = waiting(engine, job)[0]
    pids = [launch.standby.proc.pid for launch in primed.launches]
    assert len(pids) == 2
    r = engine.run(job)
    assert (r.verdict, r.stdout, r.run.exit_code if r.run else None) == ("runtime_error", "c\n", 4), r
    assert all(launch.claimed for launch in primed.launches)  # compile and run each started in its own


def test_the_test_runs_of_a_compiled_program_start_in_prepared_sandboxes(engine: LocalEngine) -> None:
    job = cc.Job.create(C_HELLO + f"// {marker()}\n", "c")
    with engine.compile(job) as artifact:
        runs = engine._primed_pool(engine.run_roots(engine.toolchain("c"), "c"), 1)  # run stages only
        assert runs is not None
        runs.refill()
        runs.wait_prepared()
        first = runs.ready[0]
        r = engine.run_compiled(artifact, stdin="ignored")
        assert (r.verdict, r.stdout, r.run.exit_code if r.run else None) == ("runtime_error", "c\n", 4), r
        assert first.launches[0].claimed and first not in runs.ready


def test_a_sandbox_killed_while_it_waits_is_not_used(engine: LocalEngine) -> None:
    job = cc.Job.create("print('fine')", "python")
    for victim in ("bwrap", "init"):
        primed = waiting(engine, job)[0]
        launch = primed.launches[0]
        bwrap = launch.standby.proc.pid
        init = int(Path(f"/proc/{bwrap}/task/{bwrap}/children").read_text().split()[0])
        os.kill(bwrap if victim == "bwrap" else init, signal.SIGKILL)
        select.select([launch.init_fd], [], [], 5.0)  # PID 1 is gone (with bwrap, or itself)
        r = engine.run(job)
        assert (r.verdict, r.stdout) == ("ok", "fine\n"), (victim, r)


def test_a_sandbox_prepared_for_a_thread_that_ended_stays_up(engine: LocalEngine) -> None:
    # bwrap's --die-with-parent fires when the *thread* that forked it exits: the sandboxes are forked by one
    # long-lived thread, never by the run's
    job = cc.Job.create("print('from a thread')", "python")
    worker = threading.Thread(target=engine.run, args=(job,))
    worker.start()
    worker.join()
    pidfds = [os.pidfd_open(primed.launches[0].standby.proc.pid) for primed in waiting(engine, job)]
    try:
        assert select.select(pidfds, [], [], 0.5)[0] == []  # all still running half a second later
    finally:
        for pidfd in pidfds:
            os.close(pidfd)
    assert engine.run(job).stdout == "from a thread\n"


def test_a_forked_child_leaves_its_parents_sandboxes_alone(engine: LocalEngine) -> None:
    """After fork() the waiting sandboxes are the parent's (their work directories and uids too): the child's runs
    must start the usual way, and the parent's sandboxes keep waiting for the parent."""
    job = cc.Job.create("print(40 + 2)", "python")
    ready = waiting(engine, job)
    assert ready
    pids = [primed.launches[0].standby.proc.pid for primed in ready]

    def child() -> str:
        r = engine.run(cc.Job.create(WHO, "python"))
        return f"{r.verdict} {r.stdout.split()[0]}"

    verdict, uid = in_forked_child(child).split()
    assert verdict == "ok"
    assert int(uid) not in {primed.uid for primed in ready}  # not a waiting sandbox's uid
    assert all(Path(f"/proc/{p}").exists() and Path(f"/proc/{p}/stat").read_text().split()[2] != "Z" for p in pids)
    assert pool(engine, job).take() is ready[0]  # still the parent's, in order, and alive
    ready[0].close()
    assert engine.run(job).stdout == "42\n"


def test_a_pool_that_could_not_prepare_tries_again_and_runs_meanwhile(engine: LocalEngine) -> None:
    """Every sandbox uid held by other engines (another notebook's runs) fails a preparation: that must neither
    break the run that follows the uids' release nor stop the pool from preparing again."""
    if engine.caps.sandbox_uid is None:
        pytest.skip("only as root does a prepared sandbox hold a uid")
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < 2 * len(UID_RANGE):
        pytest.skip("holding every uid takes a thousand open files")
    job = cc.Job.create("print('after')", "python")
    p = pool(engine, job)
    p.release()  # none waiting
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, 2 * len(UID_RANGE)), hard))
    try:
        with contextlib.ExitStack() as held:
            others = UidPool()  # another engine's, in this process or another: the same lock files
            with contextlib.suppress(cc.SandboxError):
                while True:
                    held.enter_context(others.take())
            p.refill()
            assert p.wait_prepared() == 0 and p.failures == 1  # could not: no uid
        r = engine.run(job)  # the uids are free again: this run starts the usual way and asks for the next
        assert (r.verdict, r.stdout) == ("ok", "after\n"), r
        assert p.wait_prepared() >= 1 and p.failures == 0
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def test_a_stage_message_too_large_for_the_socket_starts_cold(engine: LocalEngine) -> None:
    args = ["y" * 1000] * 200  # 200 KB of arguments: more than a prepared sandbox's message takes
    job = cc.Job.create("import sys\nprint(len(sys.argv) - 1, sum(map(len, sys.argv[1:])))", "python", args=args)
    waiting(engine, job)
    r = engine.run(job)
    assert (r.verdict, r.stdout) == ("ok", "200 200000\n"), r


def test_interactive_input_reaches_a_program_in_a_prepared_sandbox(engine: LocalEngine) -> None:
    job = cc.Job.create("print(input()[::-1])", "python")
    waiting(engine, job)
    run = engine.stream(job, interactive=True)
    run.send("olleh\n")
    run.close_stdin()
    result = next(event.result for event in run if isinstance(event, Finished))
    assert (result.verdict, result.stdout) == ("ok", "hello\n"), result


@pytest.fixture
def root() -> Iterator[Path]:
    """A work root the sandbox's unprivileged uids reach (pytest's tmp_path is under a 0700 directory)."""
    path = Path(tempfile.mkdtemp(prefix="capsule-primed-", dir="/tmp"))
    path.chmod(0o711)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def _prepared_engine(root: Path) -> tuple[LocalEngine, list[Launch]]:
    """An engine on ``root`` with sandboxes waiting for Python and C runs; those sandboxes."""
    engine = LocalEngine(workroot=str(root))
    if not engine.primed:
        pytest.skip("prepared sandboxes need bubblewrap, cgroups, perl and a C compiler")
    launches: list[Launch] = []
    for job in (cc.Job.create("print(1)", "python"), cc.Job.create(C_HELLO, "c")):
        engine.run(job)
        launches += [launch for primed in waiting(engine, job) for launch in primed.launches]
    assert launches and list(root.iterdir())  # prepared work directories wait in the work root
    return engine, launches


def _left(root: Path, launches: list[Launch]) -> list[object]:
    groups = [Path(d) for launch in launches for d in launch.standby.cgroup.dirs]
    pids = [launch.standby.proc.pid for launch in launches]
    return [*root.iterdir(), *(d for d in groups if d.exists()), *(p for p in pids if Path(f"/proc/{p}").exists())]


def test_closing_the_engine_leaves_no_process_mount_or_group(root: Path) -> None:
    engine, launches = _prepared_engine(root)
    engine.close()
    assert _left(root, launches) == []
    assert engine.run(cc.Job.create("print(2)", "python")).stdout == "2\n"  # still usable: prepares anew
    engine.close()
    assert list(root.iterdir()) == []


def test_an_engine_dropped_without_close_stops_its_sandboxes(root: Path) -> None:
    engine, launches = _prepared_engine(root)
    del engine  # its finalizer hands the pools to the forker thread
    gc.collect()
    assert _forker.wait_idle()
    assert _left(root, launches) == []
