"""The wrong-answer view: "expected" and "your output" side by side, line by line, differing characters marked.

Lines are compared the way the verdict compares them (:func:`codecapsule._verdicts.normalise_output`: trailing
spaces and trailing empty lines do not count). Lines are aligned with :mod:`difflib`, so one missing line does not
make every later line look wrong; within a pair of differing lines the characters that differ are marked. Pure,
no I/O; HTML escaping is the caller's (:mod:`codecapsule._render`).
"""

from __future__ import annotations

import difflib
from typing import NamedTuple

__all__ = ["Row", "Segment", "align", "diff_text"]

_CONTEXT = 2  # matching lines shown around a difference; longer matching runs are summarised


class Segment(NamedTuple):
    text: str
    changed: bool = False


class Row(NamedTuple):
    """One line of the view. ``expected``/``actual`` are None where that side has no line; ``number`` is the line
    of the expected output (else of the program's output); ``skipped`` > 0 stands for that many matching lines."""

    number: int
    expected: tuple[Segment, ...] | None
    actual: tuple[Segment, ...] | None
    same: bool
    skipped: int = 0


def _segments(want: str, got: str) -> tuple[tuple[Segment, ...], tuple[Segment, ...]]:
    matcher = difflib.SequenceMatcher(None, want, got, autojunk=False)
    left: list[Segment] = []
    right: list[Segment] = []
    for op, a0, a1, b0, b1 in matcher.get_opcodes():
        if a1 > a0:
            left.append(Segment(want[a0:a1], op != "equal"))
        if b1 > b0:
            right.append(Segment(got[b0:b1], op != "equal"))
    return tuple(left), tuple(right)


def _rows(want: list[str], got: list[str]) -> list[Row]:
    rows: list[Row] = []
    for op, a0, a1, b0, b1 in difflib.SequenceMatcher(None, want, got, autojunk=False).get_opcodes():
        if op == "equal":
            rows.extend(
                Row(a0 + k + 1, (Segment(want[a0 + k]),), (Segment(got[b0 + k]),), True) for k in range(a1 - a0)
            )
            continue
        for k in range(max(a1 - a0, b1 - b0)):
            left = want[a0 + k] if a0 + k < a1 else None
            right = got[b0 + k] if b0 + k < b1 else None
            number = a0 + k + 1 if left is not None else b0 + k + 1
            if left is not None and right is not None:
                rows.append(Row(number, *_segments(left, right), same=False))
            else:
                rows.append(
                    Row(
                        number,
                        None if left is None else (Segment(left, True),),
                        None if right is None else (Segment(right, True),),
                        False,
                    )
                )
    return rows


def _summarise(rows: list[Row]) -> list[Row]:
    """Long runs of matching lines far from any difference become one "N matching lines" row."""
    near = {i for i, row in enumerate(rows) if not row.same}
    keep = {j for i in near for j in range(i - _CONTEXT, i + _CONTEXT + 1)}
    out: list[Row] = []
    skipped = 0
    for i, row in enumerate(rows):
        if row.same and i not in keep:
            skipped += 1
            continue
        if skipped:
            out.append(Row(row.number, None, None, True, skipped))
            skipped = 0
        out.append(row)
    if skipped:
        out.append(Row(rows[-1].number, None, None, True, skipped))
    return out


def align(expected_lines: list[str], actual_lines: list[str]) -> list[Row]:
    """The rows of the view (matching runs far from a difference summarised)."""
    return _summarise(_rows(expected_lines, actual_lines))


def _joined(segments: tuple[Segment, ...] | None) -> str:
    return "".join(s.text for s in segments or ())


def _carets(segments: tuple[Segment, ...]) -> str:
    return "".join(("^" if s.changed else " ") * len(s.text) for s in segments).rstrip()


def diff_text(rows: list[Row], max_rows: int) -> str:
    """The readable text form: each differing line as "expected" over "your output", carets under the change."""
    out: list[str] = []
    differing = [row for row in rows if not row.same]
    for row in differing[:max_rows]:
        if row.expected is None:
            out.append(f"line {row.number}: your output has an extra line: {_joined(row.actual)!r}")
        elif row.actual is None:
            out.append(f"line {row.number}: expected {_joined(row.expected)!r}, your output has no such line")
        else:
            want, got = _joined(row.expected), _joined(row.actual)
            if want.strip() == got.strip() or not (want.isprintable() and got.isprintable()):
                want, got = repr(want), repr(got)  # spacing or invisible characters: show them
                out.append(f"line {row.number}:\n  expected:    {want}\n  your output: {got}")
                continue
            out.append(f"line {row.number}:\n  expected:    {want}\n  your output: {got}")
            marks = _carets(row.actual) or _carets(row.expected)
            if marks:
                out.append(" " * 15 + marks)
    if len(differing) > max_rows:
        more = len(differing) - max_rows
        out.append(f"… {more:,} more differing line{'s' if more != 1 else ''}")
    return "\n".join(out)
