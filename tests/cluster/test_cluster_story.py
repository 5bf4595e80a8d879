"""The admin's story, end to end, with the real azure-mgmt-* and cloudflare SDKs against stateful fakes:
plan → deploy → status → scale → autoscale → install a runtime → logs → reimage → teardown, asserting on what
the
fakes hold afterwards. Plus: idempotent re-deploy, a failure half way, missing credentials, secrets, the
CLI."""

from __future__ import annotations

import base64
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from codecapsule._errors import (
    CloudAPIError,
    ConfirmationRequired,
    InvalidRequest,
    MissingCredentials,
    OperationFailed,
)
from codecapsule.cluster import Cluster, ClusterSpec
from codecapsule.cluster.cloud_init import custom_data_sha256
from tests.fakes.arm import FakeARM
from tests.fakes.cloudflare import FakeCloudflare
from tests.fakes.piston import PistonTestServer

from .conftest import DOMAIN, FakeVMs

WRITES = {"PUT", "PATCH", "POST", "DELETE"}


def arm_writes(arm: FakeARM, since: int = 0) -> list[str]:
    return [f"{r.method} {r.path}" for r in arm.requests[since:] if r.method in WRITES]


def only(items: list[dict[str, Any]]) -> dict[str, Any]:
    assert len(items) == 1, items
    return items[0]


def vmss_of(arm: FakeARM, spec: ClusterSpec) -> dict[str, Any]:
    return only(arm.find("Microsoft.Compute/virtualMachineScaleSets", spec.vmss_name))


def custom_data_of(arm: FakeARM, spec: ClusterSpec) -> str:
    encoded = vmss_of(arm, spec)["properties"]["virtualMachineProfile"]["osProfile"]["customData"]
    return base64.b64decode(encoded).decode()


def the_tunnel(cloudflare: FakeCloudflare) -> dict[str, Any]:
    return only(cloudflare.live_tunnels())


def test_admin_story(
    cluster: Cluster, arm: FakeARM, cloudflare: FakeCloudflare, vms: FakeVMs, piston: PistonTestServer
) -> None:
    spec = cluster.spec
    shown: list[str] = []  # everything the story shows a person; checked for secrets at the end
    progress: list[str] = []

    # -- plan: everything to create, nothing written anywhere ------------------------------------------------
    plan = cluster.plan()
    shown += [str(plan), plan._repr_html_(), repr(cluster)]
    assert {c.action for c in plan} == {"create"}
    kinds = {c.resource for c in plan}
    assert {
        "tunnel",
        "dns record",
        "resource group",
        "VM scale set",
        "NAT gateway",
        "autoscale setting",
    } <= kinds
    assert arm_writes(arm) == [] and cloudflare.operations(writes_only=True) == []

    # -- deploy
    # ------------------------------------------------------------------------------------------------
    applied = cluster.deploy(progress=progress.append)
    assert applied == plan
    assert progress and any("Deployed" in line for line in progress)

    nsg = only(arm.find("networkSecurityGroups", spec.nsg_name))
    deny = [r["properties"] for r in nsg["properties"]["securityRules"]]
    assert any(
        r["access"] == "Deny"
        and r["direction"] == "Inbound"
        and r["sourceAddressPrefix"] == "Internet"
        and r["destinationPortRange"] == "*"
        for r in deny
    )
    vnet = only(arm.find("virtualNetworks", spec.vnet_name))
    subnet = only([s for s in vnet["properties"]["subnets"] if s["name"] == spec.subnet_name])["properties"]
    nat = only(arm.find("natGateways", spec.nat_gateway_name))
    assert subnet["natGateway"]["id"].lower() == nat["id"].lower()
    assert subnet["networkSecurityGroup"]["id"].lower() == nsg["id"].lower()
    vmss = vmss_of(arm, spec)
    assert vmss["properties"]["orchestrationMode"] == "Uniform"
    for nic in vmss["properties"]["virtualMachineProfile"]["networkProfile"][
        "networkInterfaceConfigurations"
    ]:
        for ip in nic["properties"]["ipConfigurations"]:
            assert "publicIPAddressConfiguration" not in ip["properties"]  # no public IP on any VM
    tunnel = the_tunnel(cloudflare)
    tunnel_token = cloudflare.tunnel_token(tunnel["id"])
    custom_data = custom_data_of(arm, spec)
    assert custom_data.startswith("#cloud-config") and tunnel_token in custom_data
    assert vmss["tags"]["codecapsule-cloud-init-sha256"] == custom_data_sha256(custom_data)
    assert vmss["tags"]["codecapsule-runtimes"] == "gcc=10.2.0,java=15.0.2,node=20.11.1,python=3.12.0"
    with cloudflare.lock:
        ingress = cloudflare.configs[tunnel["id"]]["config"]["ingress"]
        (record,) = [r for r in cloudflare.dns_records.values() if r["name"] == spec.hostname]
        (app,) = cloudflare.access_apps.values()
        policies = [cloudflare.access_policies[p["id"]] for p in app["policies"]]
        token_ids = set(cloudflare.service_tokens)
    assert ingress == [
        {"hostname": spec.hostname, "service": "http://localhost:2000"},
        {"service": "http_status:404"},
    ]
    assert (record["type"], record["content"], record["proxied"]) == (
        "CNAME",
        f"{tunnel['id']}.cfargotunnel.com",
        True,
    )
    assert app["domain"] == spec.hostname
    assert any(
        p["decision"] == "non_identity"
        and {i["service_token"]["token_id"] for i in p["include"]} <= token_ids
        for p in policies
    )

    # -- status: the VM's cloudflared connects; Piston answers through spec.url behind Access
    # -----------------
    cloudflare.connect(tunnel["id"], origin_ip="10.0.1.4")
    service_token = cluster.service_token()
    assert service_token is not None
    piston.faults.require_access = (service_token.client_id, service_token.client_secret)
    status = cluster.status()
    shown += [str(status), status._repr_html_()]
    assert status.deployed and status.capacity == 1 and status.vm_size == "Standard_B2s"
    assert [(i.instance_id, i.power_state) for i in status.instances] == [("0", "running")]
    assert status.tunnel.status == "healthy" and len(status.tunnel.connectors) == 1
    assert status.tunnel.dns_ok and status.tunnel.ingress_ok and status.tunnel.access_protected
    assert status.piston.reachable, status.piston.error
    assert ("python", "3.12.0") in status.piston.runtimes and ("c++", "10.2.0") in status.piston.runtimes
    assert all(
        r.headers.get("cf-access-client-id") == service_token.client_id
        for r in piston.requests("/api/v2/runtimes")
    )
    assert status.piston.round_trip_ms is not None
    assert status.healthy, status.problems
    assert "healthy" in str(status) and "1 connector" in str(status)

    # -- class day: scale to 3, autoscale 1..5
    # -----------------------------------------------------------------
    cluster.scale(3)
    assert vmss_of(arm, spec)["sku"]["capacity"] == 3
    assert [v["instanceId"] for v in arm.instances(spec.vmss_name)] == ["0", "1", "2"]
    state = cluster.autoscale(minimum=1, maximum=5, scale_out_cpu=70, scale_in_cpu=30, enabled=True)
    assert (state.enabled, state.minimum, state.maximum) == (True, 1, 5)
    setting = only(arm.find("autoscalesettings", spec.autoscale_name))
    assert setting["properties"]["enabled"] is True
    assert setting["properties"]["profiles"][0]["capacity"]["minimum"] == "1"
    assert setting["properties"]["profiles"][0]["capacity"]["maximum"] == "5"
    assert vmss_of(arm, spec)["sku"]["capacity"] == 3  # still inside 1..5, autoscale leaves it

    # -- adding a language: on every running VM now, in the cloud-init of new VMs
    # -------------------------------
    outcomes = cluster.install_runtime("rust", "1.68.2")
    assert outcomes == {"0": "installed", "1": "installed", "2": "installed"}
    assert all(("rust", "1.68.2") in vms.installed(i) for i in ("0", "1", "2"))
    new_custom_data = custom_data_of(arm, spec)
    assert "rust 1.68.2" in new_custom_data
    assert vmss_of(arm, spec)["tags"]["codecapsule-runtimes"].endswith("python=3.12.0,rust=1.68.2")
    assert vmss_of(arm, spec)["tags"]["codecapsule-cloud-init-sha256"] == custom_data_sha256(new_custom_data)
    assert ("rust", "1.68.2") in cluster.spec.runtimes
    again = cluster.install_runtime("rust", "1.68.2")
    assert set(again.values()) == {"already installed"}
    with pytest.raises(InvalidRequest):
        cluster.install_runtime("rust; reboot", "1")

    # -- logs
    # ---------------------------------------------------------------------------------------------------
    before = len(vms.scripts)
    text = cluster.logs(instance=1, source="piston", lines=50)
    assert text.strip() == "piston[1]: API listening on 0.0.0.0:2000"
    assert vms.scripts[before] == ("1", ["docker logs --tail 50 piston 2>&1"])
    assert "Registered tunnel connection" in cluster.logs(instance="2", source="cloudflared")
    assert "piston=ok" in cluster.logs(source="health")
    assert "finished" in cluster.logs(source="cloud-init", lines=10)
    shown.append(text)
    with pytest.raises(InvalidRequest, match="instances: 0, 1, 2"):
        cluster.logs(instance=7)
    with pytest.raises(InvalidRequest, match="piston, cloudflared"):
        cluster.logs(source="kernel")

    # -- reimage
    # ------------------------------------------------------------------------------------------------
    mark = len(arm.requests)
    cluster.reimage()
    assert any("reimageall" in w.lower() for w in arm_writes(arm, mark))
    assert all(i.power_state == "running" for i in cluster.azure.instances())

    # -- teardown
    # -----------------------------------------------------------------------------------------------
    with pytest.raises(ConfirmationRequired) as refused:
        cluster.teardown(confirm="yes")
    shown.append(str(refused.value))
    assert vmss_of(arm, spec)  # nothing was deleted
    cluster.teardown(confirm=spec.resource_group, progress=progress.append)
    assert [r for r in arm.resources if "/resourcegroups/" in r.lower()] == []
    assert cloudflare.live_tunnels() == []
    with cloudflare.lock:
        assert cloudflare.dns_records == {} and cloudflare.access_apps == {}
        assert cloudflare.access_policies == {} and cloudflare.service_tokens == {}
    assert cluster.service_token() is None

    # -- no secret anywhere a person could see
    # ----------------------------------------------------------------
    shown += progress
    secrets = [tunnel_token, cloudflare.api_token, arm.token, service_token.client_secret]
    joined = "\n".join(shown)
    for secret in secrets:
        assert secret not in joined


def test_redeploy_changes_nothing(cluster: Cluster, arm: FakeARM, cloudflare: FakeCloudflare) -> None:
    cluster.deploy(progress=False)
    mark = len(arm.requests)
    cloudflare.clear_log()
    plan = cluster.plan()
    assert plan.empty, str(plan)
    lines: list[str] = []
    assert cluster.deploy(progress=lines.append).empty
    assert arm_writes(arm, mark) == []
    assert cloudflare.operations(writes_only=True) == []
    assert lines == ["Nothing to change: the cluster already matches the spec."]


def test_a_failure_half_way_is_clear_and_the_next_deploy_finishes(
    cluster: Cluster, arm: FakeARM, cloudflare: FakeCloudflare
) -> None:
    spec = cluster.spec
    arm.fail_next(
        "PUT",
        f"virtualmachinescalesets/{spec.vmss_name}",
        code="AllocationFailed",
        message="Allocation failed. We do not have sufficient capacity for the requested VM size.",
    )
    with pytest.raises(OperationFailed) as failed:
        cluster.deploy(progress=False)
    message = str(failed.value)
    assert spec.vmss_name in message and "AllocationFailed" in message
    assert cloudflare.tunnel_token(the_tunnel(cloudflare)["id"]) not in message
    # What was done before the failure stays done; the autoscale setting (after the VMSS) was never written.
    assert only(arm.find("natGateways", spec.nat_gateway_name))
    assert arm.find("autoscalesettings", spec.autoscale_name) == []

    plan = cluster.plan()
    assert {(c.resource, c.action) for c in plan.pending} >= {("autoscale setting", "create")}
    assert not any(c.resource in ("tunnel", "NAT gateway", "virtual network") for c in plan.pending)
    cluster.deploy(progress=False)
    assert vmss_of(arm, spec)["properties"]["provisioningState"] == "Succeeded"
    assert only(arm.find("autoscalesettings", spec.autoscale_name))["properties"]["enabled"] is True
    assert cluster.plan().empty
    assert len(cloudflare.live_tunnels()) == 1


def test_missing_credentials_are_named_before_any_request(
    arm: FakeARM, cloudflare: FakeCloudflare, config_dir: Path
) -> None:
    env = {
        "CODECAPSULE_DOMAIN": DOMAIN,
        "CODECAPSULE_AZURE_ENDPOINT": arm.endpoint,
        "CODECAPSULE_CLOUDFLARE_ENDPOINT": cloudflare.endpoint,
    }
    with pytest.raises(MissingCredentials) as missing:
        Cluster.from_env(env)
    for name in ("AZURE_SUBSCRIPTION_ID", "CLOUDFLARE_ACCOUNT_ID", "CLOUDFLARE_API_TOKEN"):
        assert name in str(missing.value)
    assert "CODECAPSULE_DOMAIN" not in str(missing.value)

    # A Cluster built without a Cloudflare token fails at its first Cloudflare step, before any request.
    spec = ClusterSpec(
        domain=DOMAIN,
        subscription_id=arm.subscription_id,
        cloudflare_account_id="acc",
        azure_endpoint=arm.endpoint,
        azure_ca_bundle=arm.ca_bundle,
        cloudflare_endpoint=cloudflare.endpoint,
        poll_interval=0,
    )
    with pytest.raises(MissingCredentials, match="CLOUDFLARE_API_TOKEN"):
        Cluster(spec, credential=arm.credential).deploy(progress=False)
    assert arm.requests == [] and cloudflare.requests == []


def test_cost_needs_no_cloud(cluster: Cluster, arm: FakeARM, cloudflare: FakeCloudflare) -> None:
    estimate = cluster.cost()
    assert (estimate.minimum, estimate.maximum) == (1, 5)
    assert cluster.cost(capacity=3).total_min == cluster.cost(capacity=3).total_max
    assert arm.requests == [] and cloudflare.requests == []


def test_no_secret_in_reprs_errors_or_clients(
    cluster: Cluster, arm: FakeARM, cloudflare: FakeCloudflare
) -> None:
    cluster.deploy(progress=False)
    token = cluster.service_token()
    assert token is not None
    tunnel_token = cloudflare.tunnel_token(the_tunnel(cloudflare)["id"])
    client = cluster.client()
    try:
        assert client.settings.access_headers["CF-Access-Client-Secret"] == token.client_secret
        shown = [
            repr(cluster),
            str(cluster),
            repr(token),
            str(token),
            repr(client),
            repr(client.settings),
            repr(cluster.azure),
            repr(cluster.tunnel),
            repr(cluster.spec),
            str(cluster.status()),
            cluster.status()._repr_html_(),
            repr(cluster.status()),
        ]
    finally:
        client.close()
    arm.fail_next(
        "GET",
        f"virtualmachinescalesets/{cluster.spec.vmss_name}",
        status=403,
        code="AuthorizationFailed",
        message="The client does not have authorization to read it.",
    )
    with pytest.raises(CloudAPIError) as info:
        cluster.status()
    shown.append(str(info.value))
    joined = "\n".join(shown)
    for secret in (token.client_secret, tunnel_token, cloudflare.api_token, arm.token):
        assert secret not in joined


def run_cli(env: dict[str, str], *commands: list[str]) -> list[subprocess.CompletedProcess[str]]:
    """Run ``python -m codecapsule.cluster.cli ARGS`` for each command, in parallel subprocesses."""
    cwd = Path(__file__).resolve().parents[2]
    procs = [
        (
            args,
            subprocess.Popen(
                [sys.executable, "-m", "codecapsule.cluster.cli", *args],
                env=env,
                cwd=cwd,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            ),
        )
        for args in commands
    ]
    done = []
    for args, proc in procs:
        out, err = proc.communicate(timeout=120)
        done.append(subprocess.CompletedProcess(args, proc.returncode, out, err))
    return done


def test_cli_against_the_fakes(
    cluster: Cluster,
    cluster_env: dict[str, str],
    arm: FakeARM,
    cloudflare: FakeCloudflare,
    piston: PistonTestServer,
) -> None:
    # Refusals happen before any cloud call (and before any SDK import).
    no_token = {k: v for k, v in cluster_env.items() if k != "CLOUDFLARE_API_TOKEN"}
    (refused,) = run_cli(cluster_env, ["cluster", "teardown", "--confirm", "wrong-rg"])
    (missing,) = run_cli(no_token, ["cluster", "status"])
    assert refused.returncode == 2 and "Traceback" not in refused.stderr
    assert refused.stderr.count("\n") == 1 and "codecapsule-rg" in refused.stderr
    assert (
        missing.returncode == 2
        and "CLOUDFLARE_API_TOKEN" in missing.stderr
        and "Traceback" not in missing.stderr
    )
    assert arm.requests == [] and cloudflare.requests == []

    cluster.deploy(progress=False)
    cloudflare.connect(the_tunnel(cloudflare)["id"])
    token = cluster.service_token()
    assert token is not None
    piston.faults.require_access = (
        token.client_id,
        token.client_secret,
    )  # the CLI must send the stored token
    mark = len(arm.requests)
    cloudflare.clear_log()
    planned, status, doctor, cost = run_cli(
        cluster_env,
        ["cluster", "plan"],
        ["cluster", "status"],
        ["doctor"],
        ["cluster", "cost", "--min", "1", "--max", "4"],
    )
    assert planned.returncode == 0, planned.stderr
    assert "= VM scale set codecapsule-piston" in planned.stdout and "Plan: 13 unchanged." in planned.stdout
    assert arm_writes(arm, mark) == [] and cloudflare.operations(writes_only=True) == []
    assert status.returncode == 0, status.stderr
    assert "capacity 1" in status.stdout and "healthy" in status.stdout
    assert doctor.returncode == 0, doctor.stdout + doctor.stderr
    assert "[ok  ] tunnel has connectors" in doctor.stdout and "[ok  ] instances healthy" in doctor.stdout
    assert "0 failed" in doctor.stdout
    assert cost.returncode == 0, cost.stderr
    assert "max 4 VMs" in cost.stdout and "NAT gateway" in cost.stdout

    outputs = "\n".join(p.stdout + p.stderr for p in (planned, status, cost, doctor, refused, missing))
    secret = cluster.service_token()
    assert secret is not None
    for value in (
        secret.client_secret,
        cloudflare.api_token,
        arm.token,
        cloudflare.tunnel_token(the_tunnel(cloudflare)["id"]),
    ):
        assert value not in outputs


def test_importing_codecapsule_loads_no_cloud_sdk() -> None:
    probe = (
        "import sys, codecapsule, codecapsule.cluster, codecapsule.cluster.cli\n"
        "from codecapsule.cluster import Cluster, ClusterSpec\n"
        "heavy = sorted(m for m in sys.modules if m.split('.')[0] in "
        "{'azure', 'cloudflare', 'duckdb', 'IPython', 'ipywidgets', 'pandas'})\n"
        "print(heavy)\n"
    )
    run = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == "[]"
