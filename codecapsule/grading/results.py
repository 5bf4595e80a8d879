"""What grading a submission gives: one TestResult per test and the Grade that sums them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .._results import Result
from .suite import Points, TestCase, add_points

#: the verdict of a test that did not run (stop_on_first_failure, or a submission that could not start)
SKIPPED = "skipped"


@dataclass(frozen=True)
class TestResult:
    """One test of one submission: the test, the program's :class:`Result` (None when it did not run),
    whether it passed and the points it earned."""

    __test__ = False

    test: TestCase
    result: Result | None
    passed: bool
    points: Points

    @property
    def name(self) -> str:
        return self.test.name or "test"

    @property
    def verdict(self) -> str:
        """``ok``, ``wrong_answer``, ``time_limit``, ... or ``skipped`` when the test did not run."""
        return self.result.verdict.value if self.result is not None else SKIPPED


@dataclass(frozen=True)
class Grade:
    """A submission's grade: ``score`` of ``max_score``, ``passed`` when every test passed, ``results`` in the
    order of the tests. ``note`` says why a submission could not be run at all (no source, unknown language).

    Displaying a Grade (notebook, ``print``) never shows a hidden test's input, expected output or output.
    """

    results: tuple[TestResult, ...]
    max_score: Points
    student: str | None = None
    language: str | None = None
    note: str | None = None

    @property
    def score(self) -> Points:
        return add_points(r.points for r in self.results)

    @property
    def passed(self) -> bool:
        return bool(self.results) and all(r.passed for r in self.results)

    @property
    def tests_passed(self) -> int:
        return sum(r.passed for r in self.results)

    @property
    def compile_error(self) -> Result | None:
        """The compile_error Result when the submission did not compile (every test then has it)."""
        for r in self.results:
            if r.result is not None and r.result.verdict.value == "compile_error":
                return r.result
        return None

    def summary(self) -> str:
        """``ada: 3/3 points · 2 of 2 tests passed`` (and the note when there is one)."""
        who = f"{self.student}: " if self.student else ""
        line = (
            f"{who}{format_points(self.score)}/{format_points(self.max_score)} points · "
            f"{self.tests_passed} of {len(self.results)} tests passed"
        )
        return f"{line} · {self.note}" if self.note else line

    def failures(self) -> str:
        """One short phrase per test that did not pass: ``small: wrong_answer; big: time_limit``."""
        if self.compile_error is not None:
            return "did not compile"
        return "; ".join(f"{r.name}: {r.verdict}" for r in self.results if not r.passed)

    def to_dict(self) -> dict[str, Any]:
        return {
            "student": self.student,
            "language": self.language,
            "score": self.score,
            "max_score": self.max_score,
            "passed": self.passed,
            "note": self.note,
            "tests": [
                {"name": r.name, "verdict": r.verdict, "passed": r.passed, "points": r.points, "hidden": r.test.hidden}
                for r in self.results
            ],
        }

    def __str__(self) -> str:
        from .render import grade_text

        return grade_text(self)

    def _repr_pretty_(self, p: Any, cycle: bool) -> None:
        p.text(repr(self) if cycle else str(self))

    def _repr_html_(self) -> str:
        from .render import grade_html

        return grade_html(self)


def format_points(value: Points) -> str:
    """``3``, ``2.5``, ``0.25``: points as given, without float noise."""
    if isinstance(value, int):
        return str(value)
    return f"{value:.6f}".rstrip("0").rstrip(".") or "0"
