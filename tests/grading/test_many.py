"""grade_many() over a real folder of submissions, the gradebook and its CSV file (written as students finish)."""

from __future__ import annotations

import csv
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

import codecapsule as cc
from codecapsule import Client
from codecapsule.grading import find_submissions
from codecapsule.grading.gradebook import CsvLog, columns_of

needs_gcc = pytest.mark.skipif(shutil.which("gcc") is None, reason="gcc not installed")

SUM_C = '#include <stdio.h>\nint main(void){int a,b; scanf("%d %d",&a,&b); printf("%d\\n", a+b); return 0;}\n'
LAB = """\
name: sum-two
language: c
limits: {timeout: 3s}
tests:
  - {name: small, stdin: "1 2", expect: "3"}
  - {name: big, stdin: "500 700", expect: "1200", hidden: true, points: 2}
"""


@pytest.fixture
def client() -> Iterator[Client]:
    with Client(engine="local") as c:
        yield c


@pytest.fixture
def lab(tmp_path: Path) -> tuple[Path, cc.TestSuite]:
    subs = tmp_path / "submissions"
    subs.mkdir()
    (subs / "ada.c").write_text(SUM_C)
    bob = subs / "bob"
    bob.mkdir()
    (bob / "add.h").write_text("int add(int a, int b);\n")
    (bob / "add.c").write_text('#include "add.h"\nint add(int a, int b) { return a + b; }\n')
    (bob / "prog.c").write_text(
        '#include <stdio.h>\n#include "add.h"\nint main(void){int a,b; scanf("%d %d",&a,&b);'
        ' printf("%d\\n", add(a, b) + (a > 100)); return 0;}\n'
    )
    (subs / "carl.c").write_text("int main( {")
    (subs / "dan.txt").write_text("I forgot")
    (subs / "eve").mkdir()
    (subs / "fay.py").write_text("print(3)")
    (subs / ".DS_Store").write_text("")
    (tmp_path / "lab1.yaml").write_text(LAB)
    return subs, cc.load_tests(tmp_path / "lab1.yaml")


def test_submissions_are_files_or_folders(lab: tuple[Path, cc.TestSuite]) -> None:
    subs, _ = lab
    found = {s.student: s for s in find_submissions(subs, "c")}
    assert sorted(found) == ["ada", "bob", "carl", "dan", "eve", "fay"]
    assert found["bob"].files is not None and sorted(found["bob"].files) == ["add.c", "add.h"]
    assert "main(" in found["bob"].source
    assert "unknown file extension" in (found["dan"].problem or "")
    assert found["eve"].problem == "no c file in eve/"
    assert found["fay"].problem == "fay.py is python, this exercise is c"
    assert found["ada"].problem is None and found["carl"].problem is None


@needs_gcc
def test_grade_many_writes_one_row_per_student(lab: tuple[Path, cc.TestSuite], tmp_path: Path, client: Client) -> None:
    subs, suite = lab
    out = tmp_path / "grades.csv"
    seen: list[str] = []
    book = cc.grade_many(
        subs, suite, concurrency=2, out=out, client=client, on_grade=lambda g: seen.append(g.student or "")
    )
    assert isinstance(book, cc.Gradebook) and sorted(seen) == ["ada", "bob", "carl", "dan", "eve", "fay"]
    rows = {r["student"]: r for r in csv.DictReader(out.open())}
    assert list(next(csv.reader(out.open()))) == ["student", "score", "max_score", "small", "big", "note"]
    assert rows["ada"] == {"student": "ada", "score": "3", "max_score": "3", "small": "1", "big": "2", "note": ""}
    assert rows["bob"]["score"] == "1" and rows["bob"]["note"] == "big: wrong_answer"
    assert rows["carl"]["note"] == "did not compile" and rows["carl"]["score"] == "0"
    assert rows["dan"]["small"] == "" and "unknown file extension" in rows["dan"]["note"]
    assert rows["eve"]["note"] == "no c file in eve/"
    frame = book.df()
    assert frame.loc["ada", "score"] == 3 and frame.loc["bob", "big"] == 0
    assert book["ada"].passed and "6 students" in book.summary() and "3 could not be run" in book.summary()
    html = book._repr_html_()
    assert 'data-student="carl"' in html and "did not compile" in html
    book.to_csv(tmp_path / "again.csv")
    assert sorted(csv.DictReader((tmp_path / "again.csv").open()), key=lambda r: r["student"]) == sorted(
        rows.values(), key=lambda r: r["student"]
    )


@needs_gcc
def test_resume_grades_only_who_is_missing(lab: tuple[Path, cc.TestSuite], tmp_path: Path, client: Client) -> None:
    subs, suite = lab
    out = tmp_path / "grades.csv"
    # what a run killed while writing carl's row leaves behind: ada complete, carl's row cut short
    out.write_text("student,score,max_score,small,big,note\r\nada,3,3,1,2,\r\ncarl,0,3,0,")
    seen: list[str] = []
    book = cc.grade_many(
        subs, suite, out=out, resume=True, client=client, on_grade=lambda g: seen.append(g.student or "")
    )
    assert sorted(seen) == ["bob", "carl", "dan", "eve", "fay"]  # ada is not graded again
    rows = list(csv.DictReader(out.open()))
    assert sorted(r["student"] for r in rows) == ["ada", "bob", "carl", "dan", "eve", "fay"]
    assert len(book) == 6 and "ada" not in book.grades


def test_resume_refuses_a_gradebook_of_other_tests(tmp_path: Path, lab: tuple[Path, cc.TestSuite]) -> None:
    _, suite = lab
    out = tmp_path / "grades.csv"
    out.write_text("student,score,max_score,q1,note\nada,1,1,1,\n")
    with pytest.raises(cc.InvalidTestSuite, match="written for other tests"):
        CsvLog(out, columns_of(suite), resume=True)
    assert out.read_text() == "student,score,max_score,q1,note\nada,1,1,1,\n"  # left as it was


def test_not_a_folder(tmp_path: Path, lab: tuple[Path, cc.TestSuite]) -> None:
    with pytest.raises(cc.InvalidTestSuite, match="not a folder of submissions"):
        cc.grade_many(tmp_path / "nope", lab[1])


def test_links_in_submissions_are_not_followed(tmp_path: Path) -> None:
    """Hostile: a student hands in links to files of the grader's machine."""
    secret = tmp_path / "secret.txt"
    secret.write_text("TOP-SECRET")
    subs = tmp_path / "subs"
    (subs / "mal").mkdir(parents=True)
    (subs / "mal" / "main.py").write_text("print(open('notes.txt').read())")
    (subs / "mal" / "notes.txt").symlink_to(secret)
    (subs / "mal" / "linked").symlink_to(tmp_path, target_is_directory=True)
    (subs / "eve.py").symlink_to(secret)
    found = {s.student: s for s in find_submissions(subs)}
    assert found["mal"].files == {} and found["mal"].problem is None
    assert found["eve"].problem == "eve.py is not a regular file (links are not followed)"


@needs_gcc
def test_a_file_name_the_sandbox_refuses_is_a_row_with_the_reason(tmp_path: Path, client: Client) -> None:
    subs = tmp_path / "subs"
    (subs / "zed").mkdir(parents=True)
    (subs / "zed" / "main.c").write_text(SUM_C)
    (subs / "zed" / "my notes.h").write_text("")
    suite = cc.TestSuite((cc.TestCase(stdin="1 2", expect="3"),), language="c")
    book = cc.grade_many(subs, suite, client=client)
    assert book.rows[0]["score"] == "0" and "my notes.h" in book.rows[0]["note"]


def test_a_student_name_is_never_a_spreadsheet_formula(tmp_path: Path, client: Client) -> None:
    """Hostile: a submission named like a formula stays text in the CSV, and --resume still recognises it."""
    subs = tmp_path / "subs"
    subs.mkdir()
    (subs / "=HYPERLINK(1).py").write_text("print(3)")
    suite = cc.TestSuite((cc.TestCase(stdin="", expect="3"),), language="python")
    out = tmp_path / "grades.csv"
    cc.grade_many(subs, suite, client=client, out=out)
    assert "\n'=HYPERLINK(1),1,1," in out.read_text().replace("\r\n", "\n")
    seen: list[str] = []
    book = cc.grade_many(subs, suite, client=client, out=out, resume=True, on_grade=lambda g: seen.append("x"))
    assert seen == [] and [r["student"] for r in book.rows] == ["=HYPERLINK(1)"]
