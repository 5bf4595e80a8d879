"""Finding the submissions in a folder: one file per student (``ada.c``) or one folder per student
(``ada/Main.java``, ``ada/Helper.java``). The student's name is the file stem or the folder name.

A submission that cannot be run (no source file, an unknown extension, several languages) is still a
:class:`Submission`, with ``problem`` saying why, so the gradebook gets a row for it.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from .._errors import InvalidTestSuite
from .._languages import LANGUAGES, resolve

# extension → language (every language's own extension, and the common other spellings)
EXTENSIONS: dict[str, str] = {
    **{lang.extension: lang.name for lang in LANGUAGES},
    ".mjs": "javascript",
    ".cc": "c++",
    ".cxx": "c++",
}
# files that travel with a program's sources but are not an entry point
_COMPANIONS = {"c": (".h",), "c++": (".h", ".hpp", ".hh")}
_IGNORED = re.compile(r"^(\.|__pycache__$|__MACOSX$)|~$|\.(class|o|pyc)$")
_MAX_BYTES = 1024 * 1024
_MAIN = {
    "java": re.compile(r"\bstatic\s+(?:public\s+)?void\s+main\s*\("),
    "c": re.compile(r"\bmain\s*\("),
    "c++": re.compile(r"\bmain\s*\("),
    "python": re.compile(r"^if\s+__name__\s*==", re.MULTILINE),
}
_CONVENTIONAL_MAIN = ("main", "Main", "index", "solution")


@dataclass(frozen=True)
class Submission:
    """One student's work: the entry file's source, the other files, the language — or the ``problem``."""

    student: str
    path: Path
    language: str | None = None
    source: str = ""
    files: dict[str, str] | None = None  # the other files, by name
    problem: str | None = None


def _read(path: Path) -> str:
    data = path.read_bytes()[: _MAX_BYTES + 1]
    if len(data) > _MAX_BYTES:
        raise ValueError(f"{path.name} is larger than 1 MB")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return data.decode("latin-1")


def _entry(language: str, sources: dict[str, str]) -> str | None:
    """The file that starts the program: the only source, the one declaring main, or a conventional name."""
    if len(sources) == 1:
        return next(iter(sources))
    pattern = _MAIN.get(language)
    if pattern is not None:
        with_main = [name for name, text in sources.items() if pattern.search(text)]
        if len(with_main) == 1:
            return with_main[0]
    for stem in _CONVENTIONAL_MAIN:
        for name in sources:
            if Path(name).stem == stem:
                return name
    return None


def _regular_files(folder: Path) -> list[Path]:
    """The folder's regular files, links not followed: a submitted link to /etc/shadow is not read."""
    found = []
    for top, dirs, names in os.walk(folder, followlinks=False):
        dirs[:] = [d for d in dirs if not _IGNORED.search(d)]
        for name in names:
            path = Path(top) / name
            if not _IGNORED.search(name) and path.is_file() and not path.is_symlink():
                found.append(path)
    return sorted(found)


def _from_file(path: Path, wanted: str | None) -> Submission:
    student = path.stem
    if path.is_symlink() or not path.is_file():
        return Submission(student, path, problem=f"{path.name} is not a regular file (links are not followed)")
    language = EXTENSIONS.get(path.suffix.lower())
    if language is None:
        known = ", ".join(sorted(EXTENSIONS))
        return Submission(student, path, problem=f"{path.name}: unknown file extension (expected one of {known})")
    if wanted is not None and language != wanted:
        return Submission(student, path, language, problem=f"{path.name} is {language}, this exercise is {wanted}")
    try:
        return Submission(student, path, language, source=_read(path), files={})
    except (OSError, ValueError) as exc:
        return Submission(student, path, language, problem=f"cannot read {path.name}: {exc}")


def _from_folder(folder: Path, wanted: str | None) -> Submission:
    student = folder.name
    files = _regular_files(folder)
    sources = [p for p in files if p.suffix.lower() in EXTENSIONS]
    languages = {EXTENSIONS[p.suffix.lower()] for p in sources}
    if wanted is not None:
        languages &= {wanted}
    if not languages:
        what = f"no {wanted} file" if wanted else "no source file"
        return Submission(student, folder, wanted, problem=f"{what} in {folder.name}/")
    if len(languages) > 1:
        return Submission(
            student, folder, problem=f"{folder.name}/ holds several languages ({', '.join(sorted(languages))})"
        )
    language = languages.pop()
    try:
        texts = {p.relative_to(folder).as_posix(): _read(p) for p in files}
    except (OSError, ValueError) as exc:
        return Submission(student, folder, language, problem=f"cannot read {folder.name}/: {exc}")
    own = {n: t for n, t in texts.items() if EXTENSIONS.get(Path(n).suffix.lower()) == language}
    entry = _entry(language, own)
    if entry is None:
        return Submission(
            student,
            folder,
            language,
            problem=f"{folder.name}/ has several {language} files and none is clearly the main one",
        )
    source = texts.pop(entry)
    return Submission(student, folder, language, source=source, files=texts)


def find_submissions(directory: str | os.PathLike[str], language: str | None = None) -> list[Submission]:
    """Every submission in ``directory``, sorted by student name (hidden files and folders are skipped)."""
    root = Path(directory)
    if not root.is_dir():
        raise InvalidTestSuite(f"{str(root)!r} is not a folder of submissions (one file or folder per student).")
    wanted = resolve(language).name if language is not None else None
    found = []
    for path in sorted(root.iterdir()):
        if _IGNORED.search(path.name):
            continue
        found.append(_from_folder(path, wanted) if path.is_dir() else _from_file(path, wanted))
    names = [s.student for s in found]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise InvalidTestSuite(
            f"{str(root)!r}: more than one submission for {', '.join(twice)} (a file and a folder with the same "
            "name?): keep one per student."
        )
    return found
