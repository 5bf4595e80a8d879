"""One renderer for Result: plain text (terminals, nbconvert) and escaped HTML (notebooks). Minimal version."""

from __future__ import annotations

from html import escape
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ._results import Result


def status_line(result: Result) -> str:
    parts = [result.verdict.value]
    if result.exit_code is not None:
        parts.append(f"exit {result.exit_code}")
    parts.append(f"{result.engine} {result.language} {result.version}".strip())
    return " · ".join(parts)


def render_text(result: Result) -> str:
    lines = []
    if result.compile is not None and result.compile.stderr and result.run is None:
        lines.append(result.compile.stderr.rstrip("\n"))
    if result.stdout:
        lines.append(result.stdout.rstrip("\n"))
    if result.run is not None and result.run.stderr:
        lines.append(result.run.stderr.rstrip("\n"))
    if result.table is not None:
        lines.append(" | ".join(result.table.columns))
        lines.extend(" | ".join(str(v) for v in row) for row in result.table.rows[:20])
    if result.error:
        lines.append(result.error)
    lines.append(f"[{status_line(result)}]")
    return "\n".join(lines)


def render_html(result: Result) -> str:
    return f"<pre>{escape(render_text(result))}</pre>"
