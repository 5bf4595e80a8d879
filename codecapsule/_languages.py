"""The one language registry: canonical names, aliases, file naming and which tier runs them."""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass

from ._errors import UnknownLanguage


@dataclass(frozen=True)
class Language:
    name: str  # canonical name, as Piston spells it
    aliases: tuple[str, ...]
    extension: str  # source file extension, with the dot
    compiled: bool  # has a separate compile stage (locally; Piston's java has none)
    sql: bool = False
    display: str = ""

    def main_file_name(self, source: str) -> str:
        """The file name the entry point must have. Java: the public class's name (``Main.java`` otherwise)."""
        if self.name == "java":
            m = _JAVA_PUBLIC_CLASS.search(_strip_java_comments(source))
            return f"{m.group(1) if m else 'Main'}.java"
        return f"main{self.extension}"


_JAVA_PUBLIC_CLASS = re.compile(
    r"\bpublic\s+(?:final\s+|abstract\s+)*(?:class|record|enum|interface)\s+([A-Za-z_$][\w$]*)"
)
_JAVA_COMMENTS = re.compile(r"//[^\n]*|/\*.*?\*/", re.DOTALL)


def _strip_java_comments(source: str) -> str:
    return _JAVA_COMMENTS.sub(" ", source)


LANGUAGES: tuple[Language, ...] = (
    Language("python", ("py", "py3", "python3", "python3.11", "python3.12"), ".py", False, display="Python"),
    Language(
        "javascript",
        ("js", "node", "nodejs", "node-js", "node-javascript"),
        ".js",
        False,
        display="JavaScript",
    ),
    Language("java", (), ".java", True, display="Java"),
    Language("c", ("gcc",), ".c", True, display="C"),
    Language("c++", ("cpp", "g++", "cxx", "cc"), ".cpp", True, display="C++"),
    Language("sql", ("duckdb",), ".sql", False, sql=True, display="SQL"),
)

# The files a compiler takes, one rule for both engines: top-level files with these suffixes (Piston's gcc script
# compiles `*.c` / `*.cpp` in the job directory; headers and data files are never compiled).
COMPILED_SOURCES: dict[str, tuple[str, ...]] = {"c": (".c",), "c++": (".cpp", ".cc", ".cxx")}


def is_compiled_source(language: str, name: str) -> bool:
    """Whether the C/C++ compiler takes the file ``name`` (False for every other language)."""
    return "/" not in name and name.endswith(COMPILED_SOURCES.get(language, ()))


_BY_NAME: dict[str, Language] = {}
for _lang in LANGUAGES:
    for _key in (_lang.name, *_lang.aliases):
        _BY_NAME[_key] = _lang


def names() -> tuple[str, ...]:
    """Canonical names of every language, in display order."""
    return tuple(lang.name for lang in LANGUAGES)


def resolve(language: str) -> Language:
    """The Language for a name or alias (case-insensitive); :class:`UnknownLanguage` with a suggestion otherwise."""
    if not isinstance(language, str):
        raise UnknownLanguage(
            f"language must be a string such as 'python', not {language!r}.",
            language=str(language),
            available=names(),
        )
    key = language.strip().lower()
    found = _BY_NAME.get(key)
    if found is not None:
        return found
    close = difflib.get_close_matches(key, list(_BY_NAME), n=1, cutoff=0.5)
    hint = f" Did you mean {close[0]!r}?" if close else ""
    raise UnknownLanguage(
        f"unknown language {language!r}.{hint} Available: {', '.join(names())} "
        f"(aliases: {', '.join(sorted(a for lang in LANGUAGES for a in lang.aliases))}).",
        language=language,
        available=names(),
    )
