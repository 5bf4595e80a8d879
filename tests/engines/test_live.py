"""Live runs on the local engine (engines/_live.py + LocalEngine.stream), with real sandboxed programs: output
arrives while the program runs, cancel kills every process of the run and keeps the partial output, and the
stream's final Result is the one execute() gives."""

from __future__ import annotations

import asyncio
import os
import threading
from pathlib import Path

import pytest

import codecapsule as cc
from codecapsule._events import Event, Finished, Output, StageStarted
from codecapsule.engines._live import IncrementalText, LiveRun
from codecapsule.engines.local import LocalEngine
from tests.engines.hostile import marker, running


@pytest.fixture(scope="module")
def engine(workroot: str) -> LocalEngine:
    return LocalEngine(workroot=workroot)


def _texts(events: list[Event], stream: str) -> str:
    return "".join(e.text for e in events if isinstance(e, Output) and e.stream == stream)


def _zombie_children() -> list[int]:
    """Our own children that died and were never reaped."""
    found = []
    for tid in os.listdir("/proc/self/task"):
        try:
            children = Path(f"/proc/self/task/{tid}/children").read_text().split()
        except OSError:
            continue
        for child in children:
            try:
                stat = Path(f"/proc/{child}/stat").read_text()
            except OSError:
                continue
            if stat[stat.rindex(")") + 2] == "Z":
                found.append(int(child))
    return found


def test_the_first_output_arrives_before_the_program_exits(engine: LocalEngine, workroot: str) -> None:
    # the program cannot exit before the test opens the fifo, and the test opens it only once it saw "ready"
    source = "import os\nos.mkfifo('gate')\nprint('ready', flush=True)\nopen('gate').read()\nprint('done')\n"
    with engine.stream(cc.Job.create(source, "python", timeout=30)) as run:
        events = iter(run)
        assert next(events) == StageStarted("run")
        first = next(events)
        assert first == Output("run", "stdout", "ready\n")
        (gate,) = Path(workroot).glob("*/gate")
        with open(gate, "w") as fifo:  # unblocks the program's read; closing it gives the program EOF
            fifo.write("go")
        rest = list(events)
    assert isinstance(rest[-1], Finished)
    result = rest[-1].result
    assert (result.verdict, result.stdout) == ("ok", "ready\ndone\n")
    assert _texts([first, *rest], "stdout") == result.stdout


def test_cancel_kills_every_process_of_a_forking_program_and_keeps_its_output(engine: LocalEngine) -> None:
    mark = marker()
    child = "import time; print('child', flush=True); time.sleep(1000)"
    source = (
        "import subprocess, sys, time\n"
        "print('started', flush=True)\n"
        f"subprocess.Popen([sys.executable, '-c', {child!r}, {mark!r}])\n"
        "time.sleep(1000)\n"
    )
    earlier = set(_zombie_children())  # other tests' orphans reparented to this (subreaper) process
    events: list[Event] = []
    run = engine.stream(cc.Job.create(source, "python", timeout=60))
    for event in run:
        events.append(event)
        if isinstance(event, Output) and "child" in event.text:
            assert running(mark), "the child is running before the cancel"
            run.cancel()
            run.cancel()  # idempotent
    result = events[-1].result if isinstance(events[-1], Finished) else None
    assert result is not None
    assert result.verdict == cc.Verdict.INTERRUPTED
    assert result.stdout == "started\nchild\n" == _texts(events, "stdout")
    assert result.run is not None and result.run.status == "IN" and "Interrupted" in (result.run.message or "")
    assert running(mark) == []
    assert set(_zombie_children()) <= earlier


def test_leaving_the_block_before_the_end_stops_the_run(engine: LocalEngine) -> None:
    mark = marker()
    earlier = set(_zombie_children())
    source = f"import time\nprint('up', flush=True)\ntime.sleep(1000)  # {mark}\n"
    with engine.stream(cc.Job.create(source, "python", args=[mark], timeout=60)) as run:
        for event in run:
            if isinstance(event, Output):
                break
    assert running(mark) == []
    assert set(_zombie_children()) <= earlier


_SLEEPERS = {
    "python": "import time\ntime.sleep(1000)\n",
    "c": "#include <unistd.h>\nint main(void){ sleep(1000); return 0; }\n",  # stopped while it compiles
}


@pytest.mark.parametrize("language", list(_SLEEPERS))
def test_cancel_from_another_thread_before_any_event(engine: LocalEngine, language: str) -> None:
    run = engine.stream(cc.Job.create(_SLEEPERS[language], language, timeout=60))
    thread = threading.Thread(target=run.cancel)
    thread.start()
    thread.join()
    events = list(run)
    assert isinstance(events[-1], Finished)
    result = events[-1].result
    assert result.verdict == cc.Verdict.INTERRUPTED
    assert (result.compile if language == "c" else result.run).status == "IN"  # type: ignore[union-attr]


_SAME_AS_EXECUTE = {
    "ok": ("import sys\nprint('out')\nprint('err', file=sys.stderr)\n", "python", {}),
    "runtime_error": ("print('before')\nraise ValueError('boom')\n", "python", {}),
    "syntax_error": ("print(1\n", "python", {}),
    # the cap cuts a two-byte character in half: the chunks still decode to the Stage's text
    "output_limit": ("print('é' * 5000)\n", "python", {"limits": {"output": 1025}}),
    "c": ('#include <stdio.h>\nint main(void){puts("hi"); return 3;}\n', "c", {}),
    "compile_error": ("int main(void){ return x; }\n", "c", {}),
}


@pytest.mark.parametrize("case", list(_SAME_AS_EXECUTE))
def test_the_streams_result_is_the_one_execute_gives(engine: LocalEngine, case: str) -> None:
    source, language, kwargs = _SAME_AS_EXECUTE[case]
    job = cc.Job.create(source, language, **kwargs)  # type: ignore[arg-type]
    with engine.stream(job) as run:
        events = list(run)
    assert isinstance(events[-1], Finished)
    live, plain = events[-1].result, engine.run(job)
    assert live.verdict == plain.verdict
    for name in ("compile", "run"):
        a, b = getattr(live, name), getattr(plain, name)
        assert (a is None) == (b is None), name
        if a is None:
            continue
        fields = ("stdout", "stderr", "exit_code", "signal", "status", "message", "truncated")
        assert [getattr(a, f) for f in fields] == [getattr(b, f) for f in fields], name
        # the merged text is the order two pipes' reads came in: when both are readable at once (a loaded
        # machine), either may be read first, in either run
        assert sorted(a.output.splitlines(True)) == sorted(b.output.splitlines(True)), name
        staged = [e for e in events if not isinstance(e, Finished) and e.stage == name]
        assert staged[0] == StageStarted(name)  # type: ignore[arg-type]
        assert _texts(staged, "stdout") == a.stdout and _texts(staged, "stderr") == a.stderr
    assert "capsule:" not in _texts(events, "stderr")  # the Python bootstrap's stage line is never shown


def test_async_stream(engine: LocalEngine) -> None:
    async def main() -> list[Event]:
        async with engine.astream(cc.Job.create("print('a')\nprint('b')\n", "python")) as run:
            return [event async for event in run]

    events = asyncio.run(main())
    assert events[0] == StageStarted("run") and isinstance(events[-1], Finished)
    assert _texts(events, "stdout") == "a\nb\n" == events[-1].result.stdout


def test_cancelling_the_awaiting_task_stops_the_run(engine: LocalEngine) -> None:
    mark = marker()

    async def main() -> None:
        run = engine.astream(cc.Job.create("import time\ntime.sleep(1000)\n", "python", args=[mark], timeout=60))
        started = asyncio.Event()

        async def consume() -> None:
            async for event in run:
                if isinstance(event, StageStarted):
                    started.set()

        task = asyncio.create_task(consume())
        await started.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await run.aclose()

    asyncio.run(main())
    assert running(mark) == []


def test_a_missing_toolchain_raises_before_anything_runs(engine: LocalEngine) -> None:
    job = cc.Job.create("SELECT 1", "sql")
    with pytest.raises(cc.errors.EngineError, match="DuckDB engine"):
        engine.stream(job)


def test_a_producer_bug_still_ends_with_an_internal_error_result() -> None:
    def producer(io: object) -> cc.Result:
        raise KeyError("bug")

    run = LiveRun(producer, lambda exc: cc.Result("python", "", "local", cc.Verdict.INTERNAL_ERROR, error=repr(exc)))
    (finished,) = list(run)
    assert isinstance(finished, Finished) and finished.result.verdict == cc.Verdict.INTERNAL_ERROR


def test_send_needs_an_interactive_run(engine: LocalEngine) -> None:
    with (
        engine.stream(cc.Job.create("print(1)", "python")) as run,
        pytest.raises(cc.errors.InvalidRequest, match="interactive"),
    ):
        run.send("x\n")


def test_incremental_text_never_splits_a_character() -> None:
    text = IncrementalText()
    data = "aé€😀".encode()
    pieces = [text.decode("stdout", data[i : i + 1]) for i in range(len(data))]
    assert "".join(pieces) + text.decode("stdout", b"", final=True) == "aé€😀"
    assert all(p in ("", "a", "é", "€", "😀") for p in pieces)
