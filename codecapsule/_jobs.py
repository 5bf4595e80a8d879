"""Job, File and Limits: validated, immutable descriptions of what to run (no I/O here)."""

from __future__ import annotations

import base64
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, fields, replace
from typing import Any, Literal

from ._errors import InvalidLimit, InvalidRequest
from ._languages import Language, resolve
from ._units import parse_duration, parse_size

Encoding = Literal["utf8", "base64"]
_SAFE_NAME = re.compile(r"^[A-Za-z0-9_.+/-]+$")
_MAX_COMPONENT = 255  # bytes: the longest file name Linux file systems accept
_MAX_PATH = 1024


def normalise_file_name(name: object) -> str:
    """The file name as it will be written (``./a//b`` → ``a/b``), or InvalidRequest saying what is wrong with it."""
    if not isinstance(name, str) or not name:
        raise InvalidRequest(f"file name {name!r} is not allowed: it must be a non-empty string such as 'util.py'.")
    if not _SAFE_NAME.match(name) or name.startswith("/"):
        raise InvalidRequest(
            f"file name {name!r} is not allowed: use a relative path of letters, digits, '_', '-', '.', '+' and '/'."
        )
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if not parts or ".." in parts:
        raise InvalidRequest(
            f"file name {name!r} is not allowed: it must name a file inside the work directory (no '.' or '..')."
        )
    for part in parts:
        if part.startswith("-"):
            raise InvalidRequest(
                f"file name {name!r} is not allowed: a part may not start with '-' (it would read as an option)."
            )
        if len(part.encode()) > _MAX_COMPONENT:
            raise InvalidRequest(
                f"file name {name[:40]!r}... is not allowed: each part of a path must be <= 255 bytes."
            )
    normal = "/".join(parts)
    if len(normal) > _MAX_PATH:
        raise InvalidRequest(
            f"file name {name[:40]!r}... is not allowed: paths must be at most {_MAX_PATH} characters."
        )
    return normal


def check_file_names(names: Sequence[str]) -> None:
    """The files of one job can all be written: no two the same, none both a file and a directory."""
    seen: set[str] = set()
    for name in names:
        if name in seen:
            raise InvalidRequest(
                f"file name {name!r} is given twice (names are compared after removing './' and '//'; the first file "
                "is the program's entry point)."
            )
        seen.add(name)
    for name in names:
        parts = name.split("/")
        for i in range(1, len(parts)):
            prefix = "/".join(parts[:i])
            if prefix in seen:
                raise InvalidRequest(f"file name {name!r} needs a directory {prefix!r}, but {prefix!r} is also a file.")


@dataclass(frozen=True)
class File:
    """One source or data file of a program. ``content`` is text, or ``bytes`` for binary data."""

    name: str
    content: str | bytes

    def __post_init__(self) -> None:
        object.__setattr__(self, "name", normalise_file_name(self.name))
        if not isinstance(self.content, str | bytes):
            raise InvalidRequest(f"content of {self.name!r} must be str or bytes, not {type(self.content).__name__}.")

    @property
    def encoding(self) -> Encoding:
        return "base64" if isinstance(self.content, bytes) else "utf8"

    @property
    def data(self) -> bytes:
        return self.content if isinstance(self.content, bytes) else self.content.encode()

    def to_dict(self) -> dict[str, str]:
        if isinstance(self.content, bytes):
            return {
                "name": self.name,
                "content": base64.b64encode(self.content).decode(),
                "encoding": "base64",
            }
        return {"name": self.name, "content": self.content, "encoding": "utf8"}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> File:
        if d.get("encoding") == "base64":
            return cls(d["name"], base64.b64decode(d["content"]))
        return cls(d["name"], d["content"])


# Limit fields: (parser, kind) — time in seconds, sizes in bytes, counts as int.
_TIME_FIELDS = ("compile_timeout", "run_timeout", "compile_cpu_time", "run_cpu_time")
_SIZE_FIELDS = ("memory", "compile_memory", "output", "file_size")
_COUNT_FIELDS = ("processes",)


@dataclass(frozen=True)
class Limits:
    """Resource limits, in seconds and bytes. ``None`` means "the engine's default".

    Readable strings are accepted: ``Limits(run_timeout="500ms", memory="256MB")``.
    """

    compile_timeout: float | None = None  # wall clock for the compile stage
    run_timeout: float | None = None  # wall clock for the run stage
    compile_cpu_time: float | None = None
    run_cpu_time: float | None = None
    memory: int | None = None  # run stage memory
    compile_memory: int | None = None
    processes: int | None = None  # processes/threads at once
    output: int | None = None  # bytes kept per stream (stdout, stderr); more → output_limit
    file_size: int | None = None  # largest file the program may write

    def __post_init__(self) -> None:
        for name in _TIME_FIELDS:
            value = getattr(self, name)
            if value is not None:
                seconds = parse_duration(value, name=name)
                if seconds == 0 or seconds > 3600:
                    raise InvalidLimit(f"{name} must be between 1 ms and 1 hour, not {value!r}.")
                object.__setattr__(self, name, seconds)
        for name in _SIZE_FIELDS:
            value = getattr(self, name)
            if value is not None:
                size = parse_size(value, name=name)
                if size < 1024:
                    raise InvalidLimit(f"{name} must be at least 1 KB, not {value!r} (sizes are in bytes).")
                object.__setattr__(self, name, size)
        for name in _COUNT_FIELDS:
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 4096):
                raise InvalidLimit(f"{name} must be a whole number between 1 and 4096, not {value!r}.")

    @classmethod
    def coerce(cls, value: Limits | Mapping[str, Any] | None) -> Limits:
        if value is None:
            return cls()
        if isinstance(value, Limits):
            return value
        if isinstance(value, Mapping):
            known = {f.name for f in fields(cls)}
            unknown = set(value) - known
            if unknown:
                raise InvalidLimit(f"unknown limit(s) {sorted(unknown)}; known: {sorted(known)}.")
            return cls(**value)
        raise InvalidLimit(f"limits must be a Limits or a dict, not {type(value).__name__}.")

    def merged(self, **overrides: Any) -> Limits:
        """A copy where every non-None override replaces the current value."""
        return replace(self, **{k: v for k, v in overrides.items() if v is not None})

    def with_timeout(self, timeout: float | str | None) -> Limits:
        """The ``timeout=`` shortcut: the run's wall-clock limit, and its CPU-time limit unless that is set."""
        if timeout is None:
            return self
        return self.merged(run_timeout=timeout, run_cpu_time=self.run_cpu_time if self.run_cpu_time else timeout)

    def over(self, defaults: Limits) -> Limits:
        """These limits, with ``defaults`` filling every field that is None."""
        return replace(
            defaults,
            **{f.name: getattr(self, f.name) for f in fields(self) if getattr(self, f.name) is not None},
        )

    def to_dict(self) -> dict[str, float | int | None]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


def as_args(args: Iterable[object]) -> tuple[str, ...]:
    """Command-line arguments as a tuple of strings; a single string is refused (it is ambiguous)."""
    if isinstance(args, str):
        raise InvalidRequest("args must be a list of strings, not a single string (use shlex.split).")
    return tuple(str(a) for a in args)


@dataclass(frozen=True)
class Job:
    """One program to run: the language, its files (the first is the entry point), input and limits."""

    language: str  # canonical name (resolved from any alias)
    files: tuple[File, ...]
    stdin: str = ""
    args: tuple[str, ...] = ()
    version: str = "*"
    limits: Limits = field(default_factory=Limits)
    expect: str | None = None  # expected stdout: a mismatch is wrong_answer
    name: str | None = None  # a label for batches (student id, test case)

    def __post_init__(self) -> None:
        object.__setattr__(self, "language", resolve(self.language).name)
        if not self.files:
            raise InvalidRequest("a job needs at least one file (the program's source).")
        if not isinstance(self.stdin, str):
            raise InvalidRequest(f"stdin must be a str, not {type(self.stdin).__name__}.")
        object.__setattr__(self, "args", as_args(self.args))
        check_file_names([f.name for f in self.files])
        if not isinstance(self.files[0].content, str):
            raise InvalidRequest("the first file is the program's entry point and must be text.")
        if not isinstance(self.version, str) or not self.version:
            raise InvalidRequest(f"version must be a non-empty string such as '*' or '3.11', not {self.version!r}.")

    @property
    def lang(self) -> Language:
        return resolve(self.language)

    @property
    def source(self) -> str:
        """The entry point's text."""
        content = self.files[0].content
        assert isinstance(content, str)
        return content

    @classmethod
    def create(
        cls,
        source: str,
        language: str,
        *,
        stdin: str = "",
        args: Sequence[str] = (),
        files: Mapping[str, str | bytes] | Iterable[File] | None = None,
        version: str = "*",
        limits: Limits | Mapping[str, Any] | None = None,
        expect: str | None = None,
        timeout: float | str | None = None,
        memory: int | str | None = None,
        name: str | None = None,
    ) -> Job:
        """Build a Job from source text as users write it; the entry file gets the language's conventional name."""
        if not isinstance(source, str):
            raise InvalidRequest(f"source must be a str, not {type(source).__name__}.")
        lang = resolve(language)
        main = File(lang.main_file_name(source), source)
        extra: list[File] = []
        if files is not None:
            if isinstance(files, Mapping):
                extra = [File(n, c) for n, c in files.items()]
            else:
                extra = list(files)
                if not all(isinstance(f, File) for f in extra):
                    raise InvalidRequest("files must be a {name: content} dict or a list of File objects.")
        lim = Limits.coerce(limits).with_timeout(timeout).merged(memory=memory)
        if expect is not None and not isinstance(expect, str):
            raise InvalidRequest(f"expect must be the expected stdout as a str, not {type(expect).__name__}.")
        return cls(
            lang.name,
            (main, *extra),
            stdin=stdin,
            args=as_args(args),
            version=version,
            limits=lim,
            expect=expect,
            name=name,
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "language": self.language,
            "files": [f.to_dict() for f in self.files],
            "stdin": self.stdin,
            "args": list(self.args),
            "version": self.version,
            "limits": self.limits.to_dict(),
            "expect": self.expect,
            "name": self.name,
        }
