"""Cluster: deploy, operate and tear down the Cloudflare Tunnel + Azure VM Scale Set.

>>> from codecapsule.cluster import Cluster                # doctest: +SKIP
>>> cluster = Cluster.from_env(); cluster.plan(); cluster.deploy()  # doctest: +SKIP

Importing this package loads no cloud SDK: the providers import ``azure.*`` and ``cloudflare`` inside the
methods that call them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .cloud_init import render_cloud_init
from .cluster import Cluster, StaticTokenCredential
from .costs import CostEstimate, CostItem, estimate_cost
from .doctor import Check, run_doctor
from .plan import Change, Plan
from .schedule import LabHours, ScheduleView
from .spec import ClusterSpec
from .status import ClusterStatus, PistonHealth

if TYPE_CHECKING:
    from .azure import AutoscaleState, AzureProvider, AzureStatus, Instance
    from .preview import Preview
    from .tunnel import Connector, ServiceToken, ServiceTokenInfo, TunnelProvider, TunnelStatus

__all__ = [
    "AutoscaleState",
    "AzureProvider",
    "AzureStatus",
    "Change",
    "Check",
    "Cluster",
    "ClusterSpec",
    "ClusterStatus",
    "Connector",
    "CostEstimate",
    "CostItem",
    "Instance",
    "LabHours",
    "PistonHealth",
    "Plan",
    "Preview",
    "ScheduleView",
    "ServiceToken",
    "ServiceTokenInfo",
    "StaticTokenCredential",
    "TunnelProvider",
    "TunnelStatus",
    "estimate_cost",
    "render_cloud_init",
    "run_doctor",
]

_LAZY = {
    "AutoscaleState": "azure",
    "AzureProvider": "azure",
    "AzureStatus": "azure",
    "Instance": "azure",
    "Connector": "tunnel",
    "ServiceToken": "tunnel",
    "ServiceTokenInfo": "tunnel",
    "Preview": "preview",
    "TunnelProvider": "tunnel",
    "TunnelStatus": "tunnel",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'codecapsule.cluster' has no attribute {name!r}")
    from importlib import import_module

    return getattr(import_module(f".{module}", __name__), name)
