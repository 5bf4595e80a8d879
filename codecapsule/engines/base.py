"""The small interface every engine implements."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from .._jobs import Job
from .._results import Result


@dataclass(frozen=True)
class EngineInfo:
    """What an engine is and how well it isolates programs — shown by ``codecapsule engine`` and ``%capsule engine``."""

    name: str  # "local", "piston", "duckdb"
    isolation: str  # one plain sentence
    endpoint: str | None = None  # Piston URL (never with credentials)
    languages: dict[str, str] = field(default_factory=dict)  # language → version / toolchain found
    notes: tuple[str, ...] = ()

    def __str__(self) -> str:
        lines = [f"engine: {self.name}", f"isolation: {self.isolation}"]
        if self.endpoint:
            lines.append(f"endpoint: {self.endpoint}")
        for lang, version in self.languages.items():
            lines.append(f"  {lang}: {version}")
        lines.extend(f"note: {n}" for n in self.notes)
        return "\n".join(lines)


@runtime_checkable
class Engine(Protocol):
    """Runs jobs synchronously. Engines are thread-safe: a Client runs a batch on several threads."""

    name: str

    def run(self, job: Job) -> Result: ...

    def info(self) -> EngineInfo: ...

    def close(self) -> None: ...


@runtime_checkable
class AsyncEngine(Protocol):
    """Runs jobs on an event loop."""

    name: str

    async def arun(self, job: Job) -> Result: ...

    def info(self) -> EngineInfo: ...

    async def aclose(self) -> None: ...
