"""What a cluster looks like right now: VMs, tunnel, Piston — one object with readable text and HTML forms."""

from __future__ import annotations

from dataclasses import dataclass
from html import escape
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .azure import AutoscaleState, Instance
    from .schedule import ScheduleView
    from .tunnel import ServiceTokenInfo, TunnelStatus

__all__ = ["ClusterStatus", "PistonHealth", "instance_health"]

Level = str  # "ok" | "warn" | "bad" | "unknown"


def instance_health(instance: Instance) -> tuple[str, Level]:
    """One word for an instance's health from its provisioning and power state, and how bad it is.

    The one judge of instance health: :attr:`ClusterStatus.problems` and the panel both use it."""
    prov, power = instance.provisioning_state, instance.power_state
    if prov == "Failed":
        return "failed", "bad"
    if power in {"stopped", "deallocated"}:
        return "stopped", "bad"
    if prov == "Succeeded" and power == "running":
        if instance.latest_model is False:
            return "ok (old model: reimage)", "warn"
        return "ok", "ok"
    if power == "starting" or prov in {"Creating", "Updating"}:
        return "starting", "warn"
    return "unknown", "unknown"


@dataclass(frozen=True)
class PistonHealth:
    """Piston as a client sees it through ``spec.url`` (with the Access headers)."""

    reachable: bool
    runtimes: tuple[tuple[str, str], ...] = ()  # (language, version) as /api/v2/runtimes lists them
    round_trip_ms: float | None = None  # a tiny ``print(1)`` execute, end to end
    error: str | None = None  # why it is not reachable (never contains a secret)

    def __str__(self) -> str:
        if not self.reachable:
            return f"unreachable: {self.error or 'no answer'}"
        rtt = f" in {self.round_trip_ms:.0f} ms" if self.round_trip_ms is not None else ""
        names = ", ".join(f"{lang} {ver}" for lang, ver in self.runtimes) or "none"
        return f"answering{rtt}; runtimes: {names}"


def _autoscale_text(autoscale: AutoscaleState | None) -> str:
    if autoscale is None:
        return "autoscale: not configured"
    state = "on" if autoscale.enabled else "off"
    return (
        f"autoscale {state} {autoscale.minimum}..{autoscale.maximum} "
        f"(out above {autoscale.scale_out_cpu:g}% CPU, in below {autoscale.scale_in_cpu:g}%)"
    )


def _tunnel_text(tunnel: TunnelStatus) -> str:
    if tunnel.tunnel_id is None:
        return "no tunnel"
    n = len(tunnel.connectors)
    checks = [
        "DNS ok" if tunnel.dns_ok else f"DNS {'wrong target ' + tunnel.dns_target if tunnel.dns_target else 'missing'}",
        "ingress ok" if tunnel.ingress_ok else "ingress wrong",
        "Access protected" if tunnel.access_protected else "NOT protected by Access",
    ]
    return f"{tunnel.status or 'unknown'}, {n} connector{'s' if n != 1 else ''}; " + ", ".join(checks)


@dataclass(frozen=True)
class ClusterStatus:
    """A snapshot of the cluster. ``str()`` for a terminal, ``_repr_html_`` for a notebook."""

    capacity: int | None
    vm_size: str | None
    instances: tuple[Instance, ...]
    autoscale: AutoscaleState | None
    tunnel: TunnelStatus
    piston: PistonHealth
    deployed: bool
    schedule: ScheduleView | None = None  # the lab hours and the next change (None: no lab hours)

    @property
    def service_token(self) -> ServiceTokenInfo | None:
        """The Access service token's lifetime (never its secret)."""
        return self.tunnel.service_token

    @property
    def asleep(self) -> bool:
        """Deployed with 0 VMs on purpose: nothing answers until the next lab or a wake()."""
        return self.deployed and self.capacity == 0

    @property
    def warnings(self) -> tuple[str, ...]:
        """What will go wrong soon (the cluster still works): e.g. a service token close to its expiry."""
        out: list[str] = []
        token = self.service_token
        if token is not None and token.expiring() and not token.expired():
            out.append(
                f"the Access service token {token.expiry_text()}: refresh it with cluster.refresh_access_token() "
                "or `codecapsule cluster token refresh`"
            )
        if self.asleep:
            until = f"; next change {self.schedule.next_change_text}" if self.schedule is not None else ""
            out.append(f"asleep at 0 VMs{until} (wake it with cluster.wake(hours=2))")
        return tuple(out)

    @property
    def running(self) -> int:
        """How many instances are running with provisioning Succeeded."""
        return sum(1 for i in self.instances if i.power_state == "running" and i.provisioning_state == "Succeeded")

    @property
    def problems(self) -> tuple[str, ...]:
        """What is wrong, one short sentence each (empty when everything looks healthy)."""
        out: list[str] = []
        if not self.deployed:
            out.append("the cluster is not deployed (run deploy)")
            return tuple(out)
        token = self.service_token
        if token is not None and token.expired():
            out.append(
                f"the Access service token {token.expiry_text()}: every request is refused; refresh it with "
                "cluster.refresh_access_token() or `codecapsule cluster token refresh`"
            )
        bad = [i for i in self.instances if not instance_health(i)[0].startswith("ok")]
        if bad:
            out.append(
                "instances not healthy: "
                + ", ".join(f"{i.instance_id} ({i.provisioning_state}, {i.power_state})" for i in bad)
            )
        if self.tunnel.tunnel_id is None:
            out.append("no Cloudflare tunnel")
        else:
            if not self.tunnel.connectors and not self.asleep:
                out.append("the tunnel has no connectors: cloudflared is not running on any VM")
            if not self.tunnel.dns_ok:
                out.append("the DNS record for the hostname is missing or points elsewhere")
            if not self.tunnel.ingress_ok:
                out.append("the tunnel's ingress does not send the hostname to http://localhost:2000")
            if not self.tunnel.access_protected:
                out.append("the hostname is not protected by Cloudflare Access")
        if not self.piston.reachable and not self.asleep:  # asleep: nobody is expected to answer
            out.append(f"Piston is not reachable: {self.piston.error or 'no answer'}")
        return tuple(out)

    @property
    def healthy(self) -> bool:
        return not self.problems

    def __str__(self) -> str:
        if not self.deployed:
            lines = ["Cluster: not deployed"]
        else:
            size = f" × {self.vm_size}" if self.vm_size else ""
            lines = [
                f"Cluster: capacity {self.capacity}{size}, {self.running} running; {_autoscale_text(self.autoscale)}"
            ]
        for i in self.instances:
            model = {True: "latest model", False: "OLD model", None: ""}[i.latest_model]
            lines.append(
                f"  instance {i.instance_id:<3} {i.name:<28} {i.power_state:<11} {i.provisioning_state:<10} {model}"
            )
        lines.append(f"Tunnel: {_tunnel_text(self.tunnel)}")
        for c in self.tunnel.connectors:
            pending = " (reconnecting)" if c.pending_reconnect else ""
            lines.append(f"  connector {c.connector_id[:8]} {c.colo} from {c.origin_ip} since {c.opened_at}{pending}")
        if self.service_token is not None:
            lines.append(
                f"Access service token: {self.service_token.expiry_text()} (duration {self.service_token.duration})"
            )
        if self.schedule is not None:
            lines.append(str(self.schedule))
        lines.append(f"Piston: {self.piston}")
        problems = self.problems
        lines.extend(f"Warning: {w}" for w in self.warnings)
        lines.append("Healthy." if not problems else "Problems:\n" + "\n".join(f"  - {p}" for p in problems))
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        def cell(value: object) -> str:
            return f"<td>{escape(str(value))}</td>"

        size = escape(str(self.vm_size))
        head = (
            "<p><b>Cluster</b>: not deployed</p>"
            if not self.deployed
            else f"<p><b>Cluster</b>: capacity {escape(str(self.capacity))} × <code>{size}</code>, "
            f"{self.running} running; {escape(_autoscale_text(self.autoscale))}</p>"
        )
        rows = "".join(
            "<tr>"
            + cell(i.instance_id)
            + cell(i.name)
            + cell(i.power_state)
            + cell(i.provisioning_state)
            + cell({True: "latest", False: "old", None: ""}[i.latest_model])
            + "</tr>"
            for i in self.instances
        )
        instances = (
            "<table><thead><tr><th>id</th><th>name</th><th>power</th><th>provisioning</th><th>model</th></tr>"
            f"</thead><tbody>{rows}</tbody></table>"
            if self.instances
            else ""
        )
        connectors = "".join(
            f"<li>{escape(c.connector_id[:8])} {escape(c.colo)} from {escape(c.origin_ip)}</li>"
            for c in self.tunnel.connectors
        )
        problems = self.problems
        token = (
            f"<p><b>Access service token</b>: {escape(self.service_token.expiry_text())}</p>"
            if self.service_token is not None
            else ""
        )
        schedule = self.schedule._repr_html_() if self.schedule is not None else ""
        warnings = "".join(f"<p style='color:#a60'>Warning: {escape(w)}</p>" for w in self.warnings)
        verdict = (
            "<p style='color:green'>Healthy.</p>"
            if not problems
            else "<p style='color:#b00'><b>Problems</b></p><ul>"
            + "".join(f"<li>{escape(p)}</li>" for p in problems)
            + "</ul>"
        )
        return (
            f"<div class='codecapsule-status'>{head}{instances}"
            f"<p><b>Tunnel</b>: {escape(_tunnel_text(self.tunnel))}</p><ul>{connectors}</ul>"
            f"{token}{schedule}<p><b>Piston</b>: {escape(str(self.piston))}</p>{warnings}{verdict}</div>"
        )
