"""Launchers prepared ahead inside their cgroup (``engines/_standby.py``): a stage really starts through one, gives
the same results as a cold start, survives a standby killed while waiting, and nothing is left at exit. The cold
path (``standby=False``, also the fallback) keeps every hostile case's safe outcome."""

from __future__ import annotations

import contextlib
import os
import select
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest

import codecapsule as cc
from codecapsule.engines import _forker, _standby
from codecapsule.engines.local import LocalEngine

from .forked import in_forked_child
from .hostile import CASES, marker, running
from .unprivileged import SLOW

ENV_AND_IO = (
    "import os, sys\n"
    "data = sys.stdin.read()\n"
    "print(sorted(os.environ.items()), os.getcwd(), len(data), data[-3:])\n"
    "sys.stderr.write('err\\n')\n"
    "sys.exit(3)"
)


@pytest.fixture(scope="module")
def engine() -> LocalEngine:
    engine = LocalEngine(primed=False)  # the standby path itself; prepared sandboxes are tests/engines/test_primed.py
    if engine.caps.level != "full" or engine.caps.perl is None:
        pytest.skip(f"standbys need bubblewrap, cgroups and perl (here: {engine.caps.level})")
    return engine


def ready(engine: LocalEngine) -> list[int]:
    caps = engine.caps
    assert caps.perl is not None and caps.cgroups is not None
    return _standby.ready_pids(caps.perl, caps.cgroups, caps.seccomp, caps.init)


def outcome(r: cc.Result) -> tuple[object, ...]:
    stage = r.run
    assert stage is not None
    return r.verdict, stage.stdout, stage.stderr, stage.exit_code, stage.signal, stage.status


def test_a_stage_starts_through_a_prepared_standby(engine: LocalEngine) -> None:
    engine.run(cc.Job.create("print(1)", "python"))  # asks for the next stage's standby
    waiting = ready(engine)
    assert waiting, "no standby was prepared"
    cgroups = {Path(f"/proc/{pid}/cgroup").read_text() for pid in waiting}
    assert all("codecapsule-" in text for text in cgroups), cgroups  # already inside a run group
    r = engine.run(cc.Job.create("print(40 + 2)", "python"))
    assert r.verdict == "ok" and r.stdout == "42\n", r
    assert not all(Path(f"/proc/{pid}").exists() for pid in waiting)  # one became this stage


def test_standby_and_cold_starts_give_the_same_results(engine: LocalEngine) -> None:
    cold = LocalEngine(standby=False)
    stdin = "x" * 1_000_000 + "end"  # far more than a pipe holds
    jobs = [
        cc.Job.create(ENV_AND_IO, "python", stdin=stdin),
        cc.Job.create("import os, signal\nos.kill(os.getpid(), signal.SIGSEGV)", "python"),
        cc.Job.create("x = bytearray(400 * 1024 * 1024)", "python", memory=128 * 1024 * 1024),
        cc.Job.create("while True: pass", "python", limits={"run_cpu_time": 0.5}),
        cc.Job.create('#include <stdio.h>\nint main(void){ puts("c"); return 4; }', "c"),
    ]
    for job in jobs:
        ready(engine)
        warm, base = engine.run(job), cold.run(job)
        assert outcome(warm) == outcome(base), (warm, base)
    ready(engine)
    r = engine.run(cc.Job.create("import time\nt = time.process_time()\nprint('idle')", "python"))
    assert r.run is not None and r.run.cpu_time is not None and r.run.cpu_time < 1.0, r


def test_a_standby_killed_while_waiting_is_not_used(engine: LocalEngine) -> None:
    engine.run(cc.Job.create("print(1)", "python"))
    waiting = ready(engine)
    assert waiting
    for pid in waiting:
        os.kill(pid, signal.SIGKILL)
    for _ in range(len(waiting) + 1):
        r = engine.run(cc.Job.create("print(40 + 2)", "python"))
        assert r.verdict == "ok" and r.stdout == "42\n", r


def test_standbys_are_forked_by_the_long_lived_forker_thread(engine: LocalEngine) -> None:
    """bwrap's --die-with-parent (PR_SET_PDEATHSIG) follows the *thread* that forked the standby: one forked by a
    short-lived thread still running when a stage took it would be SIGKILLed, with the run, as that thread ended."""
    engine.run(cc.Job.create("print(1)", "python"))  # asks for the next stage's standby
    waiting = ready(engine)
    assert waiting
    forker = _forker.native_id()
    assert forker is not None
    children = Path(f"/proc/self/task/{forker}/children").read_text().split()
    assert all(str(pid) in children for pid in waiting), (waiting, children)


def test_standbys_leave_no_process_or_cgroup_at_exit(engine: LocalEngine) -> None:
    script = (
        "import os, codecapsule as cc\n"
        "from codecapsule.engines import _standby\n"
        "from codecapsule.engines.local import LocalEngine\n"
        "e = LocalEngine(primed=False)\n"
        "assert e.run(cc.Job.create('print(1)', 'python')).ok\n"
        "c = e.caps\n"
        "print(os.getpid(), *_standby.ready_pids(c.perl, c.cgroups, c.seccomp, c.init))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=120,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])},
    )  # fmt: skip
    host, *standbys = (int(p) for p in out.stdout.split())
    assert standbys, out
    assert not any(Path(f"/proc/{pid}").exists() for pid in standbys)
    caps = engine.caps
    assert caps.cgroups is not None
    parents = {caps.cgroups.memory_parent, caps.cgroups.pids_parent, caps.cgroups.cpuacct_parent}
    left = [p for parent in parents if parent is not None for p in parent.glob(f"codecapsule-{host}-*")]
    assert left == []


@pytest.mark.parametrize("case", [c for c in CASES if c.id not in SLOW], ids=lambda c: c.id)
def test_hostile_cases_hold_with_cold_starts(case: object) -> None:
    from .hostile import Case

    assert isinstance(case, Case)
    engine = _cold()
    if not case.needs(engine.caps):
        pytest.skip("not for this sandbox mode")
    r = engine.run(cc.Job.create(case.source, case.language, **case.kwargs))
    problem = case.check(r, engine.caps)
    assert problem is None, (problem, r)


_COLD: list[LocalEngine] = []


def _cold() -> LocalEngine:
    if not _COLD:
        _COLD.append(LocalEngine(standby=False))
    return _COLD[0]


def _monitor_credentials(engine: LocalEngine) -> list[str]:
    """Seen from the host while the program sleeps: the uid/gid/groups/capability lines of bwrap's monitor (the
    process a standby, or setpriv, became)."""
    tag = marker()
    src = f"import os\nos.execv('/bin/sleep', ['sleep', '{tag}'])"
    box: list[cc.Result] = []
    t = threading.Thread(target=lambda: box.append(engine.run(cc.Job.create(src, "python", timeout=3))))
    t.start()
    lines: list[str] = []
    while t.is_alive() and not lines:
        for pid in running(tag):
            chain = [pid]
            with contextlib.suppress(OSError, ValueError):
                while len(chain) < 6:
                    stat = Path(f"/proc/{chain[-1]}/stat").read_text()
                    chain.append(int(stat[stat.rindex(")") + 2 :].split()[1]))
            for ancestor in chain:
                with contextlib.suppress(OSError):
                    if Path(f"/proc/{ancestor}/comm").read_text().strip() == "bwrap":
                        status = Path(f"/proc/{ancestor}/status").read_text().splitlines()
                        wanted = ("Uid:", "Gid:", "Groups:", "CapInh:", "CapPrm:", "CapEff:", "CapAmb:")
                        lines = [line.split(":", 1)[0] + ":" + " ".join(line.split()[1:]) for line in status
                                 if line.startswith(wanted)]  # fmt: skip
                        break
    t.join()
    assert lines, "bwrap's monitor was never seen"
    return lines


def test_a_standby_drops_root_exactly_as_setpriv_does(engine: LocalEngine) -> None:
    if engine.caps.sandbox_uid is None:
        pytest.skip("only as root does the launch switch to the sandbox uid")
    ready(engine)
    warm = _monitor_credentials(engine)
    cold = _monitor_credentials(_cold())

    def ids(lines: list[str]) -> list[str]:
        return [line.split(":")[0] + ":" + ("uid" if line.startswith(("Uid", "Gid")) else line.split(":")[1])
                for line in lines]  # fmt: skip

    assert ids(warm) == ids(cold), (warm, cold)  # the per-run uid differs; the rest is identical
    for line in warm:
        key, value = line.split(":", 1)
        if key in ("Uid", "Gid"):
            assert len(set(value.split())) == 1 and value.split()[0] != "0", line  # real = effective = saved
        elif key == "Groups":
            assert value == "", line
        else:
            assert int(value, 16) == 0, line


def test_a_forked_child_starts_its_own_standbys(engine: LocalEngine) -> None:
    """After fork() the parent's standbys are not the child's children: the child must not take them."""
    engine.run(cc.Job.create("print(1)", "python"))
    parents = ready(engine)
    assert parents

    def child() -> str:
        r = engine.run(cc.Job.create("print(40 + 2)", "python"))
        return f"{r.verdict} {r.stdout.strip()}"

    answer = in_forked_child(child)
    assert answer == "ok 42", answer
    assert [_state(pid) for pid in parents] == ["S"] * len(parents)  # still waiting: the child left them alone
    r = engine.run(cc.Job.create("print(43)", "python"))  # the parent's standbys still serve the parent
    assert r.verdict == "ok" and r.stdout == "43\n", r


def _state(pid: int) -> str:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return "gone"
    return stat[stat.rindex(")") + 2 :].split()[0]


def test_a_standby_starts_while_a_copy_of_its_control_pipe_is_still_open(engine: LocalEngine) -> None:
    """The next standby, forked by another thread as a stage starts, holds a copy of this one's control pipe until
    its exec: the stage must not wait for that copy to close (the message says its own length)."""
    caps = engine.caps
    engine.run(cc.Job.create("print(1)", "python"))  # asks for the next stage's standby
    ready(engine)
    standby = _standby.take(caps.perl, caps.cgroups, caps.seccomp, caps.init)
    assert standby is not None
    held = os.dup(standby.control_w)  # the copy a concurrent fork would hold
    try:
        standby.start(["/bin/echo", "started"], {}, "/", b"", None)
        assert standby.proc.stdout is not None
        readable, _, _ = select.select([standby.proc.stdout], [], [], 30.0)  # bounded: fails, never hangs
        assert readable, "the standby waited for end of file on its control pipe"
        assert standby.proc.stdout.readline() == b"started\n"
    finally:
        os.close(held)
        standby.discard()
