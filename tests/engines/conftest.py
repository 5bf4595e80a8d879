"""Fixtures the engine tests share."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator

import pytest


@pytest.fixture(scope="module")
def workroot() -> Iterator[str]:
    """A work root for a module's local engines, reachable by the sandbox's unprivileged uid; removed afterwards."""
    root = tempfile.mkdtemp(prefix="capsule-live-", dir="/tmp")
    os.chmod(root, 0o755)  # the sandbox's unprivileged uid must reach its work directory
    yield root
    shutil.rmtree(root, ignore_errors=True)
