"""From stages to a verdict: the one judging policy every engine shares (pure, no I/O)."""

from __future__ import annotations

import difflib
import re

from ._jobs import Job, Limits
from ._results import Result, Stage, Verdict

# A program that dies of its own memory error under a memory limit ran out of memory, whichever runtime said so.
_OUT_OF_MEMORY = re.compile(
    r"^MemoryError\b|\bjava\.lang\.OutOfMemoryError\b|JavaScript heap out of memory|\bstd::bad_alloc\b"
    r"|Cannot allocate memory|out of memory",
    re.MULTILINE,
)


def stage_failed(stage: Stage) -> bool:
    return stage.status is not None or (stage.exit_code not in (0, None)) or stage.signal is not None


def run_verdict(run: Stage, limits: Limits, *, memory_from_text: bool = True) -> Verdict:
    """Verdict for a run stage alone. ``memory_from_text=False`` where the engine measured out-of-memory itself
    (the local engine's memory cgroup): then the program's stderr never turns a plain exit into memory_limit."""
    if run.status == "XX":
        return Verdict.INTERNAL_ERROR
    if run.status == "TO":
        return Verdict.TIME_LIMIT
    if run.status in ("OL", "EL"):
        return Verdict.OUTPUT_LIMIT
    if run.status == "IN":
        return Verdict.INTERRUPTED
    if run.status == "ML":
        return Verdict.MEMORY_LIMIT
    if not stage_failed(run):
        return Verdict.OK
    if memory_from_text and limits.memory is not None and _OUT_OF_MEMORY.search(run.stderr[-4000:]):
        return Verdict.MEMORY_LIMIT
    if run.signal is not None or run.status == "SG":
        return Verdict.SIGNAL
    return Verdict.RUNTIME_ERROR


def normalise_output(text: str) -> list[str]:
    """Lines with trailing whitespace removed and trailing empty lines dropped (Judge0's comparison)."""
    lines = [line.rstrip() for line in text.replace("\r\n", "\n").split("\n")]
    while lines and not lines[-1]:
        lines.pop()
    return lines


DIFF_WINDOW = 200  # lines of each side around the first difference that are diffed (difflib is quadratic)
DIFF_LINES = 60  # lines of diff output kept
_HUNK = re.compile(r"^@@ -(\d+)(,\d+)? \+(\d+)(,\d+)? @@")


_TRAILING_SPACE = re.compile(r"[^\S\n]+$", re.MULTILINE)


_ASCII_SPACE = " \t\r\x0b\x0c\x1c\x1d\x1e\x1f"  # what str.rstrip() strips, in ASCII


def _canonical(text: str) -> str:
    """``normalise_output`` as one string, in C-speed passes: the same lines joined by newlines."""
    text = text.replace("\r\n", "\n")
    if text.isascii() and not any(c + "\n" in text for c in _ASCII_SPACE) and not text.endswith(tuple(_ASCII_SPACE)):
        return text.rstrip("\n")  # no line ends in whitespace: nothing to strip (the common case, ~10x faster)
    return _TRAILING_SPACE.sub("", text).rstrip("\n")


def _common_prefix(a: str, b: str) -> int:
    """Length of the common prefix, by halving with slice comparisons (C speed, no per-character loop)."""
    lo, hi = 0, min(len(a), len(b))
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if a[lo:mid] == b[lo:mid]:
            lo = mid
        else:
            hi = mid - 1
    return lo


def _lines_from(text: str, start: int, count: int) -> list[str]:
    return text[start:].split("\n", count)[:count] if text or start else []


def compare_output(actual: str, expected: str) -> str | None:
    """None when they match; otherwise a unified diff (expected → actual), bounded in work and size.

    Equal output is found in linear C-speed passes; otherwise only a window from the first differing line (at most
    ``DIFF_WINDOW`` lines of each side) is diffed and at most ``DIFF_LINES`` lines are kept, so a megabyte of
    wrong output costs milliseconds of the host's time."""
    if actual == expected:
        return None
    want, got = _canonical(expected), _canonical(actual)
    if want == got:
        return None
    same = _common_prefix(want, got)
    first = want.count("\n", 0, same)  # index of the first differing line
    start_line = max(0, first - 2)
    start = want.rfind("\n", 0, same) + 1  # start of the first differing line, then two lines of context back
    for _ in range(first - start_line):
        start = want.rfind("\n", 0, start - 1) + 1
    w, g = _lines_from(want, start, DIFF_WINDOW), _lines_from(got, start, DIFF_WINDOW)
    lines = [_shift(line, start_line) for line in difflib.unified_diff(w, g, "expected", "actual", lineterm="", n=2)]
    total_want = want.count("\n") + 1 if want else 0
    total_got = got.count("\n") + 1 if got else 0
    cut = len(lines) > DIFF_LINES or total_want - start_line > DIFF_WINDOW or total_got - start_line > DIFF_WINDOW
    lines = lines[:DIFF_LINES]
    if cut:
        lines.append(
            f"... (diff cut: expected has {total_want} lines, actual {total_got}; first difference at line {first + 1})"
        )
    return "\n".join(lines)


def _shift(line: str, offset: int) -> str:
    """A hunk header of a windowed diff, renumbered to the lines of the whole output."""
    m = _HUNK.match(line) if offset else None
    if m is None:
        return line
    a, b = int(m.group(1)) + offset, int(m.group(3)) + offset
    return f"@@ -{a}{m.group(2) or ''} +{b}{m.group(4) or ''} @@{line[m.end() :]}"


def judge(
    job: Job,
    *,
    engine: str,
    version: str,
    compile: Stage | None,
    run: Stage | None,
    limits: Limits,
    memory_from_text: bool = True,
) -> Result:
    """Build the Result of a job from its stages.

    A failed compile stage is a compile error and there is no run stage (Piston copies ``compile`` into
    ``run`` when compilation fails: the run never happened).
    """
    if compile is not None and stage_failed(compile):
        return Result(
            job.language,
            version,
            engine,
            Verdict.INTERRUPTED if compile.status == "IN" else Verdict.COMPILE_ERROR,
            compile=compile,
            run=None,
            expected=job.expect,
            limits=limits,
            name=job.name,
        )
    if run is None:
        return Result(
            job.language,
            version,
            engine,
            Verdict.INTERNAL_ERROR,
            compile=compile,
            error="the engine returned no run stage",
            expected=job.expect,
            limits=limits,
            name=job.name,
        )
    verdict = run_verdict(run, limits, memory_from_text=memory_from_text)
    diff = None
    if verdict is Verdict.OK and job.expect is not None:
        diff = compare_output(run.stdout, job.expect)
        if diff is not None:
            verdict = Verdict.WRONG_ANSWER
    return Result(
        job.language,
        version,
        engine,
        verdict,
        compile=compile,
        run=run,
        expected=job.expect,
        diff=diff,
        limits=limits,
        name=job.name,
    )


def internal_error(job: Job, engine: str, exc: BaseException) -> Result:
    """A Result standing for a job the engine could not run (batches keep going)."""
    return error_result(
        exc,
        engine=engine,
        language=job.language,
        version=job.version,
        expected=job.expect,
        limits=job.limits,
        name=job.name,
    )


def error_result(
    exc: BaseException,
    *,
    engine: str,
    language: str,
    version: str = "",
    expected: str | None = None,
    limits: Limits | None = None,
    name: str | None = None,
) -> Result:
    """The internal_error Result for an exception, keeping the exception (also for items that are not jobs)."""
    return Result(
        language,
        version,
        engine,
        Verdict.INTERNAL_ERROR,
        error=f"{type(exc).__name__}: {exc}",
        expected=expected,
        limits=limits if limits is not None else Limits(),
        name=name,
        exception=exc,
    )
