"""SQL result equivalence on Tables (pure)."""

from __future__ import annotations

from decimal import Decimal

from codecapsule import Table
from codecapsule.grading.equivalence import compare_tables


def table(columns: tuple[str, ...], *rows: tuple[object, ...]) -> Table:
    return Table(columns, ("",) * len(columns), rows, total_rows=len(rows))


REF = table(("name", "total"), ("ada", 3), ("bob", 2), ("cy", None))


def test_rows_are_a_multiset_by_default_and_names_do_not_count() -> None:
    mine = table(("n", "t"), ("cy", None), ("ada", 3.0), ("bob", Decimal("2")))
    assert compare_tables(mine, REF) is None


def test_a_missing_or_extra_row_is_named() -> None:
    mine = table(("name", "total"), ("ada", 3), ("bob", 2), ("bob", 2))
    diff = compare_tables(mine, REF)
    assert diff is not None
    assert "missing" in diff and "cy | NULL" in diff and "not expected" in diff and "bob | 2" in diff


def test_duplicates_count() -> None:
    ref = table(("x",), (1,), (1,))
    assert compare_tables(table(("x",), (1,)), ref) is not None


def test_order_exact() -> None:
    mine = table(("name", "total"), ("bob", 2), ("ada", 3), ("cy", None))
    diff = compare_tables(mine, REF, order="exact")
    assert diff is not None and "row 1 differs" in diff
    assert compare_tables(REF, REF, order="exact") is None


def test_columns_exact_and_column_count() -> None:
    mine = table(("n", "t"), ("ada", 3), ("bob", 2), ("cy", None))
    diff = compare_tables(mine, REF, columns="exact")
    assert diff is not None and "name, total" in diff
    assert "column" in (compare_tables(table(("name",), ("ada",)), REF) or "")


def test_float_tolerance() -> None:
    ref = table(("avg",), (1 / 3,), (2.5,))
    close = table(("avg",), (2.5000000001,), (0.3333333333,))
    assert compare_tables(close, ref) is None
    assert compare_tables(table(("avg",), (0.33,), (2.5,)), ref) is not None
    assert compare_tables(table(("avg",), (0.33,), (2.5,)), ref, tolerance=0.01) is None
