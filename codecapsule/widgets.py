"""ScalingPanel: the control room a course admin keeps open during class.

>>> panel = cluster.panel()          # or ScalingPanel(cluster, auto_refresh=30)   # doctest: +SKIP
>>> panel                                                                          # doctest: +SKIP

Built from standard ipywidgets only, so it works in JupyterLab, Notebook 7 and VS Code. The panel drives
a :class:`~codecapsule.Cluster` exclusively through its public methods (``status()``, ``scale()``,
``autoscale()``, ``cost()``, ``reimage()``, ``spec``) and holds no cloud logic of its own: the same panel
works on any Cluster, including one on the test fakes.

Long operations (scale, autoscale, reimage, refresh) run in a background thread so the notebook stays
usable. While one runs the controls are disabled and a spinner shows; a second click is refused with an
:class:`~codecapsule.OperationInProgress` message in the log. The log shows what the panel did and every
error in plain words (the library's exception messages — never a traceback, never a secret).

This module imports ipywidgets at import time; ``import codecapsule`` never imports this module.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import threading
from collections.abc import Callable, Iterator
from html import escape
from typing import TYPE_CHECKING, Any

import ipywidgets as widgets

from ._errors import CodeCapsuleError, OperationInProgress

if TYPE_CHECKING:
    from .cluster.azure import Instance
    from .cluster.cluster import Cluster
    from .cluster.costs import CostEstimate
    from .cluster.status import ClusterStatus, PistonHealth
    from .cluster.tunnel import TunnelStatus

__all__ = ["ScalingPanel"]

_logger = logging.getLogger(__name__)

#: How many log lines the panel keeps (newest first on screen).
LOG_LINES = 200
#: The shortest auto-refresh period the panel accepts: every refresh is a few cloud API reads.
MIN_AUTO_REFRESH = 0.5
DEFAULT_AUTO_REFRESH = 30.0

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


def _now() -> str:
    return dt.datetime.now().strftime("%H:%M:%S")


def _one_line(exc: BaseException, limit: int = 400) -> str:
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
        + "".join(
            f"<td class='cc-num'>{c}</td>" if i in numeric else f"<td>{c}</td>" for i, c in enumerate(row)
        )
        + "</tr>"
        for row in rows
    )
    return f"<table class='cc-table'><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _badge(ok: bool | None, yes: str, no: str, unknown: str = "unknown") -> str:
    if ok is None:
        return f"<span class='cc-muted'>{escape(unknown)}</span>"
    return (
        f"<span class='cc-ok'>✓ {escape(yes)}</span>" if ok else f"<span class='cc-bad'>✗ {escape(no)}</span>"
    )


def instance_health(instance: Instance) -> tuple[str, str]:
    """A one-word health for an instance from its provisioning and power state, and a CSS class for it."""
    prov, power = instance.provisioning_state, instance.power_state
    if prov == "Failed":
        return "failed", "cc-bad"
    if power in {"stopped", "deallocated"}:
        return "stopped", "cc-bad"
    if prov == "Succeeded" and power == "running":
        if instance.latest_model is False:
            return "ok (old model: reimage)", "cc-warn"
        return "ok", "cc-ok"
    if power == "starting" or prov in {"Creating", "Updating"}:
        return "starting", "cc-warn"
    return "unknown", "cc-muted"


class ScalingPanel:
    """An ipywidgets panel to watch and scale a :class:`~codecapsule.Cluster` during class.

    ``auto_refresh``: re-read the status every so many seconds (at least ``MIN_AUTO_REFRESH``); ``None``
    leaves auto-refresh off (the admin can switch it on in the panel). ``refresh``: read the status right
    away (in the background) — pass ``False`` to build the panel without touching the cloud.

    Display it by leaving it last in a cell (or ``display(panel)``); :attr:`widget` is the top-level ``VBox``.
    :meth:`close` stops auto-refresh and removes the widgets.
    """

    def __init__(self, cluster: Cluster, *, auto_refresh: float | None = None, refresh: bool = True) -> None:
        self.cluster = cluster
        self._lock = threading.RLock()
        self._idle = threading.Event()
        self._idle.set()
        self._closed = threading.Event()
        self._operation: str | None = None  # what runs in the background, None when idle
        self._status: ClusterStatus | None = None
        self._log_lines: list[tuple[str, str, bool]] = []  # (time, message, is_error)
        self._syncing = 0  # > 0 while the panel itself sets control values (not the admin)
        self._capacity_touched = False  # the admin moved the slider since the last status
        self._autoscale_touched = False  # ... or an autoscale control
        self._refresh_callbacks: list[Callable[[ClusterStatus], None]] = []
        #: the last error an operation met (or the OperationInProgress of a refused click); None if none yet
        self.last_error: Exception | None = None
        self._timer: threading.Thread | None = None
        self._timer_stop = threading.Event()
        self._build()
        if auto_refresh is not None:
            if auto_refresh <= 0:
                raise ValueError("auto_refresh must be a number of seconds > 0 (or None for off).")
            with self._sync():
                self.auto_refresh_every.value = max(float(auto_refresh), MIN_AUTO_REFRESH)
            self.auto_refresh.value = True  # the observer starts the timer
        self._sync_controls()
        self._update_cost()
        if refresh:
            self.refresh()

    # -- building ------------------------------------------------------------------------------------------

    def _build(self) -> None:
        spec = self.cluster.spec
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
        self.autoscale_min = widgets.BoundedIntText(
            value=spec.min_capacity,
            min=1,
            max=100,
            description="min",
            style=narrow,
            layout=widgets.Layout(width="95px"),
        )
        self.autoscale_min.add_class("cc-autoscale-min")
        self.autoscale_max = widgets.BoundedIntText(
            value=spec.max_capacity,
            min=1,
            max=100,
            description="max",
            style=narrow,
            layout=widgets.Layout(width="95px"),
        )
        self.autoscale_max.add_class("cc-autoscale-max")
        self.scale_out_cpu = widgets.BoundedIntText(
            value=spec.scale_out_cpu,
            min=1,
            max=100,
            description="add a VM above CPU %",
            style={"description_width": "175px"},
            layout=widgets.Layout(width="245px"),
        )
        self.scale_out_cpu.add_class("cc-scale-out-cpu")
        self.scale_in_cpu = widgets.BoundedIntText(
            value=spec.scale_in_cpu,
            min=1,
            max=100,
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
        self.cancel_reimage = widgets.Button(
            description="Cancel", layout=widgets.Layout(width="80px", display="none")
        )
        self.cancel_reimage.add_class("cc-cancel-reimage")

        self.log = widgets.HTML(layout=full)
        self.log.add_class("cc-log")

        def heading(text: str) -> Any:
            return widgets.HTML(f"<div class='cc-h'>{escape(text)}</div>")

        left = widgets.VBox(
            [
                heading("Capacity"),
                self.capacity_now,
                widgets.HBox(
                    [self.capacity, self.apply_capacity], layout=widgets.Layout(align_items="center")
                ),
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
                heading("Log"),
                self.log,
            ],
            layout=widgets.Layout(flex="1 1 380px", min_width="360px"),
        )
        right.add_class("cc-status")
        body = widgets.HBox([left, right], layout=widgets.Layout(flex_flow="row wrap", width="100%"))
        self._style = widgets.HTML(_STYLE, layout=widgets.Layout(display="none"))
        self.widget = widgets.VBox(
            [self._style, header, body],
            layout=widgets.Layout(width="100%", padding="4px 8px"),
        )
        self.widget.add_class("cc-panel")

        self._inputs = [
            self.capacity,
            self.autoscale_enabled,
            self.autoscale_min,
            self.autoscale_max,
            self.scale_out_cpu,
            self.scale_in_cpu,
        ]
        self._containers = [
            header,
            left,
            right,
            body,
            *(c for c in left.children + right.children if isinstance(c, widgets.Box)),
        ]
        self._render_title()
        self._render_log()
        self._render_status(None)

        # wiring
        self.refresh_button.on_click(lambda _b: self.refresh())
        self.apply_capacity.on_click(lambda _b: self.apply_capacity_now())
        self.apply_autoscale.on_click(lambda _b: self.apply_autoscale_now())
        self.reimage.on_click(lambda _b: self._ask_reimage(True))
        self.cancel_reimage.on_click(lambda _b: self._ask_reimage(False))
        self.confirm_reimage.on_click(lambda _b: self.reimage_all())
        self.capacity.observe(self._on_capacity, names="value")
        self.autoscale_min.observe(self._on_bounds, names="value")
        self.autoscale_max.observe(self._on_bounds, names="value")
        for w in (self.autoscale_enabled, self.scale_out_cpu, self.scale_in_cpu):
            w.observe(self._on_autoscale_input, names="value")
        self.auto_refresh.observe(self._on_auto_refresh, names="value")
        # The notebook may close the widget itself (Widget.close_all(), the comm closing): stop then too.
        self.widget.observe(self._on_comm, names="comm")

    # -- display -------------------------------------------------------------------------------------------

    def _ipython_display_(self) -> None:
        from IPython.display import display

        display(self.widget)  # type: ignore[no-untyped-call]

    def _repr_mimebundle_(self, **kwargs: Any) -> dict[str, Any] | None:
        bundle = self.widget._repr_mimebundle_
        if bundle is None:  # a closed widget has no view any more
            return {"text/plain": repr(self)}
        result: dict[str, Any] | None = bundle(**kwargs)
        return result

    def __repr__(self) -> str:
        state = (
            "closed" if self._closed.is_set() else ("busy: " + self._operation if self._operation else "idle")
        )
        return f"<ScalingPanel {self.cluster.spec.vmss_name} in {self.cluster.spec.resource_group} ({state})>"

    # -- public API ----------------------------------------------------------------------------------------

    @property
    def busy(self) -> bool:
        """True while a background operation runs."""
        return self._operation is not None

    @property
    def status(self) -> ClusterStatus | None:
        """The last status read (``None`` before the first refresh finished)."""
        return self._status

    @property
    def log_text(self) -> str:
        """The log as plain text, oldest line first."""
        with self._lock:
            return "\n".join(f"{t} {m}" for t, m, _ in self._log_lines)

    @property
    def auto_refreshing(self) -> bool:
        """True while the auto-refresh timer runs."""
        timer = self._timer
        return timer is not None and timer.is_alive()

    def wait_idle(self, timeout: float | None = None) -> bool:
        """Block until no background operation runs; False if ``timeout`` seconds passed first."""
        return self._idle.wait(timeout)

    def on_refresh(self, callback: Callable[[ClusterStatus], None]) -> None:
        """Call ``callback(status)`` (in the background thread) after every successful status read."""
        self._refresh_callbacks.append(callback)

    def refresh(self) -> bool:
        """Re-read the cluster status in the background. False if another operation is running."""
        return self._start("Reading the status", None, announce=True)

    def apply_capacity_now(self) -> bool:
        """What the capacity *Apply* button does: scale to the slider's value in the background."""
        target = int(self.capacity.value)

        def work() -> str:
            before = self._status.capacity if self._status is not None else None
            self.cluster.scale(target)
            with self._lock:
                self._capacity_touched = False  # show what Azure now holds
            was = f" (was {before})" if before is not None and before != target else ""
            return f"Capacity set to {target} instance{'s' if target != 1 else ''}{was}."

        return self._start(f"Scaling to {target} instance{'s' if target != 1 else ''}", work)

    def apply_autoscale_now(self) -> bool:
        """What *Apply autoscale* does: save the autoscale controls' values in the background."""
        enabled = bool(self.autoscale_enabled.value)
        low, high = int(self.autoscale_min.value), int(self.autoscale_max.value)
        out_cpu, in_cpu = float(self.scale_out_cpu.value), float(self.scale_in_cpu.value)

        def work() -> str:
            state = self.cluster.autoscale(
                minimum=low, maximum=high, scale_out_cpu=out_cpu, scale_in_cpu=in_cpu, enabled=enabled
            )
            with self._lock:
                self._autoscale_touched = False
            return (
                f"Autoscale {'on' if state.enabled else 'off'}: {state.minimum}–{state.maximum} instances, "
                f"add one above {state.scale_out_cpu:g} % CPU, remove one below {state.scale_in_cpu:g} % CPU."
            )

        verb = "on" if enabled else "off"
        return self._start(f"Setting autoscale {verb} ({low}–{high})", work)

    def reimage_all(self) -> bool:
        """Reimage every instance in the background (what the confirmed *Reimage all* does)."""
        self._ask_reimage(False)

        def work() -> str:
            self.cluster.reimage()
            return "Reimaged all instances: they restarted with the current cloud-init."

        return self._start("Reimaging all instances", work)

    def start_auto_refresh(self, seconds: float | None = None) -> None:
        """Refresh every ``seconds`` (default: the panel's field) until :meth:`stop_auto_refresh` or close."""
        if seconds is not None:
            with self._sync():
                self.auto_refresh_every.value = max(float(seconds), MIN_AUTO_REFRESH)
        if self.auto_refresh.value:
            self._start_timer()
        else:
            self.auto_refresh.value = True  # the observer starts the timer

    def stop_auto_refresh(self) -> None:
        """Stop refreshing automatically (waits for the timer thread to end)."""
        if self.auto_refresh.value:
            self.auto_refresh.value = False  # the observer stops the timer
        else:
            self._stop_timer()

    def close(self) -> None:
        """Stop auto-refresh and close every widget of the panel. An operation already running finishes."""
        if self._closed.is_set():
            return
        self._closed.set()
        self._stop_timer()
        for w in self._all_widgets():
            w.close()

    # -- background operations -----------------------------------------------------------------------------

    def _start(
        self,
        what: str,
        work: Callable[[], str | None] | None,
        *,
        announce: bool = False,
        quiet_if_busy: bool = False,
    ) -> bool:
        """Run ``work`` then a status read in a background thread, unless something already runs."""
        if self._closed.is_set():
            return False
        with self._lock:
            running = self._operation
            if running is None:
                self._operation = what
                self._idle.clear()
        if running is not None:
            if not quiet_if_busy:
                refused = OperationInProgress(
                    f"{what} not started: another operation is still running ({running[0].lower()}"
                    f"{running[1:]}). Wait until the spinner stops, then try again."
                )
                self.last_error = refused
                self._log(str(refused), error=True)
            return False
        if announce or work is not None:
            self._log(f"{what}…")
        self._sync_controls()
        thread = threading.Thread(target=self._run, args=(what, work), name="codecapsule-panel", daemon=True)
        thread.start()
        return True

    def _run(self, what: str, work: Callable[[], str | None] | None) -> None:
        try:
            if work is not None:
                try:
                    message = work()
                    if message:
                        self._log(message)
                except CodeCapsuleError as exc:
                    self.last_error = exc
                    self._log(f"{what} failed: {_one_line(exc)}", error=True)
                except Exception as exc:  # a bug or an unwrapped error: still plain words, details in logging
                    _logger.debug("panel operation failed", exc_info=True)
                    self.last_error = exc
                    self._log(
                        f"{what} failed unexpectedly ({type(exc).__name__}): {_one_line(exc)}", error=True
                    )
            if not self._closed.is_set():
                self._read_status(log_result=work is None)
        finally:
            with self._lock:
                self._operation = None
            self._sync_controls()
            self._idle.set()

    def _read_status(self, *, log_result: bool) -> None:
        try:
            status = self.cluster.status()
        except CodeCapsuleError as exc:
            self.last_error = exc
            self._log(f"Could not read the status: {_one_line(exc)}", error=True)
            return
        except Exception as exc:
            _logger.debug("panel status read failed", exc_info=True)
            self.last_error = exc
            self._log(f"Could not read the status ({type(exc).__name__}): {_one_line(exc)}", error=True)
            return
        self._render_status(status)
        if log_result:
            self._log(self._summary(status))
        for callback in list(self._refresh_callbacks):
            try:
                callback(status)
            except Exception as exc:
                self._log(f"A refresh callback failed ({type(exc).__name__}): {_one_line(exc)}", error=True)

    @staticmethod
    def _summary(status: ClusterStatus) -> str:
        if not status.deployed:
            return "Status: the cluster is not deployed (run cluster.deploy())."
        piston = status.piston
        rtt = (
            f" in {piston.round_trip_ms:.0f} ms"
            if piston.reachable and piston.round_trip_ms is not None
            else ""
        )
        tunnel = status.tunnel.status or "missing"
        return (
            f"Status: capacity {status.capacity}, {status.running} running; tunnel {tunnel}; "
            f"Piston {'answering' + rtt if piston.reachable else 'not reachable'}."
        )

    # -- auto-refresh --------------------------------------------------------------------------------------

    def _on_auto_refresh(self, change: dict[str, Any]) -> None:
        if change["new"]:
            self._start_timer()
        else:
            self._stop_timer()

    def _start_timer(self) -> None:
        with self._lock:
            if self._closed.is_set() or (self._timer is not None and self._timer.is_alive()):
                return
            self._timer_stop = threading.Event()
            self._timer = threading.Thread(
                target=self._tick, args=(self._timer_stop,), name="codecapsule-panel-timer", daemon=True
            )
            self._timer.start()

    def _stop_timer(self) -> None:
        with self._lock:
            timer, self._timer = self._timer, None
            self._timer_stop.set()
        if timer is not None and timer is not threading.current_thread():
            timer.join(timeout=10)

    def _tick(self, stop: threading.Event) -> None:
        # Waits on the stop event, so close() / unticking ends the thread at once, not after a full period.
        while not stop.wait(float(self.auto_refresh_every.value)):
            if self._closed.is_set():
                return
            self._start("Auto-refresh", None, quiet_if_busy=True)

    def _on_comm(self, change: dict[str, Any]) -> None:
        if change["new"] is None:
            self.close()

    # -- control logic (no cloud calls) -------------------------------------------------------------------

    @contextlib.contextmanager
    def _sync(self) -> Iterator[None]:
        """The panel (not the admin) is setting control values: observers must not mark them touched."""
        with self._lock:
            self._syncing += 1
        try:
            yield
        finally:
            with self._lock:
                self._syncing -= 1

    def _on_capacity(self, change: dict[str, Any]) -> None:
        if not self._syncing:
            self._capacity_touched = True
        self._update_cost()
        self._sync_controls()

    def _on_bounds(self, change: dict[str, Any]) -> None:
        # Keep min ≤ max by moving the other bound, and keep the slider inside the range.
        with self._sync():
            low, high = int(self.autoscale_min.value), int(self.autoscale_max.value)
            if low > high:
                if change["owner"] is self.autoscale_min:
                    self.autoscale_max.value = low
                else:
                    self.autoscale_min.value = high
            self._fit_slider(None)
        if not self._syncing:
            self._autoscale_touched = True
        self._update_cost()
        self._sync_controls()

    def _on_autoscale_input(self, change: dict[str, Any]) -> None:
        if not self._syncing:
            self._autoscale_touched = True
        self._sync_controls()

    def _fit_slider(self, capacity: int | None) -> None:
        """Bound the slider by the autoscale range (widened to include ``capacity``) and clamp its value."""
        low, high = int(self.autoscale_min.value), int(self.autoscale_max.value)
        if capacity is not None:
            low, high = min(low, capacity), max(high, capacity)
        value = capacity if capacity is not None else min(max(int(self.capacity.value), low), high)
        with self._sync(), self.capacity.hold_trait_notifications():
            # Order matters: a slider refuses min > max at any moment.
            if low > self.capacity.max:
                self.capacity.max = high
                self.capacity.min = low
            else:
                self.capacity.min = low
                self.capacity.max = high
            self.capacity.value = value

    def _update_cost(self) -> None:
        """Estimate the chosen capacity and the autoscale range (local arithmetic, no cloud call)."""
        capacity = int(self.capacity.value)
        try:
            fixed = self.cluster.cost(capacity=capacity)
            ranged = self.cluster.cost(
                minimum=int(self.autoscale_min.value), maximum=int(self.autoscale_max.value)
            )
        except CodeCapsuleError as exc:
            self.cost_estimate.value = f"<span class='cc-muted'>{escape(_one_line(exc))}</span>"
            return
        except Exception as exc:
            self.cost_estimate.value = (
                f"<span class='cc-muted'>No estimate ({escape(type(exc).__name__)}).</span>"
            )
            return
        self.cost_estimate.value = self._render_cost(fixed, ranged)

    def _ask_reimage(self, ask: bool) -> None:
        self.confirm_reimage.layout.display = "" if ask else "none"
        self.cancel_reimage.layout.display = "" if ask else "none"
        self.reimage.layout.display = "none" if ask else ""

    def _sync_controls(self) -> None:
        """Enable/disable controls and the spinner from the current state; highlight unapplied changes."""
        if self._closed.is_set():
            return
        with self._lock:
            operation = self._operation
            status = self._status
        busy = operation is not None
        deployed = status is not None and status.deployed
        for w in self._inputs:
            w.disabled = busy
        self.refresh_button.disabled = busy
        self.apply_capacity.disabled = busy or not deployed
        self.apply_autoscale.disabled = busy or not deployed
        self.reimage.disabled = busy or not deployed
        self.confirm_reimage.disabled = busy or not deployed
        self.cancel_reimage.disabled = busy
        capacity_pending = deployed and status is not None and status.capacity != self.capacity.value
        self.apply_capacity.button_style = "primary" if capacity_pending and not busy else ""
        a = status.autoscale if status is not None else None
        autoscale_pending = deployed and (
            a is None
            or (
                a.enabled != self.autoscale_enabled.value
                or a.minimum != self.autoscale_min.value
                or a.maximum != self.autoscale_max.value
                or a.scale_out_cpu != self.scale_out_cpu.value
                or a.scale_in_cpu != self.scale_in_cpu.value
            )
        )
        self.apply_autoscale.button_style = "primary" if autoscale_pending and not busy else ""
        if busy:
            self.progress.value = (
                f"<span class='cc-spinner'></span><span class='cc-warn'>{escape(str(operation))}…</span>"
            )
        else:
            self.progress.value = ""

    # -- rendering ----------------------------------------------------------------------------------------

    def _log(self, message: str, *, error: bool = False) -> None:
        with self._lock:
            self._log_lines.append((_now(), message, error))
            del self._log_lines[:-LOG_LINES]
        self._render_log()

    def _render_log(self) -> None:
        with self._lock:
            lines = list(self._log_lines)
        if not lines:
            body = "<div class='cc-muted'>Nothing yet. What the panel does and every error appear here.</div>"
        else:
            body = "".join(
                f"<div class='{'cc-bad' if err else ''}'><span class='cc-muted'>{escape(t)}</span> "
                f"{escape(m)}</div>"
                for t, m, err in reversed(lines)
            )
        self.log.value = f"<div class='cc-loglines'>{body}</div>"

    def _render_title(self, status: ClusterStatus | None = None) -> None:
        spec = self.cluster.spec
        when = f" · read {_now()}" if status is not None else ""
        self.title.value = (
            f"<div class='cc-title-text'>CodeCapsule cluster</div>"
            f"<div class='cc-muted'>{escape(spec.vmss_name)} in {escape(spec.resource_group)} "
            f"({escape(spec.location)}) · {escape(spec.hostname)}{escape(when)}</div>"
        )

    def _render_status(self, status: ClusterStatus | None) -> None:
        with self._lock:
            if status is not None:
                self._status = status
        if status is None:
            self.capacity_now.value = "<span class='cc-muted'>Reading the status…</span>"
            self.instances.value = "<span class='cc-muted'>—</span>"
            self.tunnel.value = "<span class='cc-muted'>—</span>"
            self.piston.value = "<span class='cc-muted'>—</span>"
            return
        self._render_title(status)
        self._sync_inputs(status)
        if not status.deployed:
            self.capacity_now.value = (
                "<span class='cc-warn'>Not deployed.</span> Run <code>cluster.deploy()</code>, then Refresh."
            )
        else:
            size = f" × <code>{escape(status.vm_size)}</code>" if status.vm_size else ""
            self.capacity_now.value = (
                f"Now: <b>{escape(str(status.capacity))}</b> "
                f"instance{'s' if status.capacity != 1 else ''}{size}, "
                f"{status.running} running"
            )
        self.instances.value = self._render_instances(status)
        self.tunnel.value = self._render_tunnel(status.tunnel)
        self.piston.value = self._render_piston(status.piston)
        self._update_cost()
        self._sync_controls()

    def _sync_inputs(self, status: ClusterStatus) -> None:
        """Show the cloud's values in the controls, unless the admin is editing them."""
        with self._sync():
            a = status.autoscale
            if a is not None and not self._autoscale_touched:
                self.autoscale_enabled.value = a.enabled
                # set max first when raising both, min first when lowering, so min ≤ max holds throughout
                if a.minimum > self.autoscale_max.value:
                    self.autoscale_max.value = a.maximum
                    self.autoscale_min.value = a.minimum
                else:
                    self.autoscale_min.value = a.minimum
                    self.autoscale_max.value = a.maximum
                self.scale_out_cpu.value = round(a.scale_out_cpu)
                self.scale_in_cpu.value = round(a.scale_in_cpu)
            if status.capacity is not None and not self._capacity_touched:
                self._fit_slider(status.capacity)
            else:
                self._fit_slider(None)

    @staticmethod
    def _render_instances(status: ClusterStatus) -> str:
        if not status.instances:
            return "<span class='cc-muted'>No instances.</span>"
        rows = []
        for i in status.instances:
            health, css = instance_health(i)
            rows.append(
                [
                    escape(i.instance_id),
                    escape(i.provisioning_state),
                    escape(i.power_state),
                    f"<span class='{css}'>{escape(health)}</span>",
                ]
            )
        return _table(["id", "provisioning", "power", "health"], rows)

    @staticmethod
    def _render_tunnel(tunnel: TunnelStatus) -> str:
        if tunnel.tunnel_id is None:
            return "<span class='cc-bad'>No tunnel.</span> Run <code>cluster.deploy()</code>."
        css = {"healthy": "cc-ok", "degraded": "cc-warn"}.get(tunnel.status or "", "cc-bad")
        checks = " · ".join(
            [
                _badge(
                    tunnel.dns_ok, "DNS", "DNS " + ("points elsewhere" if tunnel.dns_target else "missing")
                ),
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
                "<span class='cc-warn'>reconnecting</span>"
                if c.pending_reconnect
                else "<span class='cc-ok'>up</span>",
            ]
            for c in tunnel.connectors
        ]
        return head + _table(["connector", "colo", "origin", "since", "state"], rows)

    @staticmethod
    def _render_piston(piston: PistonHealth) -> str:
        if not piston.reachable:
            return f"<span class='cc-bad'>✗ not reachable</span>: {escape(piston.error or 'no answer')}"
        rtt = f" · round trip {piston.round_trip_ms:.0f} ms" if piston.round_trip_ms is not None else ""
        runtimes = (
            ", ".join(f"{escape(lang)} {escape(ver)}" for lang, ver in piston.runtimes) or "none installed"
        )
        return f"<span class='cc-ok'>✓ answering</span>{escape(rtt)}<div>runtimes: {runtimes}</div>"

    @staticmethod
    def _render_cost(fixed: CostEstimate, ranged: CostEstimate) -> str:
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

    def _all_widgets(self) -> list[Any]:
        """Every widget of the panel (for close() and for tests that scan all values)."""
        seen: list[Any] = []

        def walk(w: Any) -> None:
            if any(w is s for s in seen):
                return
            seen.append(w)
            for child in getattr(w, "children", ()):
                walk(child)

        walk(self.widget)
        return seen
