"""What a ``%%capsule sql`` cell adds to plain SQL: notebook parameters, saved queries as CTEs, hints.

Pure text work plus one entry point, :func:`run_cell`, that the magic calls. No IPython import: the magic turns
``InvalidRequest`` into a one-line ``UsageError``.

Parameters: ``$name`` (DuckDB's own syntax) or ``:name`` in a query is bound from the notebook's variable
``name`` as a prepared-statement value — the value never becomes SQL text. ``:name`` counts as a parameter only
where a value can start (after whitespace, ``(``, ``,``, an operator); ``x::INT`` casts, ``list[1:n]`` slices and
``{'a':1}`` struct literals are left alone. Quoted strings, quoted identifiers, dollar-quoted strings and comments
are never scanned.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from ._errors import InvalidRequest
from .engines._sql_messages import register_hint

if TYPE_CHECKING:
    from ._client import Client
    from ._jobs import Job
    from ._results import Result

# One alternation, scanned left to right: the things to skip come first, then the two placeholder forms.
_TOKENS = re.compile(
    r"""
      (?P<skip>
          '(?:[^']|'')*'?                        # 'string' ('' escapes a quote)
        | "(?:[^"]|"")*"?                        # "identifier"
        | --[^\n]*                               # -- comment
        | /\*.*?(?:\*/|\Z)                       # /* comment */
        | (?P<tag>\$[A-Za-z_]?\w*\$).*?(?:(?P=tag)|\Z)   # $tag$ dollar-quoted string $tag$
        | ::                                     # a cast, not a parameter
        | \w+:                                   # 'a' in a[1:b], the 1 in list[1:n]: a slice bound
      )
    | (?P<dollar>\$(?P<dname>[A-Za-z_]\w*))
    | (?P<colon>:(?P<cname>[A-Za-z_]\w*))
    """,
    re.VERBOSE | re.DOTALL,
)
_VALUE_START = set(" \t\r\n(,=<>!+-*/%|[")  # where a :name can be a value (after these, or at the start)
_IDENTIFIER = re.compile(r"^[A-Za-z_]\w*$")
_WITH = re.compile(r"^\s*WITH(?P<recursive>\s+RECURSIVE)?\s+", re.IGNORECASE)


def placeholders(sql: str) -> tuple[str, tuple[str, ...]]:
    """The query with ``:name`` written as DuckDB's ``$name``, and the parameter names in order of appearance."""
    names: list[str] = []
    out: list[str] = []
    last = 0
    for match in _TOKENS.finditer(sql):
        if match["skip"] is not None:
            continue
        if match["dollar"] is not None:
            name = match["dname"]
        else:
            before = sql[match.start() - 1] if match.start() else " "
            if before not in _VALUE_START:
                continue
            name = match["cname"]
            out.append(sql[last : match.start()])
            out.append("$" + name)
            last = match.end()
        if name not in names:
            names.append(name)
    out.append(sql[last:])
    return "".join(out), tuple(names)


def bind(sql: str, namespace: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
    """The query for DuckDB and its parameter values taken from ``namespace``; a missing name is an error."""
    query, names = placeholders(sql)
    missing = [n for n in names if n not in namespace]
    if missing:
        first = missing[0]
        raise InvalidRequest(
            f"SQL parameter {first}: there is no variable {first!r} in the notebook; define it in a cell above "
            f"(the query uses ${first} or :{first})."
        )
    return query, {n: namespace[n] for n in names}


def cte_name(saved_name: str) -> str:
    """The table name a saved query is known by in ``--with``: ``top_students.sql`` → ``top_students``."""
    base = saved_name.rsplit("/", 1)[-1]
    return base[:-4] if base.lower().endswith(".sql") else base


def compose(sql: str, saved: Sequence[tuple[str, str]]) -> str:
    """``sql`` with each saved query ``(name, query)`` in front of it as a CTE (``WITH name AS (query)``)."""
    if not saved:
        return sql
    parts = []
    for name, query in saved:
        table = cte_name(name)
        if not _IDENTIFIER.match(table):
            raise InvalidRequest(
                f"--with {name}: a saved query is used as a table, so its name must be a SQL name (letters, digits, "
                "'_'), e.g. --save top_students."
            )
        body = query.strip().rstrip(";").strip()
        parts.append(f"{table} AS (\n{body}\n)")
    ctes = ",\n".join(parts)
    existing = _WITH.match(sql)
    if existing is None:
        return f"WITH {ctes}\n{sql}"
    recursive = " RECURSIVE" if existing["recursive"] else ""
    return f"WITH{recursive} {ctes},\n{sql[existing.end():]}"


def with_hint(result: Result, variables: Mapping[str, Any]) -> Result:
    """A query on a notebook variable that is not registered: DuckDB's error plus the ``--register`` hint."""
    if result.error is None:
        return result
    hint = register_hint(result.error, variables.keys())
    if hint is None:
        return result
    message = f"{result.error.rstrip()}\n{hint}"
    run = replace(result.run, stderr=message, output=message) if result.run is not None else None
    return replace(result, error=message, run=run)


def run_cell(client: Client, job: Job, namespace: Mapping[str, Any], engine: str) -> Result:
    """Run a SQL cell: parameters bound from the notebook, the ``--register`` hint on an unknown table."""
    client._wants_piston(job, engine)  # type: ignore[arg-type]  # refuses engine="piston" for SQL
    query, params = bind(job.source, namespace)
    if query != job.source:
        main = replace(job.files[0], content=query)
        job = replace(job, files=(main, *job.files[1:]))
    return with_hint(client.sql.run(job, params=params or None), namespace)
