"""Hints for beginners' usual mistakes, shown under the verdict (pure, no I/O).

One table: each hint has the languages it applies to, the verdicts it can explain, a test on what the program
printed (compiler or runtime messages) and/or on its source, and one sentence saying what to change. A hint only
explains a verdict the engine measured; it never changes it.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import TYPE_CHECKING, NamedTuple

if TYPE_CHECKING:
    from ._results import Result

__all__ = ["HINTS", "READS_INPUT", "Hint", "hints_for"]

# What a cell shows when its program wanted input nobody could type (the live view's note and the EOF hint).
READS_INPUT = "this program reads input: pass --stdin, or run the cell interactively"

_ANY_VERDICT: frozenset[str] = frozenset()  # the hint applies to any verdict, ok included


class Hint(NamedTuple):
    languages: frozenset[str]
    verdicts: frozenset[str]  # empty: any verdict
    messages: re.Pattern[str] | None  # searched in the compiler's and the program's stderr (and stdout)
    source: Callable[[str], bool] | None  # a test on the program's source, when it is known
    text: str


def _re(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern, re.MULTILINE)


_VOID_MAIN = _re(r"^\s*void\s+main\s*\(")


def _void_main(source: str) -> bool:
    return bool(_VOID_MAIN.search(source))


HINTS: tuple[Hint, ...] = (
    Hint(
        frozenset({"python"}),
        frozenset({"compile_error"}),
        _re(r"^(?:SyntaxError|IndentationError|TabError): "),
        None,
        "Python could not read the program, so none of it ran: fix the line the report names (the ^ marks where "
        "Python got lost; an IndentationError means the spaces at the start of a line do not line up).",
    ),
    Hint(
        frozenset({"python", "javascript", "java", "c", "c++"}),
        frozenset({"runtime_error", "wrong_answer"}),
        _re(
            r"^EOFError\b|java\.util\.NoSuchElementException|No line found|"
            r"invalid literal for int\(\) with base 10: ''|could not convert string to float: ''"
        ),
        None,
        READS_INPUT + " (from Python: stdin=\"…\"; codecapsule run: --stdin or a pipe).",
    ),
    Hint(
        frozenset({"c", "c++"}),
        _ANY_VERDICT,
        _re(r"return type of .main. is not .int.|.::main. must return .int."),
        _void_main,
        "main must return int: write int main(void) { … return 0; }. With void main() the exit status is "
        "whatever was left in a register, so a correct program can still show runtime_error.",
    ),
    Hint(
        frozenset({"c", "c++"}),
        _ANY_VERDICT,
        _re(r"control reaches end of non-void function|no return statement in function returning non-void"),
        None,
        "A function declared to return a value can reach its end without return: add the missing return "
        "statement (the caller otherwise gets an undefined value).",
    ),
    Hint(
        frozenset({"java"}),
        _ANY_VERDICT,
        _re(r"\(wrong name: [\w/]+\)|Could not find or load main class [\w]+\.[\w.]+"),
        None,
        "Remove the package line: a program run from one cell or file has no package, so java cannot find "
        "the class under the package's name.",
    ),
    Hint(
        frozenset({"java"}),
        frozenset({"compile_error"}),
        _re(r"class (\w+) is public, should be declared in a file named \1\.java"),
        None,
        "A public class must be in a file with its name: rename the file (or --save NAME) after the class, or "
        "drop public from the classes that do not hold main.",
    ),
    Hint(
        frozenset({"java"}),
        _ANY_VERDICT,
        _re(
            r"Main method not found in class|Main method is not static|"
            r"main method (?:not found|must return a value of type void)|no main method|"
            r"Error: Main method|Can't find a main\(String\[\]\) method"
        ),
        None,
        "Java starts at exactly public static void main(String[] args): check static, void, the name main and "
        "the String[] parameter.",
    ),
)


def hints_for(result: Result, source: str | None = None) -> list[str]:
    """The hints that apply to ``result`` (``source``: the program's text, when the caller has it)."""
    verdict = result.verdict.value
    stages = [s for s in (result.compile, result.run) if s is not None]
    messages = "\n".join(part for s in stages for part in (s.stderr, s.stdout[-2000:]))
    found = []
    for hint in HINTS:
        if result.language not in hint.languages:
            continue
        if hint.verdicts and verdict not in hint.verdicts:
            continue
        by_message = hint.messages is not None and bool(hint.messages.search(messages))
        by_source = hint.source is not None and source is not None and hint.source(source)
        if by_message or by_source:
            found.append(hint.text)
    return found
