"""What a spec would be before anything is deployed: the plan of a first deploy, the monthly cost and the lab
hours — computed without credentials and without a single cloud call, so an admin sees it first."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .._errors import MissingCredentials
from .costs import CostEstimate, estimate_cost
from .plan import Plan
from .resources import preview_all
from .schedule import ScheduleView, schedule_view

if TYPE_CHECKING:
    from .spec import ClusterSpec

__all__ = ["Preview", "preview"]


class _NoCredential:
    """Stands in for an Azure credential in a preview: asking it for a token is a bug, said plainly."""

    def get_token(self, *scopes: str, **kwargs: Any) -> Any:
        raise MissingCredentials("a preview makes no cloud call; build Cluster(spec, credential=...) to deploy.")


@dataclass(frozen=True)
class Preview:
    """The plan of a first deploy, the cost estimate and the schedule of a spec."""

    plan: Plan
    cost: CostEstimate
    schedule: ScheduleView

    def __str__(self) -> str:
        return "\n\n".join([str(self.plan), str(self.cost), str(self.schedule)])

    def _repr_html_(self) -> str:
        return (
            "<div class='codecapsule-preview'>"
            + self.plan._repr_html_()
            + self.cost._repr_html_()
            + self.schedule._repr_html_()
            + "</div>"
        )


def preview(spec: ClusterSpec) -> Preview:
    """The :class:`Preview` of ``spec`` (pure: no credentials, no network)."""
    from .azure import AzureProvider
    from .tunnel import TunnelProvider

    tunnel = TunnelProvider(spec, "preview: no token needed")
    azure = AzureProvider(spec, _NoCredential())  # type: ignore[arg-type]
    changes = [*preview_all(tunnel.resources()), *preview_all(azure.resources())]
    return Preview(plan=Plan.of(changes), cost=estimate_cost(spec), schedule=schedule_view(spec))
