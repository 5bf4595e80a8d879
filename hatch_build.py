"""Hatch build hook: ship the JupyterLab extension built from ``labextension/`` inside the wheel.

``npm run build`` in ``labextension/`` (scripts/test.sh does it) writes the prebuilt extension to
``codecapsule/labextension/``; the wheel installs it as ``share/jupyter/labextensions/codecapsule-labextension``,
where JupyterLab and Notebook 7 find it without a rebuild. A checkout where it was not built still builds (a
warning says the wheel lacks the highlighting): CI builds it first, and tests/test_packaging.py checks the wheel.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from hatchling.builders.hooks.plugin.interface import BuildHookInterface

BUILT = Path("codecapsule") / "labextension"


class LabExtensionHook(BuildHookInterface):  # type: ignore[type-arg]
    PLUGIN_NAME = "custom"

    def initialize(self, version: str, build_data: dict[str, Any]) -> None:
        built = Path(self.root) / BUILT
        manifest = built / "package.json"
        if not manifest.is_file():
            message = (
                f"the JupyterLab extension is not built ({BUILT}/ is missing): run "
                "`npm ci && npm run build` in labextension/ first (scripts/test.sh does)."
            )
            print(f"codecapsule build: warning: {message} This build has no %%capsule highlighting.", file=sys.stderr)
            return
        name = json.loads(manifest.read_text())["name"]
        build_data["shared_data"][str(BUILT)] = f"share/jupyter/labextensions/{name}"
