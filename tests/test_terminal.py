"""codecapsule/_terminal.py's Echo: a live run's chunks on the terminal, the engine's file names replaced by the
user's even when a chunk boundary cuts a name (the CLI's end-to-end behaviour is in tests/test_cli.py)."""

from __future__ import annotations

import contextlib
import io

import pytest

from codecapsule._events import Finished, InputWanted, Output, StageStarted
from codecapsule._results import Result, Stage, Verdict
from codecapsule._terminal import Echo


def test_a_name_cut_between_two_chunks_is_still_replaced(capsys: pytest.CaptureFixture[str]) -> None:
    echo = Echo({"main.c": "broken.c"})
    echo.show(StageStarted("compile"))
    echo.show(Output("compile", "stderr", "/box/ma"))
    assert capsys.readouterr().err == ""  # an unfinished line waits
    echo.show(Output("compile", "stderr", "in.c:3:18: error: x\n/box/main.c:4:1: note"))
    assert capsys.readouterr().err == "broken.c:3:18: error: x\n"
    echo.show(StageStarted("run"))  # any other event lets the unfinished line out
    assert capsys.readouterr().err == "broken.c:4:1: note"


def test_stdout_is_shown_at_once_after_the_held_stderr(capsys: pytest.CaptureFixture[str]) -> None:
    echo = Echo({})
    echo.show(Output("run", "stderr", "Enter a number: "))
    echo.show(InputWanted("run"))  # the prompt shows before the program waits for the answer
    assert capsys.readouterr() == ("", "Enter a number: ")
    terminal = io.StringIO()  # both streams on one terminal: the order the user sees
    with contextlib.redirect_stdout(terminal), contextlib.redirect_stderr(terminal):
        echo.show(Output("run", "stderr", "warn"))
        echo.show(Output("run", "stdout", "out\n"))
        echo.show(Finished(Result("python", "3", "local", Verdict.OK, run=Stage(stdout="out\n", exit_code=0))))
    assert terminal.getvalue() == "warnout\n"


def test_replay_prints_a_finished_runs_stages(capsys: pytest.CaptureFixture[str]) -> None:
    compile_stage = Stage(stderr="main.c:1: warning: w\n", exit_code=0)
    run = Stage(stdout="42\n", stderr="main.c done", exit_code=0)
    Echo({"main.c": "p.c"}).replay(Result("c", "12", "piston", Verdict.OK, compile=compile_stage, run=run))
    assert capsys.readouterr() == ("42\n", "p.c:1: warning: w\np.c done")
