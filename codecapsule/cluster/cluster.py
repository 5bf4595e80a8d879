"""Cluster: one object to plan, deploy, observe, scale and tear down the Piston cluster.

It composes :class:`~codecapsule.cluster.tunnel.TunnelProvider` (Cloudflare) and
:class:`~codecapsule.cluster.azure.AzureProvider` (Azure) and holds no cloud logic of its own beyond the order
of calls. Nothing heavy is imported here at module level: the providers import their SDKs when first used.

Secrets (the Cloudflare API token, the tunnel token inside the custom data, the Access service-token secret,
an Azure access token) are kept in private attributes, never shown by ``repr``/``str``, and scrubbed from
progress lines as a last line of defence.
"""

from __future__ import annotations

import json
import shlex
import sys
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from .._errors import (
    CodeCapsuleError,
    ConfigurationError,
    ConfirmationRequired,
    InvalidRequest,
    MissingCredentials,
    PistonError,
)
from .cloud_init import custom_data_sha256, render_cloud_init, runtimes_tag, validate_runtime
from .costs import CostEstimate, estimate_cost
from .env import ENV_CLOUDFLARE_TOKEN, azure_access_token, environment, missing_required
from .env import cloudflare_token as env_cloudflare_token
from .plan import Plan
from .schedule import ScheduleView, next_lab_start, schedule_view, zone
from .spec import ClusterSpec, check_capacity
from .status import ClusterStatus, PistonHealth

if TYPE_CHECKING:
    from azure.core.credentials import TokenCredential

    from .azure import AutoscaleState, AzureProvider
    from .client import ClusterClient
    from .panel import ScalingPanel
    from .preview import Preview
    from .tunnel import ServiceToken, ServiceTokenInfo, TunnelProvider

__all__ = ["LOG_SOURCES", "Cluster", "StaticTokenCredential", "parse_run_command_output"]

ProgressArg = bool | Callable[[str], None]

TAG_CLOUD_INIT = "codecapsule-cloud-init-sha256"
TAG_RUNTIMES = "codecapsule-runtimes"

# What `logs(source=...)` runs on the VM (N = lines). Each is read-only.
LOG_SOURCES: dict[str, str] = {
    "piston": "docker logs --tail {n} piston 2>&1",
    "cloudflared": "journalctl -u cloudflared -n {n} --no-pager 2>&1",
    "cloud-init": "tail -n {n} /var/log/cloud-init-output.log 2>&1",
    "health": "tail -n {n} /var/log/codecapsule-health.log 2>&1",
    "runtimes": "tail -n {n} /var/log/codecapsule-runtimes.log 2>&1",
}


class StaticTokenCredential:
    """An azure-core ``TokenCredential`` from an ARM access token you already have
    (``az account get-access-token --query accessToken -o tsv``), e.g. in CI. Valid for about an hour."""

    def __init__(self, token: str, expires_on: int | None = None) -> None:
        self._token = token
        self._expires_on = expires_on if expires_on is not None else int(time.time()) + 3600

    def get_token(self, *scopes: str, **kwargs: Any) -> Any:
        from azure.core.credentials import AccessToken

        return AccessToken(self._token, self._expires_on)

    def __repr__(self) -> str:
        return "StaticTokenCredential(<token hidden>)"


def parse_run_command_output(message: str) -> tuple[str, str]:
    """Split Azure's run-command message (``"Enable succeeded: \\n[stdout]\\n...\\n[stderr]\\n..."``)."""
    stdout, stderr = message, ""
    if "[stdout]\n" in message:
        stdout = message.split("[stdout]\n", 1)[1]
        if "\n[stderr]\n" in stdout:
            stdout, stderr = stdout.split("\n[stderr]\n", 1)
        elif stdout.endswith("\n[stderr]"):
            stdout = stdout[: -len("\n[stderr]")]
    return stdout, stderr.rstrip("\n")


def _install_outcome(stdout: str, language: str, version: str) -> str:
    """Turn the install script's output (``HTTP <code>`` then Piston's body) into one short outcome, by the
    packages-API table of :mod:`codecapsule.engines.piston_protocol` (the same the VMs' installer uses)."""
    from ..engines.piston_protocol import install_outcome

    lines = stdout.strip().splitlines()
    code = ""
    for line in lines:
        if line.startswith("HTTP "):
            code = line[5:].strip()
    body = "\n".join(line for line in lines if not line.startswith("HTTP ")).strip()
    status = int(code) if code.isdigit() and code != "000" else None
    outcome, action = install_outcome(status, body)
    if action == "done":
        return outcome
    if status is None:
        return f"failed: {outcome} (is the container running? see logs(source='piston'))"
    if action == "give up":
        return f"failed: {outcome}: {language} {version} (HTTP {status})"
    return f"failed: {outcome} {body[:200]}".rstrip()


class Cluster:
    """The Piston cluster described by a :class:`ClusterSpec`.

    ``credential`` is any azure-core ``TokenCredential`` (default:
    ``azure.identity.DefaultAzureCredential()``,
    created on first use); ``cloudflare_token`` a Cloudflare API token (default: ``$CLOUDFLARE_API_TOKEN``).
    """

    def __init__(
        self,
        spec: ClusterSpec,
        credential: TokenCredential | None = None,
        cloudflare_token: str | None = None,
    ) -> None:
        if not isinstance(spec, ClusterSpec):
            raise InvalidRequest(f"Cluster needs a ClusterSpec, not {type(spec).__name__}.")
        self.spec = spec
        self._credential = credential
        self._cloudflare_token = cloudflare_token
        self._azure: AzureProvider | None = None
        self._tunnel: TunnelProvider | None = None
        self._secrets: set[str] = set()
        if cloudflare_token:
            self._secrets.add(cloudflare_token)

    # -- construction -------------------------------------------------------------------------------

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides: Any) -> Cluster:
        """A Cluster from environment variables, checked before any network call.

        Needs ``CODECAPSULE_DOMAIN``, ``AZURE_SUBSCRIPTION_ID``, ``CLOUDFLARE_ACCOUNT_ID`` and
        ``CLOUDFLARE_API_TOKEN``; Azure sign-in follows azure-identity (``az login``, ``AZURE_CLIENT_ID``/
        ``AZURE_CLIENT_SECRET``/``AZURE_TENANT_ID``, managed identity...) unless
        ``CODECAPSULE_AZURE_ACCESS_TOKEN`` holds a ready ARM access token. The optional variables are listed in
        :mod:`codecapsule.cluster.env`. Keyword overrides: ``credential=``, ``cloudflare_token=`` and any
        ClusterSpec field.
        """
        env = environment(env)
        credential = overrides.pop("credential", None)
        cloudflare_token = overrides.pop("cloudflare_token", None) or env_cloudflare_token(env)
        missing = missing_required(env, overrides)
        if not cloudflare_token:
            missing.append(ENV_CLOUDFLARE_TOKEN)
        if missing:
            raise MissingCredentials(
                "cannot reach the cluster: set " + ", ".join(missing) + " (environment variables). "
                "Azure sign-in uses azure-identity (az login, "
                "AZURE_CLIENT_ID/AZURE_CLIENT_SECRET/AZURE_TENANT_ID "
                "or a managed identity)."
            )
        spec = ClusterSpec.from_env(env, **overrides)
        access_token = azure_access_token(env)
        if credential is None and access_token:
            credential = StaticTokenCredential(access_token)
        return cls(spec, credential=credential, cloudflare_token=cloudflare_token)

    def __repr__(self) -> str:
        s = self.spec
        return f"<Cluster {s.resource_group}/{s.vmss_name} at {s.hostname} ({s.location}, {s.vm_size})>"

    # -- providers (built on first use) --------------------------------------------------------------

    @property
    def azure(self) -> AzureProvider:
        if self._azure is None:
            from .azure import AzureProvider

            self._azure = AzureProvider(self.spec, self._azure_credential())
        return self._azure

    @property
    def tunnel(self) -> TunnelProvider:
        if self._tunnel is None:
            token = self._cloudflare_token or env_cloudflare_token()
            if not token:
                raise MissingCredentials(
                    f"no Cloudflare API token: pass Cluster(..., cloudflare_token=...) or set "
                    f"{ENV_CLOUDFLARE_TOKEN} "
                    "(a token with Cloudflare Tunnel:Edit, Access:Edit and DNS:Edit permissions)."
                )
            self._secrets.add(token)
            from .tunnel import TunnelProvider

            self._tunnel = TunnelProvider(self.spec, token)
        return self._tunnel

    def _azure_credential(self) -> TokenCredential:
        if self._credential is None:
            try:
                from azure.identity import DefaultAzureCredential
            except ImportError:
                raise ConfigurationError("azure-identity is not installed: pip install 'codecapsule[cloud]'.") from None
            self._credential = DefaultAzureCredential()
        return self._credential

    def _set_spec(self, spec: ClusterSpec) -> None:
        """Replace the spec (e.g. a new runtime) and rebuild the providers that captured the old one."""
        self.spec = spec
        self._azure = None
        self._tunnel = None

    # -- helpers --------------------------------------------------------------------------------------

    def _remember(self, secret: str | None) -> None:
        if secret:
            self._secrets.add(secret)

    def _scrub(self, text: str) -> str:
        for secret in self._secrets:
            if secret and len(secret) >= 6:
                text = text.replace(secret, "***")
        return text

    def _progress(self, progress: ProgressArg) -> Callable[[str], None]:
        if progress is False:
            return lambda line: None
        sink: Callable[[str], None]
        if progress is True:

            def sink(line: str) -> None:
                print(line, file=sys.stdout, flush=True)
        else:
            sink = progress

        def emit(line: str) -> None:
            sink(self._scrub(line))

        return emit

    def _custom_data(self, tunnel_token: str, spec: ClusterSpec | None = None) -> tuple[str, dict[str, str]]:
        spec = spec or self.spec
        self._remember(tunnel_token)
        custom_data = render_cloud_init(spec, tunnel_token)
        tags = {TAG_CLOUD_INIT: custom_data_sha256(custom_data), TAG_RUNTIMES: runtimes_tag(spec.runtimes)}
        return custom_data, tags

    # -- plan / deploy --------------------------------------------------------------------------------

    def plan(self) -> Plan:
        """What :meth:`deploy` would create, change or leave alone — computed without changing anything."""
        tunnel_changes = self.tunnel.plan()
        sha: str | None = None
        # Without a tunnel there is no token yet, so the custom data (and its hash) cannot be known.
        tunnel_exists = not any(c.resource == "tunnel" and c.action == "create" for c in tunnel_changes)
        if tunnel_exists:
            _, tags = self._custom_data(self.tunnel.tunnel_token())
            sha = tags[TAG_CLOUD_INIT]
        azure_changes = self.azure.plan(custom_data_sha256=sha, runtimes_tag=runtimes_tag(self.spec.runtimes))
        return Plan.of([*tunnel_changes, *azure_changes])

    def deploy(self, *, progress: ProgressArg = True) -> Plan:
        """Create or update everything (idempotent; safe to re-run after a failure). Returns the plan it
        applied.

        Order: the tunnel first (its token goes into the VMs' cloud-init), then Azure: resource group, NSG,
        NAT gateway, VNet, scale set, autoscale.
        """
        emit = self._progress(progress)
        plan = self.plan()
        if plan.empty:
            emit("Nothing to change: the cluster already matches the spec.")
            return plan
        emit(f"Deploying {len(plan.pending)} change(s) to {self.spec.resource_group} / {self.spec.hostname}")
        self.tunnel.deploy(progress=emit)
        custom_data, tags = self._custom_data(self.tunnel.tunnel_token())
        self._warn_dropped_runtimes(emit)
        self.azure.deploy(custom_data, tags=tags, progress=emit)
        emit(f"Deployed. Piston: {self.spec.url} (behind Cloudflare Access); check it with status() or doctor.")
        return plan

    def _warn_dropped_runtimes(self, emit: Callable[[str], None]) -> None:
        status = self.azure.status()
        deployed = status.tags.get(TAG_RUNTIMES, "")
        wanted = set(runtimes_tag(self.spec.runtimes).split(","))
        extra = sorted(r for r in deployed.split(",") if r and r not in wanted and not r.endswith("..."))
        if extra:
            emit(
                "Note: runtimes installed earlier but not in this spec will not be installed on new VMs: "
                + ", ".join(extra)
                + " (add them to ClusterSpec.runtimes to keep them)."
            )

    # -- observe ----------------------------------------------------------------------------------------

    def status(self) -> ClusterStatus:
        """VMs, tunnel and Piston health in one object (``str()`` for text, ``_repr_html_`` in a notebook)."""
        azure = self.azure.status()
        tunnel = self.tunnel.status()
        deployed = azure.vmss_exists and tunnel.tunnel_id is not None
        if tunnel.tunnel_id is None and not self.spec.piston_url:
            piston = PistonHealth(reachable=False, error="no tunnel: the cluster is not deployed")
        elif deployed and azure.capacity == 0:
            piston = PistonHealth(reachable=False, error="asleep: the scale set is at 0 VMs")
        else:
            piston = self.piston_health()
        return ClusterStatus(
            capacity=azure.capacity,
            vm_size=azure.vm_size,
            instances=tuple(azure.instances),
            autoscale=azure.autoscale,
            tunnel=tunnel,
            piston=piston,
            deployed=deployed,
            schedule=schedule_view(self.spec) if self.spec.schedule else None,
        )

    def piston_health(self) -> PistonHealth:
        """Ask Piston through ``spec.url`` (with the Access headers) for its runtimes; time a ``print(1)``."""
        try:
            with self.client(retries=0) as client:
                runtimes = client.runtimes()
                pairs = tuple((r.language, r.version) for r in runtimes)
                if not any(r.language == "python" or "py" in r.aliases for r in runtimes):
                    return PistonHealth(
                        reachable=True,
                        runtimes=pairs,
                        round_trip_ms=None,
                        error="python is not installed, so no round trip was timed",
                    )
                start = time.perf_counter()
                result = client.execute("print(1)", "python", engine="piston")
                elapsed = (time.perf_counter() - start) * 1000.0
                error = None if result.ok and result.stdout.strip() == "1" else f"print(1) gave {result.verdict}"
                return PistonHealth(reachable=True, runtimes=pairs, round_trip_ms=round(elapsed, 1), error=error)
        except PistonError as exc:
            return PistonHealth(reachable=False, error=self._scrub(str(exc)))
        except CodeCapsuleError as exc:  # e.g. no service token stored on this machine
            return PistonHealth(reachable=False, error=self._scrub(str(exc)))

    def logs(self, instance: int | str = 0, source: str = "piston", lines: int = 200) -> str:
        """The last ``lines`` lines of a log on one VM, through Azure run command (no SSH needed).

        ``source``: ``piston`` (docker logs), ``cloudflared`` (journal), ``cloud-init`` (first boot output),
        ``health`` (the every-minute check), ``runtimes`` (package installs).
        """
        if source not in LOG_SOURCES:
            raise InvalidRequest(f"unknown log source {source!r}; choose one of {', '.join(LOG_SOURCES)}.")
        if isinstance(lines, bool) or not isinstance(lines, int) or not 1 <= lines <= 10_000:
            raise InvalidRequest(f"lines must be a whole number between 1 and 10000, not {lines!r}.")
        instance_id = self._instance_id(instance)
        message = self.azure.run_command(instance_id, [LOG_SOURCES[source].format(n=lines)])
        stdout, stderr = parse_run_command_output(message)
        text = stdout if not stderr else f"{stdout}\n[stderr]\n{stderr}"
        return self._scrub(text)

    def _instance_id(self, instance: int | str) -> str:
        wanted = str(instance)
        instances = self.azure.instances()
        ids = [i.instance_id for i in instances]
        if wanted in ids:
            return wanted
        # Also accept a VM name such as "codecapsule-piston_2".
        for i in instances:
            if i.name == wanted:
                return i.instance_id
        known = ", ".join(ids) or "none (is the cluster deployed?)"
        raise InvalidRequest(f"no instance {wanted!r} in scale set {self.spec.vmss_name}; instances: {known}.")

    def cost(self, capacity: int | None = None, minimum: int | None = None, maximum: int | None = None) -> CostEstimate:
        """A monthly estimate, itemised, at minimum and maximum capacity (pure: no cloud call)."""
        return estimate_cost(self.spec, capacity=capacity, minimum=minimum, maximum=maximum)

    # -- operate ----------------------------------------------------------------------------------------

    def scale(self, capacity: int) -> None:
        """Set the number of VMs now (the autoscale bounds move too if ``capacity`` is outside them)."""
        self.azure.scale(check_capacity(capacity))

    def autoscale(
        self,
        *,
        minimum: int | None = None,
        maximum: int | None = None,
        scale_out_cpu: float | None = None,
        scale_in_cpu: float | None = None,
        enabled: bool | None = None,
    ) -> AutoscaleState:
        """Change the CPU autoscale rule; what is not given keeps its current value (or the spec's)."""
        current = self.azure.status().autoscale
        s = self.spec
        lo = minimum if minimum is not None else (current.minimum if current else s.min_capacity)
        hi = maximum if maximum is not None else (current.maximum if current else s.max_capacity)
        out = scale_out_cpu if scale_out_cpu is not None else (current.scale_out_cpu if current else s.scale_out_cpu)
        inn = scale_in_cpu if scale_in_cpu is not None else (current.scale_in_cpu if current else s.scale_in_cpu)
        on = enabled if enabled is not None else (current.enabled if current else True)
        # the spec holds the one rule for bounds and thresholds: a spec with these values must be valid
        self.spec.with_(min_capacity=lo, max_capacity=hi, capacity=lo, scale_out_cpu=out, scale_in_cpu=inn)
        return self.azure.autoscale(
            minimum=lo, maximum=hi, scale_out_cpu=float(out), scale_in_cpu=float(inn), enabled=bool(on)
        )

    def install_runtime(self, language: str, version: str) -> dict[str, str]:
        """Install a Piston package (e.g. ``("rust", "1.68.2")``) on every running VM now, and put it into the
        scale set's cloud-init so new VMs get it too. Returns ``{instance_id: outcome}``."""
        from ..engines.piston_protocol import install_payload

        language, version = validate_runtime(language, version)
        body = json.dumps(install_payload(language, version))
        script = [
            f"body={shlex.quote(body)}",
            "code=$(curl -sS -m 900 -o /tmp/codecapsule-install.out -w '%{http_code}' "
            "-H 'Content-Type: application/json' -X POST --data \"$body\" "
            "http://127.0.0.1:2000/api/v2/packages) || code=000",
            'echo "HTTP $code"',
            "cat /tmp/codecapsule-install.out 2>/dev/null; echo",
            f"echo {shlex.quote(f'{language} {version}')} >> /etc/codecapsule/runtimes",
        ]
        outcomes: dict[str, str] = {}
        for inst in self.azure.instances():
            if inst.power_state != "running":
                outcomes[inst.instance_id] = f"skipped: instance is {inst.power_state} (it installs at next boot)"
                continue
            try:
                stdout, _ = parse_run_command_output(self.azure.run_command(inst.instance_id, script))
                outcomes[inst.instance_id] = _install_outcome(stdout, language, version)
            except CodeCapsuleError as exc:
                outcomes[inst.instance_id] = f"failed: {self._scrub(str(exc))}"
        runtimes = self.spec.runtimes
        if (language, version) not in runtimes:
            runtimes = (*runtimes, (language, version))
        new_spec = self.spec.with_(runtimes=runtimes)
        custom_data, tags = self._custom_data(self.tunnel.tunnel_token(), new_spec)
        self.azure.update_model(custom_data, tags=tags)
        self._set_spec(new_spec)
        return outcomes

    def reimage(self, instance_ids: list[str] | list[int] | None = None) -> None:
        """Rebuild VMs from the current model (fresh disk, cloud-init runs again). ``None`` = all."""
        ids = None if instance_ids is None else [str(i) for i in instance_ids]
        self.azure.reimage(ids)

    def teardown(self, *, confirm: str, progress: ProgressArg = True) -> None:
        """Delete everything: the resource group (VMs, network, NAT, IP, autoscale), then the tunnel, its DNS
        record and the Access application. ``confirm`` must be the resource group's name."""
        if confirm != self.spec.resource_group:
            raise ConfirmationRequired(
                f"teardown deletes resource group {self.spec.resource_group!r} with every VM in it, and the "
                f"tunnel {self.spec.tunnel_name!r} with its DNS record and Access application; "
                f"call teardown(confirm={self.spec.resource_group!r}) to go ahead."
            )
        emit = self._progress(progress)
        self.azure.teardown(progress=emit)
        self.tunnel.teardown(progress=emit)
        emit("Teardown finished: nothing of the cluster is left in Azure or Cloudflare.")

    # -- clients ------------------------------------------------------------------------------------------

    def service_token(self) -> ServiceToken | None:
        """The Access service token stored on this machine (``None`` if not deployed from here)."""
        token = self.tunnel.service_token()
        if token is not None:
            self._remember(token.client_secret)
        return token

    def client(self, **options: Any) -> ClusterClient:
        """A :class:`codecapsule.Client` for this cluster: ``spec.url`` plus the Access service token. When the
        cluster sleeps (no connector, origin down), its errors say when the next lab starts and how to wake it
        or run locally."""
        from .._settings import Settings
        from .client import ClusterClient

        client_id = client_secret = None
        token = self.service_token()
        configured = Settings.from_env()
        if token is not None:
            client_id, client_secret = token.client_id, token.client_secret
        elif configured.access_client_id and configured.access_client_secret:
            client_id, client_secret = configured.access_client_id, configured.access_client_secret
            self._remember(client_secret)
        elif not self.spec.piston_url:
            raise MissingCredentials(
                "the Access service-token secret for this tunnel is not stored on this machine (Cloudflare "
                "shows "
                "it only once); run deploy() here to rotate it, or set CODECAPSULE_ACCESS_CLIENT_ID and "
                "CODECAPSULE_ACCESS_CLIENT_SECRET."
            )
        return ClusterClient(
            piston_url=self.spec.url,
            access_client_id=client_id,
            access_client_secret=client_secret,
            engine="piston",
            offline_hint=self.offline_hint,
            **options,
        )

    def offline_hint(self, now: datetime | None = None) -> str:
        """What to tell someone whose request found no VM: when the cluster wakes, how to wake it, or run
        locally (pure: computed from the spec, no cloud call)."""
        s = self.spec
        wake = "wake it now with cluster.wake(hours=2) or `codecapsule cluster wake --hours 2`"
        local = "or run the code locally with engine='local'"
        if not s.schedule:
            return f"If the scale set is at 0 VMs, {wake} (or scale it up), {local}."
        upcoming = next_lab_start(s.schedule, zone(s.timezone), now or datetime.now(UTC))
        when = f"{upcoming:%a %d %b %H:%M} ({s.timezone})" if upcoming else "at the next lab"
        return (
            f"Outside lab hours the cluster sleeps at {s.idle_capacity} VM{'s' if s.idle_capacity != 1 else ''}; "
            f"it wakes {when}. To use it before then, {wake}, {local}."
        )

    # -- lab hours ------------------------------------------------------------------------------------

    def wake(self, hours: float = 2, *, progress: ProgressArg = True) -> AutoscaleState:
        """Keep the spec's min..max VMs for ``hours`` from now, whatever the lab-hours schedule says (an ad-hoc
        session: a fixed-date autoscale profile that ends by itself). VMs start at once."""
        return self.azure.wake(hours, progress=self._progress(progress))

    def preview(self) -> Preview:
        """The plan of a first deploy, the cost and the lab hours of the spec, with no credentials and no cloud
        call (see the panel's preview mode: ``ScalingPanel.preview(spec)``)."""
        from .preview import preview

        return preview(self.spec)

    def schedule(self, now: datetime | None = None) -> ScheduleView:
        """The lab hours, the next change and the autoscale profiles they become (pure: no cloud call)."""
        return schedule_view(self.spec, now)

    # -- the Access service token -----------------------------------------------------------------------

    def access_token_status(self) -> ServiceTokenInfo | None:
        """The Access service token's lifetime and expiry (never its secret); None if there is none."""
        return self.tunnel.service_token_info()

    def refresh_access_token(self, *, progress: ProgressArg = True) -> ServiceTokenInfo:
        """Extend the Access service token by its duration from now (same secret: clients keep working)."""
        return self.tunnel.refresh_service_token(progress=self._progress(progress))

    def rotate_access_token(self, *, progress: ProgressArg = True) -> ServiceTokenInfo:
        """A new secret for the Access service token (saved on this computer only) and a fresh lifetime.
        Clients configured elsewhere with the old secret must get the new one."""
        info = self.tunnel.rotate_service_token(progress=self._progress(progress))
        self.service_token()  # remember the new secret, so it is scrubbed from any later output
        return info

    def panel(self, **options: Any) -> ScalingPanel:
        """The ipywidgets scaling panel for class days (needs ``codecapsule[notebook]``); ``options`` go to
        :class:`~codecapsule.cluster.panel.ScalingPanel` (e.g. ``auto_refresh=30``)."""
        from .panel import ScalingPanel

        return ScalingPanel(self, **options)
