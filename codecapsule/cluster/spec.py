"""ClusterSpec: every name, size and bound of a cluster in one validated, immutable object."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from typing import Any

from .._errors import InvalidRequest, MissingCredentials

# Piston packages installed on every VM: (package name as Piston's packages API knows it, version).
DEFAULT_RUNTIMES: tuple[tuple[str, str], ...] = (
    ("python", "3.12.0"),
    ("node", "20.11.1"),
    ("java", "15.0.2"),
    ("gcc", "10.2.0"),
)

# Piston server settings (env PISTON_<NAME>). The 1024-byte default output cap is far too small for a class.
DEFAULT_PISTON_LIMITS: tuple[tuple[str, str], ...] = (
    ("OUTPUT_MAX_SIZE", "65536"),
    ("MAX_PROCESS_COUNT", "64"),
    ("MAX_FILE_SIZE", "10000000"),
    ("RUN_TIMEOUT", "10000"),
    ("COMPILE_TIMEOUT", "20000"),
    ("RUN_CPU_TIME", "10000"),
    ("COMPILE_CPU_TIME", "20000"),
    ("RUN_MEMORY_LIMIT", "-1"),
    ("MAX_CONCURRENT_JOBS", "64"),
    ("DISABLE_NETWORKING", "true"),
)

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$")
_DOMAIN = re.compile(r"^(?=.{3,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}$")
_SUBSCRIPTION = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")


@dataclass(frozen=True)
class ClusterSpec:
    """What the cluster should look like. Validated on construction; change it with :meth:`with_`.

    Defaults follow the original course setup: tunnel ``codecapsule-piston`` at ``tunnel.<domain>``,
    resource group ``codecapsule-rg``, a private subnet 10.0.1.0/24 behind an NSG that denies all inbound
    traffic from the internet and a NAT gateway for outbound, a Uniform VM Scale Set of Standard_B2s,
    capacity 1 and CPU autoscale between 1 and 5.
    """

    domain: str
    subscription_id: str
    cloudflare_account_id: str
    location: str = "westeurope"
    # names
    resource_group: str = "codecapsule-rg"
    tunnel_name: str = "codecapsule-piston"
    hostname: str = ""  # default: tunnel.<domain>
    vmss_name: str = "codecapsule-piston"
    nsg_name: str = "codecapsule-nsg"
    vnet_name: str = "codecapsule-vnet"
    subnet_name: str = "piston-subnet"
    nat_gateway_name: str = "codecapsule-nat"
    public_ip_name: str = "codecapsule-nat-ip"
    autoscale_name: str = "codecapsule-piston-autoscale"
    access_app_name: str = "codecapsule-piston"
    # network
    vnet_prefix: str = "10.0.0.0/16"
    subnet_prefix: str = "10.0.1.0/24"
    # machines
    vm_size: str = "Standard_B2s"
    capacity: int = 1
    min_capacity: int = 1
    max_capacity: int = 5
    scale_out_cpu: int = 70
    scale_in_cpu: int = 30
    image_publisher: str = "Canonical"
    image_offer: str = "ubuntu-24_04-lts"
    image_sku: str = "server"
    image_version: str = "latest"
    admin_username: str = "capsuleadmin"
    ssh_public_key: str | None = None  # optional; password authentication is never enabled
    # Piston
    piston_image: str = "ghcr.io/engineer-man/piston"
    runtimes: tuple[tuple[str, str], ...] = DEFAULT_RUNTIMES
    piston_limits: tuple[tuple[str, str], ...] = DEFAULT_PISTON_LIMITS
    # endpoints (sovereign clouds, proxies and tests)
    azure_endpoint: str = "https://management.azure.com"
    cloudflare_endpoint: str = "https://api.cloudflare.com/client/v4"
    piston_url: str = ""  # default https://<hostname>; override to reach Piston another way (or a test server)
    azure_ca_bundle: str | None = None  # a CA bundle for the ARM endpoint (TLS-inspecting proxies, tests)
    poll_interval: float | None = None  # seconds between LRO polls; None = the SDK's default
    tags: tuple[tuple[str, str], ...] = (("app", "codecapsule"),)

    def __post_init__(self) -> None:
        domain = self.domain.strip().lower().rstrip(".")
        object.__setattr__(self, "domain", domain)
        if not _DOMAIN.match(domain):
            raise InvalidRequest(f"domain {self.domain!r} is not a DNS domain such as 'example.edu'.")
        if not self.hostname:
            object.__setattr__(self, "hostname", f"tunnel.{domain}")
        if not self.hostname.endswith(domain):
            raise InvalidRequest(f"hostname {self.hostname!r} must be inside the domain {domain!r}.")
        if self.subscription_id and not _SUBSCRIPTION.match(self.subscription_id):
            raise InvalidRequest(
                f"subscription_id {self.subscription_id!r} is not an Azure subscription id (a GUID); "
                "find it with `az account show --query id`."
            )
        for f in fields(self):
            if f.name.endswith("_name") or f.name == "resource_group":
                value = getattr(self, f.name)
                if not _NAME.match(value):
                    raise InvalidRequest(f"{f.name}={value!r}: use letters, digits, '.', '_' or '-' (max 63).")
        for name in ("capacity", "min_capacity", "max_capacity"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise InvalidRequest(f"{name} must be a whole number ≥ 0, not {value!r}.")
        if not 1 <= self.min_capacity <= self.max_capacity <= 100:
            raise InvalidRequest(
                f"autoscale bounds must satisfy 1 ≤ min_capacity ≤ max_capacity ≤ 100, "
                f"got {self.min_capacity}..{self.max_capacity}."
            )
        if not self.min_capacity <= self.capacity <= self.max_capacity:
            raise InvalidRequest(
                f"capacity {self.capacity} is outside the autoscale range {self.min_capacity}..{self.max_capacity}."
            )
        if not 0 < self.scale_in_cpu < self.scale_out_cpu <= 100:
            raise InvalidRequest(
                f"CPU thresholds must satisfy 0 < scale_in_cpu < scale_out_cpu ≤ 100, "
                f"got {self.scale_in_cpu} and {self.scale_out_cpu}."
            )
        if self.ssh_public_key is not None and not self.ssh_public_key.startswith(("ssh-", "ecdsa-")):
            raise InvalidRequest("ssh_public_key must be an OpenSSH public key line (ssh-ed25519 ... / ssh-rsa ...).")
        if self.poll_interval is not None and self.poll_interval < 0:
            raise InvalidRequest(f"poll_interval must be ≥ 0 seconds, not {self.poll_interval!r}.")
        for endpoint in ("azure_endpoint", "cloudflare_endpoint"):
            if not getattr(self, endpoint).startswith(("https://", "http://")):
                raise InvalidRequest(f"{endpoint} must be an http(s) URL.")
        object.__setattr__(self, "runtimes", tuple((str(a), str(b)) for a, b in self.runtimes))
        object.__setattr__(self, "piston_limits", tuple((str(a), str(b)) for a, b in self.piston_limits))
        object.__setattr__(self, "tags", tuple((str(a), str(b)) for a, b in self.tags))

    # -- construction ------------------------------------------------------------------------------

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides: Any) -> ClusterSpec:
        """Build a spec from ``CODECAPSULE_DOMAIN``, ``AZURE_SUBSCRIPTION_ID``, ``CLOUDFLARE_ACCOUNT_ID``
        (and optional ``CODECAPSULE_LOCATION``, ``CODECAPSULE_RESOURCE_GROUP``, ``CODECAPSULE_SSH_PUBLIC_KEY``),
        raising :class:`MissingCredentials` naming every variable that is missing."""
        env = os.environ if env is None else env
        needed = {
            "domain": "CODECAPSULE_DOMAIN",
            "subscription_id": "AZURE_SUBSCRIPTION_ID",
            "cloudflare_account_id": "CLOUDFLARE_ACCOUNT_ID",
        }
        values: dict[str, Any] = {}
        missing = []
        for key, var in needed.items():
            if key in overrides:
                continue
            if env.get(var):
                values[key] = env[var]
            else:
                missing.append(var)
        if missing:
            raise MissingCredentials(
                "cannot describe the cluster: set " + ", ".join(missing) + " (environment variables), "
                "or build ClusterSpec(domain=..., subscription_id=..., cloudflare_account_id=...) yourself."
            )
        optional = {
            "location": "CODECAPSULE_LOCATION",
            "resource_group": "CODECAPSULE_RESOURCE_GROUP",
            "ssh_public_key": "CODECAPSULE_SSH_PUBLIC_KEY",
            "azure_endpoint": "CODECAPSULE_AZURE_ENDPOINT",
            "cloudflare_endpoint": "CODECAPSULE_CLOUDFLARE_ENDPOINT",
        }
        for key, var in optional.items():
            if env.get(var):
                values[key] = env[var]
        values.update(overrides)
        return cls(**values)

    def with_(self, **changes: Any) -> ClusterSpec:
        """A copy with some fields changed (validated again)."""
        return replace(self, **changes)

    # -- derived -----------------------------------------------------------------------------------

    @property
    def url(self) -> str:
        """The URL clients use to reach Piston: through the tunnel unless ``piston_url`` overrides it."""
        return self.piston_url or f"https://{self.hostname}"

    @property
    def tag_dict(self) -> dict[str, str]:
        return dict(self.tags)

    def render_cloud_init(self, tunnel_token: str) -> str:
        """The exact cloud-init text that goes into the VMs' custom data (contains the secret token)."""
        from .cloud_init import render_cloud_init

        return render_cloud_init(self, tunnel_token=tunnel_token)
