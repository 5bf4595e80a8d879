"""Interactive live runs on the local engine (``stream(..., interactive=True)``): real programs in every language
read what is sent while they run, are asked for input when they really block reading it, see end of input at
``close_stdin()``, and a Stop while they wait still kills everything. Synchronisation is on events only."""

from __future__ import annotations

import asyncio
import shutil

import pytest

import codecapsule as cc
from codecapsule._events import Event, Finished, InputWanted, Output
from codecapsule._hints import READS_INPUT
from codecapsule._render import render_text
from codecapsule.engines.local import LocalEngine
from tests.engines.conversation import END, converse, stdout_before, waits
from tests.engines.hostile import MODES, marker, running


@pytest.fixture(scope="module")
def engine(workroot: str) -> LocalEngine:
    return LocalEngine(workroot=workroot)


# Each echoes every line it reads as "got <line>" (flushed) until end of input, then exits 0.
_ECHO = {
    "python": ("python3", "while True:\n    try:\n        line = input()\n    except EOFError:\n        break\n"
               "    print('got', line)\n"),
    "c": ("gcc", '#include <stdio.h>\nint main(void) {\n  char word[100];\n  while (scanf("%99s", word) == 1) {\n'
          '    printf("got %s\\n", word);\n    fflush(stdout);\n  }\n  return 0;\n}\n'),
    "c++": ("g++", "#include <iostream>\n#include <string>\nint main() {\n  std::string word;\n"
            '  while (std::cin >> word) std::cout << "got " << word << std::endl;\n  return 0;\n}\n'),
    "java": ("java", "import java.util.Scanner;\npublic class Main {\n  public static void main(String[] a) {\n"
             "    Scanner in = new Scanner(System.in);\n"
             '    while (in.hasNextLine()) System.out.println("got " + in.nextLine());\n  }\n}\n'),
    "javascript": ("node", "const rl = require('readline').createInterface({ input: process.stdin });\n"
                   "rl.on('line', (line) => console.log('got ' + line));\n"),
}  # fmt: skip


@pytest.mark.parametrize("language", list(_ECHO))
def test_a_program_reads_each_line_as_it_is_sent(engine: LocalEngine, language: str) -> None:
    tool, source = _ECHO[language]
    if shutil.which(tool) is None:
        pytest.skip(f"needs {tool}")
    job = cc.Job.create(source, language, timeout=60)
    events, result = converse(engine.stream(job, interactive=True), ["Ada", END])
    # asked once before the line, once after it was echoed: the echo arrived while the program still ran
    assert waits(events) == 2, events
    assert stdout_before(events, 0) == "" and stdout_before(events, 1) == "got Ada\n", events
    assert (result.verdict, result.stdout) == ("ok", "got Ada\n"), (result.stderr, result.run)


def test_end_of_input_at_once_is_eof_for_the_program(engine: LocalEngine) -> None:
    job = cc.Job.create("n = int(input())\nprint(n * 2)\n", "python")
    events, result = converse(engine.stream(job, interactive=True), [END])
    assert waits(events) == 1
    assert result.verdict == "runtime_error" and "EOFError" in result.stderr
    assert READS_INPUT in render_text(result, source=job.source)


def test_the_jobs_own_stdin_comes_first(engine: LocalEngine) -> None:
    source = "print('first', input())\nprint('second', input())\n"
    job = cc.Job.create(source, "python", stdin="from-job\n")
    events, result = converse(engine.stream(job, interactive=True), ["typed", END])
    assert waits(events) == 1  # the first line was there already: no question for it
    assert result.stdout == "first from-job\nsecond typed\n" and result.verdict == "ok"


def test_input_sent_before_the_program_asks_waits_in_its_stdin(engine: LocalEngine) -> None:
    run = engine.stream(cc.Job.create("print(input() + input())\n", "python"), interactive=True)
    run.send("a\n")
    run.send("b\n")
    run.close_stdin()
    events, result = converse(run, [])
    assert waits(events) == 0 and result.stdout == "ab\n" and result.verdict == "ok"


def test_a_silent_computation_is_not_asked_for_input(engine: LocalEngine) -> None:
    """Quiet but not reading (a busy loop, then a sleep): /proc says it does not wait, so no question."""
    source = "import time\nx = 0\nfor i in range(3_000_000):\n    x += i\ntime.sleep(0.5)\nprint(x)\n"
    events, result = converse(engine.stream(cc.Job.create(source, "python", timeout=30), interactive=True), [])
    assert waits(events) == 0 and result.verdict == "ok"


def test_stop_while_it_waits_kills_everything_and_keeps_the_output(engine: LocalEngine) -> None:
    mark = marker()
    source = "import subprocess, sys\nprint('ask', flush=True)\n" + (
        f"subprocess.run([sys.executable, '-c', 'input()', {mark!r}])\n"  # the child is the one reading
    )
    seen: list[Event] = []
    with engine.stream(cc.Job.create(source, "python", timeout=60), interactive=True) as run:
        for event in run:
            seen.append(event)
            if isinstance(event, InputWanted):
                assert running(mark), "the reading child runs before the stop"
                run.cancel()
    result = seen[-1].result if isinstance(seen[-1], Finished) else None
    assert result is not None and result.verdict == cc.Verdict.INTERRUPTED, seen
    assert result.stdout == "ask\n" and result.run is not None and result.run.status == "IN"
    assert running(mark) == []


def test_async_interactive_stream(engine: LocalEngine) -> None:
    async def main() -> list[Event]:
        events: list[Event] = []
        async with engine.astream(cc.Job.create("print('hi', input())\n", "python"), interactive=True) as run:
            async for event in run:
                events.append(event)
                if isinstance(event, InputWanted):
                    await run.send("Ada\n")
        return events

    events = asyncio.run(main())
    assert isinstance(events[-1], Finished) and events[-1].result.stdout == "hi Ada\n"


def test_interactive_runs_get_room_for_typing(engine: LocalEngine) -> None:
    _, result = converse(engine.stream(cc.Job.create("pass", "python"), interactive=True), [])
    assert result.limits.run_timeout == 60.0  # INTERACTIVE_RUN_TIMEOUT, not the 5 s default
    explicit = cc.Job.create("pass", "python", timeout=2)
    assert converse(engine.stream(explicit, interactive=True), [])[1].limits.run_timeout == 2.0


# Every sandbox mode (and the full one started cold, without a standby) feeds the pipe and measures the wait.
_MODES = {
    **{m: {**flags, "standby": True} for m, flags in MODES.items()},
    "full-cold": {**MODES["full"], "standby": False},
}


@pytest.mark.parametrize("mode", list(_MODES))
def test_every_sandbox_mode_takes_typed_input(workroot: str, mode: str) -> None:
    engine = LocalEngine(workroot=workroot, **_MODES[mode])  # type: ignore[arg-type]
    if engine.caps.level != mode.removesuffix("-cold"):
        pytest.skip(f"sandbox mode {mode!r} is not available here (got {engine.caps.level!r})")
    job = cc.Job.create("name = input('who? ')\nprint('hello', name)\n", "python", timeout=30)
    events, result = converse(engine.stream(job, interactive=True), ["Ada"])
    assert waits(events) == 1 and stdout_before(events, 0) == "who? "
    assert (result.verdict, result.stdout) == ("ok", "who? hello Ada\n")
    assert any(isinstance(e, Output) and e.text == "hello Ada\n" for e in events)


def test_a_wait_proc_cannot_see_is_asked_after_the_quiet_time(engine: LocalEngine) -> None:
    """select() does not show its fd set in /proc: the quiet-time rule (Piston's) asks instead."""
    source = "import select, sys\nselect.select([sys.stdin], [], [])\nprint('got', sys.stdin.readline().strip())\n"
    events, result = converse(engine.stream(cc.Job.create(source, "python", timeout=30), interactive=True), ["Ada"])
    assert waits(events) >= 1 and result.stdout == "got Ada\n"  # (asked again if it is slow to print)
