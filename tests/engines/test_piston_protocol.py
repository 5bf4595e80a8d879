"""The Piston wire protocol as pure functions: requests, answers, verdicts, errors — no network."""

from __future__ import annotations

import json
import socket
import ssl

import httpx
import pytest

from codecapsule import Job, Limits, Verdict
from codecapsule._errors import (
    AccessDenied,
    BadRequest,
    ClientBug,
    ConnectFailure,
    DNSFailure,
    HTTPStatusError,
    OriginDown,
    OriginTimeout,
    PackageError,
    PayloadTooLarge,
    ProtocolError,
    RateLimited,
    RequestTimeout,
    RuntimeNotInstalled,
    TLSFailure,
    TunnelNotConnected,
    UnsupportedMediaType,
    WrongEndpoint,
)
from codecapsule.engines import piston_protocol as pp

URL = "https://tunnel.example.edu/api/v2/execute"
RUNTIMES_JSON = [
    {"language": "c", "version": "12.2.0", "aliases": ["gcc"], "runtime": "gcc"},
    {"language": "c++", "version": "12.2.0", "aliases": ["cpp", "g++"], "runtime": "gcc"},
    {"language": "java", "version": "17.0.15", "aliases": []},
    {
        "language": "javascript",
        "version": "20.20.2",
        "aliases": ["node-javascript", "node-js", "javascript", "js"],
        "runtime": "node",
    },
    {"language": "python", "version": "3.11.2", "aliases": ["py", "py3", "python3", "python3.11"]},
]


def stage(**kw: object) -> dict[str, object]:
    base: dict[str, object] = {
        "stdout": "",
        "stderr": "",
        "output": "",
        "code": 0,
        "signal": None,
        "message": None,
        "status": None,
        "cpu_time": 12,
        "wall_time": 12,
        "memory": 8_000_000,
    }
    base.update(kw)
    return base


# -- requests -----------------------------------------------------------------------------------------


def test_payload_sends_files_stdin_args_and_only_the_limits_set() -> None:
    job = Job.create(
        "console.log(1)",
        "js",
        stdin="hi",
        args=["a", "b"],
        files={"data.bin": b"\x00\xff"},
        limits=Limits(run_timeout="1.5s", memory="256MB", compile_cpu_time=2),
    )
    p = pp.execute_payload(job)
    assert p["language"] == "javascript" and p["version"] == "*"
    assert p["files"][0] == {"name": "main.js", "content": "console.log(1)", "encoding": "utf8"}
    assert p["files"][1] == {"name": "data.bin", "content": "AP8=", "encoding": "base64"}
    assert p["stdin"] == "hi" and p["args"] == ["a", "b"]
    assert p["run_timeout"] == 1500 and p["compile_cpu_time"] == 2000 and p["run_memory_limit"] == 256_000_000
    # unset limits are not sent: the server's defaults and caps apply
    assert "compile_timeout" not in p and "run_cpu_time" not in p and "compile_memory_limit" not in p
    assert json.loads(json.dumps(p)) == p


def test_payload_uses_a_learnt_runtime_name() -> None:
    assert pp.execute_payload(Job.create("int main(){}", "cpp"), language="g++")["language"] == "g++"


# -- runtimes and packages ----------------------------------------------------------------------------


def test_runtimes_parse_with_aliases_and_runtime_key() -> None:
    rts = pp.parse_runtimes(RUNTIMES_JSON)
    assert rts[1] == pp.Runtime("c++", "12.2.0", ("cpp", "g++"), "gcc")
    assert rts[2].runtime is None and rts[2].aliases == ()


@pytest.mark.parametrize(
    "name,expected",
    [
        ("py", "python"),
        ("js", "javascript"),
        ("cpp", "c++"),
        ("gcc", "c"),
        ("g++", "c++"),
        ("Node", "javascript"),
        ("python3", "python"),
    ],
)
def test_aliases_resolve_through_the_runtimes_list(name: str, expected: str) -> None:
    found = pp.resolve_runtime(pp.parse_runtimes(RUNTIMES_JSON), name)
    assert found is not None and found.language == expected


def test_resolve_versions_newest_and_prefix() -> None:
    rts = [pp.Runtime("python", "3.11.2", ("py",)), pp.Runtime("python", "3.12.0", ("py",))]
    assert pp.resolve_runtime(rts, "py").version == "3.12.0"  # type: ignore[union-attr]
    assert pp.resolve_runtime(rts, "python", "3.11").version == "3.11.2"  # type: ignore[union-attr]
    assert pp.resolve_runtime(rts, "python", "3.10") is None
    assert pp.resolve_runtime(rts, "cobol") is None


@pytest.mark.parametrize(
    "bad,quoted",
    [
        ({"not": "a list"}, '{"not": "a list"}'),
        ([{"language": "c"}], "no 'version'"),
        ([{"language": "c", "version": 12}], "12"),
        ([{"language": "c", "version": "1", "aliases": "gcc"}], '"gcc"'),
        (["python"], '"python"'),
    ],
)
def test_runtimes_of_the_wrong_shape_raise_protocol_error_quoting_it(bad: object, quoted: str) -> None:
    with pytest.raises(ProtocolError) as e:
        pp.parse_runtimes(bad)
    assert quoted in str(e.value)


def test_packages_parse_and_reject_wrong_shapes() -> None:
    pkgs = pp.parse_packages([{"language": "gcc", "language_version": "12.2.0", "installed": True}])
    assert pkgs == [pp.Package("gcc", "12.2.0", True)]
    with pytest.raises(ProtocolError, match="installed"):
        pp.parse_packages([{"language": "gcc", "language_version": "12.2.0", "installed": "yes"}])


# -- execute answers → Result -------------------------------------------------------------------------


def job(lang: str = "python", **kw: object) -> Job:
    return Job.create("x", lang, **kw)  # type: ignore[arg-type]


def test_success_ms_become_seconds() -> None:
    r = pp.result_from_response(
        job(),
        {
            "language": "python",
            "version": "3.11.2",
            "run": stage(stdout="42\n", output="42\n", cpu_time=12, wall_time=30),
        },
    )
    assert r.verdict is Verdict.OK and r.stdout == "42\n" and r.exit_code == 0 and r.engine == "piston"
    assert r.version == "3.11.2" and r.run is not None
    assert r.run.wall_time == pytest.approx(0.030) and r.run.cpu_time == pytest.approx(0.012)
    assert r.run.memory == 8_000_000


def test_compile_failure_copied_into_run_is_a_compile_error_without_run_stage() -> None:
    comp = stage(code=1, status="RE", message="Exited with error status 1", stderr="main.cpp:1: error: x")
    r = pp.result_from_response(
        job("cpp"), {"language": "c++", "version": "12.2.0", "compile": comp, "run": dict(comp)}
    )
    assert r.verdict is Verdict.COMPILE_ERROR and r.run is None
    assert r.compile is not None and "error: x" in r.compile.stderr


def test_compiled_program_that_fails_at_run_time_is_a_runtime_error() -> None:
    r = pp.result_from_response(
        job("c"),
        {
            "language": "c",
            "version": "12.2.0",
            "compile": stage(),
            "run": stage(code=2, status="RE", message="Exited with error status 2"),
        },
    )
    assert r.verdict is Verdict.RUNTIME_ERROR and r.exit_code == 2 and r.compile is not None


def test_runtime_error_keeps_exit_code_and_traceback() -> None:
    r = pp.result_from_response(job(), {"version": "3.11.2", "run": stage(code=3, status="RE", stderr="Trace")})
    assert r.verdict is Verdict.RUNTIME_ERROR and r.exit_code == 3 and r.stderr == "Trace"


def test_exit_139_without_signal_is_a_segfault() -> None:
    r = pp.result_from_response(
        job("c"), {"version": "12.2.0", "compile": stage(), "run": stage(code=139, status="RE", signal=None)}
    )
    assert r.verdict is Verdict.SIGNAL and r.run is not None
    assert r.run.signal == "SIGSEGV" and r.run.status == "SG" and r.exit_code == 139
    assert "SIGSEGV" in (r.run.message or "")


def test_exit_134_is_sigabrt_and_plain_exit_codes_stay_errors() -> None:
    r = pp.result_from_response(job("c"), {"version": "1", "run": stage(code=134, status="RE")})
    assert r.run is not None and r.run.signal == "SIGABRT" and r.verdict is Verdict.SIGNAL
    r = pp.result_from_response(job("c"), {"version": "1", "run": stage(code=127, status="RE")})
    assert r.verdict is Verdict.RUNTIME_ERROR and r.run is not None and r.run.signal is None


@pytest.mark.parametrize("message", ["Time limit exceeded (wall clock)", "Time limit exceeded"])
def test_wall_and_cpu_time_outs_are_time_limit(message: str) -> None:
    r = pp.result_from_response(
        job(), {"version": "1", "run": stage(code=None, signal="SIGKILL", status="TO", message=message, wall_time=1100)}
    )
    assert r.verdict is Verdict.TIME_LIMIT and r.run is not None and r.run.message == message


@pytest.mark.parametrize("status,stream", [("OL", "stdout"), ("EL", "stderr")])
def test_output_cap_with_an_empty_stream_is_an_output_limit_said_clearly(status: str, stream: str) -> None:
    r = pp.result_from_response(
        job(),
        {"version": "1", "run": stage(code=None, signal="SIGKILL", status=status, message=f"{stream} length exceeded")},
    )
    assert r.verdict is Verdict.OUTPUT_LIMIT and not r.ok
    assert r.run is not None and r.run.truncated
    assert "output limit exceeded" in (r.run.message or "") and stream in (r.run.message or "")
    assert "nothing is shown" in (r.run.message or "")


def test_signal_status_and_internal_error() -> None:
    r = pp.result_from_response(job(), {"version": "1", "run": stage(code=None, signal="SIGKILL", status="SG")})
    assert r.verdict is Verdict.SIGNAL
    r = pp.result_from_response(job(), {"version": "1", "run": stage(code=None, status="XX", message="boom")})
    assert r.verdict is Verdict.INTERNAL_ERROR and r.error is not None and "boom" in r.error
    assert "server" in r.error


def test_older_piston_without_cpu_time_memory_status_message() -> None:
    old = {"stdout": "hi\n", "stderr": "", "output": "hi\n", "code": 0, "signal": None}
    r = pp.result_from_response(job(), {"language": "python", "version": "3.10.0", "run": old})
    assert r.verdict is Verdict.OK and r.run is not None
    assert r.run.cpu_time is None and r.run.memory is None and r.run.wall_time is None
    r = pp.result_from_response(job(), {"version": "3.10.0", "run": dict(old, code=1)})
    assert r.verdict is Verdict.RUNTIME_ERROR


def test_java_source_launcher_compile_failure_is_a_compile_error() -> None:
    err = "Main.java:1: error: ';' expected\n1 error\nerror: compilation failed\n"
    r = pp.result_from_response(job("java"), {"version": "17.0.15", "run": stage(code=1, status="RE", stderr=err)})
    assert r.verdict is Verdict.COMPILE_ERROR and r.run is None and r.compile is not None


def test_expected_output_mismatch_is_wrong_answer() -> None:
    r = pp.result_from_response(job(expect="43\n"), {"version": "1", "run": stage(stdout="42\n")})
    assert r.verdict is Verdict.WRONG_ANSWER and r.diff is not None


@pytest.mark.parametrize(
    "bad,quoted",
    [
        ([], "[]"),
        ({"version": "1"}, "no 'run'"),
        ({"version": "1", "run": "oops"}, '"oops"'),
        ({"version": "1", "run": stage(code="0")}, '"0"'),
        ({"version": "1", "run": stage(stdout=5)}, "5"),
        ({"version": "1", "run": stage(wall_time="fast")}, '"fast"'),
        ({"version": 3, "run": stage()}, "3"),
        ({"version": "1", "run": stage(signal=9)}, "9"),
    ],
)
def test_unexpected_answer_shapes_raise_protocol_error_never_key_or_type_error(bad: object, quoted: str) -> None:
    with pytest.raises(ProtocolError) as e:
        pp.result_from_response(job(), bad)
    assert quoted in str(e.value)


def test_non_json_body_is_a_protocol_error() -> None:
    with pytest.raises(ProtocolError, match="not JSON"):
        pp.parse_json(b"<html>hello</html>", url=URL, what="the answer")


# -- HTTP errors → exceptions that name the fix -------------------------------------------------------


def err(status: int, body: object = b"", headers: dict[str, str] | None = None, **kw: object) -> Exception:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return pp.error_from_status(status, raw, headers or {}, url=URL, **kw)  # type: ignore[arg-type]


def test_unknown_runtime_lists_installed_and_how_to_install() -> None:
    e = err(400, {"message": "brainfudge-* runtime is unknown"})
    assert isinstance(e, RuntimeNotInstalled) and e.language == "brainfudge" and e.version == "*"
    full = pp.runtime_not_installed("python", "3.99", pp.parse_runtimes(RUNTIMES_JSON), url=URL)
    text = str(full)
    assert "python 3.99" in text and "python 3.11.2" in text and "c++ 12.2.0" in text
    assert "client.install('python'" in text and "codecapsule cluster install python" in text
    assert full.installed[0] == "c 12.2.0"


@pytest.mark.parametrize(
    "message,hint",
    [
        ("run_timeout cannot exceed the configured limit of 3000", "PISTON_RUN_TIMEOUT"),
        ("files must include at least one utf8 encoded file", "must be text"),
        ("language is required as a string", "report"),
    ],
)
def test_validation_messages_become_bad_request_with_pistons_text(message: str, hint: str) -> None:
    e = err(400, {"message": message})
    assert type(e) is BadRequest and message in str(e) and hint in str(e)


def test_stack_answer_is_a_client_bug() -> None:
    e = err(400, {"stack": "SyntaxError: Unexpected token } in JSON at position 7\n    at JSON.parse"})
    assert isinstance(e, ClientBug) and "SyntaxError: Unexpected token }" in str(e) and "bug in CodeCapsule" in str(e)


@pytest.mark.parametrize("status", [401, 403])
def test_access_denied_names_the_service_token(status: int) -> None:
    e = err(status, b"Forbidden")
    assert isinstance(e, AccessDenied) and "CODECAPSULE_ACCESS_CLIENT_ID" in str(e)
    e = err(status, b"Forbidden", access_sent=True)
    assert isinstance(e, AccessDenied) and "refused" in str(e)


def test_access_login_redirect_is_access_denied() -> None:
    e = err(302, b"", {"location": "https://school.cloudflareaccess.com/cdn-cgi/access/login/x"})
    assert isinstance(e, AccessDenied) and "service token" in str(e)


def test_404_names_the_base_url_rule() -> None:
    e = err(404, {"message": "Not Found"}, base_url="https://tunnel.example.edu/piston")
    assert isinstance(e, WrongEndpoint) and "end at the host" in str(e) and "'/piston'" in str(e)


def test_package_answers() -> None:
    e = err(404, {"message": "Requested package cobol-* does not exist"}, packages=True)
    assert isinstance(e, PackageError) and "cobol" in str(e)
    assert isinstance(err(500, {"message": "Already installed"}, packages=True), PackageError)


@pytest.mark.parametrize(
    "status,cls,words",
    [
        (413, PayloadTooLarge, "smaller"),
        (415, UnsupportedMediaType, "application/json"),
        (502, OriginDown, "cloudflared"),
        (503, OriginDown, "Piston"),
        (530, TunnelNotConnected, "1033"),
        (524, OriginTimeout, "Scale up"),
        (504, OriginTimeout, "overloaded"),
        (500, HTTPStatusError, "'../'"),
        (418, HTTPStatusError, "418"),
    ],
)
def test_status_mapping(status: int, cls: type, words: str) -> None:
    e = err(status, b"")
    assert type(e) is cls and words in str(e)


def test_1033_in_a_body_is_tunnel_not_connected() -> None:
    assert isinstance(err(502, b"error code: 1033"), TunnelNotConnected)


def test_429_reads_retry_after_seconds_and_dates() -> None:
    e = err(429, b"", {"retry-after": "3"})
    assert isinstance(e, RateLimited) and e.retry_after == 3.0 and "concurrency" in str(e)
    assert pp.parse_retry_after("Thu, 01 Jan 1970 00:00:10 GMT", now=4.0) == pytest.approx(6.0)
    assert pp.parse_retry_after("soon") is None and pp.parse_retry_after(None) is None


def test_messages_never_show_url_credentials() -> None:
    e = pp.error_from_status(502, b"", {}, url="https://id:topsecret@tunnel.example.edu/api/v2/execute")
    assert "topsecret" not in str(e) and "topsecret" not in e.url


# -- transport errors ---------------------------------------------------------------------------------


def _wrapped(exc_type: type[httpx.HTTPError], cause: BaseException, text: str = "boom") -> httpx.HTTPError:
    try:
        try:
            raise cause
        except BaseException as inner:
            raise exc_type(text) from inner
    except httpx.HTTPError as outer:
        return outer


def test_dns_failure_names_the_cname() -> None:
    e = pp.error_from_transport(_wrapped(httpx.ConnectError, socket.gaierror(-2, "Name or service not known")), url=URL)
    assert isinstance(e, DNSFailure) and "CNAME" in str(e)


def test_tls_failure() -> None:
    cause = ssl.SSLCertVerificationError(1, "[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed")
    e = pp.error_from_transport(_wrapped(httpx.ConnectError, cause), url=URL)
    assert isinstance(e, TLSFailure) and "certificate" in str(e)


def test_refused_reset_and_timeouts() -> None:
    assert isinstance(
        pp.error_from_transport(_wrapped(httpx.ConnectError, ConnectionRefusedError(111, "refused")), url=URL),
        ConnectFailure,
    )
    assert isinstance(pp.error_from_transport(httpx.ReadError("reset"), url=URL), ConnectFailure)
    assert isinstance(
        pp.error_from_transport(httpx.RemoteProtocolError("Server disconnected"), url=URL), ConnectFailure
    )
    e = pp.error_from_transport(httpx.ReadTimeout("timed out"), url=URL)
    assert isinstance(e, RequestTimeout) and "scale up" in str(e)


# -- retry policy -------------------------------------------------------------------------------------


def test_retry_policy() -> None:
    assert pp.retry_delay(err(502), 0, jitter=0.0) == pytest.approx(0.1)
    assert pp.retry_delay(err(502), 3, jitter=1.0) == pytest.approx(1.6)
    assert pp.retry_delay(err(530), 0, jitter=0.5) is not None
    assert pp.retry_delay(err(429, b"", {"retry-after": "2"}), 0, jitter=0.0) == pytest.approx(2.0)
    for never in (
        err(400, {"message": "run_timeout must be non-negative"}),
        err(404),
        err(524),
        err(403),
        pp.error_from_transport(httpx.ReadTimeout("t"), url=URL),
        pp.error_from_transport(_wrapped(httpx.ConnectError, socket.gaierror(-2, "x")), url=URL),
    ):
        assert pp.retry_delay(never, 0, jitter=0.0) is None, type(never)
    assert pp.retry_delay(pp.error_from_transport(httpx.ReadError("reset"), url=URL), 0, jitter=0.0) is not None
    assert pp.backoff_delay(20, jitter=1.0) == pytest.approx(5.0)  # capped


def test_a_sigkill_at_the_memory_limit_is_memory_limit_and_below_it_a_signal() -> None:
    from codecapsule.engines.piston_protocol import result_from_response

    job = Job.create("x = 'a' * (512 << 20)", "python", memory="128MB")
    limit = job.limits.memory
    assert limit is not None

    def run(memory: int) -> dict[str, object]:
        return {
            "language": "python",
            "version": "3.11.2",
            "run": {
                "stdout": "",
                "stderr": "",
                "output": "",
                "code": None,
                "signal": "SIGKILL",
                "status": "SG",
                "message": None,
                "cpu_time": 90,
                "wall_time": 100,
                "memory": memory,
            },
        }

    killed = result_from_response(job, run(limit // 1024 * 1000))  # Piston's kB × 1000
    assert killed.verdict == "memory_limit" and killed.run is not None and killed.run.status == "ML"
    assert result_from_response(job, run(20_000_000)).verdict == "signal"
    no_limit = Job.create("x = 1", "python")
    assert result_from_response(no_limit, run(limit)).verdict == "signal"


def test_limits_are_clamped_to_the_servers_with_one_note_each() -> None:
    from codecapsule.engines.piston_protocol import clamp_to_server, configured_limit_in

    assert configured_limit_in(400, b'{"message":"run_timeout cannot exceed the configured limit of 3000"}') == (
        "run_timeout",
        3000,
    )
    assert configured_limit_in(400, b'{"message":"run_timeout must be non-negative"}') is None
    job = Job.create("print(1)", "python", timeout=5, memory="1GB")
    sent, notes = clamp_to_server(job, {"run_timeout": 3000, "run_memory_limit": 256 * 1024 * 1024})
    assert (sent.limits.run_timeout, sent.limits.memory, sent.limits.run_cpu_time) == (3.0, 256 * 1024 * 1024, 5.0)
    assert len(notes) == 2 and notes[0].startswith("run_timeout lowered from 5 s to 3 s")
    assert clamp_to_server(job, {"run_timeout": 10000}) == (job, ())
