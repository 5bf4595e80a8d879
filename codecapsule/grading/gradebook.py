"""The gradebook: one row per student (student, score, max_score, points per test, note), and the CSV file it
is written to as each student finishes — flushed row by row, so a crash or Ctrl-C loses nothing and a resumed
run grades only who is missing.
"""

from __future__ import annotations

import csv
import io
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .._errors import InvalidTestSuite
from .results import Grade, format_points
from .suite import TestSuite

if TYPE_CHECKING:
    import pandas


def columns_of(suite: TestSuite) -> list[str]:
    return ["student", "score", "max_score", *[t.name or "" for t in suite.tests], "note"]


def row_of(grade: Grade) -> dict[str, str]:
    """A Grade as a gradebook row: points per test (empty when the test did not run) and a note of what failed."""
    row = {
        "student": grade.student or "",
        "score": format_points(grade.score),
        "max_score": format_points(grade.max_score),
    }
    for r in grade.results:
        row[r.name] = "" if r.result is None else format_points(r.points)
    row["note"] = grade.note or grade.failures()
    return row


# A spreadsheet runs a cell starting with one of these as a formula: a student named "=HYPERLINK(...)" must stay
# text. Such text cells get a leading apostrophe in the file (the spreadsheet convention), removed on reading.
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
_TEXT_COLUMNS = ("student", "note")


def for_csv(row: dict[str, str]) -> dict[str, str]:
    return {k: "'" + v if k in _TEXT_COLUMNS and v.startswith(_FORMULA_START) else v for k, v in row.items()}


def from_csv(row: dict[str, str]) -> dict[str, str]:
    return {
        k: v[1:] if k in _TEXT_COLUMNS and v.startswith("'") and v[1:].startswith(_FORMULA_START) else v
        for k, v in row.items()
    }


class Gradebook:
    """The grades of a class. ``df()`` as a pandas DataFrame, ``to_csv(path)``; displays as a table.

    ``grades`` holds the Grade of every student graded in this run (by name); ``rows`` every row, including
    those a resumed run read back from its CSV file.
    """

    def __init__(self, suite: TestSuite, rows: Iterable[dict[str, str]] = (), grades: Iterable[Grade] = ()) -> None:
        self.suite = suite
        self.columns = columns_of(suite)
        self._rows: dict[str, dict[str, str]] = {r["student"]: dict(r) for r in rows}
        self.grades: dict[str, Grade] = {}
        for g in grades:
            self.add(g)

    def add(self, grade: Grade) -> dict[str, str]:
        row = row_of(grade)
        self._rows[row["student"]] = row
        self.grades[row["student"]] = grade
        return row

    @property
    def rows(self) -> list[dict[str, str]]:
        """Every row, sorted by student."""
        return [self._rows[name] for name in sorted(self._rows)]

    def __len__(self) -> int:
        return len(self._rows)

    def __getitem__(self, student: str) -> Grade:
        return self.grades[student]

    def scores(self) -> dict[str, float]:
        return {r["student"]: float(r["score"] or 0) for r in self.rows}

    def summary(self) -> str:
        """``6 students · mean 2.3/3 · 2 with full marks · 1 could not be run``."""
        scores = list(self.scores().values())
        if not scores:
            return "no submissions graded"
        full = float(self.suite.max_score)
        mean = sum(scores) / len(scores)
        parts = [
            f"{len(scores)} student{'' if len(scores) == 1 else 's'}",
            f"mean {format_points(round(mean, 2))}/{format_points(self.suite.max_score)}",
            f"{sum(s >= full for s in scores)} with full marks",
        ]
        broken = sum(1 for r in self.rows if r["note"] and all(r.get(t.name or "", "") == "" for t in self.suite.tests))
        if broken:
            parts.append(f"{broken} could not be run")
        return " · ".join(parts)

    def df(self) -> pandas.DataFrame:
        """One row per student: student, score, max_score, one column of points per test, note (needs pandas)."""
        try:
            import pandas as pd
        except ImportError as exc:  # pragma: no cover - depends on the environment
            from .._errors import ConfigurationError

            raise ConfigurationError("Gradebook.df() needs pandas: pip install pandas") from exc
        frame = pd.DataFrame([_typed(r) for r in self.rows], columns=self.columns)
        return frame.set_index("student")

    def to_csv(self, path: str | os.PathLike[str]) -> None:
        """Write every row to ``path`` (replacing it)."""
        with open(path, "w", newline="", encoding="utf-8") as f:
            writer = csv.DictWriter(f, fieldnames=self.columns)
            writer.writeheader()
            writer.writerows(for_csv(r) for r in self.rows)

    def __str__(self) -> str:
        from .render import gradebook_text

        return gradebook_text(self)

    def __repr__(self) -> str:
        return f"<Gradebook {self.suite.name or ''} {self.summary()}>".replace("  ", " ")

    def _repr_pretty_(self, p: Any, cycle: bool) -> None:
        p.text(repr(self) if cycle else str(self))

    def _repr_html_(self) -> str:
        from .render import gradebook_html

        return gradebook_html(self)


def _typed(row: dict[str, str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in row.items():
        if key in ("student", "note") or value == "":
            out[key] = value if key in ("student", "note") else None
        else:
            number = float(value)
            out[key] = int(number) if number.is_integer() and "." not in value else number
    return out


class CsvLog:
    """The gradebook file, appended to and flushed to disk after every student.

    With ``resume``, the rows already in the file are kept (a last row cut short by a crash is dropped) and
    :attr:`done` names the students not to grade again; without it, the file is started afresh.
    """

    def __init__(self, path: str | os.PathLike[str], columns: Sequence[str], *, resume: bool) -> None:
        self.path = Path(path)
        self.columns = list(columns)
        self.rows: list[dict[str, str]] = []
        if resume and self.path.exists():
            self.rows = self._read_complete_rows()
        # the kept rows go to a new file that then replaces the old one: a crash now still leaves every row
        tmp = self.path.with_name(self.path.name + ".tmp")
        try:
            with open(tmp, "w", newline="", encoding="utf-8") as f:
                start = csv.DictWriter(f, fieldnames=self.columns)
                start.writeheader()
                start.writerows(for_csv(r) for r in self.rows)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.path)
            self._file = open(self.path, "a", newline="", encoding="utf-8")  # noqa: SIM115 - lives as long as the log
        except OSError as exc:
            raise InvalidTestSuite(f"cannot write the gradebook {str(self.path)!r}: {exc.strerror or exc}.") from None
        self._writer = csv.DictWriter(self._file, fieldnames=self.columns)

    @property
    def done(self) -> set[str]:
        return {r["student"] for r in self.rows}

    def _read_complete_rows(self) -> list[dict[str, str]]:
        try:
            text = self.path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise InvalidTestSuite(f"cannot read the gradebook {str(self.path)!r} to resume: {exc}.") from None
        if not text.strip():
            return []
        if not text.endswith("\n"):  # the last row was being written when the run stopped
            text = text[: text.rfind("\n") + 1]
        reader = csv.reader(io.StringIO(text))
        header = next(reader, [])
        if header != self.columns:
            raise InvalidTestSuite(
                f"{str(self.path)!r} was written for other tests (columns {', '.join(header)}); to resume, use the "
                "same test file, or write to a new --out file."
            )
        return [from_csv(dict(zip(self.columns, row, strict=True))) for row in reader if len(row) == len(self.columns)]

    def write(self, row: dict[str, str]) -> None:
        self._writer.writerow(for_csv(row))
        self.rows.append(row)
        self._sync()

    def _sync(self) -> None:
        self._file.flush()
        os.fsync(self._file.fileno())

    def close(self) -> None:
        self._file.close()
