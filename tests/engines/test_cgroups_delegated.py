"""A normal user with a delegated cgroup subtree gets memory, process and CPU limits (engines/_cgroups.py).

Delegation is what systemd's ``Delegate=`` does for ``user@UID.service``: the subtree is chowned to the user. As
root, the test builds such a subtree for uid 65534 by hand, then runs tests/engines/delegated.py as that user:
once naming the subtree (CODECAPSULE_CGROUP_PARENT), once found by the engine itself from the group it was started
in, and once with nothing delegated, where the engine must say that no cgroup is in force.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from codecapsule.engines._workdir import reachable_by_others

CGROUPS = Path("/sys/fs/cgroup")
V1_HIERARCHIES = ("memory", "pids", "cpu", "cpuacct")
USER = 65534
_AS_USER = ("setpriv", f"--reuid={USER}", f"--regid={USER}", "--clear-groups")


def _driver_env(home: str, extra: dict[str, str]) -> tuple[str, Path, dict[str, str]]:
    site = next(p for p in sys.path if p.endswith("site-packages"))
    root = Path(__file__).resolve().parents[2]
    python = "/usr/bin/python3" if os.access("/usr/bin/python3", os.X_OK) else sys.executable
    if not all(reachable_by_others(p) for p in (str(root), site, python)):
        pytest.skip("the checkout, its site-packages or python cannot be reached by an unprivileged user")
    env = {"PATH": "/usr/bin:/bin", "HOME": home, "TMPDIR": home, "PYTHONPATH": f"{root}:{site}", **extra}
    return python, root, env


@pytest.fixture
def delegated() -> Iterator[str]:
    """A v1 cgroup (in every hierarchy the engine uses) owned by uid 65534, with a ``session`` child; removed after."""
    if os.geteuid() != 0 or not shutil.which("setpriv"):
        pytest.skip("needs root to delegate a cgroup to an unprivileged user")
    if (CGROUPS / "cgroup.controllers").exists():
        pytest.skip("pure cgroup v2 here: this test builds a v1 delegation (the v2 path is the same rule, unverified)")
    dirs = [CGROUPS / h for h in V1_HIERARCHIES if (CGROUPS / h / "cgroup.procs").exists()]
    if not any(d.name == "memory" for d in dirs) or not any(d.name == "pids" for d in dirs):
        pytest.skip("no v1 memory and pids hierarchies to delegate")
    name = f"cc-delegated-{uuid.uuid4().hex[:8]}"
    made: list[Path] = []
    try:
        for d in dirs:
            group = d / name
            group.mkdir()
            made.append(group)
            (group / "session").mkdir()
            made.append(group / "session")
            for path in [group, *group.rglob("*")]:
                os.chown(path, USER, USER)
        yield f"/{name}"
    finally:
        for group in reversed(made):
            for child in group.iterdir() if group.name != "session" else ():
                if child.is_dir() and child.name.startswith("codecapsule-"):
                    child.rmdir()  # a run group the engine failed to remove would fail the test here
            group.rmdir()


def _drive(env_extra: dict[str, str], join: str | None = None) -> dict[str, object]:
    with tempfile.TemporaryDirectory() as home:
        os.chmod(home, 0o777)
        python, root, env = _driver_env(home, env_extra)
        argv = [*_AS_USER, python, "-m", "tests.engines.delegated"]
        if join is not None:
            # start the user's process inside the delegated subtree, as systemd starts a user session in it
            procs = " ".join(str(CGROUPS / h / join.strip("/") / "session" / "cgroup.procs") for h in V1_HIERARCHIES
                             if (CGROUPS / h / join.strip("/")).exists())  # fmt: skip
            argv = ["sh", "-c", f'for f in {procs}; do echo $$ > "$f"; done; exec "$@"', "sh", *argv]
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=180, cwd=root, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report: dict[str, object] = json.loads(proc.stdout.splitlines()[-1])
    assert report["uid"] == USER
    return report


def _assert_limited(report: dict[str, object], group: str) -> None:
    cgroup = report["cgroup"]
    assert isinstance(cgroup, dict) and cgroup["memory_parent"].endswith(group), report
    assert report["hog"] == ["memory_limit", "ML"], report  # the cgroup's OOM event, not the program's message
    verdict, message = report["cpu"]  # type: ignore[misc]
    assert verdict == "time_limit" and "CPU time" in message, report  # both processes' CPU, summed by the cgroup
    facts = report["facts"]
    assert isinstance(facts, dict) and "delegated to you" in facts["cgroup"], facts


def test_a_named_delegated_cgroup_limits_memory_and_cpu(delegated: str) -> None:
    _assert_limited(_drive({"CODECAPSULE_CGROUP_PARENT": delegated}), delegated)


def test_the_engine_finds_the_subtree_it_was_started_in(delegated: str) -> None:
    _assert_limited(_drive({}, join=delegated), delegated)


def test_without_delegation_the_engine_says_no_cgroup_is_in_force(delegated: str) -> None:
    report = _drive({})
    assert report["cgroup"] is None
    facts = report["facts"]
    assert isinstance(facts, dict) and "no cgroup is delegated to your user" in facts["cgroup"], facts
    assert report["hog"][0] == "memory_limit" and report["hog"][1] != "ML"  # type: ignore[index]


def test_a_parent_that_is_not_delegated_is_a_clear_error(delegated: str) -> None:
    with tempfile.TemporaryDirectory() as home:
        os.chmod(home, 0o777)
        python, root, env = _driver_env(home, {"CODECAPSULE_CGROUP_PARENT": "/"})
        code = "from codecapsule.engines.local import LocalEngine\nLocalEngine()"
        proc = subprocess.run(
            [*_AS_USER, python, "-c", code],
            capture_output=True, text=True, timeout=60, cwd=root, env=env,
        )  # fmt: skip
    assert proc.returncode != 0
    assert "ConfigurationError: cannot create run cgroups under '/'" in proc.stderr
