"""What a deploy would do: a list of :class:`Change` objects, computed without changing anything."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Literal

Action = Literal["create", "update", "delete", "unchanged"]

_SYMBOLS: dict[str, str] = {"create": "+", "update": "~", "delete": "-", "unchanged": "="}


@dataclass(frozen=True)
class Change:
    """One resource and what would happen to it. ``detail`` never contains a secret."""

    action: Action
    resource: str  # a kind, e.g. "resource group", "vmss", "tunnel", "dns record"
    name: str
    detail: str = ""

    def __str__(self) -> str:
        tail = f"  ({self.detail})" if self.detail else ""
        return f"{_SYMBOLS[self.action]} {self.resource} {self.name}{tail}"


@dataclass(frozen=True)
class Plan:
    """An ordered list of changes with readable text and HTML forms."""

    changes: tuple[Change, ...]

    @classmethod
    def of(cls, changes: Iterable[Change]) -> Plan:
        return cls(tuple(changes))

    def __iter__(self) -> Iterator[Change]:
        return iter(self.changes)

    def __len__(self) -> int:
        return len(self.changes)

    @property
    def pending(self) -> tuple[Change, ...]:
        """The changes that would actually do something."""
        return tuple(c for c in self.changes if c.action != "unchanged")

    @property
    def empty(self) -> bool:
        return not self.pending

    def __str__(self) -> str:
        if not self.changes:
            return "Nothing to do."
        counts = {a: sum(1 for c in self.changes if c.action == a) for a in _SYMBOLS}
        summary = ", ".join(f"{n} to {a}" if a != "unchanged" else f"{n} unchanged" for a, n in counts.items() if n)
        return "\n".join([*(str(c) for c in self.changes), f"Plan: {summary}."])

    def _repr_html_(self) -> str:
        from html import escape

        rows = "".join(
            f"<tr><td>{escape(_SYMBOLS[c.action])} {escape(c.action)}</td><td>{escape(c.resource)}</td>"
            f"<td><code>{escape(c.name)}</code></td><td>{escape(c.detail)}</td></tr>"
            for c in self.changes
        )
        return (
            "<table class='codecapsule-plan'><thead><tr><th>action</th><th>resource</th><th>name</th>"
            f"<th>detail</th></tr></thead><tbody>{rows}</tbody></table>"
        )
