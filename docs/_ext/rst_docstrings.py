"""Griffe extension for the docs build: read CodeCapsule's reST-flavoured docstrings as Markdown.

The package's docstrings are written for ``help()`` and IDEs, in the usual Python style: ``:class:`Result```
roles, ``>>>`` doctest examples and ``text::`` literal blocks. Markdown would show the roles verbatim and turn
``>>>`` into nested block quotes, so before mkdocstrings renders a docstring this extension rewrites, in the
docstring text only (the code is not touched):

- ``:class:`~codecapsule.Result``` and friends → a link to the object when the API reference documents it
  (names in ``LINKED``), else inline code;
- a paragraph of ``>>>`` lines → a fenced ``pycon`` block, with ``# doctest: +SKIP`` flags dropped;
- ``Some text::`` followed by an indented block → ``Some text:`` and a fenced ``text`` block.
"""

from __future__ import annotations

import re
import textwrap
from typing import Any

import griffe

# Objects the API reference page renders with an anchor of this exact id (see docs/reference.md).
LINKED = {
    "Result": "codecapsule.Result",
    "Stage": "codecapsule.Stage",
    "Table": "codecapsule.Table",
    "Verdict": "codecapsule.Verdict",
    "Job": "codecapsule.Job",
    "File": "codecapsule.File",
    "Limits": "codecapsule.Limits",
    "Client": "codecapsule.Client",
    "AsyncClient": "codecapsule.AsyncClient",
    "Settings": "codecapsule.Settings",
    "execute": "codecapsule.execute",
    "aexecute": "codecapsule.aexecute",
    "execute_many": "codecapsule.execute_many",
    "ClusterSpec": "codecapsule.cluster.ClusterSpec",
    "Cluster": "codecapsule.cluster.Cluster",
    "ScalingPanel": "codecapsule.widgets.ScalingPanel",
}

_ROLE = re.compile(r":(?:py:)?(?:class|func|meth|attr|exc|mod|data|obj):`~?([^`]+)`")
_DOCTEST_FLAG = re.compile(r"\s*#\s*doctest:.*$")


def _role(match: re.Match[str]) -> str:
    target = match.group(1).strip()
    short = target.rsplit(".", 1)[-1]
    # only qualified names or bare names of the documented top-level objects become links: a bare ``close``
    # could be any class's method, and an unresolved link would fail the strict build
    if short in LINKED and (target == short or target.startswith("codecapsule.")):
        return f"[`{short}`][{LINKED[short]}]"
    return f"`{short}`"


def _fence_blocks(text: str) -> str:
    lines = text.split("\n")
    out: list[str] = []
    i = 0
    in_fence = False
    while i < len(lines):
        line = lines[i]
        stripped = line.lstrip()
        if stripped.startswith("```"):
            in_fence = not in_fence
            out.append(line)
            i += 1
            continue
        if not in_fence and stripped.startswith(">>>"):
            block = []
            while i < len(lines) and lines[i].strip():
                block.append(_DOCTEST_FLAG.sub("", lines[i]).rstrip())
                i += 1
            body = textwrap.dedent("\n".join(block))
            out += ["", "```pycon", body, "```", ""]
            continue
        if not in_fence and line.rstrip().endswith("::") and not line.rstrip().endswith(":::"):
            j = i + 1
            while j < len(lines) and not lines[j].strip():
                j += 1
            indent = len(lines[j]) - len(lines[j].lstrip()) if j < len(lines) else 0
            base = len(line) - len(line.lstrip())
            if j < len(lines) and indent > base:
                block = []
                while j < len(lines) and (not lines[j].strip() or len(lines[j]) - len(lines[j].lstrip()) > base):
                    block.append(lines[j])
                    j += 1
                while block and not block[-1].strip():
                    block.pop()
                head = line.rstrip()[:-1]  # "Exception tree::" -> "Exception tree:"
                out += [head, "", "```text", textwrap.dedent("\n".join(block)), "```", ""]
                i = j
                continue
        out.append(line)
        i += 1
    return "\n".join(out)


def rst_to_markdown(text: str) -> str:
    """The docstring ``text`` with roles, doctest paragraphs and literal blocks in Markdown form."""
    return _fence_blocks(_ROLE.sub(_role, text))


class RstDocstrings(griffe.Extension):
    """Rewrites every docstring of the loaded package once the object tree is complete."""

    def on_object(self, *, obj: griffe.Object, **kwargs: Any) -> None:
        if obj.docstring is not None:
            obj.docstring.value = rst_to_markdown(obj.docstring.value)
