"""Long program output made readable: runs of repeated lines collapsed, then the rest folded (pure, no I/O).

A ``StackOverflowError`` prints a thousand identical ``at Main.f(Main.java:3)`` frames; a loop prints the same line
two hundred times; mutual recursion repeats a block of two or three frames. Each run keeps its first lines and one
marker line says how many were left out ("… 196 more identical lines"): the count is exact, so nothing a student
needs is lost (the full text stays in ``Result.stdout`` / ``.stderr``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

__all__ = ["Line", "collapse_repeats", "fold"]

_MAX_PERIOD = 4  # a repeating block of up to this many lines (recursion through a few functions)
_KEEP_LINES = 4  # of a run of one repeated line, this many are shown
_KEEP_BLOCKS = 2  # of a run of a repeated block, this many copies are shown
_MIN_HIDDEN = 4  # collapse only when at least this many lines disappear


class Line(NamedTuple):
    """One shown line: the program's text, or (``hidden`` > 0) a marker standing for ``hidden`` lines."""

    text: str
    hidden: int = 0


def _repeat_count(lines: Sequence[str], start: int, period: int) -> int:
    """How many times ``lines[start:start+period]`` repeats back to back from ``start``."""
    count = 1
    while lines[start + count * period : start + (count + 1) * period] == lines[start : start + period]:
        count += 1
    return count


def _run_at(lines: Sequence[str], start: int) -> tuple[int, int] | None:
    """(period, count) of the shortest block repeating from ``start`` long enough to collapse, or None."""
    for period in range(1, _MAX_PERIOD + 1):
        if start + 2 * period > len(lines):
            return None
        if lines[start] != lines[start + period]:  # the common case, without building slices
            continue
        count = _repeat_count(lines, start, period)
        keep = _KEEP_LINES if period == 1 else _KEEP_BLOCKS * period
        if count > 1 and count * period - keep >= _MIN_HIDDEN:
            return period, count
    return None


def collapse_repeats(lines: Sequence[str]) -> list[Line]:
    """The lines with every long run of a repeated line (or block of up to four lines) collapsed to a marker."""
    out: list[Line] = []
    i = 0
    while i < len(lines):
        run = _run_at(lines, i)
        if run is None:
            out.append(Line(lines[i]))
            i += 1
            continue
        period, count = run
        keep = _KEEP_LINES if period == 1 else _KEEP_BLOCKS * period
        hidden = count * period - keep
        out.extend(Line(text) for text in lines[i : i + keep])
        what = "identical lines" if period == 1 else f"lines repeating the {period} above"
        out.append(Line(f"… {hidden:,} more {what}", hidden))
        i += count * period
    return out


def fold(text: str, max_lines: int) -> tuple[list[Line], list[Line]]:
    """(the lines shown, the lines behind "show all"): repeats collapsed, then cut after ``max_lines`` lines."""
    lines = collapse_repeats(text.rstrip("\n").split("\n"))
    return lines[:max_lines], lines[max_lines:]
