"""Readable sizes and durations: ``"256MB"`` → bytes, ``"1.5s"`` / ``"500ms"`` → seconds."""

from __future__ import annotations

import math
import re

from ._errors import InvalidLimit

_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]?i?b?)?\s*$", re.IGNORECASE)
_SIZE_FACTORS = {
    "": 1,
    "b": 1,
    "k": 1000,
    "kb": 1000,
    "kib": 1024,
    "ki": 1024,
    "m": 1000**2,
    "mb": 1000**2,
    "mib": 1024**2,
    "mi": 1024**2,
    "g": 1000**3,
    "gb": 1000**3,
    "gib": 1024**3,
    "gi": 1024**3,
    "t": 1000**4,
    "tb": 1000**4,
    "tib": 1024**4,
    "ti": 1024**4,
}
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|sec|secs|seconds?|m|min|mins|minutes?)?\s*$", re.IGNORECASE)
_DURATION_FACTORS = {
    "ms": 0.001,
    "s": 1.0,
    "sec": 1.0,
    "secs": 1.0,
    "second": 1.0,
    "seconds": 1.0,
    "m": 60.0,
    "min": 60.0,
    "mins": 60.0,
    "minute": 60.0,
    "minutes": 60.0,
    "": 1.0,
}


def parse_size(value: int | float | str, *, name: str = "size") -> int:
    """Bytes from an int or a readable size. ``"256MB"`` and ``"256M"`` are 256·10⁶; ``"256MiB"`` is 256·2²⁰."""
    if isinstance(value, bool):
        raise InvalidLimit(f"{name} must be a size such as 268435456 or '256MB', not {value!r}.")
    if isinstance(value, int | float):
        number, unit = float(value), ""
    elif isinstance(value, str) and (m := _SIZE.match(value)):
        number, unit = float(m.group(1)), (m.group(2) or "").lower()
    else:
        raise InvalidLimit(f"{name} must be a size such as 268435456 or '256MB', not {value!r}.")
    if not math.isfinite(number) or number < 0:
        raise InvalidLimit(f"{name} must be a non-negative size, not {value!r}.")
    return int(number * _SIZE_FACTORS[unit])


def parse_duration(value: int | float | str, *, name: str = "duration") -> float:
    """Seconds from a number or a readable duration (``"1.5s"``, ``"500ms"``, ``"2min"``)."""
    if isinstance(value, bool):
        raise InvalidLimit(f"{name} must be a duration such as 2.5 or '500ms', not {value!r}.")
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str) and (m := _DURATION.match(value)):
        seconds = float(m.group(1)) * _DURATION_FACTORS[(m.group(2) or "").lower()]
    else:
        raise InvalidLimit(f"{name} must be a duration such as 2.5 or '500ms', not {value!r}.")
    if not math.isfinite(seconds) or seconds < 0:
        raise InvalidLimit(f"{name} must be a non-negative duration, not {value!r}.")
    return seconds


def format_size(n: int | None) -> str:
    """``268435456`` → ``"256 MiB"`` (binary units, the way memory is usually reported)."""
    if n is None:
        return "–"
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" or size >= 100 else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} GiB"  # pragma: no cover - loop always returns


def format_duration(seconds: float | None) -> str:
    if seconds is None:
        return "–"
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    return f"{seconds:.2f} s"


_LIMIT_UNITS = (
    (1024**3, "GiB"),
    (1000**3, "GB"),
    (1024**2, "MiB"),
    (1000**2, "MB"),
    (1024, "KiB"),
    (1000, "kB"),
)


def format_limit(n: int | None) -> str:
    """A limit the way it was most likely written: ``64_000_000`` (``"64MB"``) → ``"64 MB"``, ``64 * 2**20``
    (``"64MiB"``) → ``"64 MiB"``. The largest unit the size is a whole number of; else :func:`format_size`."""
    if n is None:
        return "–"
    for factor, unit in _LIMIT_UNITS:
        if n >= factor and n % factor == 0:
            return f"{n // factor:,} {unit}"
    return format_size(n)
