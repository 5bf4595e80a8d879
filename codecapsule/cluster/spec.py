"""ClusterSpec: every name, size and bound of a cluster in one validated, immutable object."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from typing import Any

from .._errors import ConfigurationError, InvalidRequest, MissingCredentials
from .env import OPTIONAL_SPEC_ENV, environment, missing_required
from .schedule import LabHours, check_no_overlap, parse_lab_hours, schedule_profiles, windows_time_zone

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

#: The largest scale set CodeCapsule manages (one bound, used by the spec, scale() and autoscale()).
MAX_CAPACITY = 100
#: Azure allows at most 20 profiles in one autoscale setting: the default, the schedule's and a wake-up one.
MAX_PROFILES = 20
#: The smallest RSA key Azure accepts for a Linux VM.
MIN_RSA_BITS = 2048
_DURATION = re.compile(r"^[1-9][0-9]{0,5}h$")

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
    ssh_public_key: str | None = None  # optional RSA key; password authentication is never enabled
    # lab hours: outside every LabHours slot the cluster shrinks to idle_capacity (times in `timezone`)
    schedule: tuple[LabHours, ...] = ()
    timezone: str = "UTC"
    idle_capacity: int = 0
    # the Cloudflare Access service token's lifetime (Cloudflare's `duration`); refresh it before it ends
    access_token_duration: str = "8760h"
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
        self._check_schedule()
        check_capacity(self.capacity, "capacity")
        check_capacity(self.idle_capacity, "idle_capacity")
        check_autoscale(self.min_capacity, self.max_capacity, self.scale_out_cpu, self.scale_in_cpu)
        if not self.min_capacity <= self.capacity <= self.max_capacity:
            raise InvalidRequest(
                f"capacity {self.capacity} is outside the autoscale range {self.min_capacity}..{self.max_capacity}."
            )
        if self.ssh_public_key is not None:
            object.__setattr__(self, "ssh_public_key", check_ssh_public_key(self.ssh_public_key))
        if not _DURATION.match(self.access_token_duration):
            raise InvalidRequest(
                f"access_token_duration {self.access_token_duration!r} must be whole hours such as '8760h' "
                "(one year, Cloudflare's default)."
            )
        if isinstance(self.poll_interval, str):
            try:
                object.__setattr__(self, "poll_interval", float(self.poll_interval))
            except ValueError:
                raise ConfigurationError(f"poll_interval {self.poll_interval!r} must be a number of seconds.") from None
        if self.piston_url:
            object.__setattr__(self, "piston_url", self.piston_url.rstrip("/"))
        if self.poll_interval is not None and self.poll_interval < 0:
            raise InvalidRequest(f"poll_interval must be ≥ 0 seconds, not {self.poll_interval!r}.")
        for endpoint in ("azure_endpoint", "cloudflare_endpoint"):
            if not getattr(self, endpoint).startswith(("https://", "http://")):
                raise InvalidRequest(f"{endpoint} must be an http(s) URL.")
        object.__setattr__(self, "runtimes", tuple((str(a), str(b)) for a, b in self.runtimes))
        object.__setattr__(self, "piston_limits", tuple((str(a), str(b)) for a, b in self.piston_limits))
        object.__setattr__(self, "tags", tuple((str(a), str(b)) for a, b in self.tags))

    def _check_schedule(self) -> None:
        if isinstance(self.schedule, str):  # one line, as CODECAPSULE_LAB_HOURS gives it
            object.__setattr__(self, "schedule", parse_lab_hours(self.schedule))
        if isinstance(self.idle_capacity, str):
            object.__setattr__(self, "idle_capacity", _whole(self.idle_capacity, "idle_capacity"))
        labs = (self.schedule,) if isinstance(self.schedule, LabHours) else tuple(self.schedule)
        for lab in labs:
            if not isinstance(lab, LabHours):
                raise InvalidRequest(
                    f"schedule must be a list of LabHours('Mon,Wed 09:00-12:00', min=3, max=5), not "
                    f"{type(lab).__name__}."
                )
            check_capacity(lab.max, f"lab hours {lab.text!r}: max")
        check_no_overlap(labs)
        object.__setattr__(self, "schedule", labs)
        windows_time_zone(self.timezone)  # refuses a zone Azure could not be given
        profiles = 1 + len(schedule_profiles(labs, self.idle_bounds)) + 1  # default, schedule, wake-up
        if profiles > MAX_PROFILES:
            raise InvalidRequest(
                f"the schedule needs {profiles} autoscale profiles (one at each lab start and end, plus the "
                f"default and a wake-up one) but Azure allows {MAX_PROFILES}: merge lab slots (e.g. one "
                "'Mon-Fri 09:00-17:00')."
            )

    @classmethod
    def preview(cls, env: Mapping[str, str] | None = None, **overrides: Any) -> ClusterSpec:
        """A spec for looking only (plan shape, cost, schedule): like :meth:`from_env`, but identifiers that
        no estimate needs get placeholders when they are not set, so no credentials are required."""
        from .env import REQUIRED_SPEC_ENV

        env = environment(env)
        placeholders = {"domain": "example.edu", "subscription_id": "", "cloudflare_account_id": "preview"}
        for key, var in REQUIRED_SPEC_ENV.items():
            if key not in overrides and not env.get(var):
                overrides[key] = placeholders[key]
        return cls.from_env(env, **overrides)

    # -- construction ------------------------------------------------------------------------------

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides: Any) -> ClusterSpec:
        """Build a spec from ``CODECAPSULE_DOMAIN``, ``AZURE_SUBSCRIPTION_ID``, ``CLOUDFLARE_ACCOUNT_ID`` and the
        optional variables listed in :mod:`codecapsule.cluster.env`, raising :class:`MissingCredentials` naming
        every variable that is missing. Keyword overrides win over the environment."""
        from .env import REQUIRED_SPEC_ENV

        env = environment(env)
        missing = missing_required(env, overrides)
        if missing:
            raise MissingCredentials(
                "cannot describe the cluster: set " + ", ".join(missing) + " (environment variables), "
                "or build ClusterSpec(domain=..., subscription_id=..., cloudflare_account_id=...) yourself."
            )
        values: dict[str, Any] = {
            key: env[var] for key, var in {**REQUIRED_SPEC_ENV, **OPTIONAL_SPEC_ENV}.items() if env.get(var)
        }
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

    @property
    def azure_time_zone(self) -> str:
        """The Windows time-zone name of :attr:`timezone` (what Azure autoscale wants)."""
        return windows_time_zone(self.timezone)

    @property
    def idle_bounds(self) -> tuple[int, int]:
        """Autoscale bounds outside lab hours: exactly ``idle_capacity`` VMs (at 0 nothing bills)."""
        return self.idle_capacity, self.idle_capacity

    def render_cloud_init(self, tunnel_token: str) -> str:
        """The exact cloud-init text that goes into the VMs' custom data (contains the secret token)."""
        from .cloud_init import render_cloud_init

        return render_cloud_init(self, tunnel_token=tunnel_token)


def _whole(text: str, what: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise ConfigurationError(f"{what} {text!r} must be a whole number of VMs.") from None


def check_capacity(value: object, what: str = "capacity") -> int:
    """A VM count CodeCapsule accepts: a whole number 0..MAX_CAPACITY."""
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_CAPACITY:
        raise InvalidRequest(f"{what} must be a whole number between 0 and {MAX_CAPACITY}, not {value!r}.")
    return value


def check_autoscale(minimum: object, maximum: object, scale_out_cpu: object, scale_in_cpu: object) -> None:
    """Autoscale bounds and CPU thresholds CodeCapsule accepts (the one rule for spec, deploy and autoscale)."""
    lo = check_capacity(minimum, "the autoscale minimum")
    hi = check_capacity(maximum, "the autoscale maximum")
    if not 1 <= lo <= hi:
        raise InvalidRequest(f"autoscale bounds must satisfy 1 ≤ minimum ≤ maximum ≤ {MAX_CAPACITY}, got {lo}..{hi}.")
    for label, value in (("scale_out_cpu", scale_out_cpu), ("scale_in_cpu", scale_in_cpu)):
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise InvalidRequest(f"{label} must be a CPU percentage, not {value!r}.")
    # CPU never exceeds 100 %, so a scale-out threshold of 100 would never fire.
    if not 0 < float(scale_in_cpu) < float(scale_out_cpu) < 100:  # type: ignore[arg-type]
        raise InvalidRequest(
            f"CPU thresholds must satisfy 0 < scale_in_cpu < scale_out_cpu < 100, "
            f"got scale_in_cpu={scale_in_cpu} and scale_out_cpu={scale_out_cpu}."
        )


def check_ssh_public_key(text: str) -> str:
    """An OpenSSH public key line Azure accepts for a Linux scale set: RSA with at least 2048 bits."""
    try:
        from cryptography.hazmat.primitives.asymmetric import rsa
        from cryptography.hazmat.primitives.serialization import load_ssh_public_key
    except ImportError:
        raise ConfigurationError(
            "checking ssh_public_key needs the cryptography package: pip install 'codecapsule[cloud]'."
        ) from None

    line = text.strip()
    try:
        key = load_ssh_public_key(line.encode("ascii"))
    except (ValueError, UnicodeEncodeError):
        raise InvalidRequest(
            "ssh_public_key must be one OpenSSH public key line ('ssh-rsa AAAA... comment'), e.g. the "
            "contents of ~/.ssh/id_rsa.pub."
        ) from None
    except Exception:  # cryptography raises UnsupportedAlgorithm for key types it does not know
        key = None
    if not isinstance(key, rsa.RSAPublicKey):
        kind = line.split(" ", 1)[0]
        raise InvalidRequest(
            f"ssh_public_key is a {kind} key, but Azure accepts only RSA keys for Linux scale sets "
            f"(ED25519 and ECDSA are refused); make one with `ssh-keygen -t rsa -b 3072`, or leave "
            "ssh_public_key unset (the VMs need no login)."
        )
    if key.key_size < MIN_RSA_BITS:
        raise InvalidRequest(
            f"ssh_public_key is a {key.key_size}-bit RSA key; Azure needs at least {MIN_RSA_BITS} bits: make "
            "one with `ssh-keygen -t rsa -b 3072`."
        )
    return line
