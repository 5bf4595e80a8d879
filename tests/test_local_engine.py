"""The local engine, for real: every language, and hostile programs in every sandbox mode this machine offers."""

from __future__ import annotations

import os
import resource
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

import codecapsule as cc
from codecapsule.engines.local import LocalEngine
from tests.engines.hostile import MODES, marker, running

_engines: dict[str, LocalEngine] = {}


def _engine(mode: str) -> LocalEngine:
    if mode not in _engines:
        _engines[mode] = LocalEngine(**MODES[mode])
    engine = _engines[mode]
    if engine.caps.level != mode:
        pytest.skip(f"sandbox mode {mode!r} is not available on this machine (got {engine.caps.level!r})")
    return engine


@pytest.fixture(params=list(MODES))
def engine(request: pytest.FixtureRequest) -> LocalEngine:
    return _engine(request.param)


@pytest.fixture
def best() -> LocalEngine:
    return _engine(LocalEngine().caps.level)


def run(engine: LocalEngine, source: str, language: str, **kwargs: object) -> cc.Result:
    return engine.run(cc.Job.create(source, language, **kwargs))  # type: ignore[arg-type]


def test_the_machine_offers_the_full_sandbox_in_ci() -> None:
    # CI installs bubblewrap and runs as root with cgroups: the strongest mode must really be in force there.
    if os.environ.get("CI"):
        assert LocalEngine().caps.level == "full"


# -- every language -----------------------------------------------------------------------------------


def test_python(best: LocalEngine) -> None:
    r = run(best, "print(40 + 2)", "python")
    assert (r.stdout, r.ok, r.verdict, r.exit_code, r.engine) == ("42\n", True, "ok", 0, "local")
    assert r.run is not None and r.run.wall_time is not None and r.run.wall_time > 0


def test_java_with_any_public_class_name_and_stdin(best: LocalEngine) -> None:
    src = (
        "import java.util.Scanner;\npublic class Adder { public static void main(String[] a) {"
        " Scanner s = new Scanner(System.in); System.out.println(s.nextInt() + s.nextInt()); } }"
    )
    r = run(best, src, "java", stdin="40 2")
    assert (r.verdict, r.stdout) == ("ok", "42\n")
    assert r.compile is not None and r.compile.exit_code == 0


def test_java_without_a_public_class(best: LocalEngine) -> None:
    r = run(
        best,
        "class Helper { static int f() { return 7; } }\nclass Prog { public static void main(String[] a) "
        "{ System.out.println(Helper.f()); } }",
        "java",
    )
    assert (r.verdict, r.stdout) == ("ok", "7\n")


def test_c_reads_stdin(best: LocalEngine) -> None:
    r = run(
        best, '#include <stdio.h>\nint main(){int a,b; scanf("%d %d",&a,&b); printf("%d\\n",a+b);}', "c", stdin="40 2"
    )
    assert (r.verdict, r.stdout) == ("ok", "42\n")


def test_cpp_compile_error_has_gccs_message_and_no_run(best: LocalEngine) -> None:
    r = run(best, "int main(){ return undefined; }", "cpp")
    assert r.verdict == "compile_error" and r.run is None
    assert r.compile is not None and "main.cpp:1:20: error: ‘undefined’ was not declared" in r.compile.stderr


def test_multi_file_cpp_and_args(best: LocalEngine) -> None:
    r = run(
        best,
        '#include <cstdio>\n#include "util.h"\nint main(int c, char** v){ printf("%d %s\\n", twice(21), v[1]); }',
        "cpp",
        files={"util.h": "int twice(int);", "util.cpp": "int twice(int x){ return 2*x; }"},
        args=["hi"],
    )
    assert (r.verdict, r.stdout) == ("ok", "42 hi\n")


def test_javascript(best: LocalEngine) -> None:
    r = run(best, "console.log(6 * 7); console.error('warn')", "javascript")
    assert (r.verdict, r.stdout, r.stderr) == ("ok", "42\n", "warn\n")


def test_runtime_error_keeps_partial_output(best: LocalEngine) -> None:
    r = run(best, "print('before', flush=True)\nraise ValueError('boom')", "python")
    assert r.verdict == "runtime_error" and r.exit_code == 1
    assert r.stdout == "before\n" and "ValueError: boom" in r.stderr


def test_segfault_is_a_signal_verdict(best: LocalEngine) -> None:
    r = run(best, "int main(){ volatile int *p = 0; return *p; }", "c")
    assert r.verdict == "signal"
    assert r.run is not None and r.run.signal == "SIGSEGV" and r.exit_code == 139


def test_expected_output(best: LocalEngine) -> None:
    assert run(best, "print(42)", "python", expect="42").verdict == "ok"
    wrong = run(best, "print(41)", "python", expect="42\n")
    assert wrong.verdict == "wrong_answer" and wrong.diff and "+41" in wrong.diff


def test_missing_toolchain_names_what_to_install(
    best: LocalEngine, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from codecapsule.engines import _toolchains

    # an empty system PATH stands for a machine without the toolchain
    monkeypatch.setattr(_toolchains, "_SYSTEM_PATH", str(tmp_path))
    with pytest.raises(cc.ToolchainMissing, match=r"default-jdk-headless.*CODECAPSULE_PISTON_URL"):
        LocalEngine().run(cc.Job.create("class A {}", "java"))


def test_info_says_which_isolation_is_in_force(engine: LocalEngine) -> None:
    info = engine.info()
    assert info.isolation.startswith(engine.caps.level)
    if engine.caps.level == "rlimits":
        assert "can reach the network" in info.isolation
    assert info.languages["python"] != "not installed"
    notes = {n.split(":", 1)[0]: n.split(":", 1)[1] for n in info.notes if n.split(":", 1)[0] in FACTS}
    assert set(notes) == set(FACTS), info.notes
    caps = engine.caps
    assert ("unprivileged host uid" in notes["uid"]) == (caps.sandbox_uid is not None)
    assert ("no filter" in notes["seccomp"]) == (caps.seccomp is None)
    assert ("none" in notes["cgroup"]) == (caps.cgroups is None)
    assert ("tmpfs" in notes["disk"]) == caps.root
    assert ("sandboxes are prepared ahead" in notes["launch"]) == engine.primed
    assert ("standbys" in notes["launch"]) == (caps.uses_standby and not engine.primed)


FACTS = ("uid", "seccomp", "cgroup", "disk", "launch", "verdicts")


# -- hostile programs, in every mode ------------------------------------------------------------------


def test_infinite_loop_is_a_time_limit(engine: LocalEngine) -> None:
    r = run(engine, "while True: pass", "python", timeout=1)
    assert r.verdict == "time_limit"
    # where CPU time is enforced over the run, the clock is a backstop at 2 × CPU + 1 s
    assert r.run is not None and r.run.wall_time is not None and r.run.wall_time < 3 + 1.0


def test_cpu_time_limit(engine: LocalEngine) -> None:
    r = run(engine, "while True: pass", "python", limits={"run_cpu_time": 1, "run_timeout": 10})
    assert r.verdict == "time_limit"
    assert r.run is not None and r.run.wall_time is not None and r.run.wall_time < 5


@pytest.mark.parametrize(
    ("language", "source"),
    [
        ("python", "x = bytearray(2 * 1024**3)\nprint('allocated')"),
        (
            "java",
            "import java.util.*; public class M { public static void main(String[] a) {"
            " List<long[]> l = new ArrayList<>(); while (true) l.add(new long[10_000_000]); } }",
        ),
        ("javascript", "const a = []; while (true) a.push(new Array(1e6).fill(1));"),
        (
            "c",
            "#include <stdlib.h>\n#include <string.h>\nint main(){ for(int i=0;i<64;i++){ char*p=malloc(1<<25);"
            " if(!p) return 3; memset(p,1,1<<25);} return 0; }",
        ),
    ],
)
def test_allocating_far_over_the_memory_limit(engine: LocalEngine, language: str, source: str) -> None:
    r = run(engine, source, language, memory="256MB", timeout=20)
    assert r.verdict in ("memory_limit", "runtime_error", "signal"), r
    assert r.verdict != "ok" and "allocated" not in r.stdout
    if r.verdict != "memory_limit":
        # without a memory cgroup, C's malloc fails (exit 3) under the address-space limit
        assert language == "c" and r.exit_code == 3


def test_huge_output_is_capped_and_the_parent_stays_flat(engine: LocalEngine) -> None:
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    r = run(engine, "import sys\nchunk = 'x' * 65536\nwhile True: sys.stdout.write(chunk)", "python", timeout=10)
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    assert r.verdict == "output_limit"
    assert r.run is not None and r.run.truncated and len(r.stdout) == 1024 * 1024  # the captured prefix is kept
    assert (after - before) * 1024 < 50 * 1024 * 1024


def test_fork_bomb_is_contained(engine: LocalEngine) -> None:
    if engine.caps.cgroups is None and engine.caps.root and engine.caps.sandbox_uid is None:
        pytest.skip("as root without a pids cgroup nothing contains a fork bomb (the engine says so in info())")
    r = run(engine, "import os\nwhile True:\n    try: os.fork()\n    except OSError: pass", "python", timeout=3)
    assert r.verdict in ("time_limit", "runtime_error")
    assert os.getloadavg()  # the machine still answers


def test_a_sleeping_grandchild_does_not_outlive_the_run(engine: LocalEngine) -> None:
    tag = marker()
    src = f"import os\nif os.fork() == 0:\n    os.execv('/bin/sleep', ['sleep', '{tag}'])\nprint('parent done')"
    r = run(engine, src, "python")
    assert (r.verdict, r.stdout) == ("ok", "parent done\n")
    assert running(tag) == []


def test_a_daemonised_grandchild_does_not_outlive_the_run(engine: LocalEngine) -> None:
    if engine.caps.level == "rlimits":
        pytest.skip("without namespaces or cgroups a setsid() grandchild escapes (the engine says so in info())")
    tag = marker()
    src = (
        f"import os\nif os.fork() == 0:\n    os.setsid()\n    if os.fork() == 0:\n"
        f"        os.execv('/bin/sleep', ['sleep', '{tag}'])\n    os._exit(0)\nprint('parent done')"
    )
    r = run(engine, src, "python")
    assert r.verdict == "ok"
    assert running(tag) == []


def test_writes_outside_the_work_dir_and_sockets_are_refused_with_bubblewrap(
    engine: LocalEngine, tmp_path: Path
) -> None:
    if engine.caps.bwrap is None:
        pytest.skip("only bubblewrap isolates the file system and the network")
    target = tmp_path / "escaped.txt"
    r = run(engine, f"open({str(target)!r}, 'w').write('x')", "python")
    assert r.verdict == "runtime_error" and not target.exists()
    r = run(engine, "open('/usr/escaped.txt', 'w')", "python")
    assert "Read-only file system" in r.stderr
    r = run(engine, "open('own.txt', 'w').write('fine'); print(open('own.txt').read())", "python")
    assert r.stdout == "fine\n"
    r = run(engine, "import socket\ns = socket.socket()\ns.settimeout(2)\ns.connect(('127.0.0.1', 22))", "python")
    assert r.verdict == "runtime_error" and ("Network is unreachable" in r.stderr or "refused" in r.stderr)
    r = run(engine, "print(open('/etc/shadow').read())", "python")
    assert r.verdict == "runtime_error"


def test_no_work_directory_is_left_behind(best: LocalEngine) -> None:
    tmp_path = Path(tempfile.mkdtemp(prefix="capsule-root-"))  # reachable by the sandbox's uid (o+x)
    os.chmod(tmp_path, 0o711)
    engine = LocalEngine(workroot=str(tmp_path))
    run(engine, "import os; os.chmod('.', 0o500); open('/box/x', 'w') if False else None", "python")
    run(engine, "int main(){return 0;}", "c")
    engine.close()  # the work directories prepared for the next runs wait in the work root until then
    assert list(tmp_path.iterdir()) == []
    tmp_path.rmdir()


def test_a_workroot_the_sandbox_uid_cannot_reach_is_refused(tmp_path: Path) -> None:
    if LocalEngine().caps.sandbox_uid is None:
        pytest.skip("only as root do programs run as another uid")
    tmp_path.chmod(0o700)
    with pytest.raises(cc.ConfigurationError, match="cannot be reached by the sandbox"):
        LocalEngine(workroot=str(tmp_path))


@pytest.fixture(scope="module", autouse=True)
def _no_cgroups_left() -> Iterator[None]:
    yield
    from codecapsule.engines import _javac_server, _primed, _standby

    _primed.release_all()  # sandboxes prepared for the next runs hold a group each; and a run's group is removed
    # on the forker thread once its processes are killed: release_all waits for that too
    _standby.release_all()  # launchers waiting for the next stage hold a group each: released, it must go too
    _javac_server.stop_all()  # so does an engine's warm javac, until its engine is closed
    for root in (Path("/sys/fs/cgroup/pids"), Path("/sys/fs/cgroup/memory")):
        if root.exists():
            assert not list(root.rglob(f"codecapsule-{os.getpid()}-*")), "a run's cgroup was left behind"


def test_bwrap_is_found_when_installed() -> None:
    if shutil.which("bwrap"):
        assert LocalEngine().caps.bwrap is not None


@pytest.mark.parametrize(
    ("kw", "expected"),
    [
        ({"reason": "TO"}, ("TO", "Time limit exceeded (wall clock, 0.5 s)", None, "SIGKILL")),
        ({"reason": "CPU"}, ("TO", "Time limit exceeded (CPU time, 1 s)", None, "SIGKILL")),
        ({"reason": "OL"}, ("OL", "stdout length exceeded (output limit 1024 bytes)", None, "SIGKILL")),
        ({"oom": True, "code": 137, "sig": "SIGKILL"}, ("ML", "Memory limit exceeded (65536 bytes)", 137, "SIGKILL")),
        ({"sig": "SIGXCPU", "code": 152}, ("TO", "Time limit exceeded (CPU time, 1 s)", 152, "SIGXCPU")),
        ({"sig": "SIGKILL", "code": 137, "cpu": 2.0}, ("TO", "Time limit exceeded (CPU time, 1 s)", 137, "SIGKILL")),
        ({"sig": "SIGKILL", "code": 137, "cpu": 0.1}, ("SG", "Killed by SIGKILL: killed", 137, "SIGKILL")),
        (
            {"sig": "SIGSEGV", "code": 139},
            ("SG", "Killed by SIGSEGV: segmentation fault (invalid memory access)", 139, "SIGSEGV"),
        ),
        ({"code": 3}, ("RE", "Exited with error status 3", 3, None)),
        ({"code": 0}, (None, None, 0, None)),
    ],
)
def test_how_a_stage_ended_is_classified(kw: dict[str, object], expected: tuple[object, ...]) -> None:
    from codecapsule.engines._sandbox import StageLimits, classify

    limits = StageLimits(
        wall=5, cpu=1, memory=65536, processes=8, output=1024, file_size=None, limit_address_space=True
    )
    args: dict[str, object] = {"reason": None, "code": None, "sig": None, "oom": False, "cpu": None, "wall": 0.5}
    args.update(kw)
    assert classify(limits=limits, **args) == expected  # type: ignore[arg-type]
