"""The YAML test-file format: PyYAML + the JSON schema; every mistake is one InvalidTestSuite naming the place."""

from __future__ import annotations

from pathlib import Path

import pytest

import codecapsule as cc
from codecapsule import InvalidTestSuite, Limits

LAB1 = """\
name: sum-two
language: c
limits: {timeout: 2s, memory: 128MB}
compare: trim
tests:
  - {name: small, stdin: "1 2", expect: "3"}
  - {stdin: "5 7", expect: "12", hidden: true, points: 2}
  - {stdin: "0 0", expect: "0", points: 0.5}
"""


def write(tmp_path: Path, text: str, name: str = "lab.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_the_documented_example_loads(tmp_path: Path) -> None:
    suite = cc.load_tests(write(tmp_path, LAB1))
    assert isinstance(suite, cc.TestSuite)
    assert suite.name == "sum-two" and suite.language == "c" and suite.compare == "trim"
    assert suite.limits == Limits(memory="128MB").with_timeout("2s")
    assert [t.name for t in suite.tests] == ["small", "test2", "test3"]
    assert suite.tests[1].hidden and suite.tests[1].points == 2 and suite.tests[2].points == 0.5
    assert suite.max_score == 3.5


def test_sql_database_is_relative_to_the_file(tmp_path: Path) -> None:
    suite = cc.load_tests(
        write(tmp_path, "language: sql\ndatabase: course.duckdb\ntests:\n  - {query: SELECT 1, order: exact}\n")
    )
    assert suite.database == str(tmp_path / "course.duckdb")
    assert suite.tests[0].order == "exact" and suite.tests[0].columns == "any"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("tests: []", r"tests: \[\] should be non-empty"),
        ("name: x", "'tests' is a required property"),
        (
            "tests:\n  - {stdin: 1 2, expect: 3}",
            r"tests\[0\]\.expect: 3 is a number in YAML; write it as text in quotes",
        ),
        ("tests:\n  - {stdin: '1', expct: '3'}", r"tests\[0\]: .*'expct' was unexpected.*allowed here are"),
        ("tests:\n  - {expect: '3', points: -1}", r"tests\[0\]\.points: -1 is less than the minimum of 0"),
        ("tests:\n  - {expect: '3', hidden: maybe}", r"tests\[0\]\.hidden: 'maybe' is not of type 'boolean'"),
        ("compare: fuzzy\ntests:\n  - {expect: '3'}", "compare must be one of exact, trim, tokens, float:TOL"),
        ("language: cobol\ntests:\n  - {expect: '3'}", "language: unknown language 'cobol'"),
        ("limits: {timeout: forever}\ntests:\n  - {expect: '3'}", "limits:"),
        ("limits: {cpu: 1}\ntests:\n  - {expect: '3'}", "unknown limit"),
        ("tests:\n  - {name: a, expect: '3'}\n  - {name: a, expect: '4'}", "two tests are named 'a'"),
        ("language: sql\ntests:\n  - {expect: '3'}", "needs a reference `query:`"),
        ("tests:\n  - {expect: '3'\n", "is not valid YAML at line"),
        ("- just\n- a list\n", "must be a mapping with a `tests:` list"),
    ],
)
def test_mistakes_are_named(tmp_path: Path, text: str, message: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(InvalidTestSuite, match=message) as info:
        cc.load_tests(path)
    assert str(path) in str(info.value) or "YAML" in str(info.value)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(InvalidTestSuite, match="cannot read the test file"):
        cc.load_tests(tmp_path / "nope.yaml")


def test_testcase_in_python_goes_through_the_same_schema() -> None:
    with pytest.raises(InvalidTestSuite, match="points"):
        cc.TestCase(expect="3", points="two")  # type: ignore[arg-type]
    with pytest.raises(InvalidTestSuite, match="stdin"):
        cc.TestCase(stdin=3)  # type: ignore[arg-type]
    with pytest.raises(InvalidTestSuite, match="compare"):
        cc.TestCase(compare="fuzzy")
    assert cc.TestCase(stdin="1", args=["-v"]).args == ("-v",)  # type: ignore[arg-type]
