"""Fixtures for the cluster tests: the fake ARM (HTTPS) and fake Cloudflare API servers, a fake VM side for
run
command, a Piston-compatible server, and a :class:`Cluster` wired to all of them through its public knobs
(``credential=``, ``azure_endpoint``, ``azure_ca_bundle``, ``cloudflare_endpoint``, ``poll_interval=0``)."""

from __future__ import annotations

import shlex
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from codecapsule.cluster.cluster import Cluster
from codecapsule.cluster.spec import ClusterSpec
from tests.fakes.arm import FakeARM, running_fake_arm
from tests.fakes.cloudflare import FakeCloudflare
from tests.fakes.piston import PistonTestServer

DOMAIN = "example.edu"


# Piston packages as the cluster's VMs have them after boot (the spec's default runtimes), plus rust, which an
# admin can add with install_runtime.
CLUSTER_PACKAGES = (
    (("gcc", "10.2.0", (("c", ("gcc",), "gcc"), ("c++", ("cpp", "g++"), "gcc"))), True),
    (("java", "15.0.2", (("java", (), None),)), True),
    (("node", "20.11.1", (("javascript", ("node-javascript", "node-js", "js"), "node"),)), True),
    (("python", "3.12.0", (("python", ("py", "py3", "python3", "python3.12"), None),)), True),
    (("rust", "1.68.2", (("rust", ("rs",), None),)), False),
)


@dataclass
class FakeVMs:
    """The scale set's VMs as Azure run command reaches them: each VM runs its own Piston (a
    :class:`PistonTestServer`, started on first use) and answers the scripts the Cluster sends.

    A package install (a ``body=...`` line and a curl to ``127.0.0.1:2000/api/v2/packages``) is really POSTed
    to
    that VM's Piston and answered the way the script prints it (``HTTP <code>`` then the body). A log read
    (``docker logs``, ``journalctl``, ``tail``) gets a recognisable line per source.
    """

    servers: dict[str, PistonTestServer] = field(default_factory=dict)
    scripts: list[tuple[str, list[str]]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def piston(self, instance_id: str) -> PistonTestServer:
        with self.lock:
            if instance_id not in self.servers:
                self.servers[instance_id] = PistonTestServer(packages=CLUSTER_PACKAGES).start()
            return self.servers[instance_id]

    def close(self) -> None:
        for server in self.servers.values():
            server.stop()

    def __call__(self, instance_id: str, script: list[str]) -> str:
        with self.lock:
            self.scripts.append((instance_id, list(script)))
        text = "\n".join(script)
        if "/api/v2/packages" in text:
            body_line = next(line for line in script if line.startswith("body="))
            body = shlex.split(body_line[len("body=") :])[0]
            response = httpx.post(
                self.piston(instance_id).url + "/api/v2/packages",
                content=body,
                headers={"Content-Type": "application/json"},
            )
            return f"HTTP {response.status_code}\n{response.text}\n"
        if "docker logs" in text:
            return f"piston[{instance_id}]: API listening on 0.0.0.0:2000\n"
        if "journalctl -u cloudflared" in text:
            return f"cloudflared[{instance_id}]: Registered tunnel connection connIndex=0\n"
        if "codecapsule-health.log" in text:
            return f"2025-06-01T10:00:00Z piston=ok cloudflared=ok ({instance_id})\n"
        if "cloud-init-output.log" in text:
            return f"Cloud-init v. 24.1 finished ({instance_id})\n"
        return ""

    def installed(self, instance_id: str) -> set[tuple[str, str]]:
        return {(spec[0], spec[1]) for spec, on in self.piston(instance_id).packages if on}


@pytest.fixture
def arm() -> Iterator[FakeARM]:
    with running_fake_arm() as fake:
        yield fake


@pytest.fixture
def cloudflare() -> Iterator[FakeCloudflare]:
    with FakeCloudflare(zone_name=DOMAIN) as fake:
        yield fake


@pytest.fixture
def vms(arm: FakeARM) -> Iterator[FakeVMs]:
    fake = FakeVMs()
    arm.run_command_responder = fake
    try:
        yield fake
    finally:
        fake.close()


@pytest.fixture
def config_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A private CODECAPSULE_CONFIG_DIR (where the service-token secret is stored)."""
    path = tmp_path / "config"
    monkeypatch.setenv("CODECAPSULE_CONFIG_DIR", str(path))
    # Never let a developer's real settings leak into these tests.
    for name in (
        "CLOUDFLARE_API_TOKEN",
        "CODECAPSULE_ACCESS_CLIENT_ID",
        "CODECAPSULE_ACCESS_CLIENT_SECRET",
        "CODECAPSULE_PISTON_URL",
    ):
        monkeypatch.delenv(name, raising=False)
    return path


@pytest.fixture
def piston() -> Iterator[PistonTestServer]:
    """Piston as clients reach it through the tunnel (a Piston-compatible server on 127.0.0.1)."""
    with PistonTestServer(packages=CLUSTER_PACKAGES) as server:
        yield server


@pytest.fixture
def piston_url(piston: PistonTestServer) -> str:
    return piston.url


@pytest.fixture
def spec(arm: FakeARM, cloudflare: FakeCloudflare, piston_url: str) -> ClusterSpec:
    return ClusterSpec(
        domain=DOMAIN,
        subscription_id=arm.subscription_id,
        cloudflare_account_id=cloudflare.account_id,
        azure_endpoint=arm.endpoint,
        azure_ca_bundle=arm.ca_bundle,
        cloudflare_endpoint=cloudflare.endpoint,
        poll_interval=0,
        # Through the tunnel the URL would be https://tunnel.example.edu; the tests reach Piston directly.
        piston_url=piston_url,
    )


@pytest.fixture
def cluster(
    spec: ClusterSpec, arm: FakeARM, cloudflare: FakeCloudflare, vms: FakeVMs, config_dir: Path
) -> Cluster:
    return Cluster(spec, credential=arm.credential, cloudflare_token=cloudflare.api_token)


@pytest.fixture
def cluster_env(
    spec: ClusterSpec, arm: FakeARM, cloudflare: FakeCloudflare, config_dir: Path, piston_url: str
) -> dict[str, str]:
    """The environment a `codecapsule cluster ...` subprocess needs to reach the same fakes."""
    import os

    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(config_dir.parent),
        "CODECAPSULE_DOMAIN": DOMAIN,
        "AZURE_SUBSCRIPTION_ID": arm.subscription_id,
        "CLOUDFLARE_ACCOUNT_ID": cloudflare.account_id,
        "CLOUDFLARE_API_TOKEN": cloudflare.api_token,
        "CODECAPSULE_AZURE_ACCESS_TOKEN": arm.token,
        "CODECAPSULE_AZURE_ENDPOINT": arm.endpoint,
        "CODECAPSULE_AZURE_CA_BUNDLE": arm.ca_bundle,
        "CODECAPSULE_CLOUDFLARE_ENDPOINT": cloudflare.endpoint,
        "CODECAPSULE_POLL_INTERVAL": "0",
        "CODECAPSULE_CONFIG_DIR": str(config_dir),
        "CODECAPSULE_PISTON_URL": piston_url,
    }
