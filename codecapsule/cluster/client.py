"""The client a cluster hands out: a :class:`codecapsule.Client` whose "nobody answers" errors say when the
cluster wakes and how to wake it or run locally.

With lab hours the scale set is at 0 VMs most of the week, so "no connector for this tunnel" (530/1033) or
"origin down" (502/503) is the expected answer at night, not a fault. The engines stay unaware of clusters:
this subclass only adds a sentence to those two errors, computed by the cluster (pure: no cloud call).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .._client import Client
from .._errors import OriginDown, TunnelNotConnected
from .._jobs import Job
from .._results import Result
from .._settings import EngineChoice

__all__ = ["ClusterClient"]


class ClusterClient(Client):
    """A Client for a cluster's Piston; ``offline_hint()`` gives the sentence added to a sleeping-cluster
    error (None: add nothing)."""

    def __init__(self, *args: Any, offline_hint: Callable[[], str | None], **options: Any) -> None:
        super().__init__(*args, **options)
        self._offline_hint = offline_hint

    def run(self, job: Job, *, engine: EngineChoice | None = None) -> Result:
        try:
            return super().run(job, engine=engine)
        except (TunnelNotConnected, OriginDown) as exc:
            hint = self._offline_hint()
            if not hint:
                raise
            raise type(exc)(f"{exc} {hint}", url=exc.url, status_code=exc.status_code, body=exc.body) from None
