"""Comparison modes: exact, trim (default), tokens, float:TOL."""

from __future__ import annotations

import pytest

from codecapsule import InvalidTestSuite
from codecapsule.grading import Comparison


@pytest.mark.parametrize(
    ("mode", "actual", "expected", "same"),
    [
        ("trim", "3  \n\n", "3", True),
        ("trim", "3\n4", "3 4", False),
        ("exact", "3\n", "3\n", True),
        ("exact", "3 \n", "3\n", False),
        ("exact", "3", "3\n", False),
        ("tokens", "1   2\n3", "1 2 3\n", True),
        ("tokens", "1 2", "1 2 3", False),
        ("float:1e-6", "0.3333333", "0.333333333", True),
        ("float:1e-6", "0.334", "0.333", False),
        ("float:1e-3", "1000.9 x", "1000 x", True),  # relative above 1
        ("float:1e-6", "abc 1", "abd 1", False),
        ("float", "nan", "nan", True),
    ],
)
def test_modes(mode: str, actual: str, expected: str, same: bool) -> None:
    comparison = Comparison.parse(mode)
    assert comparison.matches(actual, expected) is same
    assert (comparison.diff(actual, expected) is None) is same


def test_diff_is_readable_and_exact_shows_invisible_differences() -> None:
    diff = Comparison.parse("trim").diff("1\n2\n4\n", "1\n2\n3\n")
    assert diff is not None and "-3" in diff and "+4" in diff and "--- expected" in diff
    exact = Comparison.parse("exact").diff("3 \n", "3\n")
    assert exact is not None and "-3⏎" in exact and "+3 ⏎" in exact


@pytest.mark.parametrize("bad", ["fuzzy", "float:abc", "float:-1", "trim:2", ""])
def test_unknown_modes_name_the_known_ones(bad: str) -> None:
    with pytest.raises(InvalidTestSuite, match=r"compare|tolerance"):
        Comparison.parse(bad)


def test_default_is_trim() -> None:
    assert str(Comparison.parse(None)) == "trim"
    assert str(Comparison.parse("float:1e-6")) == "float:1e-06"
