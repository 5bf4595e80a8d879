"""AzureProvider through the real azure-mgmt-* clients against the stateful fake ARM (HTTPS on loopback)."""

from __future__ import annotations

import base64
import hashlib
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from codecapsule._errors import CloudAPIError, InvalidRequest, MissingCredentials, OperationFailed
from codecapsule.cluster.azure import CLOUD_INIT_SHA_TAG, RUNTIMES_TAG, AzureProvider
from codecapsule.cluster.spec import ClusterSpec
from tests.fakes import arm as fake_arm_module
from tests.fakes.arm import FakeARM, FakeCredential, running_fake_arm

fake_arm = fake_arm_module.fake_arm  # the fixture: a running FakeARM per test

CLOUD_INIT = "#cloud-config\nruncmd:\n  - echo hello from codecapsule\n"
SECRET = "tunnel-token-SECRET-abc123"
CLOUD_INIT_WITH_SECRET = CLOUD_INIT + f"# token {SECRET}\n"
SHA = hashlib.sha256(CLOUD_INIT.encode()).hexdigest()
TAGS = {CLOUD_INIT_SHA_TAG: SHA, RUNTIMES_TAG: "python-3.12.0"}


def _rsa_public_key(bits: int) -> str:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    public = rsa.generate_private_key(public_exponent=65537, key_size=bits).public_key()
    return public.public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH).decode()


def make_spec(fake: FakeARM, **overrides: Any) -> ClusterSpec:
    values: dict[str, Any] = dict(
        domain="example.edu",
        subscription_id=fake.subscription_id,
        cloudflare_account_id="0123456789abcdef",
        azure_endpoint=fake.endpoint,
        azure_ca_bundle=fake.ca_bundle,
        poll_interval=0,
    )
    values.update(overrides)
    return ClusterSpec(**values)


@pytest.fixture
def provider(fake_arm: FakeARM) -> Iterator[AzureProvider]:
    with AzureProvider(make_spec(fake_arm), fake_arm.credential) as p:
        yield p


@pytest.fixture
def deployed(provider: AzureProvider) -> AzureProvider:
    provider.deploy(CLOUD_INIT, tags=TAGS, progress=lambda m: None)
    return provider


def writes(fake: FakeARM) -> list[tuple[str, str]]:
    return [(r.method, r.path.lower()) for r in fake.requests if r.method in ("PUT", "PATCH", "POST", "DELETE")]


# -- deploy --------------------------------------------------------------------------------------------------


def test_deploy_creates_the_whole_shape(fake_arm: FakeARM, provider: AzureProvider) -> None:
    messages: list[str] = []
    provider.deploy(CLOUD_INIT_WITH_SECRET, tags={RUNTIMES_TAG: "python-3.12.0"}, progress=messages.append)
    spec = provider.spec

    assert fake_arm.get(provider.resource_group_id) is not None
    nsg = fake_arm.get(provider.nsg_id)
    assert nsg is not None
    rules = nsg["properties"]["securityRules"]
    assert [
        (
            r["properties"]["priority"],
            r["properties"]["direction"],
            r["properties"]["access"],
            r["properties"]["sourceAddressPrefix"],
            r["properties"]["destinationPortRange"],
        )
        for r in rules
    ] == [(100, "Inbound", "Deny", "Internet", "*")]

    ip = fake_arm.get(provider.public_ip_id)
    assert ip is not None and ip["sku"]["name"] == "Standard"
    assert ip["properties"]["publicIPAllocationMethod"] == "Static"
    nat = fake_arm.get(provider.nat_gateway_id)
    assert nat is not None and nat["sku"]["name"] == "Standard"
    assert [x["id"].lower() for x in nat["properties"]["publicIpAddresses"]] == [provider.public_ip_id.lower()]

    vnet = fake_arm.find("virtualNetworks", spec.vnet_name)[0]
    assert vnet["properties"]["addressSpace"]["addressPrefixes"] == ["10.0.0.0/16"]
    (subnet,) = vnet["properties"]["subnets"]
    assert subnet["properties"]["addressPrefix"] == "10.0.1.0/24"
    assert subnet["properties"]["natGateway"]["id"].lower() == provider.nat_gateway_id.lower()
    assert subnet["properties"]["networkSecurityGroup"]["id"].lower() == provider.nsg_id.lower()

    vmss = fake_arm.get(provider.vmss_id)
    assert vmss is not None
    props = vmss["properties"]
    assert vmss["sku"] == {"name": "Standard_B2s", "tier": "Standard", "capacity": 1}
    assert props["overprovision"] is False
    assert props["orchestrationMode"] == "Uniform"
    assert props["upgradePolicy"]["mode"] == "Manual"
    os_profile = props["virtualMachineProfile"]["osProfile"]
    assert base64.b64decode(os_profile["customData"]).decode() == CLOUD_INIT_WITH_SECRET
    assert os_profile["linuxConfiguration"]["disablePasswordAuthentication"] is True
    key = os_profile["linuxConfiguration"]["ssh"]["publicKeys"][0]["keyData"]
    assert key.startswith("ssh-rsa ")  # the throwaway key: no private half exists anywhere
    from cryptography.hazmat.primitives.serialization import load_ssh_public_key

    assert load_ssh_public_key(key.encode()).key_size == 3072  # type: ignore[union-attr]
    assert "adminPassword" not in os_profile
    (nic,) = props["virtualMachineProfile"]["networkProfile"]["networkInterfaceConfigurations"]
    (ipconf,) = nic["properties"]["ipConfigurations"]
    assert "publicIPAddressConfiguration" not in ipconf["properties"]
    assert ipconf["properties"]["subnet"]["id"].lower() == provider.subnet_id.lower()
    assert vmss["tags"] == {
        "app": "codecapsule",
        RUNTIMES_TAG: "python-3.12.0",
        CLOUD_INIT_SHA_TAG: hashlib.sha256(CLOUD_INIT_WITH_SECRET.encode()).hexdigest(),
    }

    (setting,) = fake_arm.find("autoscalesettings")
    assert setting["properties"]["enabled"] is True
    assert setting["properties"]["targetResourceUri"].lower() == provider.vmss_id.lower()
    profile = setting["properties"]["profiles"][0]
    assert profile["capacity"] == {"minimum": "1", "maximum": "5", "default": "1"}
    rules = [
        (
            r["metricTrigger"]["operator"],
            r["metricTrigger"]["threshold"],
            r["scaleAction"]["direction"],
            r["metricTrigger"]["timeWindow"],
            r["scaleAction"]["cooldown"],
        )
        for r in profile["rules"]
    ]
    assert rules == [
        ("GreaterThan", 70, "Increase", "PT5M", "PT5M"),
        ("LessThan", 30, "Decrease", "PT5M", "PT5M"),
    ]

    assert "Creating NAT gateway codecapsule-nat (outbound internet access for subnet piston-subnet)…" in messages
    assert not any(SECRET in m for m in messages)

    status = provider.status()
    assert status.vmss_exists and status.capacity == 1 and status.provisioning_state == "Succeeded"
    assert [(i.instance_id, i.provisioning_state, i.power_state, i.latest_model) for i in status.instances] == [
        ("0", "Succeeded", "running", True)
    ]
    assert status.autoscale is not None and (status.autoscale.minimum, status.autoscale.maximum) == (1, 5)
    assert status.tags[RUNTIMES_TAG] == "python-3.12.0"


def test_deploy_uses_the_spec_ssh_key(fake_arm: FakeARM) -> None:
    key = _rsa_public_key(2048) + " teacher@laptop"
    with AzureProvider(make_spec(fake_arm, ssh_public_key=key), fake_arm.credential) as p:
        p.deploy(CLOUD_INIT, tags=TAGS)
        vmss = fake_arm.get(p.vmss_id)
    assert vmss is not None
    ssh = vmss["properties"]["virtualMachineProfile"]["osProfile"]["linuxConfiguration"]["ssh"]
    assert ssh["publicKeys"] == [{"path": "/home/capsuleadmin/.ssh/authorized_keys", "keyData": key}]


def test_deploy_twice_writes_nothing_the_second_time(fake_arm: FakeARM, deployed: AzureProvider) -> None:
    before = len(fake_arm.requests)
    messages: list[str] = []
    deployed.deploy(CLOUD_INIT, tags=TAGS, progress=messages.append)
    second = fake_arm.requests[before:]
    assert [r for r in second if r.method in ("PUT", "PATCH", "POST", "DELETE")] == []
    assert "VM scale set codecapsule-piston is up to date." in messages
    plan = deployed.plan(custom_data_sha256=SHA, runtimes_tag="python-3.12.0")
    assert {c.action for c in plan} == {"unchanged"}
    assert [c.resource for c in plan] == [
        "resource group",
        "network security group",
        "public IP",
        "NAT gateway",
        "virtual network",
        "VM scale set",
        "autoscale setting",
    ]


def test_plan_is_read_only_and_reports_create_then_update(fake_arm: FakeARM, provider: AzureProvider) -> None:
    plan = provider.plan(custom_data_sha256=SHA, runtimes_tag=None)
    assert [c.action for c in plan] == ["create"] * 7
    assert all(r.method in ("GET", "HEAD") for r in fake_arm.requests)

    provider.deploy(CLOUD_INIT, tags=TAGS)
    n = len(fake_arm.requests)
    plan = provider.plan(custom_data_sha256="0" * 64, runtimes_tag="python-3.12.0,node-20.11.1")
    vmss_change = next(c for c in plan if c.resource == "VM scale set")
    assert vmss_change.action == "update"
    assert "cloud-init changed" in vmss_change.detail and "runtimes changed" in vmss_change.detail
    assert all(r.method in ("GET", "HEAD") for r in fake_arm.requests[n:])


def test_changed_cloud_init_updates_the_vmss_only(fake_arm: FakeARM, deployed: AzureProvider) -> None:
    before = len(fake_arm.requests)
    new_text = CLOUD_INIT + "# v2\n"
    new_sha = hashlib.sha256(new_text.encode()).hexdigest()
    deployed.deploy(new_text, tags={CLOUD_INIT_SHA_TAG: new_sha})
    puts = [
        (r.method, r.path.lower().rsplit("/", 2)[-2])
        for r in fake_arm.requests[before:]
        if r.method in ("PUT", "PATCH")
    ]
    assert puts == [("PUT", "virtualmachinescalesets")]
    vmss = fake_arm.get(deployed.vmss_id)
    assert vmss is not None and vmss["tags"][CLOUD_INIT_SHA_TAG] == new_sha
    # Manual upgrade policy: the running instance keeps the old model until reimaged
    assert [i.latest_model for i in deployed.instances()] == [False]


def test_vmss_failure_is_reported_and_the_next_deploy_resumes(fake_arm: FakeARM, provider: AzureProvider) -> None:
    fake_arm.fail_next(
        "PUT",
        "virtualmachinescalesets/codecapsule-piston",
        code="SkuNotAvailable",
        message="The requested VM size Standard_B2s is not available in westeurope.",
    )
    with pytest.raises(OperationFailed) as info:
        provider.deploy(CLOUD_INIT, tags=TAGS)
    text = str(info.value)
    assert "VM scale set codecapsule-piston" in text
    assert "SkuNotAvailable" in text and "not available in westeurope" in text
    assert "run deploy again" in text
    assert provider.status().provisioning_state == "Failed"
    assert fake_arm.find("autoscalesettings") == []  # stopped at the failure

    plan = provider.plan(custom_data_sha256=SHA, runtimes_tag=None)
    assert [c.action for c in plan if c.resource != "VM scale set" and c.resource != "autoscale setting"] == [
        "unchanged"
    ] * 5
    assert "failed" in next(c for c in plan if c.resource == "VM scale set").detail

    n = len(fake_arm.requests)
    provider.deploy(CLOUD_INIT, tags=TAGS)
    assert [p for m, p in writes_since(fake_arm, n)] == ["virtualmachinescalesets", "autoscalesettings"]
    status = provider.status()
    assert status.provisioning_state == "Succeeded"
    assert [(i.provisioning_state, i.power_state) for i in status.instances] == [("Succeeded", "running")]


def writes_since(fake: FakeARM, n: int) -> list[tuple[str, str]]:
    return [
        (r.method, r.path.lower().rsplit("/", 2)[-2])
        for r in fake.requests[n:]
        if r.method in ("PUT", "PATCH", "POST", "DELETE")
    ]


def test_http_error_becomes_cloud_api_error(fake_arm: FakeARM, provider: AzureProvider) -> None:
    fake_arm.fail_next(
        "PUT",
        "natgateways",
        status=403,
        code="AuthorizationFailed",
        message="The client does not have authorization to perform action.",
    )
    with pytest.raises(CloudAPIError) as info:
        provider.deploy(CLOUD_INIT, tags=TAGS)
    err = info.value
    assert (err.service, err.status_code, err.code) == ("azure", 403, "AuthorizationFailed")
    assert "NAT gateway codecapsule-nat" in str(err) and "Contributor" in str(err)


# -- scale and autoscale -------------------------------------------------------------------------------------


def test_scale_to_three_lists_three_instances(fake_arm: FakeARM, deployed: AzureProvider) -> None:
    deployed.scale(3)
    instances = deployed.instances()
    assert [i.instance_id for i in instances] == ["0", "1", "2"]
    assert {(i.provisioning_state, i.power_state) for i in instances} == {("Succeeded", "running")}
    assert [i.name for i in instances] == [
        "codecapsule-piston_0",
        "codecapsule-piston_1",
        "codecapsule-piston_2",
    ]
    assert deployed.status().capacity == 3
    deployed.scale(2)
    assert [i.instance_id for i in deployed.instances()] == ["0", "1"]


def test_scale_outside_the_bounds_moves_them(fake_arm: FakeARM, deployed: AzureProvider) -> None:
    messages: list[str] = []
    deployed.scale(7, progress=messages.append)
    status = deployed.status()
    assert status.capacity == 7 and len(status.instances) == 7
    assert status.autoscale is not None
    assert (status.autoscale.minimum, status.autoscale.maximum) == (1, 7)
    assert any("moving the range to 1..7" in m for m in messages)
    # a later deploy keeps the bounds the operator chose
    deployed.deploy(CLOUD_INIT, tags=TAGS)
    after = deployed.status().autoscale
    assert after is not None and (after.minimum, after.maximum) == (1, 7)


def test_the_fake_autoscale_engine_reverts_an_unmoved_capacity(fake_arm: FakeARM, deployed: AzureProvider) -> None:
    # the reason scale() must move the bounds: a raw capacity update outside them is undone
    from azure.mgmt.compute import ComputeManagementClient
    from azure.mgmt.compute import models as c

    with ComputeManagementClient(
        fake_arm.credential,
        fake_arm.subscription_id,
        base_url=fake_arm.endpoint,
        connection_verify=fake_arm.ca_bundle,
        polling_interval=0,
    ) as cc:
        cc.virtual_machine_scale_sets.begin_update(
            "codecapsule-rg", "codecapsule-piston", c.VirtualMachineScaleSetUpdate(sku=c.Sku(capacity=7))
        ).result()
    assert deployed.status().capacity == 5


def test_autoscale_change(fake_arm: FakeARM, deployed: AzureProvider) -> None:
    state = deployed.autoscale(minimum=2, maximum=8, scale_out_cpu=80, scale_in_cpu=20, enabled=True)
    assert (state.enabled, state.minimum, state.maximum, state.scale_out_cpu, state.scale_in_cpu) == (
        True,
        2,
        8,
        80.0,
        20.0,
    )
    assert state.default == 2
    stored = fake_arm.find("autoscalesettings")[0]["properties"]["profiles"][0]
    assert stored["capacity"] == {"minimum": "2", "maximum": "8", "default": "2"}
    assert deployed.status().capacity == 2  # the autoscale engine honours the new minimum

    off = deployed.autoscale(minimum=2, maximum=8, scale_out_cpu=80, scale_in_cpu=20, enabled=False)
    assert off.enabled is False
    deployed.scale(12)  # autoscale off: the bounds stay
    status = deployed.status()
    assert status.capacity == 12
    assert status.autoscale is not None and status.autoscale.maximum == 8

    with pytest.raises(InvalidRequest):
        deployed.autoscale(minimum=5, maximum=2, scale_out_cpu=80, scale_in_cpu=20, enabled=True)
    with pytest.raises(InvalidRequest):
        deployed.autoscale(minimum=1, maximum=2, scale_out_cpu=20, scale_in_cpu=80, enabled=True)


def test_scale_without_a_deployment_says_deploy_first(provider: AzureProvider) -> None:
    with pytest.raises(CloudAPIError, match="Run deploy first") as info:
        provider.scale(2)
    assert info.value.code == "ResourceNotFound"


# -- run command, reimage, update model ----------------------------------------------------------------------


def test_run_command_returns_the_responders_output(fake_arm: FakeARM, deployed: AzureProvider) -> None:
    seen: list[tuple[str, list[str]]] = []

    def responder(instance_id: str, script: list[str]) -> tuple[str, str]:
        seen.append((instance_id, script))
        return "piston listening on :2000", "warning: none"

    fake_arm.run_command_responder = responder
    message = deployed.run_command("0", ["docker logs --tail 5 piston"])
    assert message == "Enable succeeded: \n[stdout]\npiston listening on :2000\n[stderr]\nwarning: none"
    assert seen == [("0", ["docker logs --tail 5 piston"])]


def test_second_concurrent_run_command_is_a_conflict(fake_arm: FakeARM, deployed: AzureProvider) -> None:
    release = threading.Event()
    started = threading.Event()

    def slow(instance_id: str, script: list[str]) -> str:
        started.set()
        release.wait(10)
        return "done"

    fake_arm.run_command_responder = slow
    results: list[str] = []
    first = threading.Thread(target=lambda: results.append(deployed.run_command("0", ["sleep 1"])))
    first.start()
    try:
        assert started.wait(10)
        with AzureProvider(deployed.spec, fake_arm.credential) as other, pytest.raises(CloudAPIError) as info:
            other.run_command("0", ["echo second"])
        assert info.value.status_code == 409 and info.value.code == "Conflict"
        assert "wait for it to finish" in str(info.value)
    finally:
        release.set()
        first.join(10)
    assert results == ["Enable succeeded: \n[stdout]\ndone\n[stderr]\n"]


def test_reimage_all_and_update_model(fake_arm: FakeARM, deployed: AzureProvider) -> None:
    deployed.scale(2)
    n = len(fake_arm.requests)
    deployed.reimage()
    posted = [r for r in fake_arm.requests[n:] if r.method in ("PUT", "PATCH", "POST", "DELETE")]
    assert [(r.method, r.path.lower().rsplit("/", 1)[-1], r.body) for r in posted] == [("POST", "reimageall", None)]
    assert {(i.provisioning_state, i.power_state) for i in deployed.instances()} == {("Succeeded", "running")}

    new_text = CLOUD_INIT + "# v3\n"
    deployed.update_model(new_text, tags={RUNTIMES_TAG: "python-3.12.0,gcc-10.2.0"})
    vmss = fake_arm.get(deployed.vmss_id)
    assert vmss is not None
    assert base64.b64decode(vmss["properties"]["virtualMachineProfile"]["osProfile"]["customData"]).decode() == new_text
    assert vmss["tags"][CLOUD_INIT_SHA_TAG] == hashlib.sha256(new_text.encode()).hexdigest()
    assert vmss["tags"][RUNTIMES_TAG] == "python-3.12.0,gcc-10.2.0"
    assert [i.latest_model for i in deployed.instances()] == [False, False]

    n = len(fake_arm.requests)
    deployed.reimage(["1"])
    posted = [r for r in fake_arm.requests[n:] if r.method == "POST"]
    assert [r.path.lower().rsplit("/", 1)[-1] for r in posted] == ["manualupgrade", "reimageall"]
    assert posted[0].body == {"instanceIds": ["1"]} and posted[1].body == {"instanceIds": ["1"]}
    assert [i.latest_model for i in deployed.instances()] == [False, True]
    with pytest.raises(InvalidRequest, match="no instance 9"):
        deployed.reimage(["9"])


# -- teardown and credentials --------------------------------------------------------------------------------


def test_teardown_leaves_nothing(fake_arm: FakeARM, deployed: AzureProvider) -> None:
    deployed.scale(2)
    messages: list[str] = []
    deployed.teardown(progress=messages.append)
    assert fake_arm.resources == {}
    methods = [(r.method, r.path.lower().rsplit("/", 2)[-2]) for r in fake_arm.requests if r.method == "DELETE"]
    assert methods == [("DELETE", "autoscalesettings"), ("DELETE", "resourcegroups")]
    assert messages[-1] == "Resource group codecapsule-rg deleted."
    status = deployed.status()
    assert (status.resource_group_exists, status.vmss_exists, status.instances) == (False, False, ())
    deployed.teardown(progress=messages.append)  # idempotent
    assert "nothing to delete" in messages[-1]


def test_invalid_token_is_a_clear_error(fake_arm: FakeARM) -> None:
    with AzureProvider(make_spec(fake_arm), FakeCredential("not-the-right-token")) as p:
        with pytest.raises(CloudAPIError) as info:
            p.instances()
        with pytest.raises(CloudAPIError) as head_info:
            p.status()  # starts with a HEAD: no error body, still a 401
    assert info.value.status_code == 401 and info.value.code == "InvalidAuthenticationToken"
    assert "az login" in str(info.value)
    assert "not-the-right-token" not in str(info.value)
    assert head_info.value.status_code == 401 and "az login" in str(head_info.value)


def test_missing_credential_is_a_clear_error(fake_arm: FakeARM) -> None:
    from azure.identity import CredentialUnavailableError

    class NoLogin:
        def get_token(self, *scopes: str, **kwargs: Any) -> Any:
            raise CredentialUnavailableError("DefaultAzureCredential failed to retrieve a token.")

    with (
        AzureProvider(make_spec(fake_arm), NoLogin()) as p,
        pytest.raises(MissingCredentials, match="az login"),
    ):
        p.plan(custom_data_sha256=None, runtimes_tag=None)
    assert fake_arm.requests == []  # nothing reached the server


def test_no_header_means_401(fake_arm: FakeARM) -> None:
    import ssl
    import urllib.error
    import urllib.request

    sub = fake_arm.subscription_id
    url = f"{fake_arm.endpoint}/subscriptions/{sub}/resourcegroups/x?api-version=2025-04-01"
    ctx = ssl.create_default_context(cafile=fake_arm.ca_bundle)
    with pytest.raises(urllib.error.HTTPError) as info:
        urllib.request.urlopen(url, context=ctx, timeout=10)
    assert info.value.code == 401
    assert b"AuthenticationFailed" in info.value.read()


def test_secrets_never_in_repr_or_plan(fake_arm: FakeARM, provider: AzureProvider) -> None:
    provider.deploy(CLOUD_INIT_WITH_SECRET, tags={})
    plan = provider.plan(custom_data_sha256="f" * 64, runtimes_tag=None)
    assert SECRET not in repr(provider) and SECRET not in " ".join(str(c) for c in plan)
    assert fake_arm.token not in repr(fake_arm.credential)


def test_fake_stops_cleanly() -> None:
    before = {t.ident for t in threading.enumerate()}
    with running_fake_arm() as fake, AzureProvider(make_spec(fake), fake.credential) as p:
        p.deploy(CLOUD_INIT, tags=TAGS)
        p.instances()
    leftover = [t for t in threading.enumerate() if t.ident not in before and t.is_alive()]
    assert leftover == []


def test_the_fake_refuses_a_non_rsa_key_the_way_azure_does(fake_arm: FakeARM, deployed: AzureProvider) -> None:
    """So that an ED25519 throwaway key (the old default) would fail the deploy tests, as on real Azure."""
    from azure.core.exceptions import HttpResponseError
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ed25519

    key = (
        ed25519.Ed25519PrivateKey.generate()
        .public_key()
        .public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
        .decode()
    )
    model = deployed._vmss_model(CLOUD_INIT, TAGS, 1, key)
    cc = deployed._client("compute")
    with pytest.raises(HttpResponseError) as caught:
        cc.virtual_machine_scale_sets.begin_create_or_update("codecapsule-rg", "other-vmss", model).result()
    assert caught.value.error is not None and caught.value.error.code == "InvalidParameter"
    assert fake_arm.find("Microsoft.Compute/virtualMachineScaleSets", "other-vmss") == []
