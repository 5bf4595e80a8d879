"""One home for Piston knowledge: the doctor, install_runtime and the VMs' installer read Piston's answers
through the protocol module's tables, so each answer has one name everywhere."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import yaml

from codecapsule import Client
from codecapsule._errors import PistonError
from codecapsule.cluster.cloud_init import render_cloud_init
from codecapsule.cluster.doctor import FIXES, run_doctor
from codecapsule.engines.piston_protocol import symptom
from tests.cluster.test_cloud_init import TOKEN, spec
from tests.fakes.piston import PistonTestServer


@pytest.mark.parametrize(
    "status,body",
    [
        (502, b"<html>502 Bad Gateway</html>"),
        (502, b"error code: 1033"),
        (530, b"error code: 1033"),
        (524, b"Error code 524"),
        (404, b'{"message":"Not Found"}'),
        (403, b"Forbidden"),
    ],
)
def test_the_doctor_names_an_answer_as_the_client_does(status: int, body: bytes) -> None:
    with PistonTestServer() as server:
        server.faults.answer_next(status, body, n=2)
        with Client(piston_url=server.url, engine="piston", retries=0) as c:
            try:
                c.runtimes()
            except PistonError as exc:
                key, detail = symptom(exc)
            else:  # pragma: no cover - the fault makes it fail
                pytest.fail("no error")
        checks = {c.name: c for c in run_doctor(piston_url=server.url, env={})}
    check = checks["runtimes API (GET /api/v2/runtimes)"]
    assert check.ok is False and check.detail == detail and check.fix == FIXES[key]
    assert check.detail.startswith(f"HTTP {status}: ")
    if b"1033" in body:
        assert key == "530"  # no connector: not "origin down", whatever the status


def _installer(tmp_path: Path, api: str) -> Path:
    config = yaml.safe_load(render_cloud_init(spec(), TOKEN))
    script = next(f["content"] for f in config["write_files"] if f["path"].endswith("codecapsule-install-runtimes"))
    script = script.replace("LOG=/var/log/codecapsule-runtimes.log", f"LOG={tmp_path}/log")
    script = script.replace("API=http://127.0.0.1:2000", f"API={api}")
    script = script.replace("/tmp/codecapsule-package.out", f"{tmp_path}/out")
    path = tmp_path / "install"
    path.write_text(script)
    return path


def test_the_vms_installer_acts_on_the_packages_table(tmp_path: Path) -> None:
    with PistonTestServer() as server:
        installer = _installer(tmp_path, server.url)

        def run(*args: str) -> int:
            return subprocess.run(["bash", str(installer), *args], capture_output=True, timeout=60).returncode

        assert run("rust", "1.68.2") == 0  # 200
        assert run("rust", "1.68.2") == 0  # 500 "Already installed"
        assert run("cobol", "1.0.0") == 2  # 404: no such package, no retry
    log = (tmp_path / "log").read_text()
    assert "rust 1.68.2: installed" in log and "rust 1.68.2: already installed" in log
    assert "cobol 1.0.0: the package index has no such package" in log
