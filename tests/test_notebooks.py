"""Every classroom notebook in notebooks/ executed top to bottom in a real IPython kernel (nbclient).

The kernel runs this test run's interpreter (a kernelspec written to a temporary JUPYTER_PATH), in a temporary
working directory, on the local engine. Assertions look at the outputs each lesson describes, found by the
cell tags the notebooks carry.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.kernels import write_python_kernelspec

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")

pytestmark = [pytest.mark.notebooks, pytest.mark.timeout(600)]

NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"
NOTEBOOK_FILES = sorted(NOTEBOOKS.glob("*.ipynb"))


@pytest.fixture(scope="module")
def kernel_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A python3 kernelspec that starts *this* interpreter, found first on JUPYTER_PATH."""
    root = tmp_path_factory.mktemp("jupyter")
    write_python_kernelspec(root)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("JUPYTER_PATH", str(root))
        for var in ("CODECAPSULE_PISTON_URL", "CODECAPSULE_ENGINE"):
            mp.delenv(var, raising=False)  # the lessons run on the local engine
        yield root


def execute(name: str, workdir: Path) -> Any:
    nb = nbformat.read(NOTEBOOKS / name, as_version=4)
    client = nbclient.NotebookClient(
        nb, kernel_name="python3", timeout=240, resources={"metadata": {"path": str(workdir)}}
    )
    client.execute()
    return nb


def outputs(nb: Any, tag: str) -> list[dict[str, Any]]:
    cells = [c for c in nb.cells if tag in c.get("metadata", {}).get("tags", [])]
    assert len(cells) == 1, f"no single cell tagged {tag!r}"
    return list(cells[0].get("outputs", []))


def shown(nb: Any, tag: str) -> str:
    """What a %%capsule cell showed under its status line (the verdict comes first)."""
    first, _, rest = text(nb, tag).partition("\n")
    assert first.startswith("[") and " · " in first, first
    return rest


def text(nb: Any, tag: str) -> str:
    """Everything a cell showed as text: streams, and the text/plain of displays and results."""
    parts = []
    for out in outputs(nb, tag):
        if out["output_type"] == "stream":
            parts.append(out["text"])
        elif "data" in out:
            parts.append(out["data"].get("text/plain", ""))
    return "\n".join(parts)


def html(nb: Any, tag: str) -> str:
    return "\n".join(o.get("data", {}).get("text/html", "") for o in outputs(nb, tag))


def no_errors(nb: Any) -> None:
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            assert out["output_type"] != "error", f"cell {cell.get('id')} raised: {out.get('ename')}"


def test_the_lessons_are_there() -> None:
    names = {p.name for p in NOTEBOOK_FILES}
    assert set(LESSONS) <= names


@pytest.mark.parametrize("path", NOTEBOOK_FILES, ids=lambda p: p.name)
def test_notebooks_are_stored_without_outputs(path: Path) -> None:
    nb = nbformat.read(path, as_version=4)
    assert nb.metadata["kernelspec"]["name"] == "python3"
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None, f"{path.name}: stored output"


def check_getting_started(nb: Any) -> None:
    assert "engine: local" in text(nb, "engine")
    assert "sum: 55" in text(nb, "python") and "✓ ok" in text(nb, "python")
    assert "NOTEBOOK CAPSULE SANDBOX" in text(nb, "javascript")
    assert '<pre class="cc-stderr"' in html(nb, "javascript") and "this line goes to stderr" in html(nb, "javascript")
    assert shown(nb, "java").splitlines()[0] == "42" and "java 17" in text(nb, "java")
    assert "C says 3" in text(nb, "c")
    assert "total = 23" in text(nb, "cpp")
    assert "Mars" in html(nb, "sql") and "<table" in html(nb, "sql") and "227.4" in html(nb, "sql")
    assert shown(nb, "stdin").splitlines()[0] == "7"
    wrong = text(nb, "wrong-answer")
    assert "Wrong answer" in wrong and "expected:    12\n  your output: 7" in wrong
    assert "IndexError: list index out of range" in text(nb, "runtime-error")
    assert "cell, line 3" in text(nb, "runtime-error")
    assert "Time limit" in text(nb, "time-limit") and "counting forever..." in text(nb, "time-limit")
    assert "ok 'hello from v" in text(nb, "api")
    assert 'class="codecapsule-result"' in html(nb, "api")


def check_intro_to_java(nb: Any) -> None:
    assert shown(nb, "hello").splitlines()[0] == "Hello, Java!"
    assert "Hello, Ada! You were born 210 years before 2025." in text(nb, "scanner")
    assert shown(nb, "exercise").splitlines()[0] == "66" and "✓ ok" in text(nb, "exercise")
    assert "saved Fraction.java" in text(nb, "save-fraction")
    assert "1/2 + 1/3 = 5/6" in text(nb, "use-fraction")
    assert "Fraction.java" in text(nb, "files")
    compile_error = text(nb, "compile-error")
    assert "expected verdict compile_error" in compile_error
    assert "line 4: error: ';' expected" in compile_error  # the cell's own line 4
    runtime = text(nb, "runtime-error")
    assert "90\n75\n62" in runtime and "ArrayIndexOutOfBoundsException" in runtime


def check_sql_lab(nb: Any) -> None:
    assert "<table" in html(nb, "students") and "Grace" in html(nb, "students")
    join = html(nb, "join")
    assert "Databases" in join and "Ada" in join
    assert re.search(r"Algorithms</td><td[^>]*>3</td>", html(nb, "aggregate"))
    assert "showing 10 of 1,000,000 rows" in html(nb, "big")
    assert "1000000" in text(nb, "out-df")
    assert "Linus" in html(nb, "register")
    assert "read-only" in text(nb, "course-db")
    assert "Catalog Error" in text(nb, "sql-error") and "expected verdict" in text(nb, "sql-error")
    setup = text(nb, "setup")
    assert "created table students; inserted 5 rows; created table courses; inserted 3 rows" in setup
    assert "created table enrollments; inserted 9 rows" in setup
    assert "9.5" in html(nb, "params") and "Alan" not in html(nb, "params")  # grade >= :min_grade (8)
    assert "saved top_students" in text(nb, "save-query")
    assert "8.83" in html(nb, "compose") and "Margaret" in html(nb, "compose") and "Grace" not in html(nb, "compose")
    assert "--register attendance_df" in text(nb, "register-hint") and "pg_" not in text(nb, "register-hint")
    assert "92" in html(nb, "data") and "Ada" in html(nb, "data")
    assert "Permission Error" in text(nb, "data-outside") and "expected verdict" in text(nb, "data-outside")


def check_grading(nb: Any) -> None:
    assert "('single', 2, True)" in text(nb, "suite")
    assert text(nb, "one-score").strip() == "(2, 4, False)"
    assert text(nb, "run").strip().endswith("7")
    book = text(nb, "gradebook")
    rows = {line.split()[0]: line.split()[1:] for line in book.splitlines()[3:]}
    assert rows["alice"][:4] == ["4/4", "1", "1", "2"], book  # the gradebook's notes say why a test failed
    assert rows["bob"][:4] == ["2/4", "0", "0", "2"], book
    assert rows["carol"][:4] == ["4/4", "1", "1", "2"], book
    assert rows["dave"][:4] == ["0/4", "0", "0", "0"] and "did not compile" in book
    assert rows["erin"][:4] == ["3/4", "1", "0", "2"]
    assert rows["frank"][:4] == ["0/4", "0", "0", "0"] and "simple: time_limit" in book
    assert rows["grace"][:4] == ["0/4", "–", "–", "–"] and "unknown file extension" in book
    assert "7 students" in book and 'class="codecapsule-gradebook"' in html(nb, "gradebook")
    assert "<table" in html(nb, "summary")
    bob = text(nb, "bob")
    assert "Wrong answer" in bob and "expected:    9\n  your output: 15" in bob and "single (hidden)  ✓ passed" in bob
    assert "── single" not in bob and "== single" not in bob  # a hidden test has no details section
    assert "line 5: error: ';' expected" in text(nb, "dave")
    assert "('single', 'time_limit')" in text(nb, "frank")
    assert "largest · 4/4 points · 3 of 3 tests passed" in text(nb, "magic")
    sql = text(nb, "sql")
    assert "1/2 points" in sql and "any-order   ✓ ok" in sql and "best-first  ⚠ wrong_answer" in sql


LESSONS = {
    "01-getting-started.ipynb": check_getting_started,
    "02-intro-to-java.ipynb": check_intro_to_java,
    "03-sql-lab.ipynb": check_sql_lab,
    "04-grading.ipynb": check_grading,
}


@pytest.mark.parametrize("path", NOTEBOOK_FILES, ids=lambda p: p.name)
def test_notebook_runs_top_to_bottom(path: Path, kernel_env: Path, tmp_path: Path) -> None:
    """Every notebook in notebooks/ runs without an error; the lessons' outputs are checked one by one."""
    nb = execute(path.name, tmp_path)
    no_errors(nb)
    check = LESSONS.get(path.name)
    if check is not None:
        check(nb)
    else:  # a notebook this file has no specific checks for must still show something
        assert any(c.get("outputs") for c in nb.cells if c.cell_type == "code"), f"{path.name}: no output"
