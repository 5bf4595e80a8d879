"""The one Result shape every engine returns: stages, verdict, SQL table, JSON round trip."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from ._jobs import Limits

if TYPE_CHECKING:
    import pandas
    import pyarrow


class Verdict(StrEnum):
    """What happened to the program. Compares equal to its string value (``r.verdict == "ok"``)."""

    OK = "ok"
    COMPILE_ERROR = "compile_error"
    RUNTIME_ERROR = "runtime_error"
    SIGNAL = "signal"
    TIME_LIMIT = "time_limit"
    MEMORY_LIMIT = "memory_limit"
    OUTPUT_LIMIT = "output_limit"
    WRONG_ANSWER = "wrong_answer"
    INTERNAL_ERROR = "internal_error"
    INTERRUPTED = "interrupted"  # stopped by the user (Stop button, Ctrl-C): the output so far is kept

    def __str__(self) -> str:
        return self.value

    @property
    def description(self) -> str:
        return _DESCRIPTIONS[self]


_DESCRIPTIONS = {
    Verdict.OK: "ran successfully",
    Verdict.COMPILE_ERROR: "did not compile",
    Verdict.RUNTIME_ERROR: "exited with an error",
    Verdict.SIGNAL: "was killed by a signal",
    Verdict.TIME_LIMIT: "ran out of time",
    Verdict.MEMORY_LIMIT: "ran out of memory",
    Verdict.OUTPUT_LIMIT: "printed more than the output limit",
    Verdict.WRONG_ANSWER: "printed something other than the expected output",
    Verdict.INTERNAL_ERROR: "could not be run (engine error)",
    Verdict.INTERRUPTED: "was stopped before it finished",
}


@dataclass(frozen=True)
class Stage:
    """One stage (compile or run) as it happened.

    ``status`` uses Piston's codes: None (success), ``RE`` non-zero exit, ``SG`` signal, ``TO`` time limit,
    ``OL``/``EL`` stdout/stderr over the output limit, ``XX`` internal error — plus CodeCapsule's ``ML``
    (killed for exceeding the memory limit, which Piston reports as a signal).
    """

    stdout: str = ""
    stderr: str = ""
    output: str = ""  # stdout and stderr interleaved, as far as the engine knows
    exit_code: int | None = None
    signal: str | None = None  # "SIGKILL", "SIGSEGV", ...
    status: str | None = None
    message: str | None = None
    wall_time: float | None = None  # seconds
    cpu_time: float | None = None  # seconds
    memory: int | None = None  # bytes (peak)
    truncated: bool = False  # stdout/stderr were cut at the output limit

    def to_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Stage:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in known})


@dataclass(frozen=True)
class Table:
    """A SQL result: the first ``len(rows)`` rows for display and the full result through :meth:`df`/:meth:`arrow`."""

    columns: tuple[str, ...]
    types: tuple[str, ...]
    rows: tuple[tuple[Any, ...], ...]
    total_rows: int
    truncated: bool = False
    # the rows after `rows` as a pyarrow.Table, or a callable fetching the whole result (a SQL worker keeps it)
    _rest: Any = field(default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "columns", tuple(self.columns))
        object.__setattr__(self, "types", tuple(self.types))
        object.__setattr__(self, "rows", tuple(tuple(r) for r in self.rows))

    def arrow(self) -> pyarrow.Table:
        """The whole result as a ``pyarrow.Table`` (needs pyarrow)."""
        try:
            import pyarrow as pa
        except ImportError as exc:  # pragma: no cover - depends on the environment
            from ._errors import ConfigurationError

            raise ConfigurationError("Table.arrow() needs pyarrow: pip install pyarrow") from exc
        if callable(self._rest):
            return self._rest()
        head = pa.table({c: [r[i] for r in self.rows] for i, c in enumerate(self.columns)})
        if self._rest is None:
            return head
        if not self.rows:
            return self._rest
        return pa.concat_tables([head.cast(self._rest.schema), self._rest])

    def df(self) -> pandas.DataFrame:
        """The whole result as a pandas DataFrame (needs pandas)."""
        if self._rest is not None:
            return self.arrow().to_pandas()
        try:
            import pandas as pd
        except ImportError as exc:  # pragma: no cover - depends on the environment
            from ._errors import ConfigurationError

            raise ConfigurationError("Table.df() needs pandas: pip install pandas") from exc
        return pd.DataFrame.from_records(list(self.rows), columns=list(self.columns))

    def to_dict(self) -> dict[str, Any]:
        return {
            "columns": list(self.columns),
            "types": list(self.types),
            "rows": [list(r) for r in self.rows],
            "total_rows": self.total_rows,
            "truncated": self.truncated,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Table:
        return cls(
            tuple(d["columns"]),
            tuple(d["types"]),
            tuple(tuple(r) for r in d["rows"]),
            int(d["total_rows"]),
            bool(d.get("truncated", False)),
        )


@dataclass(frozen=True)
class Result:
    """What happened when a program ran. The same shape for every engine.

    Convenience: ``ok``, ``stdout``, ``stderr``, ``exit_code`` read the run stage (or the compile stage when the
    program did not compile); ``table`` holds a SQL result.
    """

    language: str
    version: str
    engine: str
    verdict: Verdict
    compile: Stage | None = None
    run: Stage | None = None
    table: Table | None = None
    expected: str | None = None
    diff: str | None = None
    error: str | None = None  # engine-side explanation for internal_error, or SQL's error message
    limits: Limits = field(default_factory=Limits)
    name: str | None = None
    exception: BaseException | None = field(default=None, repr=False, compare=False)
    notes: tuple[str, ...] = ()  # what the engine changed or wants known (e.g. a limit lowered to the server's)

    def __post_init__(self) -> None:
        object.__setattr__(self, "verdict", Verdict(self.verdict))

    # -- conveniences ------------------------------------------------------------------------------

    @property
    def ok(self) -> bool:
        return self.verdict is Verdict.OK

    @property
    def _main_stage(self) -> Stage | None:
        return self.run if self.run is not None else self.compile

    @property
    def stdout(self) -> str:
        stage = self._main_stage
        return stage.stdout if stage else ""

    @property
    def stderr(self) -> str:
        stage = self._main_stage
        return stage.stderr if stage else (self.error or "")

    @property
    def output(self) -> str:
        stage = self._main_stage
        return stage.output if stage else ""

    @property
    def exit_code(self) -> int | None:
        stage = self._main_stage
        return stage.exit_code if stage else None

    @property
    def wall_time(self) -> float | None:
        times = [s.wall_time for s in (self.compile, self.run) if s is not None and s.wall_time is not None]
        return sum(times) if times else None

    @property
    def memory(self) -> int | None:
        return self.run.memory if self.run is not None else None

    # -- serialisation -----------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        return {
            "language": self.language,
            "version": self.version,
            "engine": self.engine,
            "verdict": self.verdict.value,
            "ok": self.ok,
            "compile": self.compile.to_dict() if self.compile else None,
            "run": self.run.to_dict() if self.run else None,
            "table": self.table.to_dict() if self.table else None,
            "expected": self.expected,
            "diff": self.diff,
            "error": self.error,
            "limits": self.limits.to_dict(),
            "name": self.name,
            "notes": list(self.notes),
        }

    def to_json(self, **kwargs: Any) -> str:
        return json.dumps(self.to_dict(), default=str, **kwargs)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Result:
        return cls(
            language=d["language"],
            version=d["version"],
            engine=d["engine"],
            verdict=Verdict(d["verdict"]),
            compile=Stage.from_dict(d["compile"]) if d.get("compile") else None,
            run=Stage.from_dict(d["run"]) if d.get("run") else None,
            table=Table.from_dict(d["table"]) if d.get("table") else None,
            expected=d.get("expected"),
            diff=d.get("diff"),
            error=d.get("error"),
            limits=Limits(**{k: v for k, v in (d.get("limits") or {}).items() if v is not None}),
            name=d.get("name"),
            notes=tuple(d.get("notes") or ()),
        )

    @classmethod
    def from_json(cls, text: str) -> Result:
        return cls.from_dict(json.loads(text))

    # -- rendering (one renderer, see _render.py) ---------------------------------------------------

    def __str__(self) -> str:
        from ._render import render_text

        return render_text(self)

    def _repr_pretty_(self, p: Any, cycle: bool) -> None:
        p.text(repr(self) if cycle else str(self))

    def _repr_html_(self) -> str:
        from ._render import render_html

        return render_html(self)
