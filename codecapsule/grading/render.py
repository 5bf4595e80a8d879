"""Grades and gradebooks as text and HTML, large enough to read on a projector.

A hidden test shows only whether it passed and its points — never its input, expected output, the program's
output or the verdict's details. A failed visible test shows its input and the program's result as a cell
would (diff, banner, stderr), rendered by the one result renderer.
"""

from __future__ import annotations

from dataclasses import replace
from html import escape
from typing import TYPE_CHECKING, Any

from .._render import _COLOR, _ICON, _TONE_OF, render_html, render_text
from .._results import Result
from .._units import format_duration
from .results import SKIPPED, Grade, TestResult, format_points

if TYPE_CHECKING:
    from .gradebook import Gradebook

_UI = "font-family:var(--jp-ui-font-family, sans-serif)"
_CELL = "padding:4px 12px;border-bottom:1px solid var(--jp-border-color2, rgba(128,128,128,0.3));text-align:left"


def _shown_verdict(r: TestResult) -> tuple[str, str]:
    """(tone, words) for a test's row: hidden tests only say passed / failed."""
    if r.verdict == SKIPPED:
        return "info", "– not run"
    if r.test.hidden:
        return ("ok", "✓ passed") if r.passed else ("error", "✗ failed")
    tone = "ok" if r.passed else _TONE_OF.get(r.verdict, "error")
    return tone, f"{_ICON[tone]} {r.verdict}"


def _time(r: TestResult) -> str:
    if r.result is None or r.test.hidden or r.result.run is None:
        return ""
    return format_duration(r.result.run.wall_time)


def _details(r: TestResult) -> bool:
    """Whether the test gets a details section: failed, visible, and not the shared compile error."""
    return not r.passed and not r.test.hidden and r.result is not None and r.verdict != "compile_error"


def _unnamed(result: Result | None) -> Result | None:
    """The result without its test name: the grade's own heading already names the test."""
    return replace(result, name=None) if result is not None else None


def _title(grade: Grade, name: str | None) -> str:
    return f"{name} · {grade.summary()}" if name else grade.summary()


def grade_text(grade: Grade, *, name: str | None = None, **result_options: Any) -> str:
    """The grade as plain text; ``result_options`` go to the result renderer (``main_file``, ``line_offset``)."""
    rows = [("test", "result", "points", "time")]
    for r in grade.results:
        rows.append(
            (
                r.name + (" (hidden)" if r.test.hidden else ""),
                _shown_verdict(r)[1],
                f"{format_points(r.points)}/{format_points(r.test.points)}",
                _time(r),
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    lines = [_title(grade, name), ""]
    lines += ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip() for row in rows]
    failed_compile = _unnamed(grade.compile_error)
    if failed_compile is not None:
        lines += ["", render_text(failed_compile, **result_options)]
    for r in grade.results:
        if _details(r):
            assert r.result is not None
            lines += ["", f"── {r.name}: {r.verdict} " + "─" * 20]
            if r.test.stdin:
                lines += ["input:", r.test.stdin.rstrip("\n")]
            lines.append(render_text(replace(r.result, name=None), **result_options))
    return "\n".join(lines)


def grade_html(grade: Grade, *, name: str | None = None, **result_options: Any) -> str:
    tone = "ok" if grade.passed else ("error" if grade.score == 0 else "warn")
    parts = [
        f'<div class="codecapsule-grade" data-passed="{str(grade.passed).lower()}" '
        f'style="font-size:var(--jp-code-font-size, 14px);color:inherit;{_UI}">',
        f'<div class="cc-grade-summary" style="font-size:160%;font-weight:600;margin:4px 0 8px 0">'
        f'<span style="color:{_COLOR[tone]}">{escape(format_points(grade.score))}/'
        f"{escape(format_points(grade.max_score))}</span> "
        f'<span style="font-size:70%;font-weight:400">{escape(_title(grade, name))}</span></div>',
        '<table class="cc-grade-tests" style="border-collapse:collapse;font-size:125%;margin:2px 0">',
        "<thead><tr>"
        + "".join(f'<th style="{_CELL};font-weight:600">{h}</th>' for h in ("test", "result", "points", "time"))
        + "</tr></thead><tbody>",
    ]
    for r in grade.results:
        row_tone, words = _shown_verdict(r)
        hidden = ' <span style="opacity:0.6;font-size:80%">(hidden)</span>' if r.test.hidden else ""
        parts.append(
            f'<tr data-test="{escape(r.name)}" data-passed="{str(r.passed).lower()}">'
            f'<td style="{_CELL}">{escape(r.name)}{hidden}</td>'
            f'<td style="{_CELL};color:{_COLOR[row_tone]};font-weight:600">{escape(words)}</td>'
            f'<td style="{_CELL};text-align:right">{escape(format_points(r.points))}/'
            f"{escape(format_points(r.test.points))}</td>"
            f'<td style="{_CELL};text-align:right;opacity:0.75">{escape(_time(r))}</td></tr>'
        )
    parts.append("</tbody></table>")
    failed_compile = _unnamed(grade.compile_error)
    if failed_compile is not None:
        parts.append(render_html(failed_compile, **result_options))
    for r in grade.results:
        if _details(r):
            assert r.result is not None
            parts.append(
                f'<details open class="cc-grade-test" style="margin:8px 0"><summary style="cursor:pointer;'
                f'font-weight:600">{escape(r.name)}: {escape(r.verdict)}</summary>'
            )
            if r.test.stdin:
                parts.append(
                    f'<div style="opacity:0.75;font-size:85%">input</div><pre class="cc-input" style="margin:0;'
                    f'padding:4px 6px">{escape(r.test.stdin.rstrip())}</pre>'
                )
            parts.append(render_html(replace(r.result, name=None), **result_options))
            parts.append("</details>")
    parts.append("</div>")
    return "".join(parts)


def _cell_text(value: str) -> str:
    return "–" if value == "" else value


def gradebook_text(book: Gradebook) -> str:
    names = [t.name or "" for t in book.suite.tests]
    header = ["student", "score", *names, "note"]
    table = [header]
    for row in book.rows:
        table.append(
            [
                row["student"],
                f"{row['score']}/{row['max_score']}",
                *[_cell_text(row.get(n, "")) for n in names],
                row["note"],
            ]
        )
    widths = [max(len(r[i]) for r in table) for i in range(len(header))]
    lines = [f"{book.suite.name + ' · ' if book.suite.name else ''}{book.summary()}", ""]
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in table]
    return "\n".join(lines)


def gradebook_html(book: Gradebook) -> str:
    tests = book.suite.tests
    full = float(book.suite.max_score)
    head = "".join(
        f'<th style="{_CELL};font-weight:600">{escape(h)}</th>'
        for h in ("student", "score", *[t.name or "" for t in tests], "note")
    )
    body = []
    for row in book.rows:
        score = float(row["score"] or 0)
        tone = "ok" if score >= full else ("error" if score == 0 else "warn")
        cells = [
            f'<td style="{_CELL};font-weight:600">{escape(row["student"])}</td>',
            f'<td style="{_CELL};text-align:right;color:{_COLOR[tone]};font-weight:600">'
            f"{escape(row['score'])}/{escape(row['max_score'])}</td>",
        ]
        for t in tests:
            value = row.get(t.name or "", "")
            earned = value not in ("", "0")
            mark = "–" if value == "" else ("✓" if earned and float(value) >= float(t.points) else value)
            color = _COLOR["ok"] if mark == "✓" else (_COLOR["error"] if value == "0" else "inherit")
            cells.append(f'<td style="{_CELL};text-align:center;color:{color}">{escape(mark)}</td>')
        cells.append(f'<td style="{_CELL};font-size:80%;opacity:0.8">{escape(row["note"])}</td>')
        body.append(f'<tr data-student="{escape(row["student"])}">{"".join(cells)}</tr>')
    title = f"{book.suite.name} · " if book.suite.name else ""
    return (
        f'<div class="codecapsule-gradebook" style="color:inherit;{_UI}">'
        f'<div class="cc-gradebook-summary" style="font-size:150%;font-weight:600;margin:4px 0 8px 0">'
        f"{escape(title + book.summary())}</div>"
        f'<table style="border-collapse:collapse;font-size:120%"><thead><tr>{head}</tr></thead>'
        f"<tbody>{''.join(body)}</tbody></table></div>"
    )
