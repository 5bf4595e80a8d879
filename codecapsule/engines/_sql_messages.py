"""What the SQL tier tells a student: DuckDB's messages without catalog noise, and what a cell did (pure)."""

from __future__ import annotations

import re
from collections.abc import Collection, Sequence

# DuckDB suggests its system catalogs for any unknown name ("Did you mean "pg_depend"?"): no help to a student.
_SYSTEM_SUGGESTION = re.compile(
    r'^Did you mean "(?:pg_catalog\.|information_schema\.|main\.)?'
    r'(?:pg_|duckdb_|sqlite_|information_schema)[^"]*"\?\n?',
    re.MULTILINE,
)
# DuckDB's out-of-memory advice names settings the sandbox has locked (threads, memory_limit): not for students.
_TUNING_ADVICE = re.compile(r"\n*Possible solutions:\n(?:\*[^\n]*\n?)*(?:\nSee also [^\n)]*)?")
_MISSING_TABLE = re.compile(r"Table with name (?P<name>\w+) does not exist")


def clean_error(message: str) -> str:
    """DuckDB's message without suggestions of system catalog tables or of settings the sandbox locked."""
    return _TUNING_ADVICE.sub("", _SYSTEM_SUGGESTION.sub("", message))


def missing_table(message: str) -> str | None:
    """The table name of a "Table with name X does not exist" error, else None."""
    match = _MISSING_TABLE.search(message)
    return match["name"] if match else None


def register_hint(message: str, variables: Collection[str]) -> str | None:
    """The hint for a query on a notebook variable that is not registered, or None."""
    name = missing_table(message)
    if name is None or name not in variables:
        return None
    return (
        f"{name} is a notebook variable, not a table: the SQL sandbox does not read notebook variables by itself. "
        f"Add --register {name} to the cell (or --register table_name={name})."
    )


def tables_text(done: Sequence[str]) -> str:
    """What a cell's statements did: ``created table students; inserted 9 rows``."""
    return "; ".join(done)
