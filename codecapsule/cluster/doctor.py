"""``codecapsule doctor``: walk the troubleshooting table automatically and say what to fix.

Works from both sides:

* a **client** (a student's or teacher's machine) with only ``CODECAPSULE_PISTON_URL`` (and the Access
  service-token variables) set: endpoint, DNS, Piston through the tunnel, runtimes, a round trip;
* an **admin** with a :class:`~codecapsule.cluster.cluster.Cluster`: the same, plus the tunnel's connectors,
its
  DNS record and Access protection as Cloudflare sees them, and the VMs' health as Azure sees them.

What cannot be checked is reported as skipped, with the reason. Every failed check carries the fix from the
troubleshooting table (502 → cloudflared not connected / Piston down; 404 → wrong path; unknown runtime →
install it; DNS failure → the CNAME is missing).
"""

from __future__ import annotations

import socket
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from .._errors import CodeCapsuleError, PistonError
from .._jobs import Job
from .._settings import Settings
from ..engines.piston_protocol import symptom

if TYPE_CHECKING:
    from ..engines.piston import PistonEngine
    from .cluster import Cluster
    from .tunnel import ServiceTokenInfo

__all__ = ["FIXES", "Check", "format_checks", "run_doctor"]

# The troubleshooting table: symptom → what to do.
FIXES: dict[str, str] = {
    "no endpoint": (
        "set CODECAPSULE_PISTON_URL to the tunnel's address (https://tunnel.<your domain>) and "
        "CODECAPSULE_ACCESS_CLIENT_ID / CODECAPSULE_ACCESS_CLIENT_SECRET to the Access service token your "
        "admin "
        "gave you (an admin gets them from Cluster.client() or `codecapsule cluster status`)."
    ),
    "dns": (
        "the host name does not resolve: the proxied CNAME tunnel.<domain> → <tunnel id>.cfargotunnel.com is "
        "missing (or the URL is misspelt). An admin re-creates it with `codecapsule cluster deploy`."
    ),
    "502": (
        "the tunnel answered but nothing behind it did: cloudflared is not connected on the VMs or Piston is "
        "down. Admin: `codecapsule cluster status`, `codecapsule cluster logs --source cloudflared` / "
        "`--source piston`, then `codecapsule cluster reimage` if a VM is stuck."
    ),
    "530": (
        "Cloudflare has no connector for the tunnel (error 1033): no VM is running cloudflared. Admin: check "
        "the "
        "instances (`codecapsule cluster status`), the NAT gateway (VMs need outbound access) and "
        "`codecapsule cluster logs --source cloudflared`."
    ),
    "524": "Piston took too long to answer: the VMs are overloaded; scale up: `codecapsule cluster scale N`.",
    "404": (
        "wrong path: CODECAPSULE_PISTON_URL must be the base address only (https://tunnel.<domain>), without "
        "/api/v2; the client adds the API path."
    ),
    "access": (
        "Cloudflare Access refused the request: set CODECAPSULE_ACCESS_CLIENT_ID and "
        "CODECAPSULE_ACCESS_CLIENT_SECRET to the cluster's service token (admin: `codecapsule cluster "
        "deploy` "
        "rotates a lost one)."
    ),
    "unknown runtime": (
        "install the missing runtime on the cluster: `codecapsule cluster install LANGUAGE VERSION` "
        "(e.g. `codecapsule cluster install python 3.12.0`)."
    ),
    "tls": "the TLS handshake failed: check the URL's scheme and host, and any proxy that inspects TLS.",
    "connect": "no connection could be made: check the URL, your network and any firewall or proxy.",
    "timeout": "no answer in time: the tunnel or VMs are overloaded or unreachable; retry, then scale up.",
    "not piston": "the address answers but not like Piston: check CODECAPSULE_PISTON_URL.",
    "no tunnel": "there is no Cloudflare Tunnel for this cluster: run `codecapsule cluster deploy`.",
    "no connectors": (
        "cloudflared is not connected on any VM: check `codecapsule cluster logs --source cloudflared`, that "
        "the "
        "subnet has its NAT gateway (outbound access), then `codecapsule cluster reimage`."
    ),
    "dns record": "the hostname's CNAME is missing or points elsewhere: run `codecapsule cluster deploy`.",
    "not protected": (
        "the hostname is not behind Cloudflare Access, so anyone could run code on the VMs: run "
        "`codecapsule cluster deploy` now."
    ),
    "instances": (
        "some VMs are not running or failed to provision: `codecapsule cluster logs --instance N --source "
        "cloud-init`, then `codecapsule cluster reimage`."
    ),
    "no instances": "the scale set has no VMs: `codecapsule cluster scale 1` (or deploy).",
    "token expiry": (
        "the Access service token expires soon (or has expired: then every request is refused): refresh it with "
        "`codecapsule cluster token refresh` (same secret) or rotate it with `codecapsule cluster token rotate`."
    ),
    "cloud": "Azure or Cloudflare refused the call: check the credentials and the message above.",
}

# Piston package names → the language names /api/v2/runtimes shows (for packages whose names differ).
_PACKAGE_LANGUAGES: dict[str, tuple[str, ...]] = {
    "node": ("javascript",),
    "gcc": ("c", "c++"),
}
# What a client needs when no cluster spec says otherwise: the classroom languages.
_CLIENT_LANGUAGES = ("python", "javascript", "java", "c", "c++")


@dataclass(frozen=True)
class Check:
    """One doctor check. ``ok`` is None when the check was skipped (``detail`` says why)."""

    name: str
    ok: bool | None
    detail: str
    fix: str = ""

    @property
    def skipped(self) -> bool:
        return self.ok is None

    def __str__(self) -> str:
        mark = {True: "ok  ", False: "FAIL", None: "skip"}[self.ok]
        text = f"[{mark}] {self.name}: {self.detail}"
        if self.ok is False and self.fix:
            text += f"\n       fix: {self.fix}"
        return text


def format_checks(checks: Sequence[Check]) -> str:
    """The checks as text, with a one-line summary. Consecutive checks skipped for the same reason share a line."""
    failed = sum(1 for c in checks if c.ok is False)
    passed = sum(1 for c in checks if c.ok is True)
    skipped = sum(1 for c in checks if c.ok is None)
    summary = f"{passed} ok, {failed} failed, {skipped} skipped."
    lines: list[str] = []
    group: list[Check] = []
    for check in [*checks, None]:
        if check is not None and check.skipped and group and check.detail == group[0].detail:
            group.append(check)
            continue
        if group:
            names = ", ".join(c.name for c in group)
            lines.append(str(Check(names, None, group[0].detail)))
            group = []
        if check is not None and check.skipped:
            group = [check]
        elif check is not None:
            lines.append(str(check))
    return "\n".join([*lines, summary])


class _Doctor:
    def __init__(
        self,
        url: str | None,
        headers: Mapping[str, str],
        cluster: Cluster | None,
        timeout: float,
        admin_skip_reason: str,
    ) -> None:
        self.url = url.rstrip("/") if url else None
        self.headers = dict(headers)
        self.cluster = cluster
        self.timeout = timeout
        self.admin_skip_reason = admin_skip_reason
        self.checks: list[Check] = []
        self.runtimes: list[dict[str, Any]] | None = None

    def add(self, name: str, ok: bool | None, detail: str, fix_key: str = "") -> bool | None:
        self.checks.append(Check(name, ok, detail, FIXES.get(fix_key, fix_key) if ok is False else ""))
        return ok

    def settings(self) -> Settings:
        """The client's settings for this check: no retries (the doctor reports, it does not wait)."""
        return Settings(
            piston_url=self.url,
            access_client_id=self.headers.get("CF-Access-Client-Id"),
            access_client_secret=self.headers.get("CF-Access-Client-Secret"),
            engine="piston",
            retries=0,
            request_timeout=self.timeout,
        )

    def scrub(self, text: str) -> str:
        for value in self.headers.values():
            if value and len(value) >= 6:
                text = text.replace(value, "***")
        return text

    # -- client-side checks --------------------------------------------------------------------------

    def endpoint(self) -> bool:
        if self.url:
            return bool(self.add("endpoint configured", True, self.url))
        self.add("endpoint configured", False, "CODECAPSULE_PISTON_URL is not set", "no endpoint")
        return False

    def dns(self) -> bool:
        assert self.url is not None
        parts = urlsplit(self.url)
        host = parts.hostname or ""
        port = parts.port or (443 if parts.scheme == "https" else 80)
        try:
            infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except (socket.gaierror, UnicodeError) as exc:
            return bool(self.add("DNS name resolves", False, f"{host}: {exc}", "dns"))
        addresses = sorted({str(info[4][0]) for info in infos})
        return bool(self.add("DNS name resolves", True, f"{host} → {', '.join(addresses[:3])}"))

    # Piston is asked through the client itself, so every answer gets the name the client gives it (the
    # status → error table of codecapsule.engines.piston_protocol): a 502 here is exactly what execute() says.

    def failed(self, name: str, error: PistonError) -> bool:
        key, detail = symptom(error)
        return bool(self.add(name, False, self.scrub(detail), key))

    def piston_root(self, engine: PistonEngine) -> bool:
        name = "Piston answers (GET /)"
        try:
            message = engine.server_version()
        except PistonError as exc:
            return self.failed(name, exc)
        return bool(self.add(name, True, message))

    def runtimes_api(self, engine: PistonEngine) -> bool:
        name = "runtimes API (GET /api/v2/runtimes)"
        try:
            runtimes = engine.runtimes()
        except PistonError as exc:
            return self.failed(name, exc)
        self.runtimes = [
            {"language": r.language, "version": r.version, "aliases": list(r.aliases), "runtime": r.runtime or ""}
            for r in runtimes
        ]
        listed = ", ".join(str(r) for r in runtimes) or "none"
        return bool(self.add(name, True, f"{len(runtimes)} runtime(s): {listed}"))

    def expected_runtimes(self) -> list[tuple[str, str | None]]:
        if self.cluster is not None:
            return [(lang, ver) for lang, ver in self.cluster.spec.runtimes]
        return [(lang, None) for lang in _CLIENT_LANGUAGES]

    def runtimes_installed(self) -> None:
        assert self.runtimes is not None
        missing = []
        for package, version in self.expected_runtimes():
            names = {package, *_PACKAGE_LANGUAGES.get(package, ())}
            found = [
                r
                for r in self.runtimes
                if names & {str(r.get("language")), str(r.get("runtime", "")), *map(str, r.get("aliases", []))}
            ]
            if not found or (version is not None and not any(str(r.get("version")) == version for r in found)):
                missing.append(f"{package} {version}" if version else package)
        if missing:
            self.add("runtimes installed", False, "missing: " + ", ".join(missing), "unknown runtime")
        else:
            self.add("runtimes installed", True, "every expected runtime is there")

    def round_trip(self, engine: PistonEngine) -> None:
        assert self.runtimes is not None
        name = "runs code (print(1) in python)"
        if not any(r.get("language") == "python" for r in self.runtimes):
            self.add(name, None, "python is not installed, nothing to run")
            return
        try:
            result = engine.run(Job.create("print(1)", "python"))
        except PistonError as exc:
            self.failed(name, exc)
            return
        ok = result.ok and result.stdout.strip() == "1"
        detail = "printed 1" if ok else f"{result.verdict}: unexpected output {result.stdout[:80]!r}"
        self.add(name, ok, detail, "502")

    # -- admin-side checks ---------------------------------------------------------------------------

    def tunnel(self) -> None:
        names = (
            "tunnel has connectors",
            "DNS record points at the tunnel",
            "protected by Cloudflare Access",
            "Access service token valid",
        )
        if self.cluster is None:
            for name in names:
                self.add(name, None, self.admin_skip_reason)
            return
        try:
            status = self.cluster.tunnel.status()
        except CodeCapsuleError as exc:
            for name in names:
                self.add(name, False, self.scrub(str(exc)), "cloud")
            return
        if status.tunnel_id is None:
            self.add(names[0], False, f"no tunnel named {self.cluster.spec.tunnel_name}", "no tunnel")
        elif not status.connectors:
            self.add(names[0], False, f"tunnel {status.status or 'inactive'}, 0 connectors", "no connectors")
        else:
            n = len(status.connectors)
            self.add(names[0], True, f"tunnel {status.status}, {n} connector{'s' if n != 1 else ''}")
        if status.dns_ok:
            self.add(names[1], True, f"{self.cluster.spec.hostname} → {status.dns_target}")
        else:
            self.add(
                names[1],
                False,
                f"CNAME {'→ ' + status.dns_target if status.dns_target else 'missing'}",
                "dns record",
            )
        if status.access_protected:
            self.add(names[2], True, "Access application with a service-token policy")
        else:
            self.add(names[2], False, "no Access application with a service-token policy", "not protected")
        self.service_token(names[3], status.service_token)

    def service_token(self, name: str, token: ServiceTokenInfo | None) -> None:
        """The Access service token's lifetime: failing when expired or within TOKEN_WARN_DAYS of it."""
        if token is None:
            self.add(name, False, "no Access service token", "not protected")
        elif token.expiring():
            self.add(name, False, f"{token.expiry_text()} (duration {token.duration})", "token expiry")
        else:
            self.add(name, True, f"{token.expiry_text()} (duration {token.duration})")

    def instances(self) -> None:
        name = "instances healthy"
        if self.cluster is None:
            self.add(name, None, self.admin_skip_reason)
            return
        try:
            instances = self.cluster.azure.instances()
        except CodeCapsuleError as exc:
            self.add(name, False, self.scrub(str(exc)), "cloud")
            return
        if not instances:
            self.add(name, False, f"scale set {self.cluster.spec.vmss_name} has no VMs", "no instances")
            return
        bad = [i for i in instances if i.power_state != "running" or i.provisioning_state != "Succeeded"]
        if bad:
            self.add(
                name,
                False,
                ", ".join(f"{i.instance_id}: {i.provisioning_state}/{i.power_state}" for i in bad),
                "instances",
            )
        else:
            self.add(name, True, f"{len(instances)} running")

    def run(self) -> list[Check]:
        client_names = (
            "DNS name resolves",
            "Piston answers (GET /)",
            "runtimes API (GET /api/v2/runtimes)",
            "runtimes installed",
            "runs code (print(1) in python)",
        )
        if not self.endpoint():
            for name in client_names:
                self.add(name, None, "no endpoint configured")
        elif not self.dns():
            for name in client_names[1:]:
                self.add(name, None, "the host name does not resolve")
        else:
            from ..engines.piston import PistonEngine

            with PistonEngine(self.settings()) as engine:
                if not self.piston_root(engine):
                    for name in client_names[2:]:
                        self.add(name, None, "Piston does not answer")
                elif not self.runtimes_api(engine):
                    for name in client_names[3:]:
                        self.add(name, None, "the runtimes API does not answer")
                else:
                    self.runtimes_installed()
                    self.round_trip(engine)
        self.tunnel()
        self.instances()
        return self.checks


def run_doctor(
    cluster: Cluster | None = None,
    *,
    piston_url: str | None = None,
    access_client_id: str | None = None,
    access_client_secret: str | None = None,
    env: Mapping[str, str] | None = None,
    timeout: float = 10.0,
    admin_skip_reason: str = "needs the cluster's admin credentials (CLOUDFLARE_API_TOKEN, AZURE_SUBSCRIPTION_ID...)",
) -> list[Check]:
    """Run every check and return them in order (nothing raises for a failing check).

    The Piston address and Access token come from the arguments, else from the cluster (``spec.url`` and the
    service token stored by its deploy), else from ``CODECAPSULE_PISTON_URL`` /
    ``CODECAPSULE_ACCESS_CLIENT_ID`` / ``CODECAPSULE_ACCESS_CLIENT_SECRET``.
    """
    settings = Settings.from_env(env) if env is not None else Settings.from_env()
    url = piston_url
    client_id, client_secret = access_client_id, access_client_secret
    if url is None and cluster is not None:
        url = cluster.spec.url
    if url is None:
        url = settings.piston_url
    if client_id is None and cluster is not None:
        try:
            token = cluster.service_token()
        except CodeCapsuleError:
            token = None
        if token is not None:
            client_id, client_secret = token.client_id, token.client_secret
    if client_id is None:
        client_id, client_secret = settings.access_client_id, settings.access_client_secret
    headers = {}
    if client_id and client_secret:
        headers = {"CF-Access-Client-Id": client_id, "CF-Access-Client-Secret": client_secret}
    return _Doctor(url, headers, cluster, timeout, admin_skip_reason).run()
