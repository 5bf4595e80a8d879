"""``load_tests(path)``: a YAML test file → :class:`TestSuite` (PyYAML's safe loader, then the schema)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from .._errors import InvalidLimit, InvalidTestSuite
from .._jobs import Limits
from .schema import check
from .suite import TestCase, TestSuite


def limits_from(raw: dict[str, Any], *, source: str) -> Limits:
    """``{timeout: 2s, memory: 128MB, ...}``: ``timeout`` is the run time limit (as ``execute(timeout=)``), the
    other keys are :class:`Limits` fields."""
    values = dict(raw)
    timeout = values.pop("timeout", None)
    try:
        return Limits.coerce(values).with_timeout(timeout)
    except InvalidLimit as exc:
        raise InvalidTestSuite(f"{source}: limits: {exc}") from None


def suite_from_dict(data: Any, *, source: str, base: Path | None = None) -> TestSuite:
    """A TestSuite from the parsed file; relative database paths are taken from ``base`` (the file's folder)."""
    if not isinstance(data, dict):
        raise InvalidTestSuite(
            f"{source} is not a valid test file: it must be a mapping with a `tests:` list (see docs/teachers.md)."
        )
    check(data, "suite", source=source)

    def where(path: str | None) -> str | None:
        if path is None or base is None or os.path.isabs(path):
            return path
        return str(base / path)

    tests = []
    for index, raw in enumerate(data["tests"]):
        item = dict(raw)
        if "args" in item:
            item["args"] = tuple(item["args"])
        if "database" in item:
            item["database"] = where(item["database"])
        try:
            tests.append(TestCase(**item))
        except InvalidTestSuite as exc:
            raise InvalidTestSuite(f"{source}: tests[{index}]: {exc}") from None
    return TestSuite(
        tuple(tests),
        name=data.get("name"),
        language=data.get("language"),
        limits=limits_from(data.get("limits") or {}, source=source),
        compare=data.get("compare", "trim"),
        database=where(data.get("database")),
        stop_on_first_failure=bool(data.get("stop_on_first_failure", False)),
        path=source,
    )


def load_tests(path: str | os.PathLike[str]) -> TestSuite:
    """Read a YAML test file (format: docs/teachers.md) into a :class:`TestSuite`.

    Any problem is an :class:`~codecapsule.errors.InvalidTestSuite` naming the file and the place in it.
    """
    import yaml

    file = Path(path)
    try:
        text = file.read_text(encoding="utf-8")
    except OSError as exc:
        raise InvalidTestSuite(f"cannot read the test file {str(file)!r}: {exc.strerror or exc}.") from None
    except UnicodeDecodeError:
        raise InvalidTestSuite(f"the test file {str(file)!r} is not UTF-8 text.") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise InvalidTestSuite(f"{str(file)!r} is not valid YAML{at}: {problem}.") from None
    return suite_from_dict(data, source=str(file), base=file.parent)
