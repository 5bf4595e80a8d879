"""ScalingPanel: the control room a course admin keeps open during class.

>>> panel = cluster.panel()          # or ScalingPanel(cluster, auto_refresh=30)   # doctest: +SKIP
>>> ScalingPanel.preview(spec)       # before deploying: plan, cost, lab hours; no credentials   # doctest: +SKIP

The controller joins three small parts: :mod:`.layout` (the widgets and their HTML), :mod:`.worker` (one
background operation at a time, the auto-refresh timer) and a :class:`~codecapsule.Cluster`, driven only
through its public methods (``status()``, ``scale()``, ``autoscale()``, ``wake()``, ``cost()``,
``reimage()``, ``preview()``, ``spec``). Health is what :class:`ClusterStatus` says; the panel judges nothing.

Long operations run in the worker's thread so the notebook stays usable. While one runs the controls are
disabled and a spinner shows; a second click is refused with an :class:`~codecapsule.OperationInProgress`
message in the log. The log shows what the panel did and every error in plain words (never a traceback,
never a secret).
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator
from html import escape
from typing import TYPE_CHECKING, Any

from ..._errors import CodeCapsuleError
from . import layout as ui
from .layout import MIN_AUTO_REFRESH, PanelLayout, now_text, one_line
from .worker import Worker

if TYPE_CHECKING:
    from ..cluster import Cluster
    from ..spec import ClusterSpec
    from ..status import ClusterStatus

__all__ = ["LOG_LINES", "ScalingPanel"]

#: How many log lines the panel keeps (newest first on screen).
LOG_LINES = 200


class ScalingPanel:
    """An ipywidgets panel to watch and scale a :class:`~codecapsule.Cluster` during class.

    ``auto_refresh``: re-read the status every so many seconds (at least ``MIN_AUTO_REFRESH``); ``None``
    leaves auto-refresh off (the admin can switch it on in the panel). ``refresh``: read the status right
    away (in the background) — pass ``False`` to build the panel without touching the cloud. ``preview``:
    show what a first deploy would create, cost and schedule, with no cloud call at all (see
    :meth:`preview`).

    Display it by leaving it last in a cell (or ``display(panel)``); :attr:`widget` is the top-level ``VBox``;
    every control is an attribute (``panel.capacity``, ``panel.apply_capacity``, ...). :meth:`close` stops
    auto-refresh and removes the widgets.
    """

    def __init__(
        self, cluster: Cluster, *, auto_refresh: float | None = None, refresh: bool = True, preview: bool = False
    ) -> None:
        self.cluster = cluster
        self.previewing = preview
        self.ui = PanelLayout(cluster.spec)
        self._lock = threading.RLock()
        self._status: ClusterStatus | None = None
        self._log_lines: list[tuple[str, str, bool]] = []  # (time, message, is_error)
        self._syncing = 0  # > 0 while the panel itself sets control values (not the admin)
        self._capacity_touched = False  # the admin moved the slider since the last status
        self._autoscale_touched = False  # ... or an autoscale control
        self._refresh_callbacks: list[Callable[[ClusterStatus], None]] = []
        self.worker = Worker(log=self._log, changed=self._sync_controls, finish=self._finish)
        self._wire()
        self._render_status(None)
        if preview:
            self._show_preview()
        if auto_refresh is not None and not preview:
            if auto_refresh <= 0:
                raise ValueError("auto_refresh must be a number of seconds > 0 (or None for off).")
            with self._sync():
                self.ui.auto_refresh_every.value = max(float(auto_refresh), MIN_AUTO_REFRESH)
            self.ui.auto_refresh.value = True  # the observer starts the timer
        self._sync_controls()
        self._update_cost()
        if refresh and not preview:
            self.refresh()

    @classmethod
    def preview(cls, spec: ClusterSpec) -> ScalingPanel:
        """A panel for a spec that is not deployed: the plan, the cost (the sliders still estimate) and the lab
        hours. Needs no credentials and makes no cloud call; every cloud button is disabled."""
        from ..cluster import Cluster

        return cls(Cluster(spec), refresh=False, preview=True)

    def __getattr__(self, name: str) -> Any:
        # the widgets live in the layout; ``panel.capacity`` is ``panel.ui.capacity``
        if name == "ui":
            raise AttributeError(name)
        return getattr(self.ui, name)

    def _wire(self) -> None:
        w = self.ui
        w.refresh_button.on_click(lambda _b: self.refresh())
        w.apply_capacity.on_click(lambda _b: self.apply_capacity_now())
        w.apply_autoscale.on_click(lambda _b: self.apply_autoscale_now())
        w.wake.on_click(lambda _b: self.wake_now())
        w.reimage.on_click(lambda _b: self._ask_reimage(True))
        w.cancel_reimage.on_click(lambda _b: self._ask_reimage(False))
        w.confirm_reimage.on_click(lambda _b: self.reimage_all())
        w.capacity.observe(self._on_capacity, names="value")
        w.autoscale_min.observe(self._on_bounds, names="value")
        w.autoscale_max.observe(self._on_bounds, names="value")
        for control in (w.autoscale_enabled, w.scale_out_cpu, w.scale_in_cpu):
            control.observe(self._on_autoscale_input, names="value")
        w.auto_refresh.observe(self._on_auto_refresh, names="value")
        # The notebook may close the widget itself (Widget.close_all(), the comm closing): stop then too.
        w.widget.observe(self._on_comm, names="comm")
        self._render_title()
        self._render_log()

    # -- display -------------------------------------------------------------------------------------------

    def _ipython_display_(self) -> None:
        from IPython.display import display

        display(self.ui.widget)  # type: ignore[no-untyped-call]

    def _repr_mimebundle_(self, **kwargs: Any) -> dict[str, Any] | None:
        bundle = self.ui.widget._repr_mimebundle_
        if bundle is None:  # a closed widget has no view any more
            return {"text/plain": repr(self)}
        result: dict[str, Any] | None = bundle(**kwargs)
        return result

    def __repr__(self) -> str:
        operation = self.worker.operation
        state = "closed" if self.worker.closed.is_set() else ("busy: " + operation if operation else "idle")
        mode = "preview, " if self.previewing else ""
        return f"<ScalingPanel {self.cluster.spec.vmss_name} in {self.cluster.spec.resource_group} ({mode}{state})>"

    # -- public API ----------------------------------------------------------------------------------------

    @property
    def widget(self) -> Any:
        return self.ui.widget

    @property
    def busy(self) -> bool:
        """True while a background operation runs."""
        return self.worker.operation is not None

    @property
    def status(self) -> ClusterStatus | None:
        """The last status read (``None`` before the first refresh finished)."""
        return self._status

    @property
    def last_error(self) -> Exception | None:
        """The last error an operation met (or the OperationInProgress of a refused click); None if none yet."""
        return self.worker.last_error

    @property
    def log_text(self) -> str:
        """The log as plain text, oldest line first."""
        with self._lock:
            return "\n".join(f"{t} {m}" for t, m, _ in self._log_lines)

    @property
    def auto_refreshing(self) -> bool:
        """True while the auto-refresh timer runs."""
        return self.worker.ticking

    def wait_idle(self, timeout: float | None = None) -> bool:
        """Block until no background operation runs; False if ``timeout`` seconds passed first."""
        return self.worker.idle.wait(timeout)

    def on_refresh(self, callback: Callable[[ClusterStatus], None]) -> None:
        """Call ``callback(status)`` (in the background thread) after every successful status read."""
        self._refresh_callbacks.append(callback)

    def refresh(self) -> bool:
        """Re-read the cluster status in the background. False if another operation is running (or in a
        preview, which reads nothing)."""
        if self.previewing:
            self._log("Preview: nothing is read from the cloud; deploy the spec, then open cluster.panel().")
            return False
        return self.worker.start("Reading the status", None, announce=True)

    def apply_capacity_now(self) -> bool:
        """What the capacity *Apply* button does: scale to the slider's value in the background."""
        target = int(self.ui.capacity.value)

        def work() -> str:
            before = self._status.capacity if self._status is not None else None
            self.cluster.scale(target)
            with self._lock:
                self._capacity_touched = False  # show what Azure now holds
            was = f" (was {before})" if before is not None and before != target else ""
            return f"Capacity set to {target} instance{'s' if target != 1 else ''}{was}."

        return self._cloud(f"Scaling to {target} instance{'s' if target != 1 else ''}", work)

    def apply_autoscale_now(self) -> bool:
        """What *Apply autoscale* does: save the autoscale controls' values in the background."""
        w = self.ui
        enabled = bool(w.autoscale_enabled.value)
        low, high = int(w.autoscale_min.value), int(w.autoscale_max.value)
        out_cpu, in_cpu = float(w.scale_out_cpu.value), float(w.scale_in_cpu.value)

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

        return self._cloud(f"Setting autoscale {'on' if enabled else 'off'} ({low}–{high})", work)

    def wake_now(self, hours: float = 2) -> bool:
        """What *Wake 2 h* does: keep the VMs up for ``hours`` whatever the lab hours say."""

        def work() -> str:
            state = self.cluster.wake(hours, progress=False)
            until = f" until {state.wake_until:%H:%M} UTC" if state.wake_until is not None else ""
            return f"Awake{until}: the lab-hours schedule takes over again after that."

        return self._cloud(f"Waking the cluster for {hours:g} h", work)

    def reimage_all(self) -> bool:
        """Reimage every instance in the background (what the confirmed *Reimage all* does)."""
        self._ask_reimage(False)

        def work() -> str:
            self.cluster.reimage()
            return "Reimaged all instances: they restarted with the current cloud-init."

        return self._cloud("Reimaging all instances", work)

    def start_auto_refresh(self, seconds: float | None = None) -> None:
        """Refresh every ``seconds`` (default: the panel's field) until :meth:`stop_auto_refresh` or close."""
        if seconds is not None:
            with self._sync():
                self.ui.auto_refresh_every.value = max(float(seconds), MIN_AUTO_REFRESH)
        if self.ui.auto_refresh.value:
            self._start_timer()
        else:
            self.ui.auto_refresh.value = True  # the observer starts the timer

    def stop_auto_refresh(self) -> None:
        """Stop refreshing automatically (waits for the timer thread to end)."""
        if self.ui.auto_refresh.value:
            self.ui.auto_refresh.value = False  # the observer stops the timer
        else:
            self.worker.stop_timer()

    def close(self) -> None:
        """Stop auto-refresh and close every widget of the panel. An operation already running finishes."""
        if self.worker.closed.is_set():
            return
        self.worker.close()
        for w in self._all_widgets():
            w.close()

    # -- the worker's steps --------------------------------------------------------------------------------

    def _cloud(self, what: str, work: Callable[[], str | None]) -> bool:
        if self.previewing:
            self._log(f"{what} not started: this is a preview (nothing is deployed).", error=True)
            return False
        return self.worker.start(what, work)

    def _finish(self, log_result: bool) -> None:
        """After every operation: read the status and show it."""
        try:
            status = self.cluster.status()
        except CodeCapsuleError as exc:
            self.worker.last_error = exc
            self._log(f"Could not read the status: {one_line(exc)}", error=True)
            return
        except Exception as exc:
            self.worker.last_error = exc
            self._log(f"Could not read the status ({type(exc).__name__}): {one_line(exc)}", error=True)
            return
        self._render_status(status)
        if log_result:
            self._log(self._summary(status))
        for callback in list(self._refresh_callbacks):
            try:
                callback(status)
            except Exception as exc:
                self._log(f"A refresh callback failed ({type(exc).__name__}): {one_line(exc)}", error=True)

    @staticmethod
    def _summary(status: ClusterStatus) -> str:
        if not status.deployed:
            return "Status: the cluster is not deployed (run cluster.deploy())."
        piston = status.piston
        rtt = f" in {piston.round_trip_ms:.0f} ms" if piston.reachable and piston.round_trip_ms is not None else ""
        tunnel = status.tunnel.status or "missing"
        verdict = "healthy" if status.healthy else f"{len(status.problems)} problem(s)"
        return (
            f"Status: capacity {status.capacity}, {status.running} running; tunnel {tunnel}; "
            f"Piston {'answering' + rtt if piston.reachable else 'not reachable'}; {verdict}."
        )

    def _on_auto_refresh(self, change: dict[str, Any]) -> None:
        if change["new"]:
            self._start_timer()
        else:
            self.worker.stop_timer()

    def _start_timer(self) -> None:
        def tick() -> None:
            self.worker.start("Auto-refresh", None, quiet_if_busy=True)

        self.worker.start_timer(lambda: float(self.ui.auto_refresh_every.value), tick)

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
        w = self.ui
        with self._sync():
            low, high = int(w.autoscale_min.value), int(w.autoscale_max.value)
            if low > high:
                if change["owner"] is w.autoscale_min:
                    w.autoscale_max.value = low
                else:
                    w.autoscale_min.value = high
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
        slider = self.ui.capacity
        low, high = int(self.ui.autoscale_min.value), int(self.ui.autoscale_max.value)
        if capacity is not None:
            low, high = min(low, capacity), max(high, capacity)
        value = capacity if capacity is not None else min(max(int(slider.value), low), high)
        with self._sync(), slider.hold_trait_notifications():
            # Order matters: a slider refuses min > max at any moment.
            if low > slider.max:
                slider.max = high
                slider.min = low
            else:
                slider.min = low
                slider.max = high
            slider.value = value

    def _update_cost(self) -> None:
        """Estimate the chosen capacity and the autoscale range (local arithmetic, no cloud call)."""
        w = self.ui
        try:
            fixed = self.cluster.cost(capacity=int(w.capacity.value))
            ranged = self.cluster.cost(minimum=int(w.autoscale_min.value), maximum=int(w.autoscale_max.value))
            scheduled = self.cluster.cost() if self.cluster.spec.schedule else None
        except CodeCapsuleError as exc:
            w.cost_estimate.value = f"<span class='cc-muted'>{escape(one_line(exc))}</span>"
            return
        except Exception as exc:
            w.cost_estimate.value = f"<span class='cc-muted'>No estimate ({escape(type(exc).__name__)}).</span>"
            return
        text = ui.render_cost(fixed, ranged)
        if scheduled is not None:
            text += (
                f"<div class='cc-schedule-cost'>Following the lab hours: <b>{scheduled.total_min:,.2f}</b> – "
                f"<b>{scheduled.total_max:,.2f}</b> {escape(scheduled.currency)} / month.</div>"
            )
        w.cost_estimate.value = text

    def _ask_reimage(self, ask: bool) -> None:
        w = self.ui
        w.confirm_reimage.layout.display = "" if ask else "none"
        w.cancel_reimage.layout.display = "" if ask else "none"
        w.reimage.layout.display = "none" if ask else ""

    def _sync_controls(self) -> None:
        """Enable/disable controls and the spinner from the current state; highlight unapplied changes."""
        if self.worker.closed.is_set():
            return
        w = self.ui
        with self._lock:
            operation = self.worker.operation
            status = self._status
        busy = operation is not None
        deployed = status is not None and status.deployed and not self.previewing
        for control in w.inputs:
            control.disabled = busy
        w.refresh_button.disabled = busy or self.previewing
        w.apply_capacity.disabled = busy or not deployed
        w.apply_autoscale.disabled = busy or not deployed
        w.wake.disabled = busy or not deployed
        w.reimage.disabled = busy or not deployed
        w.confirm_reimage.disabled = busy or not deployed
        w.cancel_reimage.disabled = busy
        w.auto_refresh.disabled = self.previewing
        capacity_pending = deployed and status is not None and status.capacity != w.capacity.value
        w.apply_capacity.button_style = "primary" if capacity_pending and not busy else ""
        a = status.autoscale if status is not None else None
        autoscale_pending = deployed and (
            a is None
            or (
                a.enabled != w.autoscale_enabled.value
                or a.minimum != w.autoscale_min.value
                or a.maximum != w.autoscale_max.value
                or a.scale_out_cpu != w.scale_out_cpu.value
                or a.scale_in_cpu != w.scale_in_cpu.value
            )
        )
        w.apply_autoscale.button_style = "primary" if autoscale_pending and not busy else ""
        if busy:
            w.progress.value = f"<span class='cc-spinner'></span><span class='cc-warn'>{escape(str(operation))}…</span>"
        else:
            w.progress.value = ""

    # -- rendering ----------------------------------------------------------------------------------------

    def _log(self, message: str, error: bool = False) -> None:
        with self._lock:
            self._log_lines.append((now_text(), message, error))
            del self._log_lines[:-LOG_LINES]
        self._render_log()

    def _render_log(self) -> None:
        with self._lock:
            lines = list(self._log_lines)
        self.ui.log.value = ui.render_log(lines)

    def _render_title(self, status: ClusterStatus | None = None) -> None:
        when = f" · read {now_text()}" if status is not None else ""
        self.ui.title.value = ui.render_title(self.cluster.spec, when, preview=self.previewing)

    def _show_preview(self) -> None:
        w = self.ui
        try:
            preview = self.cluster.preview()
        except CodeCapsuleError as exc:
            w.plan.value = f"<span class='cc-bad'>{escape(one_line(exc))}</span>"
        else:
            w.plan.value = ui.render_plan(preview.plan)
        w.plan.layout.display = ""
        w.capacity_now.value = (
            "<span class='cc-warn'>Preview.</span> Nothing is deployed and nothing is read from the cloud: "
            "this is what <code>cluster.deploy()</code> would create. Move the sliders to see the cost."
        )
        self._log("Preview: the plan, the cost and the lab hours of the spec; no credentials were used.")

    def _render_status(self, status: ClusterStatus | None) -> None:
        w = self.ui
        with self._lock:
            if status is not None:
                self._status = status
        w.schedule.value = ui.render_schedule(self.cluster.schedule() if self.cluster.spec.schedule else None)
        if status is None:
            w.capacity_now.value = "<span class='cc-muted'>Reading the status…</span>"
            for box in (w.instances, w.tunnel, w.piston, w.token, w.health):
                box.value = "<span class='cc-muted'>—</span>"
            return
        self._render_title(status)
        self._sync_inputs(status)
        if not status.deployed:
            w.capacity_now.value = (
                "<span class='cc-warn'>Not deployed.</span> Run <code>cluster.deploy()</code>, then Refresh."
            )
        else:
            size = f" × <code>{escape(status.vm_size)}</code>" if status.vm_size else ""
            asleep = " · <span class='cc-warn'>asleep</span>" if status.asleep else ""
            w.capacity_now.value = (
                f"Now: <b>{escape(str(status.capacity))}</b> "
                f"instance{'s' if status.capacity != 1 else ''}{size}, "
                f"{status.running} running{asleep}"
            )
        w.instances.value = ui.render_instances(status)
        w.tunnel.value = ui.render_tunnel(status.tunnel)
        w.piston.value = ui.render_piston(status.piston)
        w.token.value = ui.render_token(status.service_token)
        w.health.value = ui.render_health(status)
        self._update_cost()
        self._sync_controls()

    def _sync_inputs(self, status: ClusterStatus) -> None:
        """Show the cloud's values in the controls, unless the admin is editing them."""
        w = self.ui
        with self._sync():
            a = status.autoscale
            if a is not None and not self._autoscale_touched:
                w.autoscale_enabled.value = a.enabled
                # set max first when raising both, min first when lowering, so min ≤ max holds throughout
                low, high = max(a.minimum, 1), max(a.maximum, 1)  # the controls' floor is 1 (0 = lab-hours idle)
                if low > w.autoscale_max.value:
                    w.autoscale_max.value = high
                    w.autoscale_min.value = low
                else:
                    w.autoscale_min.value = low
                    w.autoscale_max.value = high
                w.scale_out_cpu.value = round(a.scale_out_cpu)
                w.scale_in_cpu.value = round(a.scale_in_cpu)
            if status.capacity is not None and not self._capacity_touched:
                self._fit_slider(status.capacity)
            else:
                self._fit_slider(None)

    def _all_widgets(self) -> list[Any]:
        """Every widget of the panel (for close() and for tests that scan all values)."""
        seen: list[Any] = []

        def walk(w: Any) -> None:
            if any(w is s for s in seen):
                return
            seen.append(w)
            for child in getattr(w, "children", ()):
                walk(child)

        walk(self.ui.widget)
        return seen
