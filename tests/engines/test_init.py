"""The compiled PID 1 (``engines/_init.py``): used where it can be built, sealed, invisible to the program, and it
reports every way a program ends exactly as the perl launcher does (the hostile suite runs on it by default)."""

from __future__ import annotations

import fcntl
import os
import shutil
from dataclasses import replace

import pytest

import codecapsule as cc
from codecapsule._settings import local_cache_dir
from codecapsule.engines import _init
from codecapsule.engines.local import LocalEngine

ENDINGS = {
    "exit-0": ("print(42)", "python"),
    "exit-139-is-no-segfault": ("import sys; sys.exit(139)", "python"),
    "abort": ("import os; os.abort()", "python"),
    "sigkill-self": ("import os, signal; os.kill(os.getpid(), signal.SIGKILL)", "python"),
    "segfault": ("int main(void){ volatile int *p = 0; return *p; }", "c"),
    "exit-134-is-no-abort": ("int main(void){ return 134; }", "c"),
    "fds-the-program-holds": ("import os; print(sorted(os.listdir('/proc/self/fd')))", "python"),
    "orphan-left-running": (
        "import os\nif os.fork() == 0:\n    os.setsid()\n    os.execv('/bin/sleep', ['sleep', '30'])\nprint('parent')",
        "python",
    ),
    "no-such-program": ("import os; os.execv('/nonexistent', ['x'])", "python"),
    "cpu-limit": ("while True: pass", "python"),
}


@pytest.fixture(scope="module")
def engines() -> tuple[LocalEngine, LocalEngine]:
    engine = LocalEngine()
    if engine.caps.init is None:
        pytest.skip(f"no compiled init here (level {engine.caps.level}, C compiler: {shutil.which('cc')})")
    perl = LocalEngine()
    perl.caps = replace(perl.caps, init=None)  # the fallback launcher, same machine and sandbox otherwise
    return engine, perl


def test_a_compiled_init_is_used_where_a_compiler_is() -> None:
    engine = LocalEngine()
    if engine.caps.bwrap is None or engine.caps.perl is None or shutil.which("cc") is None:
        pytest.skip("needs bubblewrap, perl and a C compiler")
    assert engine.caps.init is not None


def test_the_init_cannot_be_changed_after_its_check(engines: tuple[LocalEngine, LocalEngine]) -> None:
    fd = engines[0].caps.init
    assert fd is not None and fd == _init.program_fd(local_cache_dir())
    seals = fcntl.fcntl(fd, fcntl.F_GET_SEALS)
    assert seals & fcntl.F_SEAL_WRITE and seals & fcntl.F_SEAL_SEAL
    with pytest.raises(PermissionError):
        os.pwrite(fd, b"x", 0)


@pytest.mark.parametrize("name", list(ENDINGS))
def test_init_and_perl_report_every_ending_alike(engines: tuple[LocalEngine, LocalEngine], name: str) -> None:
    source, language = ENDINGS[name]
    job = cc.Job.create(source, language, limits={"run_cpu_time": 0.5})
    got = []
    for engine in engines:
        r = engine.run(job)
        stage = r.run
        assert stage is not None, r
        got.append((r.verdict, stage.stdout, stage.exit_code, stage.signal, stage.status))
    assert got[0] == got[1], got
    if name == "exit-139-is-no-segfault":
        assert got[0][3] is None and got[0][2] == 139
    if name == "segfault":
        assert got[0][3] == "SIGSEGV"


def test_pid1_has_a_name_that_says_what_it_is(engines: tuple[LocalEngine, LocalEngine]) -> None:
    r = engines[0].run(cc.Job.create("print(open('/proc/1/comm').read().strip())", "python"))
    assert r.stdout == "capsule-init\n", r  # not the fd number it was run by
