"""A python3 kernelspec that starts *this* interpreter, for tests that run real kernels (nbclient, jupyter_client)."""

from __future__ import annotations

import json
import sys
from pathlib import Path


def write_python_kernelspec(jupyter_path: Path) -> Path:
    """Write ``kernels/python3/kernel.json`` under ``jupyter_path`` (put it first on JUPYTER_PATH); return it."""
    spec = jupyter_path / "kernels" / "python3"
    spec.mkdir(parents=True)
    argv = [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"]
    (spec / "kernel.json").write_text(
        json.dumps({"argv": argv, "display_name": "Python 3 (codecapsule tests)", "language": "python"})
    )
    return spec
