"""Grading: test suites, compile once and run every test, gradebooks, SQL graded by result equivalence.

>>> import codecapsule as cc
>>> tests = [cc.TestCase(stdin="1 2", expect="3", name="small"),
...          cc.TestCase(stdin="5 7", expect="12", hidden=True, points=2)]
>>> g = cc.grade(source, "c", tests, timeout="2s")          # doctest: +SKIP
>>> g.score, g.max_score, g.passed                          # doctest: +SKIP
(3, 3, True)
>>> book = cc.grade_many("submissions/", cc.load_tests("lab1.yaml"), concurrency=2)   # doctest: +SKIP
>>> book.to_csv("grades.csv")                               # doctest: +SKIP

The test-file format is documented in docs/teachers.md (and as a JSON Schema: :data:`SUITE_SCHEMA`).
"""

from __future__ import annotations

from .compare import Comparison
from .gradebook import Gradebook
from .load import load_tests
from .many import grade_many
from .results import Grade, TestResult
from .runner import grade
from .schema import SUITE_SCHEMA
from .submissions import Submission, find_submissions
from .suite import TestCase, TestSuite

__all__ = [
    "SUITE_SCHEMA",
    "Comparison",
    "Grade",
    "Gradebook",
    "Submission",
    "TestCase",
    "TestResult",
    "TestSuite",
    "find_submissions",
    "grade",
    "grade_many",
    "load_tests",
]
