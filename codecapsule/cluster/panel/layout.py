"""The scaling panel's widgets and HTML: built once, filled from a :class:`ClusterStatus`, a plan, a cost and a
schedule. No logic decides anything here (health is ClusterStatus's verdict); no cloud call."""

from __future__ import annotations

import datetime as dt
from html import escape
from typing import TYPE_CHECKING, Any

import ipywidgets as widgets

from ..spec import MAX_CAPACITY
from ..status import instance_health

if TYPE_CHECKING:
    from ..costs import CostEstimate
    from ..plan import Plan
    from ..schedule import ScheduleView
    from ..spec import ClusterSpec
    from ..status import ClusterStatus, PistonHealth
    from ..tunnel import ServiceTokenInfo, TunnelStatus

__all__ = ["PanelLayout", "render_cost", "render_health", "render_instances", "render_piston", "render_tunnel"]

#: The default auto-refresh period and the shortest one the panel accepts (each refresh is a few API reads).
MIN_AUTO_REFRESH = 0.5
DEFAULT_AUTO_REFRESH = 30.0
#: CSS class of each health level ClusterStatus judges.
_CSS = {"ok": "cc-ok", "warn": "cc-warn", "bad": "cc-bad", "unknown": "cc-muted"}

# Colours come from JupyterLab's theme variables (with fallbacks for front ends without them, e.g. VS Code),
# so the panel is readable in the light and the dark theme alike.
_STYLE = """
<style>
.cc-panel { color: var(--jp-ui-font-color1, inherit); font-size: var(--jp-ui-font-size1, 13px);
  max-width: 1200px; }
.cc-panel .widget-html-content { line-height: 1.35; white-space: normal; }
.cc-panel .cc-title-text { font-size: var(--jp-ui-font-size3, 16px); font-weight: 600;
  color: var(--jp-ui-font-color0, inherit); }
.cc-panel .cc-h { font-weight: 600; color: var(--jp-ui-font-color0, inherit); margin: 2px 0 4px 0;
  font-size: var(--jp-ui-font-size2, 14px); }
.cc-panel .cc-card { border: 1px solid var(--jp-border-color2, #8884); border-radius: 4px; padding: 6px 10px;
  background: var(--jp-layout-color1, transparent); }
.cc-panel .cc-muted { color: var(--jp-ui-font-color2, #888); }
.cc-panel .cc-ok { color: var(--jp-success-color1, #388e3c); font-weight: 600; }
.cc-panel .cc-bad { color: var(--jp-error-color1, #d32f2f); font-weight: 600; }
.cc-panel .cc-warn { color: var(--jp-warn-color1, #f57c00); font-weight: 600; }
.cc-panel table.cc-table { border-collapse: collapse; width: 100%; margin: 2px 0 6px 0; }
.cc-panel table.cc-table th, .cc-panel table.cc-table td { text-align: left; padding: 2px 8px 2px 0;
  border-bottom: 1px solid var(--jp-border-color2, #8884); color: var(--jp-ui-font-color1, inherit); }
.cc-panel table.cc-table th { color: var(--jp-ui-font-color2, #888); font-weight: 600; }
.cc-panel table.cc-table td.cc-num, .cc-panel table.cc-table th.cc-num { text-align: right; }
.cc-panel table.cc-table tr.cc-total td { font-weight: 600; border-bottom: none; }
.cc-panel .cc-loglines { font-family: var(--jp-code-font-family, monospace);
  font-size: var(--jp-code-font-size, 12px); background: var(--jp-layout-color2, transparent);
  color: var(--jp-content-font-color1, inherit); border: 1px solid var(--jp-border-color2, #8884);
  border-radius: 4px; padding: 4px 8px; height: 6.5em; overflow-y: auto; }
.cc-panel .cc-loglines div { white-space: pre-wrap; }
.cc-panel .cc-spinner { display: inline-block; width: 11px; height: 11px; vertical-align: -1px;
  border: 2px solid var(--jp-border-color2, #8884); border-top-color: var(--jp-brand-color1, #1976d2);
  border-radius: 50%; animation: cc-spin 0.8s linear infinite; margin-right: 6px; }
@keyframes cc-spin { to { transform: rotate(360deg); } }
</style>
"""


def now_text() -> str:
    return dt.datetime.now().strftime("%H:%M:%S")


def one_line(exc: BaseException, limit: int = 400) -> str:
    """An exception as one plain line: its message, never its traceback."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _table(headers: list[str], rows: list[list[str]], *, numeric: frozenset[int] = frozenset()) -> str:
    """An HTML table; ``rows`` hold already-escaped cell HTML."""
    head = "".join(
        f"<th class='cc-num'>{escape(h)}</th>" if i in numeric else f"<th>{escape(h)}</th>"
        for i, h in enumerate(headers)
    )
    body = "".join(
        "<tr>"
        + "".join(f"<td class='cc-num'>{c}</td>" if i in numeric else f"<td>{c}</td>" for i, c in enumerate(row))
        + "</tr>"
        for row in rows
    )
    return f"<table class='cc-table'><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _badge(ok: bool | None, yes: str, no: str, unknown: str = "unknown") -> str:
    if ok is None:
        return f"<span class='cc-muted'>{escape(unknown)}</span>"
    return f"<span class='cc-ok'>✓ {escape(yes)}</span>" if ok else f"<span class='cc-bad'>✗ {escape(no)}</span>"


class PanelLayout:
    """Every widget of the panel, laid out; the controller reads and fills them."""

    def __init__(self, spec: ClusterSpec) -> None:
        full = widgets.Layout(width="auto")
        self.title = widgets.HTML(layout=widgets.Layout(flex="1 1 auto"))
        self.title.add_class("cc-title")
        self.progress = widgets.HTML(value="", layout=widgets.Layout(min_width="200px"))
        self.progress.add_class("cc-progress")
        self.refresh_button = widgets.Button(
            description="Refresh",
            icon="refresh",
            tooltip="Read the status now",
            layout=widgets.Layout(width="110px"),
        )
        self.refresh_button.add_class("cc-refresh")
        self.auto_refresh = widgets.Checkbox(
            value=False, description="Auto-refresh every", indent=False, layout=widgets.Layout(width="150px")
        )
        self.auto_refresh.add_class("cc-auto-refresh")
        self.auto_refresh_every = widgets.BoundedFloatText(
            value=DEFAULT_AUTO_REFRESH,
            min=MIN_AUTO_REFRESH,
            max=3600.0,
            step=5.0,
            tooltip="seconds between two status reads",
            layout=widgets.Layout(width="70px"),
        )
        self.auto_refresh_every.add_class("cc-auto-refresh-every")
        header = widgets.VBox(
            [
                self.title,
                widgets.HBox(
                    [
                        self.refresh_button,
                        self.auto_refresh,
                        self.auto_refresh_every,
                        widgets.HTML("<span class='cc-muted'>&nbsp;seconds&nbsp;&nbsp;</span>"),
                        self.progress,
                    ],
                    layout=widgets.Layout(align_items="center", flex_flow="row wrap"),
                ),
            ]
        )

        # capacity
        self.capacity_now = widgets.HTML()
        self.capacity_now.add_class("cc-capacity-now")
        self.capacity = widgets.IntSlider(
            value=spec.capacity,
            min=spec.min_capacity,
            max=spec.max_capacity,
            step=1,
            description="Instances",
            continuous_update=True,
            style={"description_width": "70px"},
            layout=widgets.Layout(width="360px"),
        )
        self.capacity.add_class("cc-capacity")
        self.apply_capacity = widgets.Button(
            description="Apply",
            button_style="",
            icon="check",
            tooltip="Scale the VM scale set to this many instances",
            layout=widgets.Layout(width="90px"),
        )
        self.apply_capacity.add_class("cc-apply-capacity")

        # autoscale
        narrow = {"description_width": "initial"}
        self.autoscale_enabled = widgets.Checkbox(
            value=True, description="Autoscale on CPU", indent=False, layout=widgets.Layout(width="160px")
        )
        self.autoscale_enabled.add_class("cc-autoscale-enabled")
        # The boxes only keep typing in range; ClusterSpec's rules (check_autoscale) decide what is valid.
        self.autoscale_min = widgets.BoundedIntText(
            value=spec.min_capacity,
            min=1,
            max=MAX_CAPACITY,
            description="min",
            style=narrow,
            layout=widgets.Layout(width="95px"),
        )
        self.autoscale_min.add_class("cc-autoscale-min")
        self.autoscale_max = widgets.BoundedIntText(
            value=spec.max_capacity,
            min=1,
            max=MAX_CAPACITY,
            description="max",
            style=narrow,
            layout=widgets.Layout(width="95px"),
        )
        self.autoscale_max.add_class("cc-autoscale-max")
        self.scale_out_cpu = widgets.BoundedIntText(
            value=spec.scale_out_cpu,
            min=1,
            max=99,
            description="add a VM above CPU %",
            style={"description_width": "175px"},
            layout=widgets.Layout(width="245px"),
        )
        self.scale_out_cpu.add_class("cc-scale-out-cpu")
        self.scale_in_cpu = widgets.BoundedIntText(
            value=spec.scale_in_cpu,
            min=1,
            max=99,
            description="remove one below CPU %",
            style={"description_width": "175px"},
            layout=widgets.Layout(width="245px"),
        )
        self.scale_in_cpu.add_class("cc-scale-in-cpu")
        self.apply_autoscale = widgets.Button(
            description="Apply",
            icon="check",
            tooltip="Save the autoscale setting in Azure",
            layout=widgets.Layout(width="90px"),
        )
        self.apply_autoscale.add_class("cc-apply-autoscale")

        self.cost_estimate = widgets.HTML()
        self.cost_estimate.add_class("cc-cost")

        # status side
        self.instances = widgets.HTML()
        self.instances.add_class("cc-instances")
        self.tunnel = widgets.HTML()
        self.tunnel.add_class("cc-tunnel")
        self.piston = widgets.HTML()
        self.piston.add_class("cc-piston")
        self.reimage = widgets.Button(
            description="Reimage all…",
            icon="repeat",
            tooltip="Rebuild every VM from the current cloud-init (restarts them)",
            layout=widgets.Layout(width="130px"),
        )
        self.reimage.add_class("cc-reimage")
        self.confirm_reimage = widgets.Button(
            description="Yes, reimage now",
            button_style="danger",
            layout=widgets.Layout(width="150px", display="none"),
        )
        self.confirm_reimage.add_class("cc-confirm-reimage")
        self.cancel_reimage = widgets.Button(description="Cancel", layout=widgets.Layout(width="80px", display="none"))
        self.cancel_reimage.add_class("cc-cancel-reimage")

        self.log = widgets.HTML(layout=full)
        self.log.add_class("cc-log")
        # health (ClusterStatus's verdict), the Access token's lifetime, the lab hours, and a preview's plan
        self.health = widgets.HTML()
        self.health.add_class("cc-health")
        self.token = widgets.HTML()
        self.token.add_class("cc-token")
        self.schedule = widgets.HTML()
        self.schedule.add_class("cc-schedule")
        self.wake = widgets.Button(
            description="Wake 2 h",
            icon="sun-o",
            tooltip="Keep the VMs up for two hours, whatever the lab hours say",
            layout=widgets.Layout(width="110px"),
        )
        self.wake.add_class("cc-wake")
        self.plan = widgets.HTML(layout=widgets.Layout(display="none"))
        self.plan.add_class("cc-plan")

        def heading(text: str) -> Any:
            return widgets.HTML(f"<div class='cc-h'>{escape(text)}</div>")

        left = widgets.VBox(
            [
                heading("Capacity"),
                self.capacity_now,
                widgets.HBox([self.capacity, self.apply_capacity], layout=widgets.Layout(align_items="center")),
                heading("Autoscale"),
                widgets.HBox(
                    [self.autoscale_enabled, self.autoscale_min, self.autoscale_max],
                    layout=widgets.Layout(align_items="center", flex_flow="row wrap"),
                ),
                self.scale_out_cpu,
                widgets.HBox(
                    [self.scale_in_cpu, self.apply_autoscale],
                    layout=widgets.Layout(align_items="center", flex_flow="row wrap"),
                ),
                heading("Monthly cost estimate"),
                self.cost_estimate,
                heading("Lab hours"),
                self.schedule,
                self.wake,
                self.plan,
            ],
            layout=widgets.Layout(flex="1 1 380px", min_width="360px", padding="0 20px 0 0"),
        )
        left.add_class("cc-controls")
        right = widgets.VBox(
            [
                heading("Instances"),
                self.instances,
                widgets.HBox([self.reimage, self.confirm_reimage, self.cancel_reimage]),
                heading("Tunnel"),
                self.tunnel,
                heading("Piston"),
                self.piston,
                heading("Access service token"),
                self.token,
                heading("Health"),
                self.health,
                heading("Log"),
                self.log,
            ],
            layout=widgets.Layout(flex="1 1 380px", min_width="360px"),
        )
        right.add_class("cc-status")
        body = widgets.HBox([left, right], layout=widgets.Layout(flex_flow="row wrap", width="100%"))
        self.style = widgets.HTML(_STYLE, layout=widgets.Layout(display="none"))
        self.widget = widgets.VBox(
            [self.style, header, body],
            layout=widgets.Layout(width="100%", padding="4px 8px"),
        )
        self.widget.add_class("cc-panel")

        self.inputs = [
            self.capacity,
            self.autoscale_enabled,
            self.autoscale_min,
            self.autoscale_max,
            self.scale_out_cpu,
            self.scale_in_cpu,
        ]
        self.containers = [
            header,
            left,
            right,
            body,
            *(c for c in left.children + right.children if isinstance(c, widgets.Box)),
        ]


def render_instances(status: ClusterStatus) -> str:
    if not status.instances:
        return "<span class='cc-muted'>No instances.</span>"
    rows = []
    for i in status.instances:
        health, level = instance_health(i)
        css = _CSS[level]
        rows.append(
            [
                escape(i.instance_id),
                escape(i.provisioning_state),
                escape(i.power_state),
                f"<span class='{css}'>{escape(health)}</span>",
            ]
        )
    return _table(["id", "provisioning", "power", "health"], rows)


def render_tunnel(tunnel: TunnelStatus) -> str:
    if tunnel.tunnel_id is None:
        return "<span class='cc-bad'>No tunnel.</span> Run <code>cluster.deploy()</code>."
    css = {"healthy": "cc-ok", "degraded": "cc-warn"}.get(tunnel.status or "", "cc-bad")
    checks = " · ".join(
        [
            _badge(tunnel.dns_ok, "DNS", "DNS " + ("points elsewhere" if tunnel.dns_target else "missing")),
            _badge(tunnel.ingress_ok, "ingress", "ingress wrong"),
            _badge(tunnel.access_protected, "Access", "not behind Access"),
        ]
    )
    head = f"<div><span class='{css}'>{escape(tunnel.status or 'unknown')}</span> · {checks}</div>"
    if not tunnel.connectors:
        return head + "<div class='cc-muted'>No connectors: cloudflared is not running on any VM.</div>"
    rows = [
        [
            escape(c.connector_id[:8]),
            escape(c.colo),
            escape(c.origin_ip),
            escape(c.opened_at[:16].replace("T", " ")),
            "<span class='cc-warn'>reconnecting</span>" if c.pending_reconnect else "<span class='cc-ok'>up</span>",
        ]
        for c in tunnel.connectors
    ]
    return head + _table(["connector", "colo", "origin", "since", "state"], rows)


def render_piston(piston: PistonHealth) -> str:
    if not piston.reachable:
        return f"<span class='cc-bad'>✗ not reachable</span>: {escape(piston.error or 'no answer')}"
    rtt = f" · round trip {piston.round_trip_ms:.0f} ms" if piston.round_trip_ms is not None else ""
    runtimes = ", ".join(f"{escape(lang)} {escape(ver)}" for lang, ver in piston.runtimes) or "none installed"
    return f"<span class='cc-ok'>✓ answering</span>{escape(rtt)}<div>runtimes: {runtimes}</div>"


def render_cost(fixed: CostEstimate, ranged: CostEstimate) -> str:
    """Three columns: the slider's capacity all month, and the autoscale range's two ends."""
    ends = {item.name: item for item in ranged.items}
    rows = []
    for item in fixed.items:
        end = ends.get(item.name)
        low = end.monthly_min if end is not None else 0.0
        high = end.monthly_max if end is not None else 0.0
        if item.monthly_min or low or high:
            rows.append([escape(item.name), f"{item.monthly_min:,.2f}", f"{low:,.2f}", f"{high:,.2f}"])
    rows.append(
        [
            "<b>total</b>",
            f"<b>{fixed.total_min:,.2f}</b>",
            f"<b>{ranged.total_min:,.2f}</b>",
            f"<b>{ranged.total_max:,.2f}</b>",
        ]
    )
    vms = "VM" if fixed.minimum == 1 else "VMs"
    table = _table(
        [
            f"{fixed.currency} / month",
            f"{fixed.minimum} {vms}",
            f"min {ranged.minimum}",
            f"max {ranged.maximum}",
        ],
        rows,
        numeric=frozenset({1, 2, 3}),
    )
    per_vm = next((item.note for item in fixed.items if item.name.startswith("VMs")), "")
    note = f"{per_vm}. " if per_vm else ""
    return (
        f"{table}<div class='cc-muted'>{escape(note)}Approximate list prices for "
        f"{escape(fixed.vm_size)} in {escape(fixed.location)}, every VM running "
        f"{fixed.hours_per_month} h; Tunnel and Access are free."
        "</div>"
    )


def render_health(status: ClusterStatus) -> str:
    """ClusterStatus's own verdict: its problems, then its warnings (nothing judged here)."""
    problems = "".join(f"<div class='cc-bad'>✗ {escape(p)}</div>" for p in status.problems)
    warnings = "".join(f"<div class='cc-warn'>! {escape(w)}</div>" for w in status.warnings)
    if not problems:
        problems = "<div class='cc-ok'>✓ healthy</div>"
    return problems + warnings


def render_token(token: ServiceTokenInfo | None) -> str:
    if token is None:
        return "<span class='cc-muted'>No Access service token.</span>"
    css = "cc-bad" if token.expired() else "cc-warn" if token.expiring() else "cc-ok"
    return (
        f"<span class='{css}'>{escape(token.expiry_text())}</span> "
        f"<span class='cc-muted'>(duration {escape(token.duration)}; refresh: "
        "<code>cluster.refresh_access_token()</code>)</span>"
    )


def render_schedule(view: ScheduleView | None) -> str:
    if view is None or not view.profiles:
        return "<span class='cc-muted'>No lab hours: autoscale follows CPU all week.</span>"
    rows = [
        [escape(p["day"]), escape(p["time"]), f"{p['minimum']}..{p['maximum']}", escape(p["name"])]
        for p in view.profiles
    ]
    session = f" · in session: {escape(view.in_session)}" if view.in_session else ""
    return (
        f"<div>{escape(view.summary)}</div><div><b>Next change</b>: {escape(view.next_change_text)}{session}</div>"
        + _table(["day", "time", "VMs", "profile"], rows)
    )


def render_plan(plan: Plan) -> str:
    rows = [[escape(c.action), escape(c.resource), f"<code>{escape(c.name)}</code>", escape(c.detail)] for c in plan]
    return "<div class='cc-h'>What deploy would create</div>" + _table(["action", "resource", "name", "detail"], rows)


def render_title(spec: ClusterSpec, when: str = "", *, preview: bool = False) -> str:
    mode = " · <span class='cc-warn'>preview: nothing deployed, no cloud call</span>" if preview else ""
    return (
        f"<div class='cc-title-text'>CodeCapsule cluster</div>"
        f"<div class='cc-muted'>{escape(spec.vmss_name)} in {escape(spec.resource_group)} "
        f"({escape(spec.location)}) · {escape(spec.hostname)}{escape(when)}{mode}</div>"
    )


def render_log(lines: list[tuple[str, str, bool]]) -> str:
    if not lines:
        body = "<div class='cc-muted'>Nothing yet. What the panel does and every error appear here.</div>"
    else:
        body = "".join(
            f"<div class='{'cc-bad' if err else ''}'><span class='cc-muted'>{escape(t)}</span> {escape(m)}</div>"
            for t, m, err in reversed(lines)
        )
    return f"<div class='cc-loglines'>{body}</div>"
