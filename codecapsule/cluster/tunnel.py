"""The Cloudflare side of a cluster: tunnel, ingress, DNS and Access, through the ``cloudflare`` SDK.

:class:`TunnelProvider` makes the account match the spec and nothing else:

* a remotely managed Cloudflare Tunnel (``config_src="cloudflare"``) named ``spec.tunnel_name``;
* its ingress: ``spec.hostname`` → ``http://localhost:2000`` (Piston on each VM), then a catch-all 404;
* Cloudflare Access in front of the hostname: a service token, a reusable policy (``decision:
  non_identity``, include that token) and a self-hosted application on the hostname using the policy, so
  only clients that send the token's headers reach Piston;
* a proxied CNAME ``spec.hostname`` → ``<tunnel id>.cfargotunnel.com``, created *after* Access protects the
  hostname, so the name never resolves to an unprotected Piston.

Every step finds what exists first, so running :meth:`TunnelProvider.deploy` again changes nothing and
resumes cleanly after a failure half way. The service token's secret is shown by Cloudflare only at
creation (or rotation) and is kept in :mod:`codecapsule.cluster.secrets_store`; when it exists remotely but
is not saved on this computer, the deploy rotates it. Secrets (the API token, the tunnel token, the
service-token secret) never appear in a repr, a plan, a progress message or an exception.

The SDK is imported inside the methods: importing ``cloudflare.zero_trust`` loads about 1,000 modules.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, cast

from .._errors import CloudAPIError, ClusterError, MissingCredentials
from .plan import Change
from .resources import Progress, Resource, Walk, apply_all, delete_all, plan_all, quiet, read_all
from .secrets_store import (
    ServiceToken,
    delete_service_token,
    load_service_token,
    save_service_token,
    service_token_path,
)
from .spec import ClusterSpec

if TYPE_CHECKING:
    from cloudflare import Cloudflare
    from cloudflare.types.dns.record_response import RecordResponse
    from cloudflare.types.shared.cloudflare_tunnel import CloudflareTunnel
    from cloudflare.types.zero_trust.access.applications.service_token_rule_param import ServiceTokenRuleParam
    from cloudflare.types.zero_trust.access.service_token import ServiceToken as RemoteServiceToken
    from cloudflare.types.zero_trust.tunnels.cloudflared.client import Client as ConnectorClient
    from cloudflare.types.zero_trust.tunnels.cloudflared.configuration_update_params import ConfigIngress

__all__ = ["TOKEN_WARN_DAYS", "Connector", "ServiceToken", "ServiceTokenInfo", "TunnelProvider", "TunnelStatus"]

#: How long before its expiry the service token is reported as expiring (status, panel, doctor, plan).
TOKEN_WARN_DAYS = 30

#: Where cloudflared on each VM sends the tunnel's traffic: Piston listens on localhost:2000.
ORIGIN_SERVICE = "http://localhost:2000"
CATCH_ALL_SERVICE = "http_status:404"

# Token permissions, as the Cloudflare dashboard names them ("Create Token" → custom token).
_PERM_ZONE = "Zone:Read"
_PERM_TUNNEL = "Cloudflare Tunnel:Edit"
_PERM_DNS = "DNS:Edit"
_PERM_ACCESS_APPS = "Access: Apps and Policies:Edit"
_PERM_ACCESS_TOKENS = "Access: Service Tokens:Edit"
_ALL_PERMISSIONS = (
    "Account · Cloudflare Tunnel:Edit, Zone · DNS:Edit, Zone · Zone:Read, "
    "Account · Access: Apps and Policies:Edit and Account · Access: Service Tokens:Edit"
)
# Error codes Cloudflare uses for a token that is missing, malformed, expired or not allowed.
_AUTH_CODES = {1000, 6003, 6111, 9103, 9106, 9109, 10000}


@dataclass(frozen=True)
class Connector:
    """One cloudflared process connected to the tunnel (normally one per VM).

    A connector holds several connections to Cloudflare data centres; ``colo`` lists their codes
    (comma separated), ``opened_at`` is the earliest connection's time (ISO 8601) and ``pending_reconnect``
    is True when every connection is only being kept around for a reconnect.
    """

    connector_id: str
    colo: str
    origin_ip: str
    opened_at: str
    pending_reconnect: bool


@dataclass(frozen=True)
class ServiceTokenInfo:
    """The Access service token as Cloudflare lists it: its lifetime and expiry, never its secret."""

    name: str
    token_id: str
    client_id: str
    duration: str  # e.g. "8760h"
    expires_at: datetime | None  # UTC; None if Cloudflare did not say
    saved_here: bool  # the secret for this client id is saved on this computer

    def days_left(self, now: datetime | None = None) -> float | None:
        if self.expires_at is None:
            return None
        return (self.expires_at - (now or datetime.now(UTC))) / timedelta(days=1)

    def expired(self, now: datetime | None = None) -> bool:
        left = self.days_left(now)
        return left is not None and left <= 0

    @property
    def warn_days(self) -> float:
        """:data:`TOKEN_WARN_DAYS`, or half the lifetime of a shorter-lived token (else it would always warn)."""
        hours = self.duration[:-1] if self.duration.endswith("h") else ""
        return min(TOKEN_WARN_DAYS, int(hours) / 48) if hours.isdigit() else TOKEN_WARN_DAYS

    def expiring(self, now: datetime | None = None) -> bool:
        """Expired, or expiring within :attr:`warn_days` days (30 for the default one-year token)."""
        left = self.days_left(now)
        return left is not None and left <= self.warn_days

    def expiry_text(self, now: datetime | None = None) -> str:
        """``expires 2027-12-02 (365 days)``, ``EXPIRED on ...`` or ``expiry unknown``."""
        left = self.days_left(now)
        if self.expires_at is None or left is None:
            return "expiry unknown"
        day = f"{self.expires_at:%Y-%m-%d}"
        if left <= 0:
            return f"EXPIRED on {day}"
        return f"expires {day} ({int(left)} day{'s' if int(left) != 1 else ''})"


@dataclass(frozen=True)
class TunnelStatus:
    """What Cloudflare has for the cluster right now."""

    tunnel_id: str | None  # None: no tunnel
    status: str | None  # inactive | healthy | degraded | down | None
    connectors: tuple[Connector, ...]
    dns_target: str | None  # content of the CNAME for spec.hostname, None if missing
    dns_ok: bool  # CNAME exists, proxied, points at <tunnel_id>.cfargotunnel.com
    ingress_ok: bool  # hostname -> http://localhost:2000, last rule catch-all http_status:404
    access_protected: bool  # Access app on the hostname with a service-token policy
    service_token: ServiceTokenInfo | None = None  # lifetime of the Access service token (never the secret)


class TunnelProvider:
    """Deploy, inspect and remove the Cloudflare part of a cluster described by a :class:`ClusterSpec`."""

    def __init__(self, spec: ClusterSpec, api_token: str, *, max_retries: int = 2) -> None:
        if not api_token:
            raise MissingCredentials(
                "no Cloudflare API token: set CLOUDFLARE_API_TOKEN to a token with " + _ALL_PERMISSIONS + "."
            )
        if not spec.cloudflare_account_id:
            raise MissingCredentials(
                "no Cloudflare account id: set CLOUDFLARE_ACCOUNT_ID (the dashboard shows it on the "
                "account's overview page)."
            )
        self._spec = spec
        self._api_token = api_token
        self._max_retries = max_retries
        self._client: Cloudflare | None = None
        self._zone_id: str | None = None

    def __repr__(self) -> str:
        return (
            f"TunnelProvider(tunnel={self._spec.tunnel_name!r}, hostname={self._spec.hostname!r}, "
            f"account={self._spec.cloudflare_account_id!r})"
        )

    @property
    def spec(self) -> ClusterSpec:
        return self._spec

    # -- the resources, in deploy order (plan, deploy, status and teardown all walk this list) -----------

    def resources(self) -> list[Resource]:
        """The Cloudflare resources of the spec as read/diff/apply/delete units, in dependency order.

        The DNS record comes last, so the name never resolves before Access protects it; teardown walks the
        list backwards (DNS first, the tunnel last, after its connections are dropped)."""
        spec = self._spec
        return [
            Resource(
                "tunnel",
                "tunnel",
                spec.tunnel_name,
                read=lambda walk: self._find_tunnel(),
                diff=self._tunnel_diff,
                apply=self._tunnel_apply,
                delete=self._tunnel_delete,
                announce=False,
                up_to_date=f"Cloudflare Tunnel {spec.tunnel_name} already exists.",
            ),
            Resource(
                "ingress",
                "tunnel ingress",
                spec.hostname,
                read=self._ingress_read,
                diff=self._ingress_diff,
                apply=self._ingress_apply,
                announce=False,
                up_to_date=f"The tunnel already routes {spec.hostname} to Piston.",
            ),
            Resource(
                "service token",
                "access service token",
                spec.access_app_name,
                read=lambda walk: self._find_service_token(),
                diff=self._token_diff,
                apply=self._token_apply,
                delete=self._token_delete,
                announce=False,
                up_to_date=f"The Access service token {spec.access_app_name} already exists.",
            ),
            Resource(
                "policy",
                "access policy",
                self._policy_name,
                read=lambda walk: self._find_policy(),
                diff=self._policy_diff,
                apply=self._policy_apply,
                delete=self._policy_delete,
                announce=False,
                up_to_date=f"The Access policy {self._policy_name} already lets only the service token in.",
            ),
            Resource(
                "app",
                "access application",
                spec.hostname,
                read=lambda walk: self._find_app(),
                diff=self._app_diff,
                apply=self._app_apply,
                delete=self._app_delete,
                announce=False,
                up_to_date=f"Cloudflare Access already protects {spec.hostname}.",
            ),
            Resource(
                "dns",
                "dns record",
                spec.hostname,
                read=lambda walk: self._dns_records(self._zone()),
                diff=self._dns_diff,
                apply=self._dns_apply,
                delete=self._dns_delete,
                announce=False,
                up_to_date=f"The DNS record {spec.hostname} already points at the tunnel.",
                missing=[],
            ),
        ]

    # -- public API --------------------------------------------------------------------------------

    def plan(self) -> list[Change]:
        """What :meth:`deploy` would do, one :class:`Change` per resource; changes nothing."""
        self._zone()  # a domain that is not a zone of the account is the first thing to say
        return plan_all(self.resources())

    def deploy(self, *, progress: Callable[[str], None]) -> str:
        """Make Cloudflare match the spec (idempotent); returns the tunnel id."""
        self._zone()
        walk = apply_all(self.resources(), progress)
        return _tunnel_id(walk) or ""

    def tunnel_token(self) -> str:
        """The connector token every VM's cloudflared runs with (a secret: never print or log it)."""
        tunnel = self._find_tunnel()
        if tunnel is None or tunnel.id is None:
            raise ClusterError(
                f"there is no Cloudflare Tunnel named {self._spec.tunnel_name!r} yet: deploy the cluster first."
            )
        with self._api("read the tunnel's connector token", _PERM_TUNNEL):
            token = self._cf().zero_trust.tunnels.cloudflared.token.get(
                tunnel.id, account_id=self._spec.cloudflare_account_id
            )
        return str(token)

    def service_token(self) -> ServiceToken | None:
        """The Access service token saved on this computer by the last deploy, or None."""
        return load_service_token(self._spec.cloudflare_account_id, self._spec.tunnel_name)

    def service_token_info(self) -> ServiceTokenInfo | None:
        """The Access service token as Cloudflare has it (lifetime, expiry; never the secret), or None."""
        return self._token_info(self._find_service_token())

    def refresh_service_token(self, *, progress: Callable[[str], None] = quiet) -> ServiceTokenInfo:
        """Extend the service token's life by its duration from now (Cloudflare's refresh call; the secret
        does not change, so clients keep working)."""
        token = self._require_service_token("refresh")
        self._refresh(token, progress)
        return self._require_info()

    def rotate_service_token(self, *, progress: Callable[[str], None] = quiet) -> ServiceTokenInfo:
        """Give the service token a new secret (saved on this computer only) and extend its life: rotation
        alone keeps the old expiry. Clients elsewhere need the new secret."""
        token = self._require_service_token("rotate")
        self._rotate(cast(str, token.id), progress)
        self._refresh(token, progress)
        return self._require_info()

    def status(self) -> TunnelStatus:
        """The tunnel, its connectors, the DNS record, the ingress and the Access protection."""
        self._zone()
        walk = read_all(self.resources())
        tunnel, records, token, app = walk["tunnel"], walk["dns"], walk["service token"], walk["app"]
        cname = next((r for r in records if r.type == "CNAME"), None)
        protected = app is not None and self._app_protected(app, token.id if token else None)
        info = self._token_info(token)
        if tunnel is None or tunnel.id is None:
            return TunnelStatus(
                tunnel_id=None,
                status=None,
                connectors=(),
                dns_target=cname.content if cname else None,
                dns_ok=False,
                ingress_ok=False,
                access_protected=protected,
                service_token=info,
            )
        with self._api("list the tunnel's connectors", _PERM_TUNNEL):
            clients = list(
                self._cf().zero_trust.tunnels.cloudflared.connections.get(
                    tunnel.id, account_id=self._spec.cloudflare_account_id
                )
            )
        return TunnelStatus(
            tunnel_id=tunnel.id,
            status=tunnel.status,
            connectors=tuple(_connector(c) for c in clients),
            dns_target=cname.content if cname else None,
            dns_ok=cname is not None and self._cname_ok(cname, tunnel.id),
            ingress_ok=bool(walk["ingress"]),
            access_protected=protected,
            service_token=info,
        )

    def teardown(self, *, progress: Callable[[str], None]) -> None:
        """Delete the DNS record, the Access application, policy and service token, the tunnel's
        connections and the tunnel (in that order), and forget the saved service-token secret."""
        self._zone()
        delete_all(self.resources(), progress)
        spec = self._spec
        if delete_service_token(spec.cloudflare_account_id, spec.tunnel_name):
            progress("Forgot the service-token secret saved on this computer.")

    # -- tunnel and ingress ------------------------------------------------------------------------

    def _tunnel_diff(self, walk: Walk, tunnel: Any) -> tuple[str, str]:
        if tunnel is None or tunnel.id is None:
            return "create", "remotely managed Cloudflare Tunnel"
        return "unchanged", f"id {tunnel.id}, {tunnel.status}"

    def _tunnel_apply(self, walk: Walk, current: Any, action: str, progress: Progress) -> Any:
        spec = self._spec
        with self._api(f"create the tunnel {spec.tunnel_name!r}", _PERM_TUNNEL):
            tunnel = self._cf().zero_trust.tunnels.cloudflared.create(
                account_id=spec.cloudflare_account_id, name=spec.tunnel_name, config_src="cloudflare"
            )
        if tunnel.id is None:
            raise CloudAPIError(
                "Cloudflare created the tunnel but did not return its id; run the deploy again.",
                service="cloudflare",
            )
        progress(f"Created Cloudflare Tunnel {spec.tunnel_name}.")
        return tunnel

    def _tunnel_delete(self, walk: Walk, current: Any, progress: Progress) -> None:
        spec = self._spec
        account = spec.cloudflare_account_id
        tunnels = self._cf().zero_trust.tunnels.cloudflared
        for tunnel in self._find_tunnels():  # every duplicate too
            if tunnel.id is None:
                continue
            # A tunnel with live connections cannot be deleted: drop them first.
            with self._api(f"remove the connections of the tunnel {spec.tunnel_name!r}", _PERM_TUNNEL):
                tunnels.connections.delete(tunnel.id, account_id=account)
            with self._api(f"delete the tunnel {spec.tunnel_name!r}", _PERM_TUNNEL):
                tunnels.delete(tunnel.id, account_id=account)
            progress(f"Deleted Cloudflare Tunnel {spec.tunnel_name}.")

    def _ingress_read(self, walk: Walk) -> bool | None:
        tunnel_id = _tunnel_id(walk)
        return True if tunnel_id is not None and self._ingress_ok(tunnel_id) else None

    def _ingress_diff(self, walk: Walk, ok: Any) -> tuple[str, str]:
        if ok:
            return "unchanged", f"→ {ORIGIN_SERVICE}"
        action = "create" if not _tunnel_id(walk) else "update"
        return action, f"→ {ORIGIN_SERVICE}, then a catch-all 404"

    def _ingress_apply(self, walk: Walk, current: Any, action: str, progress: Progress) -> Any:
        spec = self._spec
        # The SDK types every ingress rule as needing a hostname, but the last rule must be a catch-all
        # without one (Cloudflare rejects a config whose last rule has a hostname).
        catch_all = cast("ConfigIngress", {"service": CATCH_ALL_SERVICE})
        with self._api("set the tunnel's ingress rules", _PERM_TUNNEL):
            self._cf().zero_trust.tunnels.cloudflared.configurations.update(
                cast(str, _tunnel_id(walk)),
                account_id=spec.cloudflare_account_id,
                config={"ingress": [{"hostname": spec.hostname, "service": ORIGIN_SERVICE}, catch_all]},
            )
        progress(f"The tunnel now routes {spec.hostname} to Piston on each VM.")
        return True

    # -- the Access service token ------------------------------------------------------------------

    def _token_diff(self, walk: Walk, token: Any) -> tuple[str, str]:
        spec = self._spec
        if token is None:
            return "create", f"secret saved on this computer, valid {spec.access_token_duration}"
        local = load_service_token(spec.cloudflare_account_id, spec.tunnel_name)
        if local is None or local.client_id != token.client_id:
            return "update", "rotate: its secret is not saved on this computer"
        info = self._token_info(token)
        if info is not None and info.duration != spec.access_token_duration:
            return "update", f"duration {info.duration} → {spec.access_token_duration}"
        if info is not None and info.expiring():
            return "update", f"refresh: {info.expiry_text()}"
        return "unchanged", info.expiry_text() if info is not None else ""

    def _token_apply(self, walk: Walk, token: Any, action: str, progress: Progress) -> Any:
        spec = self._spec
        account = spec.cloudflare_account_id
        access = self._cf().zero_trust.access
        path = service_token_path(account, spec.tunnel_name)
        if token is None:
            with self._api(f"create the Access service token {spec.access_app_name!r}", _PERM_ACCESS_TOKENS):
                created = access.service_tokens.create(
                    account_id=account, name=spec.access_app_name, duration=spec.access_token_duration
                )
            if created is None or not created.id or not created.client_id or not created.client_secret:
                raise CloudAPIError(
                    "Cloudflare created the Access service token but did not return its secret; "
                    "run the deploy again (it will rotate the token).",
                    service="cloudflare",
                )
            save_service_token(account, spec.tunnel_name, ServiceToken(created.client_id, created.client_secret))
            progress(
                f"Created the Access service token {spec.access_app_name} (valid {spec.access_token_duration}); "
                f"its secret is saved in {path}."
            )
            return self._find_service_token()
        token_id = cast(str, token.id)
        local = load_service_token(account, spec.tunnel_name)
        if local is None or local.client_id != token.client_id:
            self._rotate(token_id, progress)
        info = self._token_info(token)
        if info is not None and info.duration != spec.access_token_duration:
            with self._api(
                f"set the lifetime of the Access service token {spec.access_app_name!r}", _PERM_ACCESS_TOKENS
            ):
                access.service_tokens.update(token_id, account_id=account, duration=spec.access_token_duration)
            progress(f"The Access service token {spec.access_app_name} now lasts {spec.access_token_duration}.")
        # Rotating and changing the duration keep the old expiry: refresh whenever we touched it, or when due.
        self._refresh(token, progress)
        return self._find_service_token()

    def _token_delete(self, walk: Walk, token: Any, progress: Progress) -> None:
        spec = self._spec
        if token.id is None:
            return
        with self._api(f"delete the Access service token {spec.access_app_name!r}", _PERM_ACCESS_TOKENS):
            self._cf().zero_trust.access.service_tokens.delete(token.id, account_id=spec.cloudflare_account_id)
        progress(f"Deleted the Access service token {spec.access_app_name}.")

    def _rotate(self, token_id: str, progress: Progress) -> None:
        spec = self._spec
        account = spec.cloudflare_account_id
        # Cloudflare shows the secret only once: a new secret is the only way to get one here.
        with self._api(f"rotate the Access service token {spec.access_app_name!r}", _PERM_ACCESS_TOKENS):
            rotated = self._cf().zero_trust.access.service_tokens.rotate(token_id, account_id=account)
        if rotated is None or not rotated.client_id or not rotated.client_secret:
            raise CloudAPIError(
                "Cloudflare rotated the Access service token but did not return the new secret; run it again.",
                service="cloudflare",
            )
        path = save_service_token(account, spec.tunnel_name, ServiceToken(rotated.client_id, rotated.client_secret))
        progress(f"Rotated the Access service token {spec.access_app_name}; the new secret is saved in {path}.")

    def _refresh(self, token: Any, progress: Progress) -> None:
        spec = self._spec
        with self._api(f"refresh the Access service token {spec.access_app_name!r}", _PERM_ACCESS_TOKENS):
            refreshed = self._cf().zero_trust.access.service_tokens.refresh(
                cast(str, token.id), account_id=spec.cloudflare_account_id
            )
        info = self._token_info(refreshed)
        progress(
            f"Refreshed the Access service token {spec.access_app_name}: "
            f"{info.expiry_text() if info else 'new expiry not reported'}."
        )

    def _require_service_token(self, verb: str) -> Any:
        token = self._find_service_token()
        if token is None or token.id is None:
            raise ClusterError(
                f"cannot {verb} the Access service token {self._spec.access_app_name!r}: it does not exist; "
                "deploy the cluster first."
            )
        return token

    def _require_info(self) -> ServiceTokenInfo:
        info = self.service_token_info()
        if info is None:
            raise CloudAPIError(
                "Cloudflare no longer lists the Access service token; run the deploy again.", service="cloudflare"
            )
        return info

    def _token_info(self, token: Any) -> ServiceTokenInfo | None:
        if token is None or not getattr(token, "id", None):
            return None
        spec = self._spec
        local = load_service_token(spec.cloudflare_account_id, spec.tunnel_name)
        expires = getattr(token, "expires_at", None)
        return ServiceTokenInfo(
            name=str(getattr(token, "name", "") or spec.access_app_name),
            token_id=str(token.id),
            client_id=str(getattr(token, "client_id", "") or ""),
            duration=str(getattr(token, "duration", "") or ""),
            expires_at=_as_utc(expires) if isinstance(expires, datetime) else None,
            saved_here=local is not None and local.client_id == getattr(token, "client_id", None),
        )

    # -- Access policy and application -------------------------------------------------------------

    def _policy_diff(self, walk: Walk, policy: Any) -> tuple[str, str]:
        token = walk.get("service token")
        if policy is None:
            return "create", "service token only"
        if token is None or token.id is None or not self._policy_ok(policy, token.id):
            return "update", "service token only"
        return "unchanged", ""

    def _policy_apply(self, walk: Walk, policy: Any, action: str, progress: Progress) -> Any:
        account = self._spec.cloudflare_account_id
        policies = self._cf().zero_trust.access.policies
        token_id = cast(str, walk["service token"].id)
        what = f"the Access policy {self._policy_name!r}"
        include: list[ServiceTokenRuleParam] = [{"service_token": {"token_id": token_id}}]
        result: Any
        if policy is None:
            with self._api(f"create {what}", _PERM_ACCESS_APPS):
                result = policies.create(
                    account_id=account, name=self._policy_name, decision="non_identity", include=include
                )
            progress(f"Created the Access policy {self._policy_name} (service token only).")
        else:
            with self._api(f"update {what}", _PERM_ACCESS_APPS):
                result = policies.update(
                    cast(str, policy.id),
                    account_id=account,
                    name=self._policy_name,
                    decision="non_identity",
                    include=include,
                )
            progress(f"Updated the Access policy {self._policy_name} to let only the service token in.")
        if result is None or not result.id:
            raise CloudAPIError(
                f"Cloudflare did not return the id of {what}; run the deploy again.", service="cloudflare"
            )
        return result

    def _policy_delete(self, walk: Walk, policy: Any, progress: Progress) -> None:
        if policy.id is None:
            return
        with self._api(f"delete the Access policy {self._policy_name!r}", _PERM_ACCESS_APPS):
            self._cf().zero_trust.access.policies.delete(policy.id, account_id=self._spec.cloudflare_account_id)
        progress(f"Deleted the Access policy {self._policy_name}.")

    def _app_diff(self, walk: Walk, app: Any) -> tuple[str, str]:
        policy = walk.get("policy")
        if app is None:
            return "create", "self-hosted, service token"
        if policy is None or not self._app_ok(app, policy.id):
            return "update", "self-hosted, service token"
        return "unchanged", ""

    def _app_apply(self, walk: Walk, app: Any, action: str, progress: Progress) -> Any:
        spec = self._spec
        account = spec.cloudflare_account_id
        apps = self._cf().zero_trust.access.applications
        settings: dict[str, Any] = {
            "domain": spec.hostname,
            "type": "self_hosted",
            "name": spec.access_app_name,
            "session_duration": "24h",
            "app_launcher_visible": False,
            # A client without the token gets a 401, not a redirect to a login page it cannot use.
            "service_auth_401_redirect": True,
            "policies": [{"id": walk["policy"].id, "precedence": 1}],
        }
        if app is None:
            with self._api(f"create the Access application on {spec.hostname}", _PERM_ACCESS_APPS):
                apps.create(account_id=account, **settings)
            progress(f"Cloudflare Access now protects {spec.hostname} (service token only).")
        else:
            with self._api(f"update the Access application on {spec.hostname}", _PERM_ACCESS_APPS):
                apps.update(cast(str, app.id), account_id=account, **settings)
            progress(f"Updated the Access application on {spec.hostname} to require the service token.")
        return self._find_app()

    def _app_delete(self, walk: Walk, app: Any, progress: Progress) -> None:
        spec = self._spec
        with self._api(f"delete the Access application on {spec.hostname}", _PERM_ACCESS_APPS):
            self._cf().zero_trust.access.applications.delete(cast(str, app.id), account_id=spec.cloudflare_account_id)
        progress(f"Deleted the Access application on {spec.hostname}.")

    # -- DNS ---------------------------------------------------------------------------------------

    def _dns_diff(self, walk: Walk, records: list[RecordResponse]) -> tuple[str, str]:
        tunnel_id = _tunnel_id(walk)
        cname = next((r for r in records if r.type == "CNAME"), None)
        target = f"{tunnel_id or '<new tunnel id>'}.cfargotunnel.com"
        if cname is None:
            self._check_dns_conflict(records)
            return "create", f"CNAME → {target}, proxied"
        if tunnel_id is None or not self._cname_ok(cname, tunnel_id):
            return "update", f"CNAME {cname.content} → {target}, proxied"
        return "unchanged", f"CNAME → {target}"

    def _dns_apply(self, walk: Walk, records: list[RecordResponse], action: str, progress: Progress) -> Any:
        spec = self._spec
        zone_id = self._zone()
        dns = self._cf().dns.records
        target = f"{_tunnel_id(walk)}.cfargotunnel.com"
        cname = next((r for r in records if r.type == "CNAME"), None)
        if cname is None:
            with self._api(f"create the DNS record {spec.hostname}", _PERM_DNS):
                dns.create(zone_id=zone_id, name=spec.hostname, type="CNAME", content=target, proxied=True, ttl=1)
            progress(f"Created the DNS record {spec.hostname} → the tunnel (proxied).")
        else:
            with self._api(f"update the DNS record {spec.hostname}", _PERM_DNS):
                dns.update(
                    cname.id,
                    zone_id=zone_id,
                    name=spec.hostname,
                    type="CNAME",
                    content=target,
                    proxied=True,
                    ttl=1,
                )
            progress(f"Pointed the DNS record {spec.hostname} at the tunnel (it pointed at {cname.content}).")
        return self._dns_records(zone_id)

    def _dns_delete(self, walk: Walk, records: list[RecordResponse], progress: Progress) -> None:
        spec = self._spec
        zone_id = self._zone()
        for record in records:
            if record.type != "CNAME" or record.id is None:
                continue
            if not str(record.content or "").endswith(".cfargotunnel.com"):
                progress(f"Left the DNS record {spec.hostname} alone: it points at {record.content}, not a tunnel.")
                continue
            with self._api(f"delete the DNS record {spec.hostname}", _PERM_DNS):
                self._cf().dns.records.delete(record.id, zone_id=zone_id)
            progress(f"Deleted the DNS record {spec.hostname}.")

    # -- lookups -----------------------------------------------------------------------------------

    @property
    def _policy_name(self) -> str:
        return f"{self._spec.access_app_name} service token"

    def _cf(self) -> Cloudflare:
        if self._client is None:
            import cloudflare

            self._client = cloudflare.Cloudflare(
                api_token=self._api_token,
                base_url=self._spec.cloudflare_endpoint,
                max_retries=self._max_retries,
            )
        return self._client

    def _zone(self) -> str:
        if self._zone_id is not None:
            return self._zone_id
        spec = self._spec
        with self._api(f"look up the zone {spec.domain!r}", _PERM_ZONE):
            zones = [
                z
                for z in self._cf().zones.list(name=spec.domain, account={"id": spec.cloudflare_account_id})
                if z.name == spec.domain
            ]
        if not zones:
            raise CloudAPIError(
                f"the domain {spec.domain!r} was not found in Cloudflare account "
                f"{spec.cloudflare_account_id}: the domain must be a zone in this Cloudflare account. "
                "Add it in the dashboard (Add a site), or set CODECAPSULE_DOMAIN / CLOUDFLARE_ACCOUNT_ID "
                "to a zone and account that go together; the API token also needs Zone:Read on it.",
                service="cloudflare",
                code="zone_not_found",
            )
        self._zone_id = zones[0].id
        return self._zone_id

    def _find_tunnels(self) -> list[CloudflareTunnel]:
        name = self._spec.tunnel_name
        with self._api(f"look up the tunnel {name!r}", _PERM_TUNNEL):
            found = [
                t
                for t in self._cf().zero_trust.tunnels.cloudflared.list(
                    account_id=self._spec.cloudflare_account_id, name=name, is_deleted=False
                )
                if t.name == name and t.deleted_at is None
            ]
        # The oldest first: if two were ever created, keep using the first one.
        return sorted(found, key=lambda t: (t.created_at is None, t.created_at and t.created_at.isoformat()))

    def _find_tunnel(self) -> CloudflareTunnel | None:
        tunnels = self._find_tunnels()
        return tunnels[0] if tunnels else None

    def _ingress_ok(self, tunnel_id: str) -> bool:
        with self._api("read the tunnel's ingress rules", _PERM_TUNNEL):
            current = self._cf().zero_trust.tunnels.cloudflared.configurations.get(
                tunnel_id, account_id=self._spec.cloudflare_account_id
            )
        rules = current.config.ingress if current is not None and current.config is not None else None
        if not rules or len(rules) != 2:
            return False
        first, last = rules
        return (
            first.hostname == self._spec.hostname
            and first.service == ORIGIN_SERVICE
            and not first.path
            and not last.hostname
            and not last.path
            and last.service == CATCH_ALL_SERVICE
        )

    def _dns_records(self, zone_id: str) -> list[RecordResponse]:
        host = self._spec.hostname
        with self._api(f"look up the DNS records of {host}", _PERM_DNS):
            return [r for r in self._cf().dns.records.list(zone_id=zone_id, name={"exact": host}) if r.name == host]

    def _check_dns_conflict(self, records: list[RecordResponse]) -> None:
        clash = next((r for r in records if r.type in {"A", "AAAA"}), None)
        if clash is not None:
            raise ClusterError(
                f"{self._spec.hostname} already has a DNS {clash.type} record ({clash.content}), so it "
                "cannot point at the tunnel: delete that record in the Cloudflare dashboard, or choose "
                "another hostname (ClusterSpec(hostname=...))."
            )

    def _cname_ok(self, record: RecordResponse, tunnel_id: str) -> bool:
        return record.content == f"{tunnel_id}.cfargotunnel.com" and bool(getattr(record, "proxied", False))

    def _find_service_token(self) -> RemoteServiceToken | None:
        name = self._spec.access_app_name
        with self._api(f"look up the Access service token {name!r}", _PERM_ACCESS_TOKENS):
            found = [
                t
                for t in self._cf().zero_trust.access.service_tokens.list(
                    account_id=self._spec.cloudflare_account_id, name=name
                )
                if t.name == name and t.id
            ]
        return found[0] if found else None

    def _find_policy(self) -> Any:
        name = self._policy_name
        with self._api(f"look up the Access policy {name!r}", _PERM_ACCESS_APPS):
            found = [
                p
                for p in self._cf().zero_trust.access.policies.list(account_id=self._spec.cloudflare_account_id)
                if p.name == name and p.id
            ]
        return found[0] if found else None

    def _find_app(self) -> Any:
        # ApplicationListResponse is a union of a dozen models: read the shared fields with getattr.
        host = self._spec.hostname
        with self._api(f"look up the Access application on {host}", _PERM_ACCESS_APPS):
            found = [
                a
                for a in self._cf().zero_trust.access.applications.list(
                    account_id=self._spec.cloudflare_account_id, domain=host, exact=True
                )
                if getattr(a, "domain", None) == host and getattr(a, "id", None)
            ]
        return found[0] if found else None

    @staticmethod
    def _policy_ok(policy: Any, token_id: str) -> bool:
        include = list(getattr(policy, "include", None) or [])
        return (
            getattr(policy, "decision", None) == "non_identity"
            and len(include) == 1
            and _rule_token_id(include[0]) == token_id
            and not getattr(policy, "require", None)
            and not getattr(policy, "exclude", None)
        )

    @staticmethod
    def _app_ok(app: Any, policy_id: str) -> bool:
        policies = list(getattr(app, "policies", None) or [])
        return getattr(app, "type", None) == "self_hosted" and [getattr(p, "id", None) for p in policies] == [policy_id]

    @staticmethod
    def _app_protected(app: Any, token_id: str | None) -> bool:
        """An Access app whose policies admit a service token (ours, when we know its id)."""
        if getattr(app, "type", None) != "self_hosted":
            return False
        for policy in getattr(app, "policies", None) or []:
            if getattr(policy, "decision", None) != "non_identity":
                continue
            ids = [_rule_token_id(rule) for rule in getattr(policy, "include", None) or []]
            if any(i is not None and (token_id is None or i == token_id) for i in ids):
                return True
        return False

    # -- errors ------------------------------------------------------------------------------------

    @contextmanager
    def _api(self, what: str, permission: str) -> Iterator[None]:
        """Turn SDK and transport errors inside the block into :class:`CloudAPIError` saying what to do."""
        import cloudflare
        import httpx

        try:
            yield
        except cloudflare.APIStatusError as exc:
            raise self._status_error(exc, what, permission) from None
        except (cloudflare.APIConnectionError, httpx.TransportError):
            raise CloudAPIError(
                f"could not reach the Cloudflare API at {self._spec.cloudflare_endpoint} to {what}: "
                "check the network connection or proxy (and ClusterSpec.cloudflare_endpoint), then try "
                "again.",
                service="cloudflare",
                code="connection_error",
            ) from None
        except cloudflare.APIError as exc:
            raise CloudAPIError(
                f"Cloudflare gave an answer CodeCapsule could not understand while trying to {what} "
                f"({type(exc).__name__}); try again, and report it if it keeps happening.",
                service="cloudflare",
            ) from None

    def _status_error(self, exc: Any, what: str, permission: str) -> CloudAPIError:
        status = int(exc.status_code)
        errors = _api_errors(exc.body)
        code = errors[0][0] if errors else ""
        detail = "; ".join(f"{c}: {m}" if c else m for c, m in errors) or "no details"
        said = f"(HTTP {status}, {detail})"
        account = self._spec.cloudflare_account_id
        if status in (401, 403) or any(c.isdigit() and int(c) in _AUTH_CODES for c, _ in errors):
            message = (
                f"Cloudflare refused to {what} {said}: the API token lacks permission {permission} (or is "
                f"invalid or expired). Create a token with {_ALL_PERMISSIONS} for account {account} and the "
                f"zone {self._spec.domain}, then set CLOUDFLARE_API_TOKEN to it."
            )
        elif status == 404:
            message = (
                f"Cloudflare could not find what it needs to {what} {said}: check that CLOUDFLARE_ACCOUNT_ID "
                f"({account}) is the account that owns {self._spec.domain} and that the token can see it."
            )
        elif status == 429:
            message = f"Cloudflare is rate-limiting requests {said}: wait a minute, then run it again."
        elif status >= 500:
            message = (
                f"Cloudflare had an internal problem trying to {what} {said}: wait a moment and run it again "
                "(the deploy picks up where it stopped)."
            )
        else:
            message = (
                f"Cloudflare refused to {what} {said}: fix what the message names (see the Cloudflare "
                "dashboard), then run it again."
            )
        return CloudAPIError(message, service="cloudflare", status_code=status, code=code)


def _tunnel_id(walk: Walk) -> str | None:
    tunnel = walk.get("tunnel")
    return getattr(tunnel, "id", None) if tunnel is not None else None


def _as_utc(value: datetime) -> datetime:
    return value.astimezone(UTC) if value.tzinfo is not None else value.replace(tzinfo=UTC)


def _api_errors(body: object) -> list[tuple[str, str]]:
    """(code, message) pairs from Cloudflare's error envelope."""
    errors = body.get("errors") if isinstance(body, dict) else None
    pairs: list[tuple[str, str]] = []
    for item in errors if isinstance(errors, list) else []:
        if isinstance(item, dict):
            pairs.append((str(item.get("code", "")), str(item.get("message", ""))[:300]))
    return pairs


def _rule_token_id(rule: Any) -> str | None:
    """The token id of an ``{"service_token": {"token_id": ...}}`` Access rule (model or dict)."""
    if isinstance(rule, dict):
        ref = rule.get("service_token")
        return ref.get("token_id") if isinstance(ref, dict) else None
    ref = getattr(rule, "service_token", None)
    token_id = getattr(ref, "token_id", None)
    return token_id if isinstance(token_id, str) else None


def _connector(client: ConnectorClient) -> Connector:
    conns = list(client.conns or [])
    colos = list(dict.fromkeys(c.colo_name for c in conns if c.colo_name))
    opened = sorted(c.opened_at for c in conns if c.opened_at is not None)
    started = opened[0] if opened else client.run_at
    return Connector(
        connector_id=client.id or "",
        colo=", ".join(colos),
        origin_ip=next((c.origin_ip for c in conns if c.origin_ip), ""),
        opened_at=started.isoformat() if started is not None else "",
        pending_reconnect=bool(conns) and all(bool(c.is_pending_reconnect) for c in conns),
    )
