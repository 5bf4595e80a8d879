"""The request and result model: validation, units, languages, verdicts, JSON round trip (pure, no I/O)."""

from __future__ import annotations

import pytest

import codecapsule as cc
from codecapsule._jobs import File, Job, Limits
from codecapsule._languages import resolve
from codecapsule._results import Result, Stage, Table, Verdict
from codecapsule._units import parse_duration, parse_size
from codecapsule._verdicts import compare_output, judge


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("256MB", 256_000_000),
        ("256M", 256_000_000),
        ("256MiB", 256 * 2**20),
        ("1.5 GiB", int(1.5 * 2**30)),
        (1024, 1024),
        ("2048", 2048),
        ("64 kib", 65536),
    ],
)
def test_sizes_are_parsed(text: object, expected: int) -> None:
    assert parse_size(text) == expected  # type: ignore[arg-type]


@pytest.mark.parametrize(("text", "expected"), [("500ms", 0.5), ("1.5s", 1.5), ("2min", 120.0), (3, 3.0), ("4", 4.0)])
def test_durations_are_parsed(text: object, expected: float) -> None:
    assert parse_duration(text) == expected  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "limits",
    [
        {"memory": "lots"},
        {"memory": -1},
        {"run_timeout": 0},
        {"run_timeout": "-2s"},
        {"processes": 0},
        {"processes": 2.5},
        {"memory": 10},
        {"run_timeout": True},
        {"nonsense": 1},
    ],
)
def test_bad_limits_raise_a_value_error_naming_the_limit(limits: dict[str, object]) -> None:
    with pytest.raises(cc.InvalidLimit) as info:
        Limits.coerce(limits)
    assert isinstance(info.value, ValueError)
    assert next(iter(limits)) in str(info.value)


def test_limits_are_immutable_and_readable() -> None:
    lim = Limits(run_timeout="500ms", memory="256MB")
    assert lim.run_timeout == 0.5 and lim.memory == 256_000_000
    with pytest.raises(AttributeError):
        lim.memory = 1  # type: ignore[misc]
    assert lim.over(Limits(run_timeout=9, processes=8)) == Limits(run_timeout=0.5, memory=256_000_000, processes=8)


def test_execute_shortcuts_set_the_two_common_limits() -> None:
    job = Job.create("print(1)", "py", timeout="2s", memory="128MB", limits={"processes": 4})
    assert (job.limits.run_timeout, job.limits.memory, job.limits.processes) == (2.0, 128_000_000, 4)


@pytest.mark.parametrize(
    ("alias", "name"),
    [
        ("py", "python"),
        ("Python3", "python"),
        ("js", "javascript"),
        ("node", "javascript"),
        ("cpp", "c++"),
        ("g++", "c++"),
        ("gcc", "c"),
        ("c++", "c++"),
        ("java", "java"),
        ("duckdb", "sql"),
    ],
)
def test_aliases_resolve(alias: str, name: str) -> None:
    assert resolve(alias).name == name


def test_unknown_language_lists_languages_and_suggests_the_closest() -> None:
    with pytest.raises(cc.UnknownLanguage) as info:
        cc.Job.create("x", "pyhton")
    message = str(info.value)
    assert "Did you mean 'python'" in message
    for name in ("python", "javascript", "java", "c", "c++", "sql"):
        assert name in message
    assert info.value.available == ("python", "javascript", "java", "c", "c++", "sql")


def test_java_entry_file_is_named_after_its_public_class() -> None:
    src = (
        "// public class Wrong {}\nimport java.util.*;\n"
        "public final class Greeter { public static void main(String[] a) {} }"
    )
    assert Job.create(src, "java").files[0].name == "Greeter.java"
    assert Job.create("class A { public static void main(String[] a) {} }", "java").files[0].name == "Main.java"


@pytest.mark.parametrize("name", ["../x.c", "/etc/passwd", "a/../../b", "", "a b.c"])
def test_unsafe_file_names_are_refused(name: str) -> None:
    with pytest.raises(cc.InvalidRequest):
        File(name, "x")


def test_multi_file_jobs_keep_binary_files() -> None:
    job = Job.create("print(open('d.bin','rb').read())", "python", files={"d.bin": b"\x00\x01", "util.py": "x = 1"})
    assert [f.name for f in job.files] == ["main.py", "d.bin", "util.py"]
    assert job.files[1].to_dict()["encoding"] == "base64"
    assert File.from_dict(job.files[1].to_dict()).content == b"\x00\x01"
    with pytest.raises(cc.InvalidRequest):
        Job.create("x", "python", files={"main.py": "dup"})


def test_args_must_be_a_list() -> None:
    with pytest.raises(cc.InvalidRequest, match="shlex"):
        Job.create("x", "python", args="a b")  # type: ignore[arg-type]


def _job(expect: str | None = None) -> Job:
    return Job.create("x", "c", expect=expect)


def test_compile_failure_where_run_copies_compile_is_a_compile_error_without_a_run_stage() -> None:
    failed = Stage(stderr="main.c:1: error", exit_code=1, status="RE", message="Exited with error status 1")
    result = judge(_job(), engine="t", version="1", compile=failed, run=failed, limits=Limits())
    assert result.verdict == "compile_error" and result.run is None
    assert result.stderr == "main.c:1: error"


@pytest.mark.parametrize(
    ("stage", "verdict"),
    [
        (Stage(exit_code=0), Verdict.OK),
        (Stage(exit_code=3, status="RE"), Verdict.RUNTIME_ERROR),
        (Stage(exit_code=139, signal="SIGSEGV", status="SG"), Verdict.SIGNAL),
        (Stage(signal="SIGKILL", status="TO"), Verdict.TIME_LIMIT),
        (Stage(signal="SIGKILL", status="OL"), Verdict.OUTPUT_LIMIT),
        (Stage(signal="SIGKILL", status="EL"), Verdict.OUTPUT_LIMIT),
        (Stage(signal="SIGKILL", status="ML"), Verdict.MEMORY_LIMIT),
        (Stage(status="XX"), Verdict.INTERNAL_ERROR),
        (Stage(exit_code=1, status="RE", stderr="Traceback...\nMemoryError\n"), Verdict.MEMORY_LIMIT),
    ],
)
def test_run_stage_verdicts(stage: Stage, verdict: Verdict) -> None:
    result = judge(_job(), engine="t", version="1", compile=None, run=stage, limits=Limits(memory="64MB"))
    assert result.verdict is verdict
    assert result.verdict == verdict.value  # str-valued enum


def test_expected_output_ignores_trailing_whitespace_and_reports_a_diff() -> None:
    assert compare_output("42  \n\n", "42") is None
    ok = judge(
        _job("1\n2\n"), engine="t", version="1", compile=None, run=Stage(stdout="1 \n2\n", exit_code=0), limits=Limits()
    )
    assert ok.verdict == "ok"
    wrong = judge(
        _job("1\n2\n"), engine="t", version="1", compile=None, run=Stage(stdout="1\n3\n", exit_code=0), limits=Limits()
    )
    assert wrong.verdict == "wrong_answer"
    assert wrong.diff is not None and "-2" in wrong.diff and "+3" in wrong.diff


def test_result_json_round_trip() -> None:
    original = Result(
        "c++",
        "12.2.0",
        "local",
        Verdict.RUNTIME_ERROR,
        compile=Stage(exit_code=0, wall_time=0.2),
        run=Stage(stdout="a", stderr="b", output="ab", exit_code=2, status="RE", wall_time=0.01, memory=1024),
        limits=Limits(run_timeout=2),
        name="alice",
    )
    again = Result.from_json(original.to_json())
    assert again == original
    assert again.to_dict()["ok"] is False and again.exit_code == 2 and again.stdout == "a"
    table = Result("sql", "2", "duckdb", "ok", table=Table(("a",), ("INTEGER",), ((1,),), total_rows=1))
    assert Result.from_json(table.to_json()).table == table.table


def test_conveniences_read_the_run_stage() -> None:
    r = Result("python", "3", "local", "ok", run=Stage(stdout="42\n", exit_code=0))
    assert (r.ok, r.stdout, r.exit_code, r.verdict) == (True, "42\n", 0, "ok")
    assert "42" in str(r)
