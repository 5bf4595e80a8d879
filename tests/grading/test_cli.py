"""``codecapsule grade`` in a real subprocess: the gradebook file, exit codes, Ctrl-C and --resume."""

from __future__ import annotations

import csv
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.timeout(120)

LAB = """\
name: double
language: python
limits: {timeout: 2s}  # room for a Python start on a loaded machine
tests:
  - {name: one, stdin: "1", expect: "2"}
  - {name: two, stdin: "21", expect: "42"}
  - {name: three, stdin: "0", expect: "0", hidden: true}
"""
GOOD = "print(int(input()) * 2)\n"
SLOW = "while True:\n    pass\n"  # every test runs into the time limit


def cli(*args: str, cwd: Path) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2]), "CODECAPSULE_ENGINE": "local"}
    return subprocess.Popen(
        [sys.executable, "-m", "codecapsule.cli", *args],
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


@pytest.fixture
def course(tmp_path: Path) -> Path:
    subs = tmp_path / "submissions"
    subs.mkdir()
    (subs / "ada.py").write_text(GOOD)
    for name in ("bob", "cy", "dee"):
        (subs / f"{name}.py").write_text(SLOW)
    (subs / "eve.rb").write_text("puts 2")
    (tmp_path / "lab1.yaml").write_text(LAB)
    return tmp_path


def students(path: Path) -> list[str]:
    return [r["student"] for r in csv.DictReader(path.open())]


def test_grade_writes_the_gradebook(course: Path) -> None:
    (course / "submissions" / "bob.py").write_text("print(int(input()) + 1)\n")
    for name in ("cy", "dee"):
        (course / "submissions" / f"{name}.py").unlink()
    proc = cli("grade", "submissions", "--tests", "lab1.yaml", "--out", "grades.csv", "--concurrency", "2", cwd=course)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert "ada: 3/3 points · 3 of 3 tests passed" in out
    assert "bob: 1/3 points · 1 of 3 tests passed · two: wrong_answer; three: wrong_answer" in out
    assert "eve: 0/3 points" in out and "unknown file extension" in out
    assert "3 students" in out.splitlines()[-1]
    rows = {r["student"]: r for r in csv.DictReader((course / "grades.csv").open())}
    assert rows["ada"]["score"] == "3" and rows["bob"]["one"] == "1" and rows["bob"]["two"] == "0"


def test_bad_test_file_is_one_line(course: Path) -> None:
    (course / "bad.yaml").write_text("tests:\n  - {stdin: 1, expect: 2}\n")
    proc = cli("grade", "submissions", "--tests", "bad.yaml", cwd=course)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 2 and "Traceback" not in err
    assert err.startswith("codecapsule: error:") and "tests[0].stdin" in err and len(err.strip().splitlines()) == 1
    proc = cli("grade", "submissions", "--tests", "lab1.yaml", "--resume", cwd=course)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 2 and "--resume goes with --out" in err


def test_interrupted_run_then_resume(course: Path) -> None:
    # --stop-on-first-failure: a looping student costs one time limit, not three
    args = ("grade", "submissions", "--tests", "lab1.yaml", "--out", "grades.csv", "--stop-on-first-failure")
    proc = cli(*args, "--concurrency", "1", cwd=course)
    assert proc.stdout is not None
    first = proc.stdout.readline()  # ada is graded first (alphabetical) and fast; bob then takes 2 s
    assert first.startswith("ada: 3/3"), first
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "interrupted" in err and "--resume" in err and "Traceback" not in err
    graded = students(course / "grades.csv")
    assert graded[0] == "ada" and len(graded) < 5  # stopped before the end; every finished student kept

    resumed = cli(*args, "--resume", "--concurrency", "2", cwd=course)
    out, err = resumed.communicate(timeout=120)
    assert resumed.returncode == 0, err
    again = [line.split(":")[0] for line in out.splitlines()[:-1]]
    assert sorted(again) == sorted({"ada", "bob", "cy", "dee", "eve"} - set(graded))  # only who was missing
    final = {r["student"]: r for r in csv.DictReader((course / "grades.csv").open())}
    assert sorted(final) == ["ada", "bob", "cy", "dee", "eve"]  # everyone once
    assert "one: time_limit" in final["cy"]["note"] and final["cy"]["two"] == ""  # the rest was skipped
