"""The Azure side of a cluster: resource group, private network with NAT, VM Scale Set and CPU autoscale.

:class:`AzureProvider` talks to Azure Resource Manager with the official ``azure-mgmt-*`` clients. Everything
it deploys is idempotent: each resource is read first and written only when it is missing or differs from the
spec, so re-running :meth:`AzureProvider.deploy` after a failure resumes where it stopped. Request bodies are
built from the SDK model classes (the "hybrid" models of compute ≥ 38 / network ≥ 31 send a plain dict as-is,
in REST shape).

The ``azure.*`` packages are slow to import, so they are imported inside the methods that use them and the
clients are created once per provider.
"""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from .._errors import CloudAPIError, InvalidRequest, MissingCredentials, OperationFailed
from ._sdk import dig as _dig
from ._sdk import text as _text
from .azure_autoscale import (
    AutoscaleState,
    autoscale_desired,
    autoscale_diff,
    autoscale_model,
    autoscale_state,
    default_profile,
)
from .azure_network import NETWORK, AzureIds, NetworkUnit
from .plan import Change
from .resources import Progress, Resource, Walk, apply_all, delete_all, plan_all, quiet, read_all
from .spec import check_autoscale, check_capacity

if TYPE_CHECKING:
    from azure.core.credentials import TokenCredential

    from .spec import ClusterSpec

__all__ = [
    "CLOUD_INIT_SHA_TAG",
    "RUNTIMES_TAG",
    "AutoscaleState",
    "AzureProvider",
    "AzureStatus",
    "Instance",
]

#: VMSS tag holding the SHA-256 of the cloud-init text the model was last deployed with.
CLOUD_INIT_SHA_TAG = "codecapsule-cloud-init-sha256"
#: VMSS tag holding the runtimes the cloud-init installs (e.g. "python-3.12.0,node-20.11.1").
RUNTIMES_TAG = "codecapsule-runtimes"

_POWER_STATES = {
    "running": "running",
    "starting": "starting",
    "stopped": "stopped",
    "stopping": "stopped",
    "deallocated": "deallocated",
    "deallocating": "deallocated",
}


# -- public value types --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Instance:
    """One VM of the scale set."""

    instance_id: str  # "0", "1", ...
    name: str  # e.g. "codecapsule-piston_0"
    provisioning_state: str  # "Succeeded", "Creating", "Failed", ...
    power_state: str  # "running" | "starting" | "stopped" | "deallocated" | "unknown"
    latest_model: bool | None  # latestModelApplied


@dataclass(frozen=True)
class AzureStatus:
    """What exists in Azure right now."""

    resource_group_exists: bool
    vmss_exists: bool
    capacity: int | None
    vm_size: str | None
    provisioning_state: str | None
    instances: tuple[Instance, ...]
    autoscale: AutoscaleState | None
    tags: dict[str, str] = field(default_factory=dict)  # the VMSS tags
    network_ok: bool = True  # NSG denies inbound, NAT gateway and subnet wired as the spec says


# -- helpers -------------------------------------------------------------------------------------------------


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


#: Size of the throwaway key: Azure takes RSA only (≥ 2048 bits) for Linux scale sets; 3072 is today's advice.
THROWAWAY_RSA_BITS = 3072


def _throwaway_ssh_public_key() -> str:
    """A fresh RSA-3072 *public* key whose private half is discarded at once.

    Azure refuses a Linux scale set that has password authentication disabled and no SSH key, and accepts
    only RSA keys there (ED25519 is refused with InvalidParameter). The VMs need no login at all (run command
    works without SSH, and cloudflared dials out), so when the spec supplies no key we give Azure a key that
    nobody holds: nothing secret is created or stored.
    """
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    private = rsa.generate_private_key(public_exponent=65537, key_size=THROWAWAY_RSA_BITS)
    raw = private.public_key().public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
    del private  # the private key is garbage-collected right here
    return raw.decode("ascii") + " codecapsule-no-login"


def _error_parts(exc: Any) -> tuple[str, str]:
    """(code, message) of an azure-core HttpResponseError, without the SDK's multi-line decoration."""
    error = getattr(exc, "error", None)
    code = str(getattr(error, "code", "") or "")
    message = str(getattr(error, "message", "") or "")
    if not message:
        message = str(getattr(exc, "message", "") or exc).strip().splitlines()[0] if str(exc).strip() else ""
        match = re.match(r"^\((?P<code>[^)]+)\)\s*(?P<msg>.*)$", message)
        if match:
            code = code or match["code"]
            message = match["msg"]
    return code or "Unknown", message.strip() or "no details given"


def _hint(code: str, status: int | None) -> str:
    """What to do about an Azure error, by its code."""
    lowered = code.lower()
    if status == 403 or "authorization" in lowered:
        return "The signed-in identity lacks permission: it needs the Contributor role on the subscription."
    if lowered in ("resourcegroupnotfound", "resourcenotfound", "notfound"):
        return "Nothing is deployed there yet: run deploy first."
    if lowered == "resourcegroupbeingdeleted":
        return "The resource group is still being deleted: wait until that finishes, then deploy again."
    if "quota" in lowered or lowered in ("skunotavailable", "allocationfailed", "zonalallocationfailed"):
        return (
            "Azure has no capacity or quota for this VM size here: choose another vm_size or location, or "
            "request more quota."
        )
    if lowered == "operationnotallowed":
        return "Azure does not allow this in the current state (e.g. a stopped VM): check status() and retry."
    if status == 409 or lowered == "conflict":
        return "Another operation is still running on it: wait for it to finish and try again."
    if status == 429:
        return "Azure is throttling requests: wait a minute and try again."
    return "Fix the cause and try again."


# -- the provider --------------------------------------------------------------------------------------------


class AzureProvider:
    """Create, inspect, scale and delete the Azure resources of one :class:`ClusterSpec`.

    ``credential`` is any ``azure.core.credentials.TokenCredential`` (usually ``DefaultAzureCredential()``).
    Clients are built on first use with ``base_url=spec.azure_endpoint``,
    ``connection_verify=spec.azure_ca_bundle`` (if set) and ``polling_interval=spec.poll_interval`` (if set).
    """

    def __init__(self, spec: ClusterSpec, credential: TokenCredential) -> None:
        self.spec = spec
        self._credential = credential
        self._clients: dict[str, Any] = {}

    def __repr__(self) -> str:
        return (
            f"AzureProvider(resource_group={self.spec.resource_group!r}, location={self.spec.location!r}, "
            f"endpoint={self.spec.azure_endpoint!r})"
        )

    def close(self) -> None:
        """Close the HTTP sessions of the clients built so far (they are rebuilt on next use)."""
        clients, self._clients = self._clients, {}
        for client in clients.values():
            client.close()

    def __enter__(self) -> AzureProvider:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- clients ---------------------------------------------------------------------------------------------

    def _client_kwargs(self) -> dict[str, Any]:
        kwargs: dict[str, Any] = {"base_url": self.spec.azure_endpoint}
        if self.spec.azure_ca_bundle:
            kwargs["connection_verify"] = self.spec.azure_ca_bundle
        if self.spec.poll_interval is not None:
            kwargs["polling_interval"] = self.spec.poll_interval
        return kwargs

    def _client(self, kind: str) -> Any:
        client = self._clients.get(kind)
        if client is not None:
            return client
        factory: Any
        if kind == "resource":
            from azure.mgmt.resource.resources import ResourceManagementClient as factory
        elif kind == "network":
            from azure.mgmt.network import NetworkManagementClient as factory
        elif kind == "compute":
            from azure.mgmt.compute import ComputeManagementClient as factory
        else:
            from azure.mgmt.monitor import MonitorManagementClient as factory
        client = factory(self._credential, self.spec.subscription_id, **self._client_kwargs())
        self._clients[kind] = client
        return client

    # -- ids -------------------------------------------------------------------------------------------------

    @property
    def ids(self) -> AzureIds:
        return AzureIds(self.spec)

    @property
    def resource_group_id(self) -> str:
        return self.ids.resource_group

    @property
    def nsg_id(self) -> str:
        return self.ids.nsg

    @property
    def public_ip_id(self) -> str:
        return self.ids.public_ip

    @property
    def nat_gateway_id(self) -> str:
        return self.ids.nat_gateway

    @property
    def subnet_id(self) -> str:
        return self.ids.subnet

    @property
    def vmss_id(self) -> str:
        return self.ids.vmss

    # -- error translation -----------------------------------------------------------------------------------

    @contextmanager
    def _call(self, action: str) -> Iterator[None]:
        """Turn SDK exceptions raised while doing ``action`` into CodeCapsule errors with a next step."""
        from azure.core.exceptions import (
            ClientAuthenticationError,
            HttpResponseError,
            ServiceRequestError,
            ServiceResponseError,
        )

        try:
            yield
        except ClientAuthenticationError as exc:
            if exc.response is None:  # the credential itself could not produce a token
                detail = (str(exc.message or exc).strip().splitlines() or ["no details"])[0]
                raise MissingCredentials(
                    f"Could not get an Azure access token while {action}: {detail}. Sign in with `az login` "
                    "(or set AZURE_TENANT_ID, AZURE_CLIENT_ID and AZURE_CLIENT_SECRET for a service "
                    "principal) "
                    "and try again."
                ) from None
            code, message = _error_parts(exc)
            raise CloudAPIError(
                f"Azure refused the credentials while {action} (HTTP {exc.status_code}, {code}: {message}). "
                f"Sign in again with `az login` and check that the identity may use subscription "
                f"{self.spec.subscription_id}.",
                service="azure",
                status_code=exc.status_code,
                code=code,
            ) from None
        except HttpResponseError as exc:
            code, message = _error_parts(exc)
            raise CloudAPIError(
                f"Azure refused {action} (HTTP {exc.status_code}, {code}: {message}). {_hint(code, exc.status_code)}",
                service="azure",
                status_code=exc.status_code,
                code=code,
            ) from None
        except (ServiceRequestError, ServiceResponseError) as exc:
            raise CloudAPIError(
                f"Could not reach Azure Resource Manager at {self.spec.azure_endpoint} while {action}: "
                f"{type(exc).__name__}: {exc}. Check the network connection (and azure_endpoint / "
                "azure_ca_bundle) and try again.",
                service="azure",
                code=type(exc).__name__,
            ) from None

    def _wait(
        self,
        action: str,
        resource: str,
        start: Callable[[], Any],
        *,
        retry: str = "run deploy again: it resumes where it stopped",
    ) -> Any:
        """Start a long-running operation and wait for it; a Failed end becomes :class:`OperationFailed`."""
        from azure.core.exceptions import ClientAuthenticationError, HttpResponseError
        from azure.core.polling.base_polling import OperationFailed as _LroFailed

        with self._call(action):
            poller = start()
            try:
                return poller.result()
            except HttpResponseError as exc:
                if isinstance(exc, ClientAuthenticationError) or not isinstance(exc.__cause__, _LroFailed):
                    raise
                code, message = _error_parts(exc)
                raise OperationFailed(
                    f"Azure could not finish {action}: {resource} ended in the Failed state "
                    f"({code}: {message}). "
                    f"{_hint(code, None)} Then {retry}."
                ) from None

    def _get(self, action: str, getter: Callable[[], Any]) -> Any:
        """A GET that returns None for a missing resource (or a missing resource group)."""
        from azure.core.exceptions import ResourceNotFoundError

        with self._call(action):
            try:
                return getter()
            except ResourceNotFoundError:
                return None

    # -- desired state (SDK models) --------------------------------------------------------------------------

    def _computer_name_prefix(self) -> str:
        prefix = re.sub(r"[^a-z0-9-]", "-", self.spec.vmss_name.lower())[:15].strip("-")
        return prefix or "codecapsule"

    def _vmss_model(self, custom_data: str, tags: dict[str, str], capacity: int, ssh_key: str) -> Any:
        from azure.mgmt.compute import models as c

        s = self.spec
        os_profile = c.VirtualMachineScaleSetOSProfile(
            computer_name_prefix=self._computer_name_prefix(),
            admin_username=s.admin_username,
            custom_data=base64.b64encode(custom_data.encode("utf-8")).decode("ascii"),
            linux_configuration=c.LinuxConfiguration(
                disable_password_authentication=True,
                ssh=c.SshConfiguration(
                    public_keys=[
                        c.SshPublicKey(path=f"/home/{s.admin_username}/.ssh/authorized_keys", key_data=ssh_key)
                    ]
                ),
            ),
        )
        storage_profile = c.VirtualMachineScaleSetStorageProfile(
            image_reference=c.ImageReference(
                publisher=s.image_publisher, offer=s.image_offer, sku=s.image_sku, version=s.image_version
            ),
            os_disk=c.VirtualMachineScaleSetOSDisk(
                create_option="FromImage",
                managed_disk=c.VirtualMachineScaleSetManagedDiskParameters(storage_account_type="Standard_LRS"),
            ),
        )
        ip_config = c.VirtualMachineScaleSetIPConfiguration(
            name="ipconfig1",
            # no public_ip_address_configuration: the VMs get no public IPs
            properties=c.VirtualMachineScaleSetIPConfigurationProperties(
                primary=True, subnet=c.ApiEntityReference(id=self.subnet_id)
            ),
        )
        nic = c.VirtualMachineScaleSetNetworkConfiguration(
            name=f"{s.vmss_name}-nic",
            properties=c.VirtualMachineScaleSetNetworkConfigurationProperties(
                primary=True, ip_configurations=[ip_config]
            ),
        )
        return c.VirtualMachineScaleSet(
            location=s.location,
            tags=tags,
            sku=c.Sku(name=s.vm_size, tier="Standard", capacity=capacity),
            properties=c.VirtualMachineScaleSetProperties(
                orchestration_mode="Uniform",
                overprovision=False,  # overprovisioned extra VMs would each start cloudflared and Piston
                upgrade_policy=c.UpgradePolicy(mode="Manual"),
                virtual_machine_profile=c.VirtualMachineScaleSetVMProfile(
                    os_profile=os_profile,
                    storage_profile=storage_profile,
                    network_profile=c.VirtualMachineScaleSetNetworkProfile(network_interface_configurations=[nic]),
                ),
            ),
        )

    def _autoscale_model(self, **values: Any) -> Any:
        return autoscale_model(self.spec, self.ids, **values)

    def _autoscale_change(self, setting: Any) -> tuple[str, str]:
        return autoscale_diff(self.spec, self.ids, setting)

    def _autoscale_desired(self, setting: Any, *, wake: tuple[datetime, datetime] | None = None) -> Any:
        return autoscale_desired(self.spec, self.ids, setting, wake=wake)

    _autoscale_state = staticmethod(autoscale_state)
    _default_profile = staticmethod(default_profile)

    # -- reading current state -------------------------------------------------------------------------------

    def _rg_exists(self) -> bool:
        with self._call(f"checking resource group {self.spec.resource_group}"):
            return bool(self._client("resource").resource_groups.check_existence(self.spec.resource_group))

    def _get_vmss(self) -> Any:
        cc = self._client("compute")
        return self._get(
            f"reading VM scale set {self.spec.vmss_name}",
            lambda: cc.virtual_machine_scale_sets.get(self.spec.resource_group, self.spec.vmss_name),
        )

    def _get_autoscale(self) -> Any:
        mc = self._client("monitor")
        return self._get(
            f"reading autoscale setting {self.spec.autoscale_name}",
            lambda: mc.autoscale_settings.get(self.spec.resource_group, self.spec.autoscale_name),
        )

    # -- comparing current with desired (shared by plan and deploy) ------------------------------------------

    def _vmss_change(self, vmss: Any, desired_tags: dict[str, str], *, deploying: bool = False) -> tuple[str, str]:
        s = self.spec
        if vmss is None:
            return "create", f"{s.vm_size} × {s.capacity}, Uniform, no public IPs"
        reasons = []
        if vmss.provisioning_state == "Failed":
            reasons.append("the last operation failed; retry it")
        if _dig(vmss, "sku", "name") != s.vm_size:
            reasons.append(f"size {_dig(vmss, 'sku', 'name')} → {s.vm_size}")
        tags = dict(vmss.tags or {})
        for key, value in desired_tags.items():
            if tags.get(key) != value:
                reasons.append(
                    "cloud-init changed"
                    if key == CLOUD_INIT_SHA_TAG
                    else "runtimes changed"
                    if key == RUNTIMES_TAG
                    else f"tag {key}"
                )
        if vmss.overprovision is not False or _text(_dig(vmss, "upgrade_policy", "mode")) != "Manual":
            reasons.append("overprovision off, manual upgrades")
        if deploying and "cloud-init changed" in reasons:
            reasons.append("running instances keep the old one until reimaged")
        return (
            ("update", ", ".join(reasons).replace(", running instances", "; running instances"))
            if reasons
            else (
                "unchanged",
                "",
            )
        )

    # -- the resources, in deploy order (plan, deploy, status and teardown all walk this list) -----------

    def resources(self, desired_tags: dict[str, str] | None = None, custom_data: str | None = None) -> list[Resource]:
        """The Azure resources of the spec as read/diff/apply/delete units, in dependency order.

        ``desired_tags`` are the scale-set tags the diff compares (the cloud-init hash, the runtimes);
        ``custom_data`` is the cloud-init text an apply of the scale set writes (None when only planning).
        """
        s = self.spec
        tags = dict(desired_tags or {})

        def nc() -> Any:
            return self._client("network")

        def cc() -> Any:
            return self._client("compute")

        def inside(read: Callable[[], Any]) -> Callable[[Walk], Any]:
            # inside a missing group everything is missing: no need to ask
            return lambda walk: read() if walk.get("resource group") else None

        def lro(kind: str, name: str, start: Callable[[], Any]) -> Callable[[Walk, Any, str, Progress], Any]:
            def apply(walk: Walk, current: Any, action: str, progress: Progress) -> Any:
                verb = "creating" if action == "create" else "updating"
                return self._wait(f"{verb} {kind} {name}", f"{kind} {name}", start)

            return apply

        def network(unit: NetworkUnit) -> Resource:
            """A network resource: GET / begin_create_or_update on ``NetworkManagementClient.<operations>``."""

            def ops() -> Any:
                return getattr(nc(), unit.operations)

            return Resource(
                unit.key,
                unit.kind,
                unit.name,
                read=inside(
                    lambda: self._get(
                        f"reading {unit.kind} {unit.name}", lambda: ops().get(s.resource_group, unit.name)
                    )
                ),
                diff=lambda walk, current: unit.diff(current),
                apply=lro(
                    unit.kind,
                    unit.name,
                    lambda: ops().begin_create_or_update(s.resource_group, unit.name, unit.desired()),
                ),
            )

        return [
            Resource(
                "resource group",
                "resource group",
                s.resource_group,
                read=lambda walk: True if self._rg_exists() else None,
                diff=lambda walk, exists: ("unchanged", "") if exists else ("create", s.location),
                apply=lambda walk, current, action, progress: self._create_resource_group(),
                delete=lambda walk, current, progress: self._delete_resource_group(progress),
                up_to_date=f"Resource group {s.resource_group} exists.",
            ),
            *(network(unit(s, self.ids)) for unit in NETWORK),
            Resource(
                "vmss",
                "VM scale set",
                s.vmss_name,
                read=inside(self._get_vmss),
                diff=lambda walk, vmss: self._vmss_change(vmss, tags, deploying=custom_data is not None),
                apply=lambda walk, vmss, action, progress: self._wait(
                    f"{'creating' if action == 'create' else 'updating'} VM scale set {s.vmss_name}",
                    f"VM scale set {s.vmss_name}",
                    lambda: cc().virtual_machine_scale_sets.begin_create_or_update(
                        s.resource_group, s.vmss_name, self._vmss_desired(vmss, custom_data, tags)
                    ),
                ),
            ),
            Resource(
                "autoscale",
                "autoscale setting",
                s.autoscale_name,
                read=inside(self._get_autoscale),
                diff=lambda walk, setting: self._autoscale_change(setting),
                apply=lambda walk, setting, action, progress: self._write_autoscale(self._autoscale_desired(setting)),
                delete=lambda walk, setting, progress: self._delete_autoscale(progress),
            ),
        ]

    def _create_resource_group(self) -> bool:
        from azure.mgmt.resource.resources.models import ResourceGroup

        s = self.spec
        with self._call(f"creating resource group {s.resource_group}"):
            self._client("resource").resource_groups.create_or_update(
                s.resource_group, ResourceGroup(location=s.location, tags=s.tag_dict)
            )
        return True

    def _delete_resource_group(self, progress: Callable[[str], None]) -> None:
        s = self.spec
        progress(f"Deleting resource group {s.resource_group} and everything in it (this takes a few minutes)…")
        rc = self._client("resource")
        self._wait(
            f"deleting resource group {s.resource_group}",
            f"resource group {s.resource_group}",
            lambda: rc.resource_groups.begin_delete(s.resource_group),
            retry="call teardown again",
        )
        progress(f"Resource group {s.resource_group} deleted.")

    def _delete_autoscale(self, progress: Callable[[str], None]) -> None:
        from azure.core.exceptions import ResourceNotFoundError

        s = self.spec
        progress(f"Deleting autoscale setting {s.autoscale_name}…")
        # an autoscale setting that is already gone is fine
        with self._call(f"deleting autoscale setting {s.autoscale_name}"), suppress(ResourceNotFoundError):
            self._client("monitor").autoscale_settings.delete(s.resource_group, s.autoscale_name)

    def _write_autoscale(self, model: Any) -> Any:
        s = self.spec
        with self._call(f"writing autoscale setting {s.autoscale_name}"):
            return self._client("monitor").autoscale_settings.create_or_update(
                s.resource_group, s.autoscale_name, model
            )

    def _vmss_desired(self, vmss: Any, custom_data: str | None, tags: dict[str, str]) -> Any:
        """The scale-set model to write: an existing one keeps its capacity (autoscale owns it) and its SSH key
        (Azure refuses to change the key in place)."""
        if custom_data is None:
            raise InvalidRequest("the scale set can only be written by deploy (it needs the cloud-init text).")
        s = self.spec
        capacity = int(_dig(vmss, "sku", "capacity") or 0) if vmss is not None else s.capacity
        existing_keys = (
            _dig(vmss, "virtual_machine_profile", "os_profile", "linux_configuration", "ssh", "public_keys") or []
        )
        ssh_key = (
            s.ssh_public_key or (existing_keys[0].key_data if existing_keys else None) or _throwaway_ssh_public_key()
        )
        return self._vmss_model(custom_data, tags, capacity, ssh_key)

    # -- plan / deploy ----------------------------------------------------------------------------------------

    @staticmethod
    def _desired_tags(custom_data_sha256: str | None, runtimes_tag: str | None) -> dict[str, str]:
        desired: dict[str, str] = {}
        if custom_data_sha256 is not None:
            desired[CLOUD_INIT_SHA_TAG] = custom_data_sha256
        if runtimes_tag is not None:
            desired[RUNTIMES_TAG] = runtimes_tag
        return desired

    def plan(self, *, custom_data_sha256: str | None, runtimes_tag: str | None) -> list[Change]:
        """What :meth:`deploy` would do, one :class:`Change` per resource. Reads only."""
        return plan_all(self.resources(self._desired_tags(custom_data_sha256, runtimes_tag)))

    def deploy(self, custom_data: str, *, tags: dict[str, str], progress: Callable[[str], None] = quiet) -> None:
        """Create or update every Azure resource; skip what already matches; resume after a failure.

        ``custom_data`` is the cloud-init text (it contains the tunnel token: it is never logged or shown).
        ``tags`` are merged over the spec's tags on the scale set; the SHA-256 of ``custom_data`` is added
        under :data:`CLOUD_INIT_SHA_TAG` if missing. An existing scale set keeps its current capacity
        (autoscale owns it) and an existing autoscale setting keeps its bounds (change them with
        :meth:`autoscale`).
        """
        s = self.spec
        vmss_tags = {**s.tag_dict, **tags}
        vmss_tags.setdefault(CLOUD_INIT_SHA_TAG, _sha256(custom_data))
        apply_all(self.resources(vmss_tags, custom_data), progress)
        progress(f"Azure resources in {s.resource_group} are ready.")

    # -- status ----------------------------------------------------------------------------------------------

    def status(self) -> AzureStatus:
        """What exists now: the resource group, the scale set, its instances and the autoscale setting."""
        walk = read_all(self.resources())
        if not walk["resource group"]:
            return AzureStatus(False, False, None, None, None, (), None, {})
        vmss, setting = walk["vmss"], walk["autoscale"]
        return AzureStatus(
            resource_group_exists=True,
            vmss_exists=vmss is not None,
            capacity=int(vmss.sku.capacity) if vmss is not None and vmss.sku is not None else None,
            vm_size=_dig(vmss, "sku", "name"),
            provisioning_state=_text(vmss.provisioning_state) if vmss is not None and vmss.provisioning_state else None,
            instances=tuple(self.instances()) if vmss is not None else (),
            autoscale=self._autoscale_state(setting) if setting is not None else None,
            tags=dict(_dig(vmss, "tags") or {}),
            network_ok=all(unit(self.spec, self.ids).diff(walk[unit.key])[0] == "unchanged" for unit in NETWORK),
        )

    def instances(self) -> list[Instance]:
        """The VMs of the scale set with their provisioning and power states ([] if there is no scale set)."""
        from azure.core.exceptions import ResourceNotFoundError

        cc = self._client("compute")
        with self._call(f"listing the instances of {self.spec.vmss_name}"):
            try:
                vms = list(
                    cc.virtual_machine_scale_set_vms.list(
                        self.spec.resource_group, self.spec.vmss_name, expand="instanceView"
                    )
                )
            except ResourceNotFoundError:
                return []
        result = []
        for vm in vms:
            power = "unknown"
            for status in _dig(vm, "instance_view", "statuses") or []:
                code = str(status.code or "")
                if code.startswith("PowerState/"):
                    power = _POWER_STATES.get(code.split("/", 1)[1].lower(), "unknown")
            result.append(
                Instance(
                    instance_id=str(vm.instance_id),
                    name=str(vm.name),
                    provisioning_state=_text(vm.provisioning_state or "Unknown"),
                    power_state=power,
                    latest_model=vm.latest_model_applied,
                )
            )
        return sorted(result, key=lambda i: int(i.instance_id) if i.instance_id.isdigit() else 0)

    # -- operations ------------------------------------------------------------------------------------------

    def _require_vmss(self, action: str) -> Any:
        vmss = self._get_vmss()
        if vmss is None:
            raise CloudAPIError(
                f"Cannot {action}: VM scale set {self.spec.vmss_name} does not exist in resource group "
                f"{self.spec.resource_group}. Run deploy first.",
                service="azure",
                status_code=404,
                code="ResourceNotFound",
            )
        return vmss

    def scale(self, capacity: int, *, progress: Callable[[str], None] = quiet) -> None:
        """Set the number of VMs. If autoscale is on and ``capacity`` lies outside its bounds, the bounds move
        to include it first (otherwise autoscale would undo the change); ``progress`` says so."""
        check_capacity(capacity)
        s = self.spec
        vmss = self._require_vmss(f"scale to {capacity}")
        setting = self._get_autoscale()
        state = self._autoscale_state(setting) if setting is not None else None
        if (
            setting is not None
            and state is not None
            and state.enabled
            and not state.minimum <= capacity <= state.maximum
        ):
            low, high = min(state.minimum, capacity), max(state.maximum, capacity)
            progress(
                f"Capacity {capacity} is outside the autoscale range {state.minimum}..{state.maximum}; "
                f"moving the range to {low}..{high} so autoscale keeps it."
            )
            if s.schedule:
                progress(
                    "The lab-hours schedule sets the bounds again at its next change; use wake(hours=...) "
                    "for a session outside lab hours."
                )
            cap = self._default_profile(setting).capacity
            cap.minimum, cap.maximum = str(low), str(high)
            cap.default = str(min(max(int(cap.default), low), high))
            with self._call(f"moving the bounds of autoscale setting {s.autoscale_name}"):
                self._client("monitor").autoscale_settings.create_or_update(s.resource_group, s.autoscale_name, setting)
        progress(f"Scaling {s.vmss_name} from {_dig(vmss, 'sku', 'capacity')} to {capacity} instances…")
        self._set_capacity(capacity)
        progress(f"{s.vmss_name} now has capacity {capacity}.")

    def _set_capacity(self, capacity: int) -> None:
        from azure.mgmt.compute import models as c

        s = self.spec
        cc = self._client("compute")
        self._wait(
            f"scaling {s.vmss_name} to {capacity}",
            f"VM scale set {s.vmss_name}",
            lambda: cc.virtual_machine_scale_sets.begin_update(
                s.resource_group, s.vmss_name, c.VirtualMachineScaleSetUpdate(sku=c.Sku(capacity=capacity))
            ),
            retry="call scale again",
        )

    def autoscale(
        self, *, minimum: int, maximum: int, scale_out_cpu: float, scale_in_cpu: float, enabled: bool
    ) -> AutoscaleState:
        """Write the autoscale setting (bounds, CPU thresholds, on/off) and return what Azure stored."""
        check_autoscale(minimum, maximum, scale_out_cpu, scale_in_cpu)
        s = self.spec
        vmss = self._require_vmss("configure autoscale")
        setting = self._get_autoscale()
        previous = self._autoscale_state(setting) if setting is not None else None
        wish = previous.default if previous else int(_dig(vmss, "sku", "capacity") or minimum)
        model = self._autoscale_model(
            minimum=minimum,
            maximum=maximum,
            default=min(max(wish, minimum), maximum),
            scale_out_cpu=scale_out_cpu,
            scale_in_cpu=scale_in_cpu,
            enabled=enabled,
            wake=(datetime.now(UTC), previous.wake_until)
            if previous and previous.awake() and previous.wake_until
            else None,
        )
        state = self._autoscale_state(self._write_autoscale(model))
        if state is None:  # Azure echoes what we sent; this only happens if someone else rewrote it meanwhile
            raise CloudAPIError(
                f"Autoscale setting {s.autoscale_name} came back without the CPU rules; run deploy again.",
                service="azure",
                code="UnexpectedShape",
            )
        return state

    def wake(self, hours: float, *, progress: Callable[[str], None] = quiet) -> AutoscaleState:
        """Hold the capacity at the spec's min..max for ``hours`` from now (a fixed-date autoscale profile,
        which wins over the lab-hours schedule), and start the VMs now rather than at autoscale's next look."""
        if isinstance(hours, bool) or not isinstance(hours, int | float) or not 0 < hours <= 24 * 14:
            raise InvalidRequest(f"wake: hours must be a number between 0 and 336 (two weeks), not {hours!r}.")
        s = self.spec
        vmss = self._require_vmss("wake the cluster")
        setting = self._get_autoscale()
        start = datetime.now(UTC).replace(microsecond=0)
        end = start + timedelta(hours=float(hours))
        state = self._autoscale_state(self._write_autoscale(self._autoscale_desired(setting, wake=(start, end))))
        if state is None:
            raise CloudAPIError(
                f"Autoscale setting {s.autoscale_name} came back without the CPU rules; run deploy again.",
                service="azure",
                code="UnexpectedShape",
            )
        low = max(1, s.min_capacity)
        current = int(_dig(self._get_vmss(), "sku", "capacity") or 0) if vmss is not None else 0
        if current < low:  # start the VMs now rather than at autoscale's next evaluation (the wake profile keeps them)
            progress(f"Starting {low - current} VM(s) of {s.vmss_name}…")
            self._set_capacity(low)
        progress(f"Awake until {end:%Y-%m-%d %H:%M} UTC ({low}..{max(low, s.max_capacity)} VMs).")
        return state

    def update_model(self, custom_data: str, *, tags: dict[str, str]) -> None:
        """Give the scale-set model a new cloud-init (instances created from now on use it; reimage the
        running ones with :meth:`reimage`)."""
        from azure.mgmt.compute import models as c

        s = self.spec
        vmss = self._require_vmss("update the VM model")
        merged = {**dict(vmss.tags or {}), **s.tag_dict, **tags}
        # the hash always describes the custom data now in the model, never a stale one
        merged[CLOUD_INIT_SHA_TAG] = tags.get(CLOUD_INIT_SHA_TAG) or _sha256(custom_data)
        update = c.VirtualMachineScaleSetUpdate(
            tags=merged,
            properties=c.VirtualMachineScaleSetUpdateProperties(
                virtual_machine_profile=c.VirtualMachineScaleSetUpdateVMProfile(
                    os_profile=c.VirtualMachineScaleSetUpdateOSProfile(
                        custom_data=base64.b64encode(custom_data.encode("utf-8")).decode("ascii")
                    )
                )
            ),
        )
        cc = self._client("compute")
        self._wait(
            f"updating the model of {s.vmss_name}",
            f"VM scale set {s.vmss_name}",
            lambda: cc.virtual_machine_scale_sets.begin_update(s.resource_group, s.vmss_name, update),
            retry="call update_model again",
        )

    def run_command(self, instance_id: str, script: list[str]) -> str:
        """Run a shell script on one instance (RunShellScript, as root) and return Azure's message text:
        ``"Enable succeeded: \\n[stdout]\\n...\\n[stderr]\\n..."`` (Azure keeps only the last few KB)."""
        from azure.mgmt.compute import models as c

        s = self.spec
        cc = self._client("compute")
        result = self._wait(
            f"running a command on instance {instance_id} of {s.vmss_name}",
            f"the run command on instance {instance_id}",
            lambda: cc.virtual_machine_scale_set_vms.begin_run_command(
                s.resource_group,
                s.vmss_name,
                str(instance_id),
                c.RunCommandInput(command_id="RunShellScript", script=list(script)),
            ),
            retry="run the command again",
        )
        values = _dig(result, "value") or []
        return str(values[0].message or "") if values else ""

    def reimage(self, instance_ids: list[str] | None = None) -> None:
        """Rebuild instances from the current model so cloud-init runs again (None = all instances).

        With the Manual upgrade policy an instance keeps its old model (including its custom data) until it is
        upgraded, so instances not on the latest model are upgraded first, then reimaged.
        """
        from azure.mgmt.compute import models as c

        s = self.spec
        self._require_vmss("reimage")
        current = self.instances()
        known = {i.instance_id for i in current}
        wanted = [str(i) for i in instance_ids] if instance_ids is not None else sorted(known, key=int)
        unknown = [i for i in wanted if i not in known]
        if unknown:
            raise InvalidRequest(
                f"{s.vmss_name} has no instance {', '.join(unknown)}; it has "
                f"{', '.join(sorted(known, key=int)) or 'none'}."
            )
        cc = self._client("compute")
        stale = [i.instance_id for i in current if i.instance_id in wanted and i.latest_model is False]
        if stale:
            self._wait(
                f"upgrading instances {', '.join(stale)} of {s.vmss_name} to the latest model",
                f"VM scale set {s.vmss_name}",
                lambda: cc.virtual_machine_scale_sets.begin_update_instances(
                    s.resource_group,
                    s.vmss_name,
                    c.VirtualMachineScaleSetVMInstanceRequiredIDs(instance_ids=stale),
                ),
                retry="call reimage again",
            )
        ids = None if instance_ids is None else c.VirtualMachineScaleSetVMInstanceIDs(instance_ids=wanted)
        self._wait(
            f"reimaging {'all instances' if ids is None else 'instances ' + ', '.join(wanted)} of {s.vmss_name}",
            f"VM scale set {s.vmss_name}",
            lambda: cc.virtual_machine_scale_sets.begin_reimage_all(s.resource_group, s.vmss_name, ids),
            retry="call reimage again",
        )

    def teardown(self, *, progress: Callable[[str], None] = quiet) -> None:
        """Delete the autoscale setting, then the resource group with everything in it, and wait."""
        s = self.spec
        if not self._rg_exists():
            progress(f"Resource group {s.resource_group} does not exist; nothing to delete in Azure.")
            return
        delete_all(self.resources(), progress)
