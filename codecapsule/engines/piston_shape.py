"""Shape a job so Piston's runtimes run it the way the local engine does (pure: no I/O).

What Piston v3.1.1's package scripts do with a request (``shared/reference/piston.md``) and what this module
sends so that the program, its verdict and its stdout are the same on both engines:

* Only ``utf8`` files are code files, and the first one is the entry point → the entry file goes first as utf8;
  every other file is sent base64 (written untouched, passed to no script) unless the runtime must compile it.
* c / c++: the gcc script appends ``.c``/``.cpp`` to every code file and compiles ``*.c``/``*.cpp`` → only the
  real top-level sources (:func:`codecapsule._languages.is_compiled_source`) go as utf8, so headers and
  data files stay as they are; each source starts with the compile profile's warning prelude
  (:func:`codecapsule.engines._toolchains.source_prelude`); diagnostics naming ``main.c.c`` are mapped back
  to ``main.c`` and the script's trailing
  ``chmod: cannot access 'a.out'`` line is dropped.
* java: the single-file source launcher compiles only the first code file and starts its first top-level
  class → every ``.java`` file is merged into one unit: imports first (one per line), the class the program
  starts from (:func:`codecapsule._java.entry_point`) next, then the rest of each file; ``package`` lines and
  imports of the job's own packages are blanked. Every line of the unit remembers its file and line, so
  compile errors and stack traces name the student's own files and lines; the launcher's closing
  ``error: compilation failed`` is dropped (javac does not print it).
* python: the run script starts the first code file → the bootstrap both engines share
  (:mod:`codecapsule.engines._python_boot`) goes first as utf8, and every file of the job — the entry
  included — base64, written untouched; the bootstrap compiles the entry, says whether it compiled on
  stderr's first line, and runs it as ``python3 main.py`` would.
"""

from __future__ import annotations

import base64
import re
from dataclasses import dataclass

from .._java import JavaFile, JavaType, entry_point, scan
from .._jobs import File, Job
from .._languages import is_compiled_source
from ._python_boot import boot_file, boot_source
from ._toolchains import source_prelude

__all__ = ["Shaped", "shape"]

# What the gcc package appends to every code file.
_GCC_EXTENSION = {"c": ".c", "c++": ".cpp"}
_CHMOD_LINE = re.compile(r"^chmod: cannot access 'a\.out'.*\n?", re.MULTILINE)
_LAUNCHER_FAILED = re.compile(r"^error: compilation failed\n?", re.MULTILINE)


@dataclass(frozen=True)
class Shaped:
    """The files to send, and how to read Piston's diagnostics back in the student's terms."""

    files: tuple[dict[str, str], ...]
    renames: tuple[tuple[str, str], ...] = ()  # (name in Piston's diagnostics, the student's file name)
    unit: str | None = None  # java: the merged unit's name as the launcher prints it
    origin: tuple[tuple[str, int], ...] = ()  # java: merged line n (1-based, index n-1) → (file, line)

    def restore(self, text: str) -> str:
        """Piston's stdout/stderr with file names and lines put back as the student wrote them."""
        if not text:
            return text
        for theirs, ours in self.renames:
            text = re.sub(re.escape(theirs) + r"(?=[:'\"),\s]|$)", ours, text)
        if self.renames:
            text = _CHMOD_LINE.sub("", text)
        if self.unit is not None:
            text = re.sub(re.escape(self.unit) + r":(\d+)", self._line, text)
            text = _LAUNCHER_FAILED.sub("", text)
        return text

    def _line(self, m: re.Match[str]) -> str:
        n = int(m.group(1))
        if 1 <= n <= len(self.origin):
            name, line = self.origin[n - 1]
            return f"{name}:{line}"
        return m.group(0)


def _utf8(name: str, content: str) -> dict[str, str]:
    return {"name": name, "content": content, "encoding": "utf8"}


def _base64(f: File) -> dict[str, str]:
    return {"name": f.name, "content": base64.b64encode(f.data).decode(), "encoding": "base64"}


def shape(job: Job) -> Shaped:
    """The request files for ``job`` on Piston, and the map back (see the module's docstring)."""
    if job.language in _GCC_EXTENSION:
        return _shape_gcc(job)
    if job.language == "java":
        return _shape_java(job)
    entry, *rest = job.files
    if job.language == "python":
        boot = _utf8(boot_file(f.name for f in job.files), boot_source(entry.name))
        return Shaped((boot, *(_base64(f) for f in job.files)))
    return Shaped((_utf8(entry.name, job.source), *(_base64(f) for f in rest)))


def _shape_gcc(job: Job) -> Shaped:
    ext = _GCC_EXTENSION[job.language]
    files: list[dict[str, str]] = []
    renames: list[tuple[str, str]] = []
    for i, f in enumerate(job.files):
        if isinstance(f.content, str) and (i == 0 or is_compiled_source(job.language, f.name)):
            files.append(_utf8(f.name, source_prelude(f.name) + f.content))
            renames.append((f.name + ext, f.name))
        else:
            files.append(_base64(f))
    return Shaped(tuple(files), tuple(renames))


def _shape_java(job: Job) -> Shaped:
    entry = job.files[0]
    sources = [f for f in job.files if f is entry or (isinstance(f.content, str) and f.name.endswith(".java"))]
    others = [_base64(f) for f in job.files if f not in sources]
    scanned = [scan(f.content) for f in sources if isinstance(f.content, str)]
    names = [f.name for f in sources]
    found = entry_point(scanned)
    simple = len(sources) == 1 and scanned[0].package is None and (found is None or scanned[0].types[0] is found[1])
    unit = entry.name + ".java"  # the run script renames the first code file to `<name>.java`
    if simple:
        lines = job.source.count("\n") + 1
        origin = tuple((entry.name, n) for n in range(1, lines + 1))
        return Shaped((_utf8(entry.name, job.source), *others), unit=unit, origin=origin)
    text, merged_origin = _merge(scanned, names, found)
    return Shaped((_utf8(entry.name, text), *others), unit=unit, origin=tuple(merged_origin))


def _merge(
    files: list[JavaFile], names: list[str], found: tuple[int, JavaType] | None
) -> tuple[str, list[tuple[str, int]]]:
    """One compilation unit: imports, the starting class, then every file's remaining text, line by line."""
    own_packages = {f.package for f in files if f.package}
    out: list[str] = []
    origin: list[tuple[str, int]] = []
    seen: set[str] = set()
    blanked: list[list[tuple[int, int]]] = [[] for _ in files]  # spans to blank per file
    for index, f in enumerate(files):
        if f.package_span is not None:
            blanked[index].append(f.package_span)
        for statement, start, end in f.imports:
            blanked[index].append((start, end))
            target = statement.removeprefix("import").strip().removeprefix("static").strip().rstrip(";").strip()
            if any(target.startswith(p + ".") and target[len(p) + 1 :].count(".") <= 1 for p in own_packages):
                continue  # the job's own package: everything is in the one unit now
            if statement not in seen:
                seen.add(statement)
                out.append(statement)
                origin.append((names[index], f.line_of(start)))
    if found is not None:
        index, jtype = found
        f = files[index]
        start, end = jtype.start, jtype.end
        column = start - (f.text.rfind("\n", 0, start) + 1)
        block = " " * column + f.text[start:end]
        first = f.line_of(start)
        for k, line in enumerate(block.split("\n")):
            out.append(line)
            origin.append((names[index], first + k))
        blanked[index].append((start, end))
    for index, f in enumerate(files):
        chars = list(f.text)
        for a, b in blanked[index]:
            for k in range(a, b):
                if chars[k] != "\n":
                    chars[k] = " "
        for k, line in enumerate("".join(chars).split("\n")):
            out.append(line.rstrip())
            origin.append((names[index], k + 1))
    return "\n".join(out) + "\n", origin
