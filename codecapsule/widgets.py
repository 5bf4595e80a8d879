"""The scaling panel, importable from its historical place: ``from codecapsule.widgets import ScalingPanel``.

The panel lives in :mod:`codecapsule.cluster.panel` (layout, controller, background worker). This module
imports ipywidgets at import time; ``import codecapsule`` never imports it.
"""

from __future__ import annotations

from .cluster.panel import DEFAULT_AUTO_REFRESH, LOG_LINES, MIN_AUTO_REFRESH, ScalingPanel
from .cluster.status import instance_health

__all__ = ["DEFAULT_AUTO_REFRESH", "LOG_LINES", "MIN_AUTO_REFRESH", "ScalingPanel", "instance_health"]
