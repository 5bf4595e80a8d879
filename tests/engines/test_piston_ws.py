"""Piston's live path: the double's /api/v2/connect (the real WebSocket protocol) and the client's stream()."""

from __future__ import annotations

import json
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import ClientConnection, connect

from codecapsule import Job, Result, Settings
from codecapsule._errors import AccessDenied, PistonError, ProtocolError, RequestTimeout
from codecapsule._events import Finished, InputWanted, Output, StageStarted
from codecapsule.engines.piston import PistonEngine
from codecapsule.engines.piston_ws import CLOSE_CODES, error_from_close, parse_message, ws_url
from tests.fakes.piston import PistonTestServer

from .parity_corpus import PROGRAMS, Program

SECRET = "s3cr3t-live-access-0123456789"
ASK = {
    "python": "n = input('n? ')\nprint(int(n) * 2)\n",
    "javascript": "const rl = require('readline').createInterface({input: process.stdin});\n"
    "process.stdout.write('n? ');\n"
    "rl.once('line', (l) => { console.log(2 * Number(l)); rl.close(); process.stdin.destroy(); });\n",
    "java": "import java.util.*; public class Main { public static void main(String[] a) {"
    ' Scanner s = new Scanner(System.in); System.out.print("n? "); System.out.flush();'
    " System.out.println(2 * s.nextInt()); } }",
    "c": '#include <stdio.h>\nint main(void){ int n; printf("n? "); fflush(stdout); scanf("%d", &n);'
    ' printf("%d\\n", 2 * n); return 0; }',
    "c++": '#include <iostream>\nint main(){ int n; std::cout << "n? " << std::flush; std::cin >> n;'
    " std::cout << 2 * n << std::endl; }",
}
# Piston never closes a live program's stdin (v3.1.1): programs that read to end-of-input wait for their run_timeout
READS_TO_EOF = {"python-read-all", "js-stdin-absent"}


@pytest.fixture
def server() -> Iterator[PistonTestServer]:
    with PistonTestServer(run_timeout=10000, run_cpu_time=10000) as s:
        yield s


@pytest.fixture
def engine(server: PistonTestServer) -> Iterator[PistonEngine]:
    with PistonEngine(Settings(piston_url=server.url, engine="piston", retries=0, request_timeout=30)) as e:
        yield e


def _init(language: str, source: str, **extra: Any) -> str:
    return json.dumps({"type": "init", "language": language, "version": "*", "files": [{"content": source}], **extra})


def _messages(ws: ClientConnection) -> tuple[list[dict[str, Any]], int | None]:
    """Every message until the server closes, and its close code."""
    got = []
    try:
        while True:
            got.append(json.loads(ws.recv(timeout=30)))
    except ConnectionClosed as exc:
        return got, exc.rcvd.code if exc.rcvd else None


# -- the double speaks Piston v3.1.1's protocol -----------------------------------------------------------


def test_double_order_of_messages_and_close_4999(server: PistonTestServer) -> None:
    with connect(ws_url(server.url)) as ws:
        ws.send(_init("c", '#include <stdio.h>\nint main(void){ puts("hi"); return 3; }'))
        got, code = _messages(ws)
    assert [m["type"] for m in got] == ["runtime", "stage", "exit", "stage", "data", "exit"]
    assert [m.get("stage") for m in got if m["type"] in ("stage", "exit")] == ["compile", "compile", "run", "run"]
    assert got[4] == {"type": "data", "stream": "stdout", "data": "hi\n"}
    assert got[5] == {"type": "exit", "stage": "run", "code": 3, "signal": None}
    assert code == 4999


@pytest.mark.parametrize(
    ("first", "then", "code"),
    [
        (None, None, 4001),  # no init within 1 s
        ("init", "init", 4000),
        ('{"type":"data","stream":"stdin","data":"x"}', None, 4003),
        ("init", '{"type":"data","stream":"stdout","data":"x"}', 4004),
        ("init", '{"type":"signal","signal":"SIGNOPE"}', 4005),
    ],
)
def test_double_close_codes(server: PistonTestServer, first: str | None, then: str | None, code: int) -> None:
    waiting = _init("python", "input()")
    with connect(ws_url(server.url)) as ws:
        for message in (first, then):
            if message is not None:
                ws.send(waiting if message == "init" else message)
        _, closed = _messages(ws)
    assert closed == code


def test_double_ignores_signal_and_has_no_output_cap(server: PistonTestServer) -> None:
    assert server.output_max_size == 1024
    with connect(ws_url(server.url)) as ws:
        ws.send(_init("python", "n = input()\nprint('x' * 5000)\nprint(n)"))
        assert [json.loads(ws.recv(timeout=30))["type"] for _ in range(2)] == ["runtime", "stage"]
        ws.send('{"type":"signal","signal":"SIGKILL"}')  # no effect in v3.1.1: the program still reads its line
        ws.send('{"type":"data","stream":"stdin","data":"still here\\n"}')
        got, code = _messages(ws)
    out = "".join(m["data"] for m in got if m["type"] == "data")
    assert out == "x" * 5000 + "\nstill here\n" and code == 4999
    assert got[-1] == {"type": "exit", "stage": "run", "code": 0, "signal": None}


def test_double_job_outlives_the_closed_socket(server: PistonTestServer) -> None:
    with connect(ws_url(server.url)) as ws:
        ws.send(_init("python", "print('ready', flush=True)\ninput()", run_timeout=4000))
        while json.loads(ws.recv(timeout=30))["type"] != "data":
            pass
    job = server.jobs[-1]
    assert not job.ended.is_set()  # the socket is closed; the program waits on stdin until its 4 s run_timeout
    assert job.ended.wait(30)


def test_double_checks_access_on_the_upgrade(server: PistonTestServer) -> None:
    server.faults.require_access = ("id", SECRET)
    with pytest.raises(InvalidStatus) as e, connect(ws_url(server.url), additional_headers={
        "CF-Access-Client-Id": "id", "CF-Access-Client-Secret": "wrong"}):
        pass
    assert e.value.response.status_code == 403
    with connect(ws_url(server.url), additional_headers={"CF-Access-Client-Id": "id",
                                                         "CF-Access-Client-Secret": SECRET}) as ws:
        ws.send(_init("python", "print(1)"))
        assert _messages(ws)[1] == 4999


# -- the client -------------------------------------------------------------------------------------------


def test_first_line_arrives_before_the_program_ends(engine: PistonEngine) -> None:
    job = Job.create("print('ready', flush=True)\nprint('got', input())", "python")
    seen: list[object] = []
    with engine.stream(job, interactive=True) as run:
        for event in run:
            seen.append(event)
            if isinstance(event, Output) and event.text == "ready\n":
                run.send("go\n")  # the program cannot end before this line: it waits for it
    assert seen[0] == StageStarted("run") and seen[1] == Output("run", "stdout", "ready\n")
    final = seen[-1]
    assert isinstance(final, Finished) and final.result.verdict == "ok"
    assert final.result.stdout == "ready\ngot go\n"


@pytest.mark.parametrize("language", sorted(ASK))
def test_interactive_input(engine: PistonEngine, language: str) -> None:
    job = Job.create(ASK[language], language)
    asked = 0
    with engine.stream(job, interactive=True) as run:
        for event in run:
            if isinstance(event, InputWanted) and not asked:
                asked += 1
                run.send("21\n")
            if isinstance(event, Finished):
                result = event.result
    assert asked == 1
    assert result.verdict == "ok", result
    assert result.stdout == "n? 42\n"


def test_stop_keeps_the_output_and_says_the_server_finishes_the_job(
    engine: PistonEngine, server: PistonTestServer
) -> None:
    job = Job.create("import time\nwhile True:\n    print('tick', flush=True)\n    time.sleep(0.05)", "python",
                     timeout=5)
    with engine.stream(job) as run:
        for event in run:
            if isinstance(event, Output):
                run.cancel()
            if isinstance(event, Finished):
                result = event.result
    assert result.verdict == "interrupted"
    assert result.stdout.startswith("tick\n")
    assert any("finishes a stopped job" in note and "5 s" in note for note in result.notes)
    assert not server.jobs[-1].ended.is_set()  # closing did not stop it (as on a real v3.1.1)...
    assert server.jobs[-1].ended.wait(30)  # ...its run_timeout does


def test_output_cap_applied_by_the_client(engine: PistonEngine) -> None:
    result = _streamed(engine, Job.create("print('x' * 5000)", "python", limits={"output": 2048}))
    assert result.verdict == "output_limit"
    assert result.stdout == "x" * 2048


def _streamed(engine: PistonEngine, job: Job) -> Result:
    with engine.stream(job) as run:
        for event in run:
            if isinstance(event, Finished):
                return event.result
    raise AssertionError("no Finished event")


def test_async_stream(server: PistonTestServer) -> None:
    import asyncio

    from codecapsule.engines.piston import AsyncPistonEngine

    async def main() -> list[object]:
        settings = Settings(piston_url=server.url, engine="piston")
        async with AsyncPistonEngine(settings) as engine, engine.astream(Job.create("print(42)", "python")) as run:
            return [event async for event in run]

    events = asyncio.run(main())
    assert events[:2] == [StageStarted("run"), Output("run", "stdout", "42\n")]
    assert isinstance(events[-1], Finished) and events[-1].result.verdict == "ok"


# -- errors -----------------------------------------------------------------------------------------------


def _error_of(call: Any) -> PistonError:
    with pytest.raises(PistonError) as e:
        call()
    return e.value


@pytest.mark.parametrize("fault", ["502", "530", "404", "no-token", "wrong-token"])
def test_handshake_failures_raise_what_execute_raises(server: PistonTestServer, fault: str) -> None:
    url, settings = server.url, {}
    if fault in ("502", "530"):
        server.faults.fail_next(2, int(fault))  # one for execute, one for the stream
    elif fault == "404":
        url += "/not-piston"
    else:
        server.faults.require_access = ("id", SECRET)
        if fault == "wrong-token":
            settings = {"access_client_id": "id", "access_client_secret": "wrong-" + SECRET}
    job = Job.create("print(1)", "python")
    with PistonEngine(Settings(piston_url=url, engine="piston", retries=0, **settings)) as engine:
        by_execute = _error_of(lambda: engine.run(job))
        by_stream = _error_of(lambda: _streamed(engine, job))
    assert type(by_stream) is type(by_execute)
    if fault == "wrong-token":
        assert isinstance(by_stream, AccessDenied)
    assert SECRET not in str(by_stream) and SECRET not in repr(by_stream)


def test_unknown_runtime_raises_what_execute_raises(engine: PistonEngine) -> None:
    job = Job.create("print(1)", "python", version="9.9")
    assert type(_error_of(lambda: _streamed(engine, job))) is type(_error_of(lambda: engine.run(job)))


def test_close_codes_table() -> None:
    assert error_from_close(4999, "Job Completed", url="http://h") is None
    assert isinstance(error_from_close(4001, "", url="http://h"), RequestTimeout)
    for code in (4000, 4003, 4004, 4005):
        assert isinstance(error_from_close(code, "", url="http://h"), ProtocolError)
    assert set(CLOSE_CODES) == {4000, 4001, 4002, 4003, 4004, 4005, 4999}
    assert isinstance(error_from_close(1006, "", url="http://h"), PistonError)


@pytest.mark.parametrize(
    "raw", ["not json", '{"type":"nope"}', '{"type":"data","stream":"stdin","data":"x"}', '{"type":"exit"}']
)
def test_messages_that_are_not_pistons(raw: str) -> None:
    with pytest.raises(ProtocolError):
        parse_message(raw, url="http://h")


def test_ws_url_keeps_the_base_path() -> None:
    assert ws_url("https://t.example.edu/piston/") == "wss://t.example.edu/piston/api/v2/connect"
    assert ws_url("http://127.0.0.1:2000") == "ws://127.0.0.1:2000/api/v2/connect"


# -- parity: stream() gives execute()'s Result ------------------------------------------------------------


@pytest.fixture(scope="module")
def both_paths() -> Iterator[dict[str, tuple[Result, Result]]]:
    with (
        PistonTestServer(output_max_size=65536, run_timeout=10000, run_cpu_time=10000) as server,
        PistonEngine(Settings(piston_url=server.url, engine="piston", retries=0, request_timeout=60)) as engine,
    ):

        def run(p: Program) -> tuple[str, tuple[Result, Result]]:
            job = Job.create(
                p.source, p.language, files=p.files or None, stdin=p.stdin or "", memory=p.memory, timeout=10,
                limits={"output": 65536},
            )
            return p.name, (engine.run(job), _streamed(engine, job))

        with ThreadPoolExecutor(2) as pool:
            yield dict(pool.map(run, [p for p in PROGRAMS if p.name not in READS_TO_EOF]))


@pytest.mark.parametrize("program", [p for p in PROGRAMS if p.name not in READS_TO_EOF], ids=lambda p: p.name)
def test_stream_gives_executes_result(program: Program, both_paths: dict[str, tuple[Result, Result]]) -> None:
    executed, streamed = both_paths[program.name]
    facts = f"\nexecute: {executed!r}\nstream: {streamed!r}"
    assert streamed.verdict == executed.verdict, facts
    assert streamed.stdout == executed.stdout, facts
    assert streamed.exit_code == executed.exit_code, facts
    if executed.verdict in ("compile_error", "runtime_error"):
        assert streamed.stderr.replace(_job_dir(streamed), "") == executed.stderr.replace(_job_dir(executed), ""), facts


@pytest.mark.parametrize(
    ("language", "source"),
    [("c", '#include <stdio.h>\nint main(void){ printf("42\\n"); }\n'), ("python", "print(42)")],
    ids=["c", "python"],
)
def test_last_messages_that_arrive_with_the_close_are_read(
    server: PistonTestServer, engine: PistonEngine, language: str, source: str
) -> None:
    # A buffering proxy hands a fast job's frames over in one piece with the close: the client learns of the
    # close (its stdin send fails) before it has read the run's output and exit, which are still queued.
    server.faults.coalesce_live = True
    job = Job.create(source, language)
    streamed = _streamed(engine, job)
    assert (streamed.verdict, streamed.stdout, streamed.exit_code) == ("ok", "42\n", 0), streamed


def test_a_job_completed_before_its_exit_is_an_error_not_a_verdict(
    server: PistonTestServer, engine: PistonEngine
) -> None:
    server.faults.complete_live_at_run = True
    error = _error_of(lambda: _streamed(engine, Job.create("print(42)", "python")))
    assert isinstance(error, ProtocolError) and "before the program's exit was reported" in str(error)


def _job_dir(result: Result) -> str:
    import re

    m = re.search(r"/tmp/fake-piston-job-\w+", result.stderr)
    return m.group(0) if m else "\0"
