"""The grading model: a TestCase (input, expected output, points) and a TestSuite (tests + shared settings).

Pure data; every field is checked against the one schema in :mod:`.schema`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, fields, replace
from typing import Any, Literal

from .._errors import InvalidRequest, InvalidTestSuite
from .._jobs import Limits
from .._languages import resolve
from .compare import Comparison
from .schema import check

Points = int | float


@dataclass(frozen=True)
class TestCase:
    """One test: the program's ``stdin`` (and ``args``), the ``expect``-ed output, its ``points``.

    ``hidden=True``: students see only whether it passed, never its input or expected output. Without
    ``expect`` a test passes when the program runs successfully. SQL problems give a reference ``query``
    instead: the student's result must hold the same rows (in any order unless ``order="exact"``; column
    names only count with ``columns="exact"``; floats within ``tolerance``).
    """

    __test__ = False  # not a pytest test class

    stdin: str = ""
    expect: str | None = None
    name: str | None = None
    hidden: bool = False
    points: Points = 1
    args: tuple[str, ...] = ()
    compare: str | None = None  # overrides the suite's comparison for this test
    query: str | None = None
    order: Literal["any", "exact"] = "any"
    columns: Literal["any", "exact"] = "any"
    tolerance: float | None = None
    database: str | None = None  # SQL: this test's database instead of the suite's

    def __post_init__(self) -> None:
        if isinstance(self.args, list):
            object.__setattr__(self, "args", tuple(self.args))
        check(self.to_dict(), "test", source=f"TestCase {self.name!r}" if self.name else "this TestCase")
        if self.compare is not None:
            Comparison.parse(self.compare)

    def to_dict(self) -> dict[str, Any]:
        """The test as it would be written in a test file (lists for args)."""
        d = {f.name: getattr(self, f.name) for f in fields(self)}
        d["args"] = list(self.args)
        return d


@dataclass(frozen=True)
class TestSuite:
    """The tests of one exercise and what they share: language, limits, comparison, SQL database."""

    __test__ = False

    tests: tuple[TestCase, ...]
    name: str | None = None
    language: str | None = None  # None: from each submission's file extension
    limits: Limits = field(default_factory=Limits)
    compare: str = "trim"
    database: str | None = None
    stop_on_first_failure: bool = False
    path: str | None = None  # the file it was loaded from

    def __post_init__(self) -> None:
        tests = tuple(self.tests)
        if not tests:
            raise InvalidTestSuite(f"{self._where}: a test suite needs at least one test.")
        if not all(isinstance(t, TestCase) for t in tests):
            raise InvalidTestSuite(
                f"{self._where}: tests must be TestCase objects (cc.TestCase(stdin=..., expect=...))."
            )
        named = tuple(t if t.name else replace(t, name=f"test{i}") for i, t in enumerate(tests, 1))
        seen: set[str] = set()
        for t in named:
            assert t.name is not None
            if t.name in seen or t.name in _RESERVED_COLUMNS:
                raise InvalidTestSuite(
                    f"{self._where}: two tests are named {t.name!r} (or the name is a gradebook column): every test "
                    "needs its own name, it becomes a column of the gradebook."
                )
            seen.add(t.name)
        object.__setattr__(self, "tests", named)
        try:
            Comparison.parse(self.compare)
        except InvalidTestSuite as exc:
            raise InvalidTestSuite(f"{self._where}: {exc}") from None
        if self.language is not None:
            try:
                object.__setattr__(self, "language", resolve(self.language).name)
            except InvalidRequest as exc:
                raise InvalidTestSuite(f"{self._where}: language: {exc}") from None
        sql = self.language == "sql"
        for t in named:
            if sql and t.query is None:
                raise InvalidTestSuite(f"{self._where}: test {t.name!r} needs a reference `query:` (language: sql).")
            if not sql and t.query is not None and self.language is not None:
                raise InvalidTestSuite(
                    f"{self._where}: test {t.name!r} has a `query:`, which only SQL problems use (language: sql)."
                )

    @property
    def _where(self) -> str:
        return self.path or "the test suite"

    @property
    def max_score(self) -> Points:
        return add_points(t.points for t in self.tests)

    def comparison(self, test: TestCase) -> Comparison:
        return Comparison.parse(test.compare or self.compare)

    @classmethod
    def coerce(cls, tests: TestSuite | Sequence[TestCase] | Iterable[TestCase]) -> TestSuite:
        if isinstance(tests, TestSuite):
            return tests
        if isinstance(tests, Mapping | str):
            raise InvalidTestSuite("tests must be a TestSuite (cc.load_tests(path)) or a list of cc.TestCase.")
        return cls(tuple(tests))


# gradebook columns that are not tests
_RESERVED_COLUMNS = frozenset({"student", "score", "max_score", "note"})


def add_points(values: Iterable[Points]) -> Points:
    """A sum of points that stays an int when every value is, and reads 2.5 rather than 2.4999999999 otherwise."""
    items = list(values)
    if all(isinstance(v, int) for v in items):
        return sum(int(v) for v in items)
    total = round(sum(float(v) for v in items), 9)
    return int(total) if total.is_integer() and all(float(v).is_integer() for v in items) else total
