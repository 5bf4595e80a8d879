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
from dataclasses import replace
from pathlib import Path

import pytest

import codecapsule as cc
from codecapsule._events import Finished
from codecapsule.engines import _forker
from codecapsule.engines._primed import Launch, Primed, PrimedPool
from codecapsule.engines._sandbox import StageLimits, run_stage
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
    compiles = job.lang.compiled and job.language != "java"
    got = engine._primed_pool(engine.run_roots(tc, job.language), compiles)
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
    bwrap = primed.launch.standby.proc.pid
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


def test_a_compiled_run_compiles_and_runs_in_one_prepared_sandbox(engine: LocalEngine) -> None:
    job = cc.Job.create(C_HELLO + f"// {marker()}\n", "c")  # new text: compiled, not a compile-cache hit
    primed = waiting(engine, job)[0]
    slot = primed.launch.compile
    assert slot is not None
    bwrap = primed.launch.standby.proc.pid
    init = int(Path(f"/proc/{bwrap}/task/{bwrap}/children").read_text())
    assert Path(f"/proc/{slot.pid}/stat").read_text().split()[3] == str(init)  # the slot is PID 1's child
    assert Path(f"/proc/{slot.pid}/cgroup").read_text() != Path(f"/proc/{init}/cgroup").read_text()  # own group
    r = engine.run(job)
    assert (r.verdict, r.stdout, r.run.exit_code if r.run else None) == ("runtime_error", "c\n", 4), r
    assert r.compile is not None and r.compile.cpu_time and r.compile.cpu_time > 0, r.compile
    assert slot.claimed and slot.ended and primed.launch.claimed  # the compile in the slot, the run in the sandbox


COUNT_PROCESSES = (
    "#include <ctype.h>\n#include <dirent.h>\n#include <stdio.h>\n"
    "int main(void){ DIR *d = opendir(\"/proc\"); struct dirent *e; int n = 0;\n"
    "  while ((e = readdir(d))) n += isdigit((unsigned char)e->d_name[0]) != 0;\n"
    "  printf(\"%d\\n\", n); return 0; }\n"
)


def test_a_compile_cache_hit_lets_the_compile_slot_go_before_the_run_starts(engine: LocalEngine) -> None:
    job = cc.Job.create(COUNT_PROCESSES + f"// {marker()}\n", "c")
    assert engine.run(job).stdout == "2\n"  # compiled and stored; PID 1 and the program
    for _ in range(20):  # cache hits: the unused slot's launcher is gone before the program starts, every time
        primed = waiting(engine, job)[0]
        slot = primed.launch.compile
        assert slot is not None
        pidfd = os.pidfd_open(slot.pid)
        try:
            r = engine.run(job)
            assert (r.verdict, r.stdout) == ("ok", "2\n"), r
            assert primed.launch.claimed  # the run used the prepared sandbox
            assert select.select([pidfd], [], [], 0)[0]  # and the slot was gone
        finally:
            os.close(pidfd)


def test_a_run_stage_never_starts_beside_a_compile_slot_that_is_still_there(engine: LocalEngine) -> None:
    job = cc.Job.create(COUNT_PROCESSES + f"// {marker()}\n", "c")
    engine.run(job)  # compiled and stored: the next run lets its slot go
    primed = waiting(engine, job)[0]
    slot = primed.launch.compile
    assert slot is not None
    os.kill(slot.pid, signal.SIGSTOP)  # a launcher that cannot exit when let go
    try:
        r = engine.run(job)
    finally:
        os.kill(slot.pid, signal.SIGKILL)
    assert (r.verdict, r.stdout) == ("ok", "2\n"), r  # the program saw no launcher of ours
    assert not primed.launch.claimed  # it ran elsewhere


def test_the_test_runs_of_a_compiled_program_start_in_prepared_sandboxes(engine: LocalEngine) -> None:
    job = cc.Job.create(C_HELLO + f"// {marker()}\n", "c")
    with engine.compile(job) as artifact:
        runs = engine._primed_pool(engine.run_roots(engine.toolchain("c"), "c"), False)  # run stages only
        assert runs is not None
        runs.refill()
        runs.wait_prepared()
        first = runs.ready[0]
        r = engine.run_compiled(artifact, stdin="ignored")
        assert (r.verdict, r.stdout, r.run.exit_code if r.run else None) == ("runtime_error", "c\n", 4), r
        assert first.launch.claimed and first not in runs.ready


def test_a_sandbox_killed_while_it_waits_is_not_used(engine: LocalEngine) -> None:
    job = cc.Job.create("print('fine')", "python")
    for victim in ("bwrap", "init"):
        primed = waiting(engine, job)[0]
        launch = primed.launch
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
    pidfds = [os.pidfd_open(primed.launch.standby.proc.pid) for primed in waiting(engine, job)]
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
    pids = [primed.launch.standby.proc.pid for primed in ready]

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
            assert p.wait_prepared() == [] and p.failures == 1  # could not: no uid
        r = engine.run(job)  # the uids are free again: this run starts the usual way and asks for the next
        assert (r.verdict, r.stdout) == ("ok", "after\n"), r
        assert p.wait_prepared() and p.failures == 0
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
        launches += [primed.launch for primed in waiting(engine, job)]
    assert launches and list(root.iterdir())  # prepared work directories wait in the work root
    return engine, launches


def _left(root: Path, launches: list[Launch]) -> list[object]:
    slots = [launch.compile for launch in launches if launch.compile is not None]
    assert slots  # the C runs' sandboxes hold compile slots
    groups = [Path(d) for launch in launches for d in launch.standby.cgroup.dirs]
    groups += [Path(d) for slot in slots for d in slot.cgroup.dirs]
    pids = [launch.standby.proc.pid for launch in launches] + [slot.pid for slot in slots]
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


# -- the compile slot: a compiled language's compile stage in the run's sandbox, with its own group and limits ----

STAGE = StageLimits(
    wall=20.0, cpu=10.0, memory=512 * 1024**2, processes=32, output=64 * 1024, file_size=None,
    limit_address_space=False,
)  # fmt: skip
PY = "/usr/bin/python3"


@pytest.fixture
def primed_c(engine: LocalEngine) -> Iterator[Primed]:
    """A C run's prepared sandbox, taken from its pool (the stages below are run in it by hand)."""
    ready = waiting(engine, cc.Job.create(C_HELLO, "c"))
    got = pool(engine, cc.Job.create(C_HELLO, "c")).take()
    assert ready and got is not None and got.launch.compile is not None
    yield got
    got.finished()
    assert _forker.wait_idle()


def stage_in(primed: Primed, argv: list[str], *, compile: bool, limits: StageLimits = STAGE) -> cc.Stage:
    return run_stage(
        primed.caps, argv, env={"PATH": "/usr/bin:/bin"}, workdir=primed.work.path, stdin=b"", limits=limits,
        roots=primed.pool.roots, primed=primed, compile=compile,
    )  # fmt: skip


def test_nothing_a_compile_stage_left_is_alive_when_the_run_stage_starts(primed_c: Primed) -> None:
    # leftovers that hold the output pipes and would outlive the stage by a minute
    compiled = stage_in(primed_c, ["/bin/sh", "-c", "sleep 60 & (setsid sleep 60 &); echo built"], compile=True)
    assert (compiled.status, compiled.stdout) == (None, "built\n"), compiled
    assert primed_c.launch.compile is not None and primed_c.launch.compile.ended
    count = "import os; print(len([p for p in os.listdir('/proc') if p.isdigit()]))"
    ran = stage_in(primed_c, [PY, "-c", count], compile=False)
    assert primed_c.launch.claimed  # it ran in the same sandbox
    assert (ran.status, ran.stdout) == (None, "2\n"), ran  # PID 1 and the program: nothing of the compile


def test_the_compile_and_run_stages_keep_their_own_limits_and_accounting(primed_c: Primed) -> None:
    burn = (
        "import time\nx = bytearray(200 * 1024 * 1024)\n"
        "t = time.process_time()\nwhile time.process_time() - t < 0.3: pass"
    )
    compiled = stage_in(primed_c, [PY, "-c", burn], compile=True)
    assert compiled.status is None and compiled.memory and compiled.memory > 200 * 1024**2, compiled
    assert compiled.cpu_time and compiled.cpu_time >= 0.3, compiled
    small = replace(STAGE, memory=64 * 1024**2)
    ran = stage_in(primed_c, [PY, "-c", "x = bytearray(100 * 1024 * 1024)"], compile=False, limits=small)
    assert ran.status == "ML", ran  # the run's own limit, not the compile's
    assert ran.cpu_time is not None and ran.cpu_time < compiled.cpu_time, (ran, compiled)
    assert ran.memory is not None and ran.memory <= 64 * 1024**2 + 1024**2, ran


def test_a_compile_over_its_memory_limit_is_judged_alone(primed_c: Primed) -> None:
    tight = replace(STAGE, memory=64 * 1024**2)
    compiled = stage_in(primed_c, [PY, "-c", "x = bytearray(200 * 1024 * 1024)"], compile=True, limits=tight)
    assert compiled.status == "ML", compiled
    ran = stage_in(primed_c, [PY, "-c", "print('run')"], compile=False)
    assert (ran.status, ran.stdout) == (None, "run\n"), ran


def test_the_run_program_gets_the_signal_mask_and_dispositions_a_cold_stage_gets(
    engine: LocalEngine, primed_c: Primed
) -> None:
    # the slot's PID 1 blocks SIGCHLD and catches it while it waits: none of that may reach the program
    show = [PY, "-c", "print([l for l in open('/proc/self/status') if l.startswith(('SigBlk', 'SigIgn', 'SigCgt'))])"]
    ran = stage_in(primed_c, show, compile=False)
    assert primed_c.launch.claimed
    cold = LocalEngine(standby=False)
    with cold.run_place(cold.toolchain("c"), cc.Job.create(C_HELLO, "c")) as (caps, work, _):
        base = run_stage(caps, show, env={"PATH": "/usr/bin:/bin"}, workdir=work.path, stdin=b"", limits=STAGE,
                         roots=primed_c.pool.roots)  # fmt: skip
    assert (ran.status, ran.stdout) == (None, base.stdout), (ran, base)


def test_a_compile_slot_killed_while_it_waits_is_not_used(engine: LocalEngine) -> None:
    job = cc.Job.create(C_HELLO + f"// {marker()}\n", "c")
    primed = waiting(engine, job)[0]
    slot = primed.launch.compile
    assert slot is not None
    os.kill(slot.pid, signal.SIGKILL)
    select.select([slot.pidfd], [], [], 5.0)
    r = engine.run(job)
    assert (r.verdict, r.stdout) == ("runtime_error", "c\n"), r


def test_a_compile_stage_cannot_reach_the_launchers_pipes_or_forge_its_report(primed_c: Primed) -> None:
    # PID 1 holds the run stage's pipes and report fd, the slot's launcher (the parent) the compile's report fd
    probe = (
        "import os\n"
        "for pid in (1, os.getppid()):\n"
        "    for fd in range(64):\n"
        "        try:\n"
        "            open(f'/proc/{pid}/fd/{fd}', 'w').write('S0\\n')\n"
        "            print('reached', pid, fd)\n"
        "        except OSError:\n"
        "            pass\n"
        "print('done', flush=True)\n"
        "os.kill(os.getpid(), 11)\n"
    )
    compiled = stage_in(primed_c, [PY, "-c", probe], compile=True)
    assert (compiled.stdout, compiled.status, compiled.signal) == ("done\n", "SG", "SIGSEGV"), compiled
    ran = stage_in(primed_c, [PY, "-c", "print('run')"], compile=False)
    assert (ran.status, ran.stdout) == (None, "run\n"), ran
