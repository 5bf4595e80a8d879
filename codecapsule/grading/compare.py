"""How a program's output is compared with the expected output: ``exact``, ``trim``, ``tokens``, ``float:TOL``.

Pure functions, no I/O. Each mode is a normaliser (text → comparable items) and an equality on items; a
mismatch is reported as a unified diff of lines (expected → actual), the same diff ``expect=`` gives.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Callable
from dataclasses import dataclass

from .._errors import InvalidTestSuite
from .._verdicts import normalise_output

MODES = ("exact", "trim", "tokens", "float:TOL")
_DIFF_CONTEXT = 2


def _exact_lines(text: str) -> list[str]:
    return text.split("\n")


def _tokens(text: str) -> list[str]:
    return text.split()


def within(tolerance: float) -> Callable[[str, str], bool]:
    """Tokens equal as text, or both numbers within ``tolerance`` (absolute, or relative to the expected value)."""

    def equal(expected: str, actual: str) -> bool:
        if expected == actual:
            return True
        try:
            want, got = float(expected), float(actual)
        except ValueError:
            return False
        if math.isnan(want) or math.isnan(got):
            return math.isnan(want) and math.isnan(got)
        return abs(want - got) <= tolerance * max(1.0, abs(want))

    return equal


def _same(expected: str, actual: str) -> bool:
    return expected == actual


@dataclass(frozen=True)
class Comparison:
    """One comparison mode. ``Comparison.parse("float:1e-6")``; :meth:`diff` is None when the outputs match."""

    mode: str  # exact | trim | tokens | float
    tolerance: float = 0.0

    @classmethod
    def parse(cls, text: str | None) -> Comparison:
        """``exact``, ``trim`` (the default), ``tokens`` or ``float:TOL`` (``float`` alone is ``float:1e-6``)."""
        if text is None:
            return cls("trim")
        if not isinstance(text, str):
            raise InvalidTestSuite(f"compare must be one of {', '.join(MODES)}, not {text!r}.")
        mode, _, tol = text.strip().partition(":")
        if mode in ("exact", "trim", "tokens") and not tol:
            return cls(mode)
        if mode == "float":
            try:
                tolerance = float(tol) if tol else 1e-6
            except ValueError:
                tolerance = -1.0
            if not tolerance >= 0 or math.isinf(tolerance):
                raise InvalidTestSuite(f"compare {text!r}: the tolerance after 'float:' must be a number such as 1e-6.")
            return cls("float", tolerance)
        raise InvalidTestSuite(f"compare must be one of {', '.join(MODES)}, not {text!r}.")

    def __str__(self) -> str:
        return f"float:{self.tolerance:g}" if self.mode == "float" else self.mode

    def _items(self, text: str) -> list[str]:
        text = text.replace("\r\n", "\n")
        if self.mode == "exact":
            return _exact_lines(text)
        if self.mode == "trim":
            return normalise_output(text)
        return _tokens(text)

    def matches(self, actual: str, expected: str) -> bool:
        want, got = self._items(expected), self._items(actual)
        if len(want) != len(got):
            return False
        equal = within(self.tolerance) if self.mode == "float" else _same
        return all(equal(w, g) for w, g in zip(want, got, strict=True))

    def diff(self, actual: str, expected: str) -> str | None:
        """None when ``actual`` matches ``expected`` in this mode, else a unified diff of their lines."""
        if self.matches(actual, expected):
            return None
        if self.mode == "exact":
            want, got = _exact_lines(expected.replace("\r\n", "\n")), _exact_lines(actual.replace("\r\n", "\n"))
            # make invisible differences visible: trailing spaces and a missing final newline
            want, got = [repr(line)[1:-1] + "⏎" for line in want], [repr(line)[1:-1] + "⏎" for line in got]
        else:
            want, got = normalise_output(expected), normalise_output(actual)
        lines = difflib.unified_diff(want, got, "expected", "actual", lineterm="", n=_DIFF_CONTEXT)
        text = "\n".join(lines)
        if not text:  # defensive: the modes above never mismatch on equal trimmed lines
            text = f"--- expected\n+++ actual\n(the outputs differ only in white space; compare mode: {self})"
        return text
