"""grade(): real local engine (C, Python, Java) and the Piston test server; verdicts, points, hidden tests."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

import codecapsule as cc
from codecapsule import Client, Settings

from ..fakes.piston import PistonTestServer

needs_gcc = pytest.mark.skipif(shutil.which("gcc") is None, reason="gcc not installed")
needs_java = pytest.mark.skipif(shutil.which("javac") is None, reason="javac not installed")

SUM_C = '#include <stdio.h>\nint main(void){int a,b; scanf("%d %d",&a,&b); printf("%d\\n", a+b); return 0;}\n'
# loops forever when the first number is 0, prints the product otherwise
ODD_C = (
    '#include <stdio.h>\nint main(void){int a,b; scanf("%d %d",&a,&b); while (a == 0) {}\n'
    'printf("%d\\n", a*b); return 0;}\n'
)
TESTS = [
    cc.TestCase(stdin="1 2", expect="3", name="small"),
    cc.TestCase(stdin="5 7", expect="12", hidden=True, points=2),
]


@pytest.fixture
def client() -> Iterator[Client]:
    with Client(engine="local") as c:
        yield c


@needs_gcc
def test_the_issue_example(client: Client) -> None:
    g = cc.grade(SUM_C, "c", TESTS, timeout="2s", memory="128MB", client=client)
    assert (g.score, g.max_score, g.passed) == (3, 3, True)
    assert [type(r) for r in g.results] == [cc.TestResult, cc.TestResult]
    assert [r.test.name for r in g.results] == ["small", "test2"]
    assert [r.result.stdout for r in g.results if r.result] == ["3\n", "12\n"]
    assert [r.points for r in g.results] == [1, 2]
    # compiled once: every test's result carries the same compile stage
    assert len({id(r.result.compile) for r in g.results if r.result}) == 1
    assert g.results[0].result is not None and g.results[0].result.limits.memory == 128 * 1000 * 1000


@needs_gcc
def test_a_test_that_times_out_is_named_and_the_rest_still_run(client: Client) -> None:
    tests = [
        cc.TestCase(stdin="0 1", expect="0", name="zero"),
        cc.TestCase(stdin="2 3", expect="5", name="sum"),
        cc.TestCase(stdin="2 3", expect="6", name="product", points=0.5),
    ]
    g = cc.grade(ODD_C, "c", tests, timeout="1s", client=client)
    assert [r.verdict for r in g.results] == ["time_limit", "wrong_answer", "ok"]
    assert g.score == 0.5 and g.max_score == 2.5 and not g.passed
    text = str(g)
    assert "zero" in text and "time_limit" in text and "0.5/2.5 points" in text
    wrong = g.results[1].result
    assert wrong is not None and wrong.diff is not None and "-5" in wrong.diff and "+6" in wrong.diff


@needs_gcc
def test_stop_on_first_failure(client: Client) -> None:
    tests = [cc.TestCase(stdin="2 3", expect="6"), cc.TestCase(stdin="0 1"), cc.TestCase(stdin="1 1", expect="1")]
    g = cc.grade(ODD_C, "c", tests, timeout="1s", client=client, stop_on_first_failure=True)
    assert [r.verdict for r in g.results] == ["ok", "time_limit", "skipped"]
    assert g.results[2].result is None and g.results[2].points == 0


@needs_gcc
def test_compile_error_fails_every_test_once(client: Client) -> None:
    g = cc.grade("int main( {", "c", TESTS, client=client)
    assert [r.verdict for r in g.results] == ["compile_error", "compile_error"] and g.score == 0
    assert g.compile_error is not None and g.failures() == "did not compile"
    assert str(g).count("Compile error") == 1


def test_python_and_comparison_modes(client: Client) -> None:
    source = "import sys\nprint(sum(map(float, sys.stdin.read().split())) / 3)"
    tests = [cc.TestCase(stdin="1 1 2", expect="1.3333333", name="mean")]
    assert not cc.grade(source, "python", tests, client=client).passed
    assert cc.grade(source, "python", tests, client=client, compare="float:1e-6").passed
    exact = [cc.TestCase(stdin="3 0 0", expect="1.0", compare="exact")]
    assert not cc.grade(source, "python", exact, client=client).passed  # exact: the newline counts
    assert cc.grade(
        source, "python", [cc.TestCase(stdin="3 0 0", expect="1.0\n", compare="exact")], client=client
    ).passed


def test_a_test_without_expect_passes_when_the_program_runs(client: Client) -> None:
    g = cc.grade(
        "import sys\nsys.exit(int(input()))", "python", [cc.TestCase(stdin="0"), cc.TestCase(stdin="4")], client=client
    )
    assert [r.verdict for r in g.results] == ["ok", "runtime_error"]


def test_hidden_tests_never_show_input_expected_or_output(client: Client) -> None:
    secret_in, secret_out = "SECRET-INPUT-41", "SECRET-EXPECTED-99"
    tests = [
        cc.TestCase(stdin="visible-in", expect="visible-out", name="shown"),
        cc.TestCase(stdin=secret_in, expect=secret_out, hidden=True, name="hidden1"),
    ]
    g = cc.grade("print(input())", "python", tests, client=client)
    assert not g.passed
    shown = str(g) + g._repr_html_()
    assert "visible-in" in shown and "visible-out" in shown  # a failed visible test shows input and diff
    assert secret_in not in shown and secret_out not in shown
    assert "hidden1" in shown and "failed" in shown


@needs_java
def test_java_with_a_helper_file(client: Client) -> None:
    main = (
        "import java.util.Scanner;\npublic class Main { public static void main(String[] a) {"
        " Scanner in = new Scanner(System.in); System.out.println(Helper.add(in.nextInt(), in.nextInt())); } }"
    )
    helper = "class Helper { static int add(int a, int b) { return a + b; } }"
    g = cc.grade(main, "java", TESTS, files={"Helper.java": helper}, client=client)
    assert g.passed and g.score == 3


def test_language_must_come_from_somewhere(client: Client) -> None:
    with pytest.raises(cc.InvalidTestSuite, match="needs a language"):
        cc.grade("print(1)", None, TESTS, client=client)


@needs_gcc
def test_on_piston_each_test_is_one_request(piston_server: PistonTestServer, piston_settings: Settings) -> None:
    with Client(settings=piston_settings) as client:
        g = cc.grade(SUM_C, "c", [*TESTS, cc.TestCase(stdin="2 2", expect="5", name="bad")], client=client)
    assert [r.verdict for r in g.results] == ["ok", "ok", "wrong_answer"]
    assert {r.result.engine for r in g.results if r.result} == {"piston"}
    bodies = [json.loads(r.body) for r in piston_server.execute_requests()]
    assert sorted(b["stdin"].strip() for b in bodies) == ["1 2", "2 2", "5 7"]


def test_grade_many_on_piston(piston_server: PistonTestServer, piston_settings: Settings, tmp_path: Path) -> None:
    subs = tmp_path / "subs"
    subs.mkdir()
    (subs / "ada.py").write_text("a, b = map(int, input().split())\nprint(a + b)\n")
    (subs / "bob.py").write_text("print(3)\n")
    suite = cc.TestSuite(tuple(TESTS), language="python")
    with Client(settings=piston_settings) as client:
        book = cc.grade_many(subs, suite, concurrency=2, client=client)
    assert {r["student"]: r["score"] for r in book.rows} == {"ada": "3", "bob": "1"}
    assert len(piston_server.execute_requests()) == 4  # one request per (student, test)
    assert {r.result.engine for g in book.grades.values() for r in g.results if r.result} == {"piston"}
