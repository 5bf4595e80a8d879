"""The scaling panel (ipywidgets): :mod:`.layout` builds the widgets, :mod:`.controller` drives them from a
Cluster, :mod:`.worker` runs the slow calls in the background. Importing this imports ipywidgets;
``import codecapsule`` never does."""

from __future__ import annotations

from .controller import LOG_LINES, ScalingPanel
from .layout import DEFAULT_AUTO_REFRESH, MIN_AUTO_REFRESH

__all__ = ["DEFAULT_AUTO_REFRESH", "LOG_LINES", "MIN_AUTO_REFRESH", "ScalingPanel"]
