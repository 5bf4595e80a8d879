"""What a notebook cell stores of a Result's output: head and tail of each stream, within a byte budget (pure).

A runaway ``print`` in a loop used to store 1–2 MB per cell (the folded "show all" part is in the saved HTML
too). The cell's display keeps the first and the last part of each stream up to the budget, and one line says
how much was left out and where the whole text is: the Result object the magic keeps while the kernel lives.
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ._results import Result, Stage

__all__ = ["DEFAULT_BUDGET", "RESULT_VARIABLE", "bounded", "head_and_tail"]

DEFAULT_BUDGET = 64 * 1024  # bytes of each stream (stdout, stderr) of each stage kept in a cell's display
RESULT_VARIABLE = "_capsule_result"  # the notebook variable holding the last cell's full Result


def head_and_tail(text: str, budget: int) -> str:
    """``text`` if it fits in ``budget`` UTF-8 bytes, else its head and tail (cut at line ends where there are
    some) around one line saying how many bytes were left out and where the rest is."""
    data = text.encode()
    if len(data) <= budget:
        return text
    half = budget // 2
    head = data[:half].decode(errors="ignore")
    tail = data[len(data) - half :].decode(errors="ignore")
    if "\n" in head:
        head = head[: head.rindex("\n") + 1]
    if "\n" in tail:
        tail = tail[tail.index("\n") + 1 :]
    left_out = len(data) - len(head.encode()) - len(tail.encode())
    marker = f"… {left_out:,} bytes left out of this view; the whole output is in {RESULT_VARIABLE}.stdout / .stderr"
    return f"{head}{'' if head.endswith(chr(10)) or not head else chr(10)}{marker}\n{tail}"


def _bounded_stage(stage: Stage | None, budget: int) -> Stage | None:
    if stage is None:
        return None
    return replace(
        stage,
        stdout=head_and_tail(stage.stdout, budget),
        stderr=head_and_tail(stage.stderr, budget),
        output=head_and_tail(stage.output, budget),
    )


def bounded(result: Result, budget: int = DEFAULT_BUDGET) -> Result:
    """A copy of ``result`` for display whose stage texts fit the budget (the original is not changed)."""
    fits = all(
        len(text.encode()) <= budget
        for stage in (result.compile, result.run)
        if stage is not None
        for text in (stage.stdout, stage.stderr, stage.output)
    )
    if fits:
        return result
    return replace(
        result, compile=_bounded_stage(result.compile, budget), run=_bounded_stage(result.run, budget)
    )
