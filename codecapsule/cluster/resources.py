"""Cloud resources as small units, walked in one order by plan, deploy, status and teardown.

A :class:`Resource` knows how to *read* what exists (None = missing), *diff* it against the spec (an action
and a short detail, never a secret), *apply* the desired state and *delete* it. A provider lists its
resources once, in dependency order; the walkers below give every operation the same order (teardown walks
it backwards). A :class:`Walk` carries what earlier units read or wrote (e.g. the tunnel id the DNS record
points at) to later ones.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, cast

from .plan import Action, Change

__all__ = ["Resource", "Walk", "apply_all", "delete_all", "plan_all", "preview_all", "quiet", "read_all"]

Progress = Callable[[str], None]


def quiet(_message: str) -> None:
    """The default progress callback: say nothing."""


class Walk(dict[str, Any]):
    """Resource key → what exists (after a read) or what was written (after an apply)."""


@dataclass(frozen=True)
class Resource:
    """One cloud resource of a cluster.

    ``read(walk)`` returns the current object or None; ``diff(walk, current)`` returns (action, detail);
    ``apply(walk, current, action, progress)`` creates or updates it and returns the new current object
    (deploy announces it first as "Creating <kind> <name> (<detail>)…" unless ``announce`` is False, for
    resources that say what they did themselves);
    ``delete(walk, current, progress)`` removes it and says so (``delete=None``: it goes with its parent,
    e.g. everything inside a resource group).
    """

    key: str  # unique within a provider, e.g. "nat"
    kind: str  # shown to people, e.g. "NAT gateway"
    name: str
    read: Callable[[Walk], Any]
    diff: Callable[[Walk, Any], tuple[str, str]]
    apply: Callable[[Walk, Any, str, Progress], Any]
    delete: Callable[[Walk, Any, Progress], None] | None = None
    #: what deploy says when nothing changes (default: "<Kind> <name> is up to date.")
    up_to_date: str = ""
    announce: bool = True
    #: what ``read`` returns when the resource does not exist (a preview diffs against it)
    missing: Any = None


def _capital(text: str) -> str:
    return text[:1].upper() + text[1:]


def read_all(resources: Sequence[Resource], walk: Walk | None = None) -> Walk:
    """Read every resource in order (later reads may use earlier ones)."""
    walk = Walk() if walk is None else walk
    for resource in resources:
        walk[resource.key] = resource.read(walk)
    return walk


def plan_all(resources: Sequence[Resource], walk: Walk | None = None) -> list[Change]:
    """What :func:`apply_all` would do, one Change per resource; reads only."""
    walk = Walk() if walk is None else walk
    changes = []
    for resource in resources:
        current = walk[resource.key] = resource.read(walk)
        action, detail = resource.diff(walk, current)
        changes.append(Change(cast(Action, action), resource.kind, resource.name, detail))
    return changes


def preview_all(resources: Sequence[Resource]) -> list[Change]:
    """The plan for an empty account, without reading anything: what a first deploy would create."""
    walk = Walk()
    changes = []
    for resource in resources:
        current = walk[resource.key] = resource.missing
        action, detail = resource.diff(walk, current)
        changes.append(Change(cast(Action, action), resource.kind, resource.name, detail))
    return changes


def apply_all(resources: Sequence[Resource], progress: Progress, walk: Walk | None = None) -> Walk:
    """Create or update what differs, in order; what already matches is left alone (idempotent)."""
    walk = Walk() if walk is None else walk
    for resource in resources:
        current = resource.read(walk)
        action, detail = resource.diff(walk, current)
        if action == "unchanged":
            walk[resource.key] = current
            progress(resource.up_to_date or f"{_capital(resource.kind)} {resource.name} is up to date.")
            continue
        if resource.announce:
            verb = "Creating" if action == "create" else "Updating"
            progress(f"{verb} {resource.kind} {resource.name}" + (f" ({detail})" if detail else "") + "…")
        walk[resource.key] = resource.apply(walk, current, action, progress)
    return walk


def delete_all(resources: Sequence[Resource], progress: Progress) -> None:
    """Read everything in order, then delete in reverse order what exists and can be deleted on its own."""
    walk = read_all(resources)
    for resource in reversed(resources):
        current = walk.get(resource.key)
        if resource.delete is None or current is None:
            continue
        resource.delete(walk, current, progress)
