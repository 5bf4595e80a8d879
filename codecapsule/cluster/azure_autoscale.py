"""The autoscale setting of a cluster: CPU rules, the lab-hours profiles, a wake-up session.

Azure evaluates profiles this way: an active fixed-date profile wins (:data:`WAKE_PROFILE`); else the recurring
profile that started last (a recurring profile has no end, so every lab has a start and an idle profile); else
the profile without recurrence (:data:`DEFAULT_PROFILE`). This module builds that setting from a spec, reads
it back into an :class:`AutoscaleState` and says how it differs from the spec. No I/O.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from ._sdk import same_id as _same_id
from ._sdk import text as _text
from .azure_network import AzureIds
from .schedule import DAYS, describe, schedule_profiles

if TYPE_CHECKING:
    from .spec import ClusterSpec

__all__ = [
    "DEFAULT_PROFILE",
    "WAKE_PROFILE",
    "AutoscaleState",
    "autoscale_desired",
    "autoscale_diff",
    "autoscale_model",
    "autoscale_state",
    "default_profile",
]

#: Names of the autoscale profiles CodeCapsule writes besides the schedule's ("lab Mon 09:00-12:00", ...).
DEFAULT_PROFILE = "default"
WAKE_PROFILE = "wake"
_CPU_METRIC = "Percentage CPU"


@dataclass(frozen=True)
class AutoscaleState:
    """The CPU autoscale setting of the scale set."""

    enabled: bool
    minimum: int
    maximum: int
    default: int
    scale_out_cpu: float
    scale_in_cpu: float
    #: the recurring profiles as Azure stores them: (name, day, "HH:MM", time zone, minimum, maximum)
    schedule: tuple[tuple[str, str, str, str, int, int], ...] = ()
    wake_until: datetime | None = None  # end of a wake-up session (fixed-date profile), UTC

    def awake(self, now: datetime | None = None) -> bool:
        """True while a wake-up session holds the capacity up."""
        return self.wake_until is not None and (now or datetime.now(UTC)) < self.wake_until


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def _recurring(profile: Any) -> tuple[str, str, str, str, int, int]:
    sched = profile.recurrence.schedule
    hours, minutes = list(sched.hours or [0]), list(sched.minutes or [0])
    return (
        str(profile.name),
        ",".join(str(d) for d in sched.days or []),
        f"{int(hours[0]):02d}:{int(minutes[0]):02d}",
        str(sched.time_zone),
        int(profile.capacity.minimum),
        int(profile.capacity.maximum),
    )


def autoscale_model(
    spec: ClusterSpec,
    ids: AzureIds,
    *,
    minimum: int,
    maximum: int,
    default: int,
    scale_out_cpu: float,
    scale_in_cpu: float,
    enabled: bool,
    wake: tuple[datetime, datetime] | None = None,
) -> Any:
    from azure.mgmt.monitor import models as m

    def rule(operator: str, threshold: float, direction: str) -> Any:
        return m.ScaleRule(
            metric_trigger=m.MetricTrigger(
                metric_name=_CPU_METRIC,
                metric_namespace="microsoft.compute/virtualmachinescalesets",
                metric_resource_uri=ids.vmss,
                time_grain=timedelta(minutes=1),
                statistic="Average",
                time_window=timedelta(minutes=5),
                time_aggregation="Average",
                operator=operator,
                threshold=threshold,
            ),
            scale_action=m.ScaleAction(
                direction=direction, type="ChangeCount", value="1", cooldown=timedelta(minutes=5)
            ),
        )

    def profile(name: str, low: int, high: int, start: int, **when: Any) -> Any:
        # A fixed count (e.g. 0 VMs at night) needs no CPU rules: there is nothing for them to move.
        cpu = [rule("GreaterThan", scale_out_cpu, "Increase"), rule("LessThan", scale_in_cpu, "Decrease")]
        return m.AutoscaleProfile(
            name=name,
            capacity=m.ScaleCapacity(minimum=str(low), maximum=str(high), default=str(start)),
            rules=cpu if low < high else [],
            **when,
        )

    if spec.schedule:  # the rest of the week (before any recurring profile has started) is idle too
        minimum, maximum = spec.idle_bounds
        default = spec.idle_capacity
    profiles = [profile(DEFAULT_PROFILE, minimum, maximum, default)]
    for wish in schedule_profiles(spec.schedule, spec.idle_bounds):
        # Weekly, no end: it holds until the next profile starts (hence the idle profile at each lab end).
        recurrence = m.Recurrence(
            frequency="Week",
            schedule=m.RecurrentSchedule(
                time_zone=spec.azure_time_zone,
                days=[DAYS[wish.day][1]],
                hours=[wish.minute // 60],
                minutes=[wish.minute % 60],
            ),
        )
        profiles.append(profile(wish.name, wish.minimum, wish.maximum, wish.default, recurrence=recurrence))
    if wake is not None:
        start, end = wake
        low, high = max(1, spec.min_capacity), max(1, spec.max_capacity)
        window = m.TimeWindow(time_zone="UTC", start=start, end=end)
        profiles.append(profile(WAKE_PROFILE, low, high, low, fixed_date=window))
    return m.AutoscaleSettingResource(
        location=spec.location,
        tags=spec.tag_dict,
        enabled=enabled,  # the SDK's default is False: a setting that never scales
        target_resource_uri=ids.vmss,
        target_resource_location=spec.location,
        profiles=profiles,
    )


def default_profile(setting: Any) -> Any:
    profiles = list(setting.profiles or [])
    plain = [p for p in profiles if p.recurrence is None and p.fixed_date is None]
    return next((p for p in plain if p.name == DEFAULT_PROFILE), plain[0] if plain else None)


def autoscale_state(setting: Any) -> AutoscaleState | None:
    default = default_profile(setting)
    if default is None:
        return None
    cap = default.capacity
    out_cpu = in_cpu = None
    # the thresholds live on every profile that has a range; a fixed-count default has no rules
    ruled = next((p for p in [default, *(setting.profiles or [])] if p.rules), default)
    for rule in ruled.rules or []:
        trigger, action = rule.metric_trigger, rule.scale_action
        if trigger.metric_name != _CPU_METRIC:
            continue
        if _text(trigger.operator) in ("GreaterThan", "GreaterThanOrEqual") and _text(action.direction) == "Increase":
            out_cpu = float(trigger.threshold)
        if _text(trigger.operator) in ("LessThan", "LessThanOrEqual") and _text(action.direction) == "Decrease":
            in_cpu = float(trigger.threshold)
    if out_cpu is None or in_cpu is None:
        return None
    wake = next((p for p in setting.profiles or [] if p.name == WAKE_PROFILE and p.fixed_date), None)
    return AutoscaleState(
        enabled=bool(setting.enabled),
        minimum=int(cap.minimum),
        maximum=int(cap.maximum),
        default=int(cap.default),
        scale_out_cpu=out_cpu,
        scale_in_cpu=in_cpu,
        schedule=tuple(_recurring(p) for p in setting.profiles or [] if p.recurrence is not None),
        wake_until=_aware(wake.fixed_date.end) if wake is not None else None,
    )


def desired_schedule(spec: ClusterSpec) -> tuple[tuple[str, str, str, str, int, int], ...]:
    if not spec.schedule:
        return ()
    zone = spec.azure_time_zone
    return tuple(
        (w.name, DAYS[w.day][1], f"{w.minute // 60:02d}:{w.minute % 60:02d}", zone, w.minimum, w.maximum)
        for w in schedule_profiles(spec.schedule, spec.idle_bounds)
    )


def autoscale_diff(spec: ClusterSpec, ids: AzureIds, setting: Any) -> tuple[str, str]:
    labs = f"; lab hours: {describe(spec.schedule, spec.timezone, spec.idle_capacity)}" if spec.schedule else ""
    if setting is None:
        low, high = spec.idle_bounds if spec.schedule else (spec.min_capacity, spec.max_capacity)
        bounds = f"{low}..{high}"
        return "create", (f"{bounds} instances, CPU > {spec.scale_out_cpu}% → +1, < {spec.scale_in_cpu}% → −1{labs}")
    state = autoscale_state(setting)
    if not _same_id(setting.target_resource_uri, ids.vmss) or state is None:
        return "update", f"target {spec.vmss_name} with the CPU rules"
    if sorted(state.schedule) != sorted(desired_schedule(spec)):
        return "update", f"lab hours changed{labs or ': none, CPU all week'}"
    if spec.schedule and (state.minimum, state.maximum) != spec.idle_bounds:
        return "update", f"outside lab hours {spec.idle_bounds[0]}..{spec.idle_bounds[1]} instances"
    return "unchanged", ""


def autoscale_desired(
    spec: ClusterSpec, ids: AzureIds, setting: Any, *, wake: tuple[datetime, datetime] | None = None
) -> Any:
    """The autoscale setting to write: an existing one keeps its bounds, thresholds, on/off (change them
    with :meth:`autoscale`) and a wake-up session still running; the schedule always follows the spec."""
    state = autoscale_state(setting) if setting is not None else None
    if wake is None and state is not None and state.awake() and state.wake_until is not None:
        wake = (datetime.now(UTC), state.wake_until)
    return autoscale_model(
        spec,
        ids,
        minimum=state.minimum if state else spec.min_capacity,
        maximum=state.maximum if state else spec.max_capacity,
        default=state.default if state else spec.capacity,
        scale_out_cpu=state.scale_out_cpu if state else spec.scale_out_cpu,
        scale_in_cpu=state.scale_in_cpu if state else spec.scale_in_cpu,
        enabled=state.enabled if state else True,
        wake=wake,
    )
