"""``%%capsule LANG --tests FILE`` in a real IPython shell: the per-test table; hidden tests only pass/fail."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from IPython.core.interactiveshell import InteractiveShell

from codecapsule.grading import Grade

from ..test_magics import no_codecapsule_stack, run, shell  # noqa: F401 - shell is a fixture

pytestmark = pytest.mark.timeout(120)
needs_gcc = pytest.mark.skipif(shutil.which("gcc") is None, reason="gcc not installed")

LAB = """\
name: sum-two
language: c
limits: {timeout: 3s}
tests:
  - {name: small, stdin: "1 2", expect: "3"}
  - {name: negative, stdin: "-4 1", expect: "-3"}
  - {name: secret, stdin: "HIDDEN-INPUT 7", expect: "HIDDEN-EXPECTED", hidden: true, points: 2}
"""


@pytest.fixture
def lab(tmp_path: Path) -> Path:
    (tmp_path / "lab1.yaml").write_text(LAB)
    return tmp_path / "lab1.yaml"


@needs_gcc
def test_per_test_table_under_the_cell(shell: InteractiveShell, lab: Path) -> None:  # noqa: F811
    cell = run(
        shell,
        "%%capsule c --tests lab1.yaml --out cc_grade\n"
        '#include <stdio.h>\nint main(void) { unsigned a, b; scanf("%u %u", &a, &b); printf("%u\\n", a + b); }\n',
    )
    assert cell.success, cell.stderr
    grade = shell.user_ns["cc_grade"]
    assert isinstance(grade, Grade) and grade.score == 1 and grade.max_score == 4
    assert "sum-two · 1/4 points · 1 of 3 tests passed" in cell.text
    assert "small" in cell.text and "✓ ok" in cell.text and "negative" in cell.text and "wrong_answer" in cell.text
    assert "-4 1" in cell.text and "-3" in cell.text  # a failed visible test shows its input and the diff
    for shown in (cell.text, cell.html):
        assert "HIDDEN-INPUT" not in shown and "HIDDEN-EXPECTED" not in shown
    assert 'data-test="secret"' in cell.html and "✗ failed" in cell.html
    assert 'class="codecapsule-grade"' in cell.html


@needs_gcc
def test_compile_errors_use_the_cells_lines(shell: InteractiveShell, lab: Path) -> None:  # noqa: F811
    cell = run(shell, "%%capsule c --tests lab1.yaml\nint main(void) {\n    return missing;\n}\n")
    assert cell.success
    assert "0/4 points" in cell.text and "line 3" in cell.text and "Compile error" in cell.text


def test_a_bad_test_file_is_one_line(shell: InteractiveShell, tmp_path: Path) -> None:  # noqa: F811
    (tmp_path / "bad.yaml").write_text("tests:\n  - {expect: 3}\n")
    cell = run(shell, "%%capsule python --tests bad.yaml\nprint(3)\n")
    assert not cell.success
    assert "tests[0].expect: 3 is a number in YAML" in cell.stdout + cell.stderr
    no_codecapsule_stack(cell)


def test_tests_and_stdin_do_not_mix(shell: InteractiveShell, lab: Path) -> None:  # noqa: F811
    cell = run(shell, '%%capsule c --tests lab1.yaml --stdin "1 2"\nint main(void) { return 0; }\n')
    assert not cell.success and "--tests gives every test's input" in cell.stderr


@needs_gcc
def test_raise_fails_the_cell_when_a_test_fails(shell: InteractiveShell, lab: Path) -> None:  # noqa: F811
    cell = run(shell, "%%capsule c --tests lab1.yaml --raise\nint main(void) { return 0; }\n")
    assert not cell.success and "3 of 3 tests did not pass" in cell.stdout + cell.stderr


def test_the_cell_must_be_in_the_exercises_language(shell: InteractiveShell, lab: Path) -> None:  # noqa: F811
    cell = run(shell, "%%capsule python --tests lab1.yaml\nprint(3)\n")
    assert not cell.success and "lab1.yaml is a c exercise, but this cell is python" in cell.stderr
