"""The hostile-program suite: every case of ``hostile.CASES`` in every sandbox mode this machine has (as the
user running the tests — root in CI), the host-side checks, and the same suite driven as an unprivileged user."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import codecapsule as cc
from codecapsule._events import Event, Output
from codecapsule.engines._live import LiveRun
from codecapsule.engines.local import LocalEngine

from .conversation import converse, waits
from .hostile import CASES, MODES, Case, marker, running

_engines: dict[str, LocalEngine] = {}
_lock = threading.Lock()


def engine_for(mode: str) -> LocalEngine:
    with _lock:
        if mode not in _engines:
            _engines[mode] = LocalEngine(**MODES[mode])  # type: ignore[arg-type]
    engine = _engines[mode]
    if engine.caps.level != mode:
        pytest.skip(f"sandbox mode {mode!r} is not available here (got {engine.caps.level!r})")
    return engine


@pytest.mark.parametrize("mode", list(MODES))
@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_hostile_program_has_the_safe_outcome(case: Case, mode: str) -> None:
    engine = engine_for(mode)
    if not case.needs(engine.caps):
        pytest.skip(f"mode {mode!r} does not promise this (engine info says so)")
    r = engine.run(cc.Job.create(case.source, case.language, **case.kwargs))
    problem = case.check(r, engine.caps)
    assert problem is None, problem


def test_the_suite_is_large_enough() -> None:
    assert len(CASES) >= 40


@pytest.mark.parametrize("mode", list(MODES))
def test_the_program_is_not_root_on_the_host(mode: str) -> None:
    """Seen from the host: while the program sleeps, its process's real, effective and file uids are not 0."""
    engine = engine_for(mode)
    tag = marker()
    r_box: list[cc.Result] = []
    src = f"import os\nos.execv('/bin/sleep', ['sleep', '{tag}'])"
    t = threading.Thread(target=lambda: r_box.append(engine.run(cc.Job.create(src, "python", timeout=3))))
    t.start()
    uids: list[list[str]] = []
    while t.is_alive() and not uids:
        for pid in running(tag):
            try:
                status = Path(f"/proc/{pid}/status").read_text()
            except OSError:
                continue
            uids.append(status.split("Uid:")[1].split()[:4])
    t.join()
    assert uids, "the program's process was never seen"
    assert all(u != "0" for u in uids[0]), uids
    assert running(tag) == []


@pytest.mark.parametrize("mode", list(MODES))
def test_no_zombie_or_leftover_after_runs(mode: str) -> None:
    engine = engine_for(mode)
    if engine.caps.level == "rlimits":
        pytest.skip("without namespaces or cgroups a setsid() grandchild escapes (engine info says so)")
    tag = marker()
    src = (
        f"import os\nif os.fork() == 0:\n    os.setsid()\n    if os.fork() == 0:\n"
        f"        os.execv('/bin/sleep', ['sleep', '{tag}'])\n    os._exit(0)\nprint('parent done')"
    )
    for _ in range(3):
        assert engine.run(cc.Job.create(src, "python")).verdict == "ok"
    assert running(tag) == []
    zombies = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            fields = stat[stat.rindex(")") + 2 :].split()
            if fields[0] == "Z" and int(fields[1]) == os.getpid():
                zombies.append(stat)
    assert zombies == []


# -- hostile programs in interactive live runs (stdin is a pipe fed as the input arrives) -----------------------

_MEGABYTE = "y" * (1 << 20) + "\n"  # far more than a pipe holds


def _live(
    mode: str, source: str, answers: list[str | None], *, on_output: bool = False, **job: Any
) -> tuple[list[Event], cc.Result]:
    """Run ``source`` interactively in ``mode``; with ``on_output`` a megabyte is sent at the first output."""
    engine = engine_for(mode)
    sent: list[bool] = []

    def flood_input(run: LiveRun, event: Output) -> None:
        if not sent:
            sent.append(True)
            run.send(_MEGABYTE)

    run = engine.stream(cc.Job.create(source, "python", **job), interactive=True)
    return converse(run, answers, flood_input if on_output else None)


@pytest.mark.parametrize("mode", list(MODES))
def test_live_stdin_a_flood_of_output_while_never_reading_input(mode: str) -> None:
    _, r = _live(mode, "while True:\n    print('z' * 1000)\n", [], on_output=True, limits={"output": 65536})
    # the megabyte pending for a program that never reads never held the capture loop up
    assert r.verdict == "output_limit" and r.run is not None and r.run.status == "OL", r


@pytest.mark.parametrize("mode", list(MODES))
def test_live_stdin_input_a_sleeper_never_reads_stays_pending(mode: str) -> None:
    mark = marker()
    source = "import time\nprint('up', flush=True)\ntime.sleep(1000)\n"
    events, r = _live(mode, source, [], on_output=True, args=[mark], timeout=1)
    assert r.verdict == "time_limit" and r.stdout == "up\n", r
    assert waits(events) == 0  # sleeping is not waiting for input
    assert running(mark) == []


@pytest.mark.parametrize("mode", list(MODES))
def test_live_stdin_closed_by_the_program(mode: str) -> None:
    source = "import os, sys, time\nos.close(0)\nprint('closed', flush=True)\ntime.sleep(0.2)\nsys.exit(3)\n"
    _, r = _live(mode, source, [], on_output=True, timeout=10)  # the megabyte meets a pipe nobody reads
    assert (r.verdict, r.run and r.run.exit_code, r.stdout) == ("runtime_error", 3, "closed\n"), r


@pytest.mark.parametrize("mode", list(MODES))
def test_live_stdin_moved_to_another_fd_by_the_program(mode: str) -> None:
    source = "import os\nfd = os.dup(0)\nos.close(0)\nprint(os.read(fd, 100))\n"
    events, r = _live(mode, source, ["moved"], timeout=10)
    assert waits(events) == 1 and (r.verdict, r.stdout) == ("ok", "b'moved\\n'\n"), (events, r)


@pytest.mark.parametrize("mode", list(MODES))
def test_live_stdin_a_child_reading_after_its_parent_exited(mode: str) -> None:
    mark = marker()
    source = "import os, sys\nif os.fork() == 0:\n    sys.stdin.readline()\n    os._exit(0)\nprint('parent done')\n"
    _, r = _live(mode, source, [], args=[mark], timeout=10)
    assert (r.verdict, r.stdout) == ("ok", "parent done\n"), r
    assert running(mark) == []  # the reading child was killed with the run


@pytest.mark.parametrize("mode", list(MODES))
def test_live_stdin_read_in_a_busy_loop(mode: str) -> None:
    source = (
        "import os\nos.set_blocking(0, False)\nprint('spinning', flush=True)\nwhile True:\n"
        "    try:\n        os.read(0, 100)\n    except BlockingIOError:\n        pass\n"
    )
    events, r = _live(mode, source, [], on_output=True, timeout=1)
    assert r.verdict == "time_limit", r
    assert waits(events) == 0  # it reads all the time but never blocks: never asked


@pytest.fixture
def open_dir() -> Iterator[Path]:
    """A work root the sandbox's unprivileged uid can reach (o+x), removed afterwards."""
    path = Path(tempfile.mkdtemp(prefix="capsule-root-"))
    path.chmod(0o711)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def test_disk_quota_keeps_the_host_free_space(open_dir: Path) -> None:
    tmp_path = open_dir
    engine = LocalEngine(workroot=str(tmp_path), workdir_size=32 * 1024 * 1024)
    if not engine.caps.root:
        pytest.skip("only root can give a run a size-limited tmpfs (engine info says so)")
    before = shutil.disk_usage(tmp_path).used
    src = (
        "i = 0\ntry:\n    while True:\n        open(f'f{i}', 'wb').write(b'x' * 4_000_000); i += 1\n"
        "except OSError as e:\n    print(i, e.errno)"
    )
    r = engine.run(cc.Job.create(src, "python", timeout=5))
    assert r.verdict == "ok" and r.stdout.split()[1] == "28", r  # ENOSPC at the quota
    assert int(r.stdout.split()[0]) <= 8
    assert shutil.disk_usage(tmp_path).used - before < 16 * 1024 * 1024
    engine.close()  # (the next run's work directory, prepared ahead with its sandbox, goes with the engine)
    assert list(tmp_path.iterdir()) == []


def test_a_deep_tree_is_removed_without_recursion(open_dir: Path) -> None:
    tmp_path = open_dir
    engine = LocalEngine(workroot=str(tmp_path), bwrap=False, cgroups=False, workdir_size=0)
    src = "import os\nfor _ in range(3000):\n    os.mkdir('a'); os.chdir('a')\nos.chmod('.', 0o500); print('deep')"
    r = engine.run(cc.Job.create(src, "python"))
    assert r.stdout == "deep\n"
    assert list(tmp_path.iterdir()) == []


def test_stale_work_dirs_and_cgroups_are_swept_at_start(open_dir: Path) -> None:
    tmp_path = open_dir
    dead = subprocess.Popen(["true"])
    dead.wait()  # a pid that no longer exists
    stale = tmp_path / f"codecapsule-{dead.pid}-abcdef"
    (stale / "x").mkdir(parents=True)
    (stale / "x" / "f").write_text("left")
    alive = tmp_path / f"codecapsule-{os.getpid()}-123456"
    alive.mkdir()
    probe = LocalEngine(workroot=str(tmp_path))
    groups = []
    if probe.caps.cgroups is not None:
        parent = probe.caps.cgroups.pids_parent
        g = parent / f"codecapsule-{dead.pid}-deadbeef00"
        g.mkdir()
        groups.append(g)
    LocalEngine(workroot=str(tmp_path))
    assert not stale.exists() and alive.exists()
    assert all(not g.exists() for g in groups)


def test_file_names_are_validated_after_normalisation() -> None:
    bad = [{"./main.py": "x"}, {"-dumpversion.c": ""}, {"a" * 300: ""}, {".": ""}, {"a": "", "a/b": ""}, {"../x": ""}]
    for files in bad:
        with pytest.raises(cc.InvalidRequest, match="file name"):
            cc.Job.create("print(1)", "python", files=files)
    assert cc.Job.create("x", "python", files={"./lib//u.py": "1"}).files[1].name == "lib/u.py"


def test_a_megabyte_wrong_answer_gives_a_bounded_diff() -> None:
    from codecapsule._verdicts import compare_output

    expected = "".join(f"{i}\n" for i in range(150_000))
    actual = expected.replace("\n77777\n", "\n77778\n") + "tail\n"
    diff = compare_output(actual, expected)
    assert diff is not None and "-77777" in diff and "+77778" in diff and diff.count("\n") < 80
    assert compare_output(expected, expected) is None


def test_good_jobs_keep_their_verdicts_next_to_hogs_and_fork_bombs() -> None:
    """execute_many at its default concurrency (the cores): CPU hogs and fork bombs never cost a good job its
    verdict (each run has one CPU at most; its CPU limit counts only its own processes)."""
    engine_for("full")
    good = cc.Job.create("s = 0\nfor i in range(200_000): s += i\nprint(s)", "python", expect="19999900000", timeout=2)
    hog = cc.Job.create(
        "import os\nfor _ in range(6):\n    if os.fork() == 0: break\nwhile True: pass", "python", timeout=2
    )
    bomb = cc.Job.create("import os\nwhile True:\n    try: os.fork()\n    except OSError: pass", "python", timeout=2)
    jobs = [good, hog, good, bomb, good, hog, good, bomb]
    with cc.Client(engine="local") as client:
        results = client.execute_many(jobs)
    for job, r in zip(jobs, results, strict=True):
        if job is good:
            assert (r.verdict, r.stdout) == ("ok", "19999900000\n"), r
        else:
            assert r.verdict in ("time_limit", "runtime_error"), r


def test_batches_default_to_one_job_per_core() -> None:
    from codecapsule._client import default_concurrency

    assert default_concurrency() == len(os.sched_getaffinity(0))


def test_the_suite_as_an_unprivileged_user() -> None:
    if os.geteuid() != 0 or not shutil.which("setpriv"):
        pytest.skip("needs root to switch to an unprivileged user (the suite above already runs unprivileged)")
    from codecapsule.engines._workdir import reachable_by_others

    site = next(p for p in sys.path if p.endswith("site-packages"))
    root = Path(__file__).resolve().parents[2]
    python = "/usr/bin/python3" if os.access("/usr/bin/python3", os.X_OK) else sys.executable
    if not all(reachable_by_others(p) for p in (str(root), site, python)):
        pytest.skip("the checkout, its site-packages or python cannot be reached by an unprivileged user")
    with tempfile.TemporaryDirectory() as home:
        os.chmod(home, 0o777)
        proc = subprocess.run(
            ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", python, "-m", "tests.engines.unprivileged"],
            capture_output=True, text=True, timeout=300, cwd=root,
            env={"PATH": "/usr/bin:/bin", "HOME": home, "TMPDIR": home, "PYTHONPATH": f"{root}:{site}"},
        )  # fmt: skip
    _reap_orphans_of(65534)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(proc.stdout.splitlines()[-1])
    assert report["uid"] == 65534 and report["modes"], report
    assert report["failures"] == [], report["failures"]
    assert report["checked"] >= 40


def _reap_orphans_of(uid: int) -> None:
    """The driver's own orphans (its modes without a pid namespace leave fork-bomb children) are reparented to
    this process, a child subreaper since an engine started in it as root: reap them, as their parent would."""
    for tid in os.listdir("/proc/self/task"):
        for child in Path(f"/proc/self/task/{tid}/children").read_text().split():
            with contextlib.suppress(OSError):
                if os.stat(f"/proc/{child}").st_uid == uid:
                    os.waitpid(int(child), os.WNOHANG)
