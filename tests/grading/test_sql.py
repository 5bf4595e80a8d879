"""SQL problems graded by result equivalence, in real DuckDB, each student on a fresh read-only copy."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

import codecapsule as cc
from codecapsule import Client

duckdb = pytest.importorskip("duckdb")


@pytest.fixture
def course(tmp_path: Path) -> Path:
    path = tmp_path / "course.duckdb"
    con = duckdb.connect(str(path))
    con.execute("CREATE TABLE grades(student TEXT, course TEXT, score DOUBLE)")
    con.execute(
        "INSERT INTO grades VALUES ('ada','db',91.5),('ada','os',88),('bob','db',70),('bob','os',75.25),('cy','db',60)"
    )
    con.close()
    (tmp_path / "empty.duckdb").unlink(missing_ok=True)
    con = duckdb.connect(str(tmp_path / "empty.duckdb"))
    con.execute("CREATE TABLE grades(student TEXT, course TEXT, score DOUBLE)")
    con.close()
    return path


@pytest.fixture
def suite(course: Path) -> cc.TestSuite:
    (course.parent / "lab.yaml").write_text(
        """\
name: averages
language: sql
database: course.duckdb
tests:
  - name: rows
    query: SELECT student, avg(score) AS mean FROM grades GROUP BY student
  - name: ordered
    query: SELECT student, avg(score) AS mean FROM grades GROUP BY student ORDER BY mean DESC
    order: exact
  - name: named
    query: SELECT student, avg(score) AS mean FROM grades GROUP BY student
    columns: exact
    points: 0.5
  - name: empty-table
    database: empty.duckdb
    query: SELECT student, avg(score) AS mean FROM grades GROUP BY student
"""
    )
    return cc.load_tests(course.parent / "lab.yaml")


@pytest.fixture
def client() -> Iterator[Client]:
    with Client() as c:
        yield c


def verdicts(g: cc.Grade) -> dict[str, str]:
    return {r.name: r.verdict for r in g.results}


def test_a_correct_query_in_another_order_and_with_other_names(suite: cc.TestSuite, client: Client) -> None:
    g = cc.grade("SELECT student AS who, sum(score) / count(*) AS m FROM grades GROUP BY 1", None, suite, client=client)
    assert verdicts(g) == {"rows": "ok", "ordered": "wrong_answer", "named": "wrong_answer", "empty-table": "ok"}
    ordered = g.results[1].result
    assert ordered is not None and ordered.diff is not None and "order matters" in ordered.diff
    assert "mean" in (g.results[2].result.diff or "")  # type: ignore[union-attr]


def test_the_exact_answer_gets_everything(suite: cc.TestSuite, client: Client) -> None:
    g = cc.grade(
        "SELECT student, avg(score) AS mean FROM grades GROUP BY student ORDER BY 2 DESC", "sql", suite, client=client
    )
    assert g.passed and g.score == 3.5


def test_a_wrong_query_names_the_rows(suite: cc.TestSuite, client: Client) -> None:
    g = cc.grade("SELECT student, max(score) FROM grades GROUP BY student", "sql", suite, client=client)
    assert verdicts(g)["rows"] == "wrong_answer"
    diff = g.results[0].result.diff or ""  # type: ignore[union-attr]
    assert "missing" in diff and "ada | 89.75" in diff and "ada | 91.5" in diff


def test_an_error_and_a_non_query(suite: cc.TestSuite, client: Client) -> None:
    g = cc.grade("SELECT nope FROM grades", "sql", suite, client=client)
    assert set(verdicts(g).values()) == {"runtime_error"}
    assert "nope" in (g.results[0].result.error or "")  # type: ignore[union-attr]


def test_students_cannot_change_the_course_database_or_see_each_other(
    suite: cc.TestSuite, course: Path, client: Client
) -> None:
    vandal = "DELETE FROM grades; SELECT student, avg(score) FROM grades GROUP BY student"
    g = cc.grade(vandal, "sql", suite, client=client)
    assert not g.passed and "read-only" in (g.results[0].result.error or "")  # type: ignore[union-attr]
    sneaky = "CREATE TEMP TABLE mine AS SELECT 1 AS x; SELECT student, avg(score) FROM grades GROUP BY student"
    assert cc.grade(sneaky, "sql", suite, client=client).results[0].passed
    peek = cc.grade("SELECT x, x FROM mine", "sql", suite, client=client)
    assert not peek.results[0].passed and "mine" in (peek.results[0].result.error or "")  # type: ignore[union-attr]
    assert duckdb.connect(str(course), read_only=True).execute("SELECT count(*) FROM grades").fetchone() == (5,)


def test_floats_within_the_tolerance(course: Path, client: Client) -> None:
    suite = cc.TestSuite(
        (cc.TestCase(query="SELECT avg(score) FROM grades", tolerance=1e-4),), language="sql", database=str(course)
    )
    assert cc.grade("SELECT round(avg(score), 3) FROM grades", "sql", suite, client=client).passed
    assert not cc.grade("SELECT round(avg(score), 0) FROM grades", "sql", suite, client=client).passed


def test_teacher_mistakes_are_errors_not_grades(course: Path, client: Client) -> None:
    missing = cc.TestSuite((cc.TestCase(query="SELECT 1"),), language="sql", database=str(course.parent / "nope.db"))
    with pytest.raises(cc.InvalidTestSuite, match="does not exist"):
        cc.grade("SELECT 1", "sql", missing, client=client)
    broken = cc.TestSuite((cc.TestCase(query="SELECT oops", name="q"),), language="sql", database=str(course))
    with pytest.raises(cc.InvalidTestSuite, match="reference query of test 'q' fails"):
        cc.grade("SELECT 1", "sql", broken, client=client)


def test_grade_many_sql_submissions(suite: cc.TestSuite, course: Path, client: Client) -> None:
    subs = course.parent / "subs"
    subs.mkdir()
    (subs / "ada.sql").write_text("SELECT student, avg(score) AS mean FROM grades GROUP BY student ORDER BY 2 DESC;\n")
    (subs / "bob.sql").write_text("CREATE TABLE x(a INT);\n")
    book = cc.grade_many(subs, suite, client=client, out=course.parent / "grades.csv")
    scores = {r["student"]: r["score"] for r in book.rows}
    assert scores == {"ada": "3.5", "bob": "0"}
    assert "read-only" in (book["bob"].results[0].result.error or "")  # type: ignore[union-attr]
