"""The test-file format as a JSON Schema (the documented contract), and the one validator every input goes through.

Both a YAML test file and a ``TestCase(...)`` built in Python are checked here, so a rule lives in one place;
a violation becomes :class:`~codecapsule.errors.InvalidTestSuite` naming where it is (``tests[2].points``).
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import cache
from typing import Any

from .._errors import InvalidTestSuite

_TEXT = {"type": "string"}
_OPTIONAL_TEXT = {"type": ["string", "null"]}

TEST_SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "name": {"type": ["string", "null"], "minLength": 1, "maxLength": 80},
        "stdin": _TEXT,
        "expect": _OPTIONAL_TEXT,
        "args": {"type": "array", "items": _TEXT},
        "hidden": {"type": "boolean"},
        "points": {"type": "number", "minimum": 0},
        "compare": _OPTIONAL_TEXT,
        # SQL problems
        "query": _OPTIONAL_TEXT,
        "order": {"enum": ["any", "exact"]},
        "columns": {"enum": ["any", "exact"]},
        "tolerance": {"type": ["number", "null"], "minimum": 0},
        "database": _OPTIONAL_TEXT,
    },
}

SUITE_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "title": "CodeCapsule grading test file",
    "type": "object",
    "additionalProperties": False,
    "required": ["tests"],
    "properties": {
        "name": _TEXT,
        "language": _TEXT,
        "limits": {
            "type": "object",
            "additionalProperties": {"type": ["string", "number"]},
        },
        "compare": _TEXT,
        "database": _TEXT,
        "stop_on_first_failure": {"type": "boolean"},
        "tests": {"type": "array", "minItems": 1, "items": TEST_SCHEMA},
    },
}


@cache
def _validator(which: str) -> Any:
    import jsonschema  # here: only grading needs it

    schema = SUITE_SCHEMA if which == "suite" else TEST_SCHEMA
    return jsonschema.Draft202012Validator(schema)


def _place(path: Any) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "the file"


def _message(error: Any) -> str:
    place = _place(error.absolute_path)
    value = error.instance
    if error.validator == "type" and "string" in error.validator_value and isinstance(value, int | float):
        return (
            f"{place}: {value!r} is a number in YAML; write it as text in quotes, e.g. "
            f'{error.absolute_path[-1]}: "{value}"'
        )
    if error.validator == "additionalProperties":
        allowed = sorted(error.schema.get("properties", {}))
        return f"{place}: {error.message}; the keys allowed here are {', '.join(allowed)}"
    return f"{place}: {error.message}"


def check(instance: Mapping[str, Any], which: str, *, source: str) -> None:
    """Raise InvalidTestSuite listing every violation of the ``suite`` or ``test`` schema in ``instance``."""
    errors = sorted(_validator(which).iter_errors(instance), key=lambda e: list(map(str, e.absolute_path)))
    if errors:
        shown = [_message(e) for e in errors[:5]]
        more = f" (and {len(errors) - 5} more)" if len(errors) > 5 else ""
        raise InvalidTestSuite(f"{source} is not a valid test file: " + "; ".join(shown) + more + ".")
