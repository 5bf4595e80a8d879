# ruff: noqa: F811
"""The Piston client end to end over real HTTP against the Piston-compatible test server (sync and async)."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
from collections import Counter
from collections.abc import Iterator

import pytest

import codecapsule as cc
from codecapsule import AsyncClient, Client, Job, Settings, Verdict
from codecapsule._errors import (
    AccessDenied,
    BadRequest,
    ClientBug,
    ConnectFailure,
    OriginDown,
    ProtocolError,
    RateLimited,
    RuntimeNotInstalled,
    TLSFailure,
    TunnelNotConnected,
    WrongEndpoint,
)
from codecapsule.engines.piston import AsyncPistonEngine, PistonEngine
from codecapsule.engines.piston_protocol import Runtime
from tests.fakes.piston import PistonTestServer
from tests.piston_fixtures import piston_server, piston_settings  # noqa: F401 - fixtures

SECRET = "s3cr3t-access-value-0123456789"
CPP_BAD = "int main(){ return undefined; }"
C_SEGV = "int main(){ volatile int *p = 0; return *p; }"


@pytest.fixture
def client(piston_settings: Settings) -> Iterator[Client]:
    with Client(settings=piston_settings) as c:
        yield c


# -- the everyday calls ---------------------------------------------------------------------------------


def test_execute_runtimes_and_aliases(client: Client, piston_server: PistonTestServer) -> None:
    r = client.execute("print(40 + 2)", "py")
    assert r.verdict == "ok" and r.stdout == "42\n" and r.engine == "piston" and r.version == "3.11.2"
    r = client.execute(
        '#include <stdio.h>\nint main(){int a,b; scanf("%d %d",&a,&b); printf("sum=%d\\n",a+b);}', "c", stdin="40 2"
    )
    assert r.stdout == "sum=42\n" and r.compile is not None
    names = {rt.language: rt for rt in client.runtimes()}
    assert names["c++"] == Runtime("c++", "12.2.0", ("cpp", "g++"), "gcc")
    assert {r.path for r in piston_server.requests()} == {"/api/v2/execute", "/api/v2/runtimes"}


def test_one_keep_alive_connection_is_reused(client: Client, piston_server: PistonTestServer) -> None:
    for _ in range(5):
        client.runtimes()
    # the server saw one TCP connection: httpx's pool kept it alive and reused it
    assert len(piston_server.connections) == 1


def test_mapping_cases_end_to_end(client: Client) -> None:
    r = client.execute(CPP_BAD, "cpp")
    assert r.verdict == "compile_error" and r.run is None and r.compile is not None and "error" in r.compile.stderr
    r = client.execute("import sys; sys.exit(3)", "python")
    assert r.verdict == "runtime_error" and r.exit_code == 3
    r = client.execute(C_SEGV, "c")
    assert r.verdict == "signal" and r.run is not None and r.run.signal == "SIGSEGV"
    r = client.execute("while True: pass", "python", timeout=1)
    assert r.verdict == "time_limit"
    r = client.execute("print('x' * 5000)", "python")
    assert r.verdict == "output_limit" and r.run is not None and r.run.truncated
    assert "output limit exceeded" in (r.run.message or "")
    r = client.execute("print(41)", "python", expect="42\n")
    assert r.verdict == "wrong_answer"


def test_binary_files_and_args_reach_the_program(client: Client) -> None:
    src = "import sys; print(open('d.bin','rb').read().hex(), sys.argv[1:])"
    r = client.execute(src, "python", files={"d.bin": b"\x00\xff"}, args=["a", "b c"])
    assert r.stdout == "00ff ['a', 'b c']\n"


def test_packages_install_uninstall(client: Client) -> None:
    pk = {(p["language"], p["language_version"]): p["installed"] for p in client.packages()}
    assert pk[("rust", "1.68.2")] is False and pk[("gcc", "12.2.0")] is True
    assert client.install("rust", "1.68.2") == {"language": "rust", "version": "1.68.2"}
    assert any(rt.language == "rust" for rt in client.runtimes())
    with pytest.raises(cc.PackageError, match="Already installed"):
        client.install("rust", "1.68.2")
    with pytest.raises(cc.PackageError, match="cobol"):
        client.install("cobol", "1.0")
    client.uninstall("rust", "1.68.2")
    with pytest.raises(cc.PackageError, match="not installed"):
        client.uninstall("rust", "1.68.2")


# -- errors that name the fix ---------------------------------------------------------------------------


def test_unknown_runtime_refreshes_once_and_lists_installed(client: Client, piston_server: PistonTestServer) -> None:
    with pytest.raises(RuntimeNotInstalled) as e:
        client.execute("print(1)", "python", version="3.99")
    text = str(e.value)
    assert "python 3.99" in text and "python 3.11.2" in text and "client.install('python'" in text
    paths = [r.path for r in piston_server.requests()]
    assert paths == ["/api/v2/execute", "/api/v2/runtimes"]  # one refresh, no retry of a 4xx


def test_limits_above_the_servers_are_lowered_with_the_same_note_every_time() -> None:
    with (
        PistonTestServer(run_timeout=1000, run_cpu_time=1500) as small,
        Client(piston_url=small.url, engine="piston") as c,
    ):
        first = c.execute("print(1)", "python", timeout=2)
        # learnt from the server's two 400 answers (run_timeout, then run_cpu_time), then sent within its limits
        assert [r.status for r in small.requests()] == [400, 400, 200]
        second = c.execute("print(1)", "python", timeout=2)
        assert len(small.requests()) == 4 and small.requests()[-1].status == 200  # no 400 once known
    for r in (first, second):
        assert r.ok and r.stdout == "1\n"
        assert r.limits.run_timeout == 1.0 and r.limits.run_cpu_time == 1.5
        assert (
            "run_timeout lowered from 2 s to 1 s, the most this Piston server allows (PISTON_RUN_TIMEOUT" in r.notes[0]
        )
    assert first.notes == second.notes and len(first.notes) == 2
    assert "run_timeout lowered" in first.to_dict()["notes"][0]


def test_other_validation_messages_still_raise(piston_server: PistonTestServer) -> None:
    piston_server.faults.answer_next(400, b'{"message":"run_timeout must be non-negative"}')
    with Client(piston_url=piston_server.url, engine="piston") as c, pytest.raises(BadRequest, match="non-negative"):
        c.execute("print(1)", "python")


def test_stack_and_404(piston_server: PistonTestServer) -> None:
    piston_server.faults.answer_next(400, b'{"stack":"SyntaxError: Unexpected end of JSON input"}')
    with (
        Client(piston_url=piston_server.url, engine="piston") as c,
        pytest.raises(ClientBug, match="Unexpected end of JSON input"),
    ):
        c.execute("print(1)", "python")
    with Client(piston_url=piston_server.url + "/piston", engine="piston") as c, pytest.raises(WrongEndpoint) as w:
        c.execute("print(1)", "python")
    assert "end at the host" in str(w.value)


def test_server_side_validation_messages_are_the_references(piston_server: PistonTestServer) -> None:
    import httpx

    with httpx.Client(base_url=piston_server.url) as h:
        r = h.post("/api/v2/execute", content=b"{bad", headers={"Content-Type": "application/json"})
        assert r.status_code == 400 and "stack" in r.json() and "message" not in r.json()
        r = h.post("/api/v2/execute", content=b"{}", headers={"Content-Type": "text/plain"})
        assert (r.status_code, r.json()) == (415, {"message": "requests must be of type application/json"})
        assert h.post("/api/v2/execute", json={"version": "*"}).json() == {
            "message": "language is required as a string"
        }
        assert h.post(
            "/api/v2/execute",
            json={
                "language": "python",
                "version": "*",
                "files": [{"name": "a", "content": "AA==", "encoding": "base64"}],
            },
        ).json() == {"message": "files must include at least one utf8 encoded file"}
        r = h.post(
            "/api/v2/execute",
            json={"language": "python", "version": "*", "files": [{"name": "../x.py", "content": "print(1)"}]},
        )
        assert (r.status_code, r.content) == (500, b"")
        assert h.get("/nope").json() == {"message": "Not Found"}
        assert h.get("/").json() == {"message": "Piston v3.1.1"}
        r = h.post(
            "/api/v2/execute",
            json={
                "language": "python",
                "version": "*",
                "stdin": "ab",
                "files": [{"content": "import sys; print(repr(sys.stdin.read()))"}],
            },
        )
        assert r.json()["run"]["stdout"] == "'ab\\n'\n"  # stdin gets a trailing newline
        comp = h.post(
            "/api/v2/execute",
            json={"language": "cpp", "version": "*", "files": [{"name": "main.cpp", "content": CPP_BAD}]},
        ).json()
        assert comp["run"] == comp["compile"] and comp["run"]["status"] == "RE"


@pytest.mark.parametrize("status,cls", [(502, OriginDown), (530, TunnelNotConnected)])
def test_transient_statuses_retry_then_give_up(
    status: int, cls: type, piston_server: PistonTestServer, caplog: pytest.LogCaptureFixture
) -> None:
    piston_server.faults.fail_next(10, status)
    with (
        Client(piston_url=piston_server.url, engine="piston", retries=2) as c,
        caplog.at_level(logging.WARNING, "codecapsule.piston"),
        pytest.raises(cls),
    ):
        c.execute("print(1)", "python")
    assert len(piston_server.requests()) == 3
    retries = [r for r in caplog.records if "retry" in r.getMessage()]
    assert len(retries) == 2 and all(r.levelno == logging.WARNING for r in retries)


def test_retries_recover_and_are_logged(
    client: Client, piston_server: PistonTestServer, caplog: pytest.LogCaptureFixture
) -> None:
    piston_server.faults.fail_next(2, 502)
    piston_server.faults.reset_next(1)
    with caplog.at_level(logging.WARNING, "codecapsule.piston"):
        r = client.execute("print(7)", "python")
    assert r.stdout == "7\n"
    assert [x.fault for x in piston_server.requests()] == ["502", "502", "reset", None]
    assert len(piston_server.executions) == 1
    assert sum("retry" in rec.getMessage() for rec in caplog.records) == 3


def test_no_retry_on_4xx(client: Client, piston_server: PistonTestServer, caplog: pytest.LogCaptureFixture) -> None:
    piston_server.faults.answer_next(400, b'{"message":"run_timeout must be non-negative"}')
    with caplog.at_level(logging.WARNING, "codecapsule.piston"), pytest.raises(BadRequest):
        client.execute("print(1)", "python")
    assert len(piston_server.requests()) == 1 and not caplog.records


def test_retry_after_is_honoured(client: Client, piston_server: PistonTestServer) -> None:
    piston_server.faults.rate_limit_next(1, retry_after="1")
    assert client.execute("print(1)", "python").ok
    first, second = piston_server.requests()
    assert first.status == 429 and second.status == 200
    assert second.received - first.answered >= 1.0  # the server's own clock: the client waited Retry-After


def test_retry_after_beyond_the_deadline_raises_rate_limited(piston_server: PistonTestServer) -> None:
    piston_server.faults.rate_limit_next(1, retry_after="120")
    with Client(piston_url=piston_server.url, engine="piston", request_timeout=2) as c, pytest.raises(RateLimited) as e:
        c.execute("print(1)", "python")
    assert e.value.retry_after == 120 and len(piston_server.requests()) == 1


def test_malformed_json_is_a_protocol_error(client: Client, piston_server: PistonTestServer) -> None:
    piston_server.faults.malformed_next(1)
    with pytest.raises(ProtocolError, match="not JSON"):
        client.execute("print(1)", "python")


def test_connection_refused_is_connect_failure(caplog: pytest.LogCaptureFixture) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with (
        Client(piston_url=f"http://127.0.0.1:{port}", engine="piston", retries=1) as c,
        caplog.at_level(logging.WARNING, "codecapsule.piston"),
        pytest.raises(ConnectFailure) as e,
    ):
        c.execute("print(1)", "python")
    assert "nothing is listening" in str(e.value) and len(caplog.records) == 1


def test_https_to_a_plain_http_server_is_tls_failure(piston_server: PistonTestServer) -> None:
    url = piston_server.url.replace("http://", "https://")
    with Client(piston_url=url, engine="piston") as c, pytest.raises(TLSFailure):
        c.execute("print(1)", "python")


# -- Cloudflare Access ----------------------------------------------------------------------------------


def test_access_headers_sent_and_never_shown(piston_server: PistonTestServer, caplog: pytest.LogCaptureFixture) -> None:
    piston_server.faults.require_access = ("id-123.access", SECRET)
    piston_server.faults.fail_next(1, 502)
    settings = Settings(
        piston_url=piston_server.url, engine="piston", access_client_id="id-123.access", access_client_secret=SECRET
    )
    with caplog.at_level(logging.DEBUG), Client(settings=settings) as c:
        assert c.execute("print(1)", "python").ok
        shown = [repr(c), repr(c.settings), repr(c._piston_engine()), str(c._piston_engine().info())]
    last = piston_server.requests()[-1]
    assert last.headers["cf-access-client-id"] == "id-123.access"
    assert last.headers["cf-access-client-secret"] == SECRET
    assert all(SECRET not in s for s in shown)
    assert caplog.records and all(SECRET not in rec.getMessage() for rec in caplog.records)
    assert SECRET not in caplog.text


def test_access_missing_or_wrong_token(piston_server: PistonTestServer) -> None:
    piston_server.faults.require_access = ("id", SECRET)
    with Client(piston_url=piston_server.url, engine="piston") as c, pytest.raises(AccessDenied) as e:
        c.execute("print(1)", "python")
    assert "CODECAPSULE_ACCESS_CLIENT_ID" in str(e.value)
    with (
        Client(
            piston_url=piston_server.url, engine="piston", access_client_id="id", access_client_secret="wrong-" + SECRET
        ) as c,
        pytest.raises(AccessDenied) as e,
    ):
        c.execute("print(1)", "python")
    assert SECRET not in str(e.value) and "refused" in str(e.value)


# -- async twin -----------------------------------------------------------------------------------------


async def test_async_client_same_results_and_errors(piston_settings: Settings, piston_server: PistonTestServer) -> None:
    async with AsyncClient(settings=piston_settings) as ac:
        r = await ac.execute("console.log(42)", "js")
        assert r.ok and r.stdout == "42\n"
        r = await ac.execute(CPP_BAD, "cpp")
        assert r.verdict == "compile_error" and r.run is None
        piston_server.faults.fail_next(1, 503)
        assert (await ac.execute("print(2)", "python")).stdout == "2\n"
        assert [rt.language for rt in await ac.runtimes()][:2] == ["c", "c++"]
        with pytest.raises(RuntimeNotInstalled):
            await ac.execute("print(1)", "python", version="2.7")
        engine = ac._piston_engine()
        assert isinstance(engine, AsyncPistonEngine) and engine.info().languages["python"] == "3.11.2"


def test_engines_usable_directly(piston_settings: Settings) -> None:
    with PistonEngine(piston_settings) as engine:
        assert engine.run(Job.create("print(5)", "python")).stdout == "5\n"
        assert engine.info().name == "piston"


def test_no_url_configured() -> None:
    with Client(settings=Settings(engine="piston")) as c, pytest.raises(cc.NoEndpointConfigured) as e:
        c.execute("print(1)", "python")
    assert "CODECAPSULE_PISTON_URL" in str(e.value)


# -- batches --------------------------------------------------------------------------------------------


def _batch(n: int) -> list[dict[str, object]]:
    return [
        {"source": "import sys; n = int(input()); print(n * n)", "language": "python", "stdin": str(i), "name": f"s{i}"}
        for i in range(n)
    ]


def test_batch_of_200_with_transient_faults_sync(
    piston_server: PistonTestServer, caplog: pytest.LogCaptureFixture
) -> None:
    piston_server.faults.transient_rate = 0.10
    piston_server.faults.transient_max = 2
    with (
        Client(piston_url=piston_server.url, engine="piston", retries=3) as c,
        caplog.at_level(logging.WARNING, "codecapsule.piston"),
    ):
        results = c.execute_many(_batch(200), concurrency=16)
    assert [r.stdout for r in results] == [f"{i * i}\n" for i in range(200)]
    assert [r.name for r in results] == [f"s{i}" for i in range(200)]
    faults = [r for r in piston_server.requests() if r.fault]
    assert faults and len(caplog.records) >= len(faults)
    executed = Counter(j.stdin for j in piston_server.executions)
    assert len(executed) == 200 and set(executed.values()) == {1}  # no duplicates


async def test_batch_of_200_with_transient_faults_async(piston_server: PistonTestServer) -> None:
    piston_server.faults.transient_rate = 0.10
    piston_server.faults.transient_max = 2
    async with AsyncClient(piston_url=piston_server.url, engine="piston") as ac:
        results = await ac.map(_batch(200), concurrency=16)
    assert [r.stdout for r in results] == [f"{i * i}\n" for i in range(200)]
    assert any(r.fault for r in piston_server.requests())
    executed = Counter(j.stdin for j in piston_server.executions)
    assert len(executed) == 200 and set(executed.values()) == {1}


def test_batch_per_job_errors_are_internal_error_results(piston_server: PistonTestServer) -> None:
    jobs: list[object] = [
        {"source": "print(1)", "language": "python"},
        {"source": "print(1)", "language": "python", "version": "9"},
        {"source": "x", "language": "cobol"},
        {"source": "print(3)", "language": "python"},
    ]
    with Client(piston_url=piston_server.url, engine="piston") as c:
        results = c.execute_many(jobs, concurrency=2)  # type: ignore[arg-type]
    assert [r.verdict for r in results] == [Verdict.OK, Verdict.INTERNAL_ERROR, Verdict.INTERNAL_ERROR, Verdict.OK]
    assert isinstance(results[1].exception, RuntimeNotInstalled) and "python 3.11.2" in (results[1].error or "")
    assert isinstance(results[2].exception, cc.UnknownLanguage)


def test_batch_progress_text(piston_server: PistonTestServer) -> None:
    import io

    from codecapsule._progress import TextProgress

    out = io.StringIO()
    with Client(piston_url=piston_server.url, engine="piston") as c:
        c.execute_many(_batch(5), concurrency=2, progress=TextProgress(5, stream=out))
    assert "5/5" in out.getvalue() and "ok 5" in out.getvalue()


async def test_async_cancellation_stops_cleanly(piston_server: PistonTestServer) -> None:
    piston_server.faults.service_time = 0.2
    async with AsyncClient(piston_url=piston_server.url, engine="piston") as ac:
        task = asyncio.create_task(ac.map(_batch(100), concurrency=4))
        assert await asyncio.to_thread(piston_server.wait_for_requests, 4)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    seen = len(piston_server.requests())
    assert seen < 100
    # nothing more arrives after the client closed: the batch really stopped
    assert not piston_server.wait_for_requests(seen + 1, timeout=0.5)


def test_sync_ctrl_c_cancels_jobs_not_started(piston_server: PistonTestServer) -> None:
    class InterruptAfter:
        def __init__(self, n: int) -> None:
            self.n = n
            self.done = 0

        def advance(self, result: object) -> None:
            self.done += 1
            if self.done == self.n:
                os.kill(os.getpid(), signal.SIGINT)  # a real Ctrl-C, delivered to the main thread

        def close(self) -> None:
            pass

    with Client(piston_url=piston_server.url, engine="piston") as c, pytest.raises(KeyboardInterrupt):
        c.execute_many(_batch(200), concurrency=2, progress=InterruptAfter(3))
    assert len(piston_server.executions) < 200
    seen = len(piston_server.requests())
    assert not piston_server.wait_for_requests(seen + 1, timeout=0.5)


def test_print_runtimes_cli(piston_server: PistonTestServer) -> None:
    import io

    from codecapsule.engines.piston_cli import print_runtimes

    out, err = io.StringIO(), io.StringIO()
    with Client(piston_url=piston_server.url, engine="piston") as c:
        assert print_runtimes(c, out=out, err=err) == 0
    lines = out.getvalue().splitlines()
    assert lines[0].split() == ["language", "version", "aliases", "runtime"]
    assert any(line.split()[:3] == ["c++", "12.2.0", "cpp,"] for line in lines)
    piston_server.faults.fail_next(10, 530)
    with Client(piston_url=piston_server.url, engine="piston", retries=0) as c:
        assert print_runtimes(c, out=out, err=err) == 1
    assert "1033" in err.getvalue()
    with Client(settings=Settings(engine="auto")) as c:
        assert print_runtimes(c, out=out, err=err) == 2
