"""SQL result equivalence (pure): does the student's result hold the same rows as the reference's?

Rows are compared as a multiset unless the order matters (``order="exact"``); column names count only with
``columns="exact"`` (the number of columns always does); numbers are compared as numbers (``3`` equals
``3.0`` and ``Decimal('3')``), floats within a tolerance relative to the reference value (absolute below 1).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from decimal import Decimal
from typing import Any

from .._results import Table

DEFAULT_TOLERANCE = 1e-9
_SHOWN_ROWS = 5

Row = tuple[Any, ...]


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float | Decimal) and not isinstance(value, bool)


def _same_value(want: Any, got: Any, tolerance: float) -> bool:
    if _is_number(want) and _is_number(got):
        a, b = float(want), float(got)
        if math.isnan(a) or math.isnan(b):
            return math.isnan(a) and math.isnan(b)
        return abs(a - b) <= tolerance * max(1.0, abs(a))
    return bool(want == got)


def _same_row(want: Row, got: Row, tolerance: float) -> bool:
    return len(want) == len(got) and all(_same_value(w, g, tolerance) for w, g in zip(want, got, strict=True))


def _sort_key(row: Row) -> tuple[tuple[int, Any], ...]:
    """An order on rows of mixed types: NULL first, then numbers (as floats), then everything else as text."""
    key: list[tuple[int, Any]] = []
    for value in row:
        if value is None:
            key.append((0, 0))
        elif _is_number(value):
            number = float(value)
            key.append((1, -math.inf if math.isnan(number) else number))
        else:
            key.append((2, str(value)))
    return tuple(key)


def _show(rows: Sequence[Row]) -> str:
    shown = [" | ".join("NULL" if v is None else str(v) for v in row) for row in rows[:_SHOWN_ROWS]]
    more = f"\n  … and {len(rows) - _SHOWN_ROWS} more" if len(rows) > _SHOWN_ROWS else ""
    return "\n".join(f"  {line}" for line in shown) + more


def _unmatched(want: list[Row], got: list[Row], tolerance: float) -> tuple[list[Row], list[Row]]:
    """Rows of ``want`` with no partner in ``got`` and the reverse: a merge of the two sorted lists (rows within
    the tolerance of each other sort next to each other)."""
    want, got = sorted(want, key=_sort_key), sorted(got, key=_sort_key)
    missing: list[Row] = []
    extra: list[Row] = []
    i = j = 0
    while i < len(want) and j < len(got):
        if _same_row(want[i], got[j], tolerance):
            i, j = i + 1, j + 1
        elif _sort_key(want[i]) < _sort_key(got[j]):
            missing.append(want[i])
            i += 1
        else:
            extra.append(got[j])
            j += 1
    return missing + want[i:], extra + got[j:]


def compare_tables(
    actual: Table,
    expected: Table,
    *,
    order: str = "any",
    columns: str = "any",
    tolerance: float | None = None,
) -> str | None:
    """None when ``actual`` is equivalent to ``expected``; otherwise a plain explanation of the difference."""
    tol = DEFAULT_TOLERANCE if tolerance is None else tolerance
    if len(actual.columns) != len(expected.columns):
        return (
            f"your query returns {len(actual.columns)} column(s) ({', '.join(actual.columns)}); the expected result "
            f"has {len(expected.columns)} ({', '.join(expected.columns)})."
        )
    if columns == "exact" and tuple(actual.columns) != tuple(expected.columns):
        return (
            f"the columns must be named {', '.join(expected.columns)} (in this order); yours are "
            f"{', '.join(actual.columns)}."
        )
    want, got = list(expected.rows), list(actual.rows)
    count = "" if len(want) == len(got) else f"your query returns {len(got)} row(s), the expected result {len(want)}. "
    if order == "exact":
        for i, (w, g) in enumerate(zip(want, got, strict=False)):
            if not _same_row(w, g, tol):
                return (
                    f"{count}row {i + 1} differs (the order matters):\n"
                    f"  expected: {_show([w]).strip()}\n  yours:    {_show([g]).strip()}"
                )
        if count:
            longer = want[len(got) :] or got[len(want) :]
            which = "missing rows" if len(want) > len(got) else "extra rows"
            return f"{count}{which}:\n{_show(longer)}"
        return None
    missing, extra = _unmatched(want, got, tol)
    if not missing and not extra:
        return None
    parts = [count.strip()] if count else []
    if missing:
        parts.append(f"{len(missing)} expected row(s) missing from yours:\n{_show(missing)}")
    if extra:
        parts.append(f"{len(extra)} row(s) in yours that are not expected:\n{_show(extra)}")
    return "\n".join(parts)
