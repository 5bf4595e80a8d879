"""One renderer for :class:`~codecapsule.Result`: escaped HTML for notebooks, plain text for terminals.

Used by ``%%capsule``, by ``display(result)`` / ``Result._repr_html_`` and by ``str(result)``, so a
result looks the same wherever it is shown. Everything the program printed is escaped: a student printing
``</pre><script>…`` gets that text on screen, never markup. No ``<script>``, no ``<style>`` element:
only inline styles that use JupyterLab's CSS variables (with fallbacks readable on light and dark
backgrounds), so the output survives nbconvert, VS Code and sanitising viewers.

Pure functions, no I/O and no heavy imports.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from html import escape
from typing import TYPE_CHECKING, Any, NamedTuple

from ._diffview import Row, align, diff_text
from ._fold import Line, fold
from ._hints import hints_for
from ._units import format_duration, format_limit, format_size

if TYPE_CHECKING:
    from ._results import Result, Stage, Table

__all__ = [
    "DEFAULT_MAX_LINES",
    "DEFAULT_MAX_ROWS",
    "Block",
    "default_main_file",
    "map_locations",
    "map_sql_lines",
    "render_html",
    "render_text",
    "status_line",
]

DEFAULT_MAX_ROWS = 10  # SQL rows shown under a cell (Capsule.displaylimit)
DEFAULT_MAX_LINES = 40  # output lines shown before the rest is folded (after repeated lines are collapsed)
_MAX_CHARS = 20_000  # characters shown before the rest is collapsed (one very long line)
_MAX_CELL_CHARS = 200  # characters of one SQL value shown

# -- compiler / interpreter locations → the cell's own lines -----------------------------------------------

_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b\][^\x07]*\x07")
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


def default_main_file(language: str) -> str:
    """The entry file name engines give a ``language`` program (Java, no public class: ``Main.java``)."""
    from ._errors import UnknownLanguage
    from ._languages import resolve

    try:
        return resolve(language).main_file_name("")
    except UnknownLanguage:
        return ""


def map_locations(text: str, main_file: str, *, line_offset: int = 0, other_files: Sequence[str] = ()) -> str:
    """Rewrite locations in the program's files (compiler errors, tracebacks) as lines of the notebook cells.

    ``main.cpp:3:5: error`` → ``line 3, col 5: error``; ``Main.java:3: error`` → ``line 3: error``;
    ``File "/tmp/x/main.py", line 3`` → ``cell, line 3``; ``(/tmp/x/main.js:3:7)`` → ``(line 3, col 7)``;
    gcc's ``main.c: In function 'main':`` → ``In function 'main':``. A directory before the name (the engine's
    work directory) is dropped. Locations in ``other_files`` (files saved from other cells) keep their name:
    ``Point.java:3`` → ``Point.java line 3``. Other files are untouched.

    ``line_offset`` turns a line of the file into a line of its cell: cell line = file line + offset. It is 1
    for ``%%capsule`` cells (the magic's own line is the cell's line 1, not part of the program), 0 when the
    program is the whole text, negative when lines were prepended; a location outside the cell is left as it
    was. gcc's source excerpts (``    3 |   x = 1``) are renumbered the same way.
    """
    for name in (main_file, *other_files):
        if name and name in text:
            text = _map_file(text, name, line_offset, "" if name == main_file else f"{name} ")
    if line_offset and _GUTTER.search(text):

        def gutter(m: re.Match[str]) -> str:
            n = int(m.group(2)) + line_offset
            width = len(m.group(1)) + len(m.group(2))
            return (str(n).rjust(width) if n >= 1 else m.group(1) + m.group(2)) + m.group(3)

        text = _GUTTER.sub(gutter, text)
    return text


_GUTTER = re.compile(r"(?m)^( *)(\d+)( \| )")
_SQL_LINE = re.compile(r"(?m)^LINE (\d+): ")


def map_sql_lines(message: str, line_offset: int) -> str:
    """DuckDB's ``LINE 2: FROM student`` excerpt renumbered as the cell's line (``line_offset`` as in
    :func:`map_locations`); the ``^^^`` marker on the next line moves with the text if the number gets longer."""
    if not line_offset:
        return message
    lines = message.split("\n")
    for i, line in enumerate(lines):
        m = _SQL_LINE.match(line)
        if m is None or int(m.group(1)) + line_offset < 1:
            continue
        new = f"LINE {int(m.group(1)) + line_offset}: "
        delta = len(new) - len(m.group(0))
        lines[i] = new + line[m.end() :]
        if delta and i + 1 < len(lines) and lines[i + 1].lstrip().startswith("^"):
            nxt = lines[i + 1]
            lines[i + 1] = " " * delta + nxt if delta > 0 else nxt[-delta:]
    return "\n".join(lines)


def _file_pattern(name: str) -> str:
    """The file name, optionally behind a directory, not glued to a longer name on its left."""
    return r"(?<![\w.\-/])(?:/?[^\s:()\"'<>]*/)?" + re.escape(name) + r"(?![\w.\-])"


def name_files(text: str, names: dict[str, str]) -> str:
    """The engine's file names in compiler and runtime messages replaced by the user's own:
    ``/tmp/w/main.c:3:18`` → ``broken.c:3:18`` (``names``: engine name → user's name). Used by the CLI."""
    for engine_name, user_name in names.items():
        if engine_name and engine_name != user_name and engine_name in text:
            text = re.sub(_file_pattern(engine_name), user_name.replace("\\", "\\\\"), text)
    return text


def _map_file(text: str, name: str, line_offset: int, label: str) -> str:
    path = _file_pattern(name)

    def line_no(raw: str) -> int | None:
        n = int(raw) + line_offset
        return n if n >= 1 else None

    def py_frame(m: re.Match[str]) -> str:
        n = line_no(m.group(1))
        return m.group(0) if n is None else f"{label or 'cell, '}line {n}"

    def location(m: re.Match[str]) -> str:
        n = line_no(m.group(1))
        if n is None:
            return m.group(0)
        return f"{label}line {n}, col {m.group(2)}" if m.group(2) else f"{label}line {n}"

    text = re.sub(r'File "' + path + r'", line (\d+)', py_frame, text)
    text = re.sub(path + r":(\d+)(?::(\d+))?(?!\d)", location, text)
    # gcc's "main.c: In function 'main':" / "main.c: At top level:" context lines
    return re.sub(r"(?m)^" + path + r": (?=\S)", label, text)


def _clean(text: str) -> str:
    """Terminal colour codes and stray control characters removed (they render as garbage in HTML)."""
    return _CONTROL.sub("", _ANSI.sub("", text.replace("\r\n", "\n")))


# -- what to show: a list of blocks shared by the text and HTML renderers ----------------------------------


class Block(NamedTuple):
    """One piece of a rendered result. ``kind``: stdout, stderr, compile, warnings, note, hint, diff, error, table,
    status."""

    kind: str
    text: str = ""
    tone: str = "info"  # info, ok, warn, error: colour of notes
    label: str = ""


_TONE_OF = {
    "ok": "ok",
    "wrong_answer": "warn",
    "time_limit": "warn",
    "memory_limit": "warn",
    "output_limit": "warn",
    "compile_error": "error",
    "runtime_error": "error",
    "signal": "error",
    "internal_error": "error",
    "interrupted": "info",
}
_STOPPED = ("time_limit", "memory_limit", "output_limit", "interrupted")  # killed: the exit code says nothing
_ICON = {"ok": "✓", "warn": "⚠", "error": "✗", "info": "ℹ"}


def status_line(result: Result) -> str:
    """``✓ ok · exit 0 · 120 ms · 12.3 MiB · local · java 17.0.9`` — the compact footer of every result."""
    verdict = result.verdict.value
    parts = [f"{_ICON[_TONE_OF.get(verdict, 'info')]} {verdict}"]
    if result.table is not None:
        rows = result.table.total_rows
        parts.append(f"{rows:,} row{'' if rows == 1 else 's'}")
    stage = result.run if result.run is not None else result.compile
    if verdict == "signal" and stage is not None and stage.signal:
        parts.append(f"signal {stage.signal}")
    elif result.exit_code is not None and result.language != "sql" and verdict not in _STOPPED:
        parts.append(f"exit {result.exit_code}")
    if result.wall_time is not None:
        parts.append(format_duration(result.wall_time))
    if verdict == "memory_limit" and result.limits.memory:
        # the peak measured at the kill is just under the limit: show the limit, as the user wrote it
        parts.append(f"over {format_limit(result.limits.memory)}")
    elif result.memory is not None:
        parts.append(format_size(result.memory))
    parts.append(result.engine)
    parts.append(f"{result.language} {result.version}".strip())
    return " · ".join(p for p in parts if p)


def _limit_note(result: Result) -> str | None:
    verdict, lim = result.verdict.value, result.limits
    if verdict == "time_limit":
        limit = f" (limit {format_duration(lim.run_timeout)})" if lim.run_timeout else ""
        ran = f" after {format_duration(result.wall_time)}" if result.wall_time else ""
        return (
            f"Time limit: the program was stopped{ran}{limit}. Anything it printed before that is shown "
            "below. Look for a loop that never ends, or a slow algorithm."
        )
    if verdict == "memory_limit":
        limit = f" of {format_limit(lim.memory)}" if lim.memory else ""
        return (
            f"Memory limit: the program needed more than its memory limit{limit} and was stopped. "
            "Output printed before that is shown below."
        )
    if verdict == "output_limit":
        limit = f" ({format_limit(lim.output)} per stream)" if lim.output else ""
        return (
            f"Output limit: the program printed more than the output limit{limit} and was stopped. "
            "The first part of its output is shown below."
        )
    return None


def _verdict_note(result: Result, *, in_cell: bool) -> tuple[str, str] | None:
    """The banner for a verdict that needs explaining: (tone, text)."""
    verdict = result.verdict.value
    limit = _limit_note(result)
    if limit is not None:
        return "warn", limit
    if verdict == "compile_error":
        return (
            "error",
            "Compile error: the program did not compile. "
            + ("Line numbers are the lines of the cell." if in_cell else "Line numbers are the program's lines."),
        )
    if verdict == "wrong_answer":
        return "warn", "Wrong answer: your output differs from the expected output (compared below, line by line)."
    if verdict == "signal":
        stage = result.run
        sig = f" ({stage.signal})" if stage is not None and stage.signal else ""
        hint = " — often an invalid memory access" if stage is not None and stage.signal == "SIGSEGV" else ""
        return "error", f"The program was killed by a signal{sig}{hint}."
    if verdict == "internal_error":
        why = f": {result.error}" if result.error else "."
        return "error", f"CodeCapsule could not run this program{why}"
    return None


def _stage_text(stage: Stage | None, stream: str) -> str:
    return _clean(getattr(stage, stream)) if stage is not None else ""


def _blocks(
    result: Result,
    *,
    main_file: str | None,
    line_offset: int,
    other_files: Sequence[str],
    note: tuple[str, str] | None,
    source: str | None = None,
) -> list[Block]:
    main = default_main_file(result.language) if main_file is None else main_file

    def where(text: str) -> str:
        return map_locations(text, main, line_offset=line_offset, other_files=other_files)

    # the verdict first: the status line, then what it means, then hints, then what the program printed
    blocks: list[Block] = [Block("status", status_line(result), tone=_TONE_OF.get(result.verdict.value, "info"))]
    if note is not None:
        blocks.append(Block("note", note[1], tone=note[0]))
    banner = _verdict_note(result, in_cell=line_offset > 0)
    if banner is not None:
        blocks.append(Block("note", banner[1], tone=banner[0]))
    for engine_note in result.notes:  # e.g. a limit lowered to what the Piston server allows
        blocks.append(Block("note", engine_note, tone="warn"))
    blocks.extend(Block("hint", hint) for hint in hints_for(result, source))
    warnings: Block | None = None

    if result.run is None and result.compile is not None:
        # did not compile: the compiler's words are the output (mapped to the cell's lines)
        text = "\n".join(
            t for t in (_stage_text(result.compile, "stdout"), _stage_text(result.compile, "stderr")) if t.strip()
        )
        blocks.append(Block("compile", where(text), label="compiler"))
    else:
        if result.compile is not None and result.compile.stderr.strip():
            # warnings from a successful compile: folded under the output, not an error
            warn = where(_stage_text(result.compile, "stderr"))
            count = len(re.findall(r"(?m)\bwarning:", warn))
            label = f"{count} compiler warning{'s' if count != 1 else ''}" if count else "compiler messages"
            warnings = Block("warnings", warn, tone="warn", label=label)
        # a SQL result's stdout is the table as CSV (what expect= compares): the table itself is shown instead
        stdout = _stage_text(result.run, "stdout") if result.table is None else ""
        stderr = _stage_text(result.run, "stderr")
        if result.error and stderr.strip() == _clean(result.error).strip():
            stderr = ""  # the same message is shown once, as the error block below
        if stdout:
            blocks.append(Block("stdout", stdout, label="stdout"))
        if stderr:
            blocks.append(Block("stderr", where(stderr), label="stderr"))
        if result.table is None and not stdout and not stderr and not result.error and result.run is not None:
            blocks.append(Block("empty", "(no result rows)" if result.language == "sql" else "(no output)"))
    if warnings is not None:
        blocks.append(warnings)
    if result.verdict.value == "wrong_answer" and result.diff:
        blocks.append(Block("diff", _clean(result.diff), label="expected vs your output"))
    if result.table is not None:
        blocks.append(Block("table"))
    if result.error and result.verdict.value != "internal_error":
        # SQL errors (DuckDB's message with its LINE n: excerpt) and other engine explanations
        error = _clean(result.error)
        if result.language == "sql":
            error = map_sql_lines(error, line_offset)
        blocks.append(Block("error", error, label="error"))
    return blocks


# -- plain text --------------------------------------------------------------------------------------------


def _collapse_text(text: str, max_lines: int) -> str:
    shown, rest = fold(text, max_lines)
    out = "\n".join(line.text for line in shown)
    if rest:
        more = sum(max(1, line.hidden) for line in rest)
        out += f"\n… {more:,} more line{'s' if more != 1 else ''} not shown"
    if len(out) > _MAX_CHARS:
        out = out[:_MAX_CHARS] + f"\n… {len(out) - _MAX_CHARS:,} more characters not shown"
    return out


def _diff_rows(result: Result) -> list[Row] | None:
    """The aligned expected / your-output rows, when both texts are known (else the stored diff is shown)."""
    if result.expected is None or result.run is None:
        return None
    from ._verdicts import normalise_output

    return align(normalise_output(_clean(result.expected)), normalise_output(_clean(result.run.stdout)))


def _format_value(value: Any) -> str:
    if value is None:
        return "NULL"
    if isinstance(value, float):
        text = repr(value)
        if len(text) > 12:
            text = f"{value:.6g}"
    elif isinstance(value, bytes):
        text = repr(value)
    else:
        text = str(value)
    return text if len(text) <= _MAX_CELL_CHARS else text[: _MAX_CELL_CHARS - 1] + "…"


def _rows_footer(table: Table, shown: int) -> str | None:
    if shown >= table.total_rows and not table.truncated:
        return None
    total = max(table.total_rows, shown)
    return f"showing {shown:,} of {total:,} rows"


def _table_text(table: Table, max_rows: int) -> str:
    rows = [[_format_value(v).replace("\n", "\\n") for v in row] for row in table.rows[:max_rows]]
    header = list(table.columns)
    widths = [min(40, max([len(h)] + [len(r[i]) for r in rows])) for i, h in enumerate(header)]

    def fit(cell: str, width: int) -> str:
        return cell if len(cell) <= width else cell[: width - 1] + "…"

    def line(cells: Sequence[str]) -> str:
        return " | ".join(fit(c, w).ljust(w) for c, w in zip(cells, widths, strict=False)).rstrip()

    out = [line(header), "-+-".join("-" * w for w in widths)]
    out.extend(line(r) for r in rows)
    footer = _rows_footer(table, len(rows))
    if footer:
        out.append(f"({footer})")
    return "\n".join(out)


def render_text(
    result: Result,
    *,
    max_rows: int = DEFAULT_MAX_ROWS,
    max_lines: int = DEFAULT_MAX_LINES,
    main_file: str | None = None,
    line_offset: int = 0,
    other_files: Sequence[str] = (),
    note: tuple[str, str] | None = None,
    source: str | None = None,
) -> str:
    """The result as plain text (terminals, nbconvert, VS Code's text fallback). No colour codes.

    The verdict comes first, then what it means and hints, then the output (long output folded after
    ``max_lines`` lines, repeated lines collapsed). ``note`` is an extra ``(tone, text)`` banner such as
    ``("ok", "expected compile_error")``. ``main_file`` (default: the language's usual name), ``line_offset`` and
    ``other_files`` map compiler and traceback locations to the cells' lines: see :func:`map_locations`.
    ``source`` (the program's text) lets hints look at the program, e.g. ``void main``.
    """
    out: list[str] = []
    if result.name:
        out.append(f"== {result.name} ==")
    blocks = _blocks(
        result, main_file=main_file, line_offset=line_offset, other_files=other_files, note=note, source=source
    )
    for block in blocks:
        if block.kind == "status":
            out.append(f"[{block.text}]")
        elif block.kind == "note":
            out.append(f"{_ICON[block.tone]} {block.text}")
        elif block.kind == "hint":
            out.append(f"Hint: {block.text}")
        elif block.kind == "stdout":
            out.append(_collapse_text(block.text, max_lines))
        elif block.kind == "empty":
            out.append(block.text)
        elif block.kind == "table" and result.table is not None:
            out.append(_table_text(result.table, max_rows))
        elif block.kind == "warnings":
            # folded: the warning lines themselves, not gcc's excerpts under them
            lines = [line for line in block.text.splitlines() if "warning:" in line] or block.text.splitlines()
            out.append(f"--- {block.label} ---")
            out.append(_collapse_text("\n".join(lines), max(1, max_lines // 4)))
        elif block.kind == "diff":
            rows = _diff_rows(result)
            out.append(f"--- {block.label} ---")
            out.append(diff_text(rows, max(1, max_lines // 2)) if rows is not None else block.text)
        else:
            out.append(f"--- {block.label} ---")
            out.append(_collapse_text(block.text, max_lines))
    return "\n".join(out)


# -- HTML --------------------------------------------------------------------------------------------------

# JupyterLab's variables first; the fallbacks are translucent so they read on light and dark backgrounds.
_COLOR = {
    "ok": "var(--jp-success-color1, #2e7d32)",
    "warn": "var(--jp-warn-color1, #e65100)",
    "error": "var(--jp-error-color1, #d32f2f)",
    "info": "var(--jp-info-color1, #0277bd)",
}
_BACKGROUND = {
    "ok": "rgba(76, 175, 80, 0.12)",
    "warn": "rgba(255, 152, 0, 0.14)",
    "error": "var(--jp-rendermime-error-background, rgba(244, 67, 54, 0.12))",
    "info": "rgba(3, 169, 244, 0.10)",
}
_PRE = (
    "margin:0;padding:4px 6px;white-space:pre-wrap;word-break:break-word;background:transparent;"
    "color:inherit;font-family:var(--jp-code-font-family, monospace);font-size:inherit;line-height:1.35"
)
_LABEL = "font-size:85%;opacity:0.75;margin:4px 0 0 0;font-family:var(--jp-ui-font-family, sans-serif)"


def _pre(text: str, *, style: str = "", cls: str) -> str:
    return f'<pre class="{cls}" style="{_PRE};{style}">{escape(text)}</pre>'


def _lines_html(lines: list[Line]) -> str:
    return "\n".join(
        f'<span class="cc-repeat" style="font-style:italic;opacity:0.7">{escape(line.text)}</span>'
        if line.hidden
        else escape(line.text)
        for line in lines
    )


def _collapse_html(text: str, max_lines: int, *, style: str, cls: str) -> str:
    """A ``<pre>`` of the first lines (repeats collapsed), the rest inside a closed ``<details>`` ("show all")."""
    shown, rest = fold(text, max_lines)
    pre = f'<pre class="{cls}" style="{_PRE};{style}">'
    if not rest:
        body = _lines_html(shown)
        if len(body) <= _MAX_CHARS * 2:
            return pre + body + "</pre>"
        text = "\n".join(line.text for line in shown)
        head, tail = text[:_MAX_CHARS], text[_MAX_CHARS:]
        summary = f"show all {len(text):,} characters ({len(tail):,} more)"
        return (
            pre + escape(head) + "</pre>"
            + f'<details class="cc-more"><summary style="cursor:pointer;{_LABEL}">{escape(summary)}</summary>'
            + pre + escape(tail) + "</pre></details>"
        )
    total = sum(max(1, line.hidden) for line in shown + rest)
    more = sum(max(1, line.hidden) for line in rest)
    summary = f"show all {total:,} lines ({more:,} more)"
    return (
        pre + _lines_html(shown) + "</pre>"
        + f'<details class="cc-more"><summary style="cursor:pointer;{_LABEL}">{escape(summary)}</summary>'
        + pre + _lines_html(rest) + "</pre></details>"
    )


_MARK = "background:rgba(244, 67, 54, 0.35);border-radius:2px"  # a differing character
_ABSENT = "opacity:0.55;font-style:italic"


def _side_html(segments: tuple[Any, ...] | None, absent: str) -> str:
    if segments is None:
        return f'<span style="{_ABSENT}">{escape(absent)}</span>'
    parts = []
    for seg in segments:
        text = escape(seg.text)
        parts.append(f'<span class="cc-changed" style="{_MARK}">{text}</span>' if seg.changed else text)
    return "".join(parts) or " "


def _diff_table_html(rows: list[Row], max_rows: int) -> str:
    cell = (
        "padding:0 8px;vertical-align:top;white-space:pre-wrap;word-break:break-word;text-align:left;"
        "font-family:var(--jp-code-font-family, monospace);min-width:8em"
    )
    head = (
        f'<tr><th style="{_LABEL};text-align:right;padding:0 6px">line</th>'
        f'<th style="{_LABEL};text-align:left;padding:0 8px">expected</th>'
        f'<th style="{_LABEL};text-align:left;padding:0 8px">your output</th></tr>'
    )
    body = []
    for row in rows[:max_rows]:
        if row.skipped:
            n = row.skipped
            body.append(
                f'<tr class="cc-same"><td></td><td colspan="2" style="{cell};{_ABSENT}">'
                f"… {n:,} matching line{'s' if n != 1 else ''}</td></tr>"
            )
            continue
        style = "" if row.same else f"background:{_BACKGROUND['warn']}"
        cls = "cc-same" if row.same else "cc-differs"
        body.append(
            f'<tr class="{cls}" style="{style}"><td style="{cell};text-align:right;opacity:0.6;min-width:0">'
            f"{row.number}</td>"
            f'<td class="cc-expected" style="{cell}">{_side_html(row.expected, "(no line)")}</td>'
            f'<td class="cc-actual" style="{cell}">{_side_html(row.actual, "(no line)")}</td></tr>'
        )
    if len(rows) > max_rows:
        more = len(rows) - max_rows
        body.append(f'<tr><td></td><td colspan="2" style="{cell};{_ABSENT}">… {more:,} more rows</td></tr>')
    return (
        '<table class="cc-diff" style="border-collapse:collapse;margin:2px 0;font-size:inherit">'
        f"<thead>{head}</thead><tbody>{''.join(body)}</tbody></table>"
    )


def _diff_html(diff: str) -> str:
    rows = []
    for line in diff.split("\n"):
        if line.startswith(("---", "+++")):
            style = "opacity:0.7"
        elif line.startswith("-"):
            style = f"background:{_BACKGROUND['error']}"
        elif line.startswith("+"):
            style = f"background:{_BACKGROUND['ok']}"
        elif line.startswith("@@"):
            style = f"color:{_COLOR['info']}"
        else:
            style = ""
        rows.append(f'<span style="display:block;{style}">{escape(line) or " "}</span>')
    return f'<pre class="cc-diff" style="{_PRE}">{"".join(rows)}</pre>'


def _is_number(value: Any) -> bool:
    return (isinstance(value, int | float) and not isinstance(value, bool)) or type(value).__name__ == "Decimal"


def _table_html(table: Table, max_rows: int) -> str:
    cell = "padding:2px 8px;border-bottom:1px solid var(--jp-border-color2, rgba(128,128,128,0.3));"
    head = "".join(
        f'<th title="{escape(t)}" style="{cell}text-align:left;font-weight:600">{escape(c)}</th>'
        for c, t in zip(table.columns, table.types or ("",) * len(table.columns), strict=False)
    )
    body = []
    shown = table.rows[:max_rows]
    for row in shown:
        tds = []
        for value in row:
            align = "right" if _is_number(value) else "left"
            if value is None:
                tds.append(f'<td style="{cell}text-align:left;opacity:0.55;font-style:italic">NULL</td>')
            else:
                tds.append(f'<td style="{cell}text-align:{align};white-space:pre">{escape(_format_value(value))}</td>')
        body.append(f"<tr>{''.join(tds)}</tr>")
    footer = _rows_footer(table, len(shown))
    foot = f'<div class="cc-rows" style="{_LABEL}">{escape(footer)}</div>' if footer else ""
    return (
        f'<table class="cc-table" style="border-collapse:collapse;margin:2px 0;font-size:inherit">'
        f"<thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>{foot}"
    )


def render_html(
    result: Result,
    *,
    max_rows: int = DEFAULT_MAX_ROWS,
    max_lines: int = DEFAULT_MAX_LINES,
    main_file: str | None = None,
    line_offset: int = 0,
    other_files: Sequence[str] = (),
    note: tuple[str, str] | None = None,
    source: str | None = None,
) -> str:
    """The result as one self-contained, escaped HTML fragment (same arguments as :func:`render_text`)."""
    verdict = result.verdict.value
    parts = [
        f'<div class="codecapsule-result" data-verdict="{escape(verdict)}" '
        'style="font-size:var(--jp-code-font-size, 13px);color:inherit">'
    ]
    if result.name:
        parts.append(f'<div style="font-weight:600;{_LABEL}">{escape(result.name)}</div>')
    blocks = _blocks(
        result, main_file=main_file, line_offset=line_offset, other_files=other_files, note=note, source=source
    )
    for block in blocks:
        if block.kind == "status":
            head, _, tail = block.text.partition(" · ")
            parts.append(
                f'<div class="cc-status" title="{escape(result.verdict.description)}" '
                f'style="{_LABEL};opacity:1;font-size:100%;margin:0 0 2px 0">'
                f'<span style="color:{_COLOR[block.tone]};font-weight:600">{escape(head)}</span>'
                f'<span style="opacity:0.75"> · {escape(tail)}</span></div>'
            )
        elif block.kind in ("note", "hint"):
            tone = block.tone
            icon = "Hint:" if block.kind == "hint" else _ICON[tone]
            parts.append(
                f'<div class="cc-{block.kind} cc-{tone}" style="border-left:3px solid {_COLOR[tone]};'
                f"background:{_BACKGROUND[tone]};padding:3px 8px;margin:2px 0;"
                f'font-family:var(--jp-ui-font-family, sans-serif)">'
                f'<span style="color:{_COLOR[tone]};font-weight:600">{icon}</span> '
                f"{escape(block.text)}</div>"
            )
        elif block.kind == "stdout":
            parts.append(_collapse_html(block.text, max_lines, style="", cls="cc-stdout"))
        elif block.kind == "empty":
            parts.append(f'<div class="cc-empty" style="{_LABEL};font-style:italic">{escape(block.text)}</div>')
        elif block.kind in ("stderr", "compile", "error"):
            parts.append(f'<div style="{_LABEL};color:{_COLOR["error"]}">{escape(block.label)}</div>')
            style = f"border-left:3px solid {_COLOR['error']};background:{_BACKGROUND['error']}"
            parts.append(_collapse_html(block.text, max_lines, style=style, cls=f"cc-{block.kind}"))
        elif block.kind == "warnings":
            style = f"border-left:3px solid {_COLOR['warn']}"
            parts.append(
                f'<details class="cc-warnings"><summary style="cursor:pointer;{_LABEL};color:{_COLOR["warn"]}">'
                f"{_ICON['warn']} {escape(block.label)}</summary>"
                + _collapse_html(block.text, max_lines, style=style, cls="cc-warnings-text")
                + "</details>"
            )
        elif block.kind == "diff":
            parts.append(f'<div style="{_LABEL}">{escape(block.label)}</div>')
            rows = _diff_rows(result)
            parts.append(_diff_table_html(rows, max_lines) if rows is not None else _diff_html(block.text))
        elif block.kind == "table" and result.table is not None:
            parts.append(_table_html(result.table, max_rows))
    parts.append("</div>")
    return "".join(parts)


def wrong_answer_text(result: Result, max_lines: int = DEFAULT_MAX_LINES) -> str | None:
    """The "expected" / "your output" comparison as text (the CLI prints it for --expect), or None."""
    if result.verdict.value != "wrong_answer":
        return None
    rows = _diff_rows(result)
    if rows is None:
        return _clean(result.diff) if result.diff else None
    return diff_text(rows, max(1, max_lines // 2))


def table_text(table: Table, max_rows: int = 20) -> str:
    """A SQL table as aligned plain text with a "showing N of M rows" footer (used by the CLI)."""
    return _table_text(table, max_rows)
