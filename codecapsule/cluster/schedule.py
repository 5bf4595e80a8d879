"""Lab hours: when the class needs VMs, as Azure autoscale profiles, a next change and billed hours.

Pure logic, no cloud call: :class:`LabHours` parses ``"Mon,Wed 09:00-12:00"``; :func:`windows_time_zone`
turns an IANA zone into the Windows name Azure autoscale wants; :func:`schedule_profiles` gives the
recurring profiles (one at each lab start *and* one at each lab end, because a recurring profile has no end:
it holds until the next profile starts); :func:`next_change` says when the capacity changes next;
:func:`weekly_hours` splits a week into lab hours per lab and idle hours, for the cost estimate.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, tzinfo
from html import escape
from typing import TYPE_CHECKING, Any

from .._errors import InvalidRequest

if TYPE_CHECKING:
    from .spec import ClusterSpec

__all__ = [
    "DAYS",
    "LabHours",
    "ProfileWish",
    "ScheduleView",
    "next_change",
    "schedule_profiles",
    "schedule_view",
    "weekly_hours",
    "windows_time_zone",
    "zone",
]

#: Day abbreviations in week order, with the full names Azure's RecurrentSchedule uses.
DAYS: tuple[tuple[str, str], ...] = (
    ("Mon", "Monday"),
    ("Tue", "Tuesday"),
    ("Wed", "Wednesday"),
    ("Thu", "Thursday"),
    ("Fri", "Friday"),
    ("Sat", "Saturday"),
    ("Sun", "Sunday"),
)
_WEEK = 7 * 1440  # minutes
_DAY_INDEX = {short.lower(): i for i, (short, _) in enumerate(DAYS)}
_HOURS_TEXT = re.compile(r"^\s*(?P<days>[A-Za-z,\- ]+?)\s+(?P<start>\d{1,2}:\d{2})\s*-\s*(?P<end>\d{1,2}:\d{2})\s*$")

# IANA → Windows time-zone names, from the Unicode CLDR windowsZones mapping (supplemental/windowsZones.xml)
# for the zones schools most often use. Azure autoscale accepts only the Windows names.
_WINDOWS_ZONES: dict[str, str] = {
    "UTC": "UTC",
    "Etc/UTC": "UTC",
    "Etc/GMT": "UTC",
    "Europe/London": "GMT Standard Time",
    "Europe/Dublin": "GMT Standard Time",
    "Europe/Lisbon": "GMT Standard Time",
    "Atlantic/Reykjavik": "Greenwich Standard Time",
    "Europe/Amsterdam": "W. Europe Standard Time",
    "Europe/Berlin": "W. Europe Standard Time",
    "Europe/Rome": "W. Europe Standard Time",
    "Europe/Stockholm": "W. Europe Standard Time",
    "Europe/Oslo": "W. Europe Standard Time",
    "Europe/Vienna": "W. Europe Standard Time",
    "Europe/Zurich": "W. Europe Standard Time",
    "Europe/Luxembourg": "W. Europe Standard Time",
    "Europe/Malta": "W. Europe Standard Time",
    "Europe/Brussels": "Romance Standard Time",
    "Europe/Paris": "Romance Standard Time",
    "Europe/Madrid": "Romance Standard Time",
    "Europe/Copenhagen": "Romance Standard Time",
    "Europe/Prague": "Central Europe Standard Time",
    "Europe/Budapest": "Central Europe Standard Time",
    "Europe/Belgrade": "Central Europe Standard Time",
    "Europe/Bratislava": "Central Europe Standard Time",
    "Europe/Ljubljana": "Central Europe Standard Time",
    "Europe/Warsaw": "Central European Standard Time",
    "Europe/Zagreb": "Central European Standard Time",
    "Europe/Sarajevo": "Central European Standard Time",
    "Europe/Helsinki": "FLE Standard Time",
    "Europe/Kyiv": "FLE Standard Time",
    "Europe/Kiev": "FLE Standard Time",
    "Europe/Riga": "FLE Standard Time",
    "Europe/Tallinn": "FLE Standard Time",
    "Europe/Vilnius": "FLE Standard Time",
    "Europe/Sofia": "FLE Standard Time",
    "Europe/Athens": "GTB Standard Time",
    "Europe/Bucharest": "GTB Standard Time",
    "Europe/Istanbul": "Turkey Standard Time",
    "Europe/Moscow": "Russian Standard Time",
    "Africa/Cairo": "Egypt Standard Time",
    "Africa/Johannesburg": "South Africa Standard Time",
    "Africa/Lagos": "W. Central Africa Standard Time",
    "Africa/Nairobi": "E. Africa Standard Time",
    "America/New_York": "Eastern Standard Time",
    "America/Toronto": "Eastern Standard Time",
    "America/Detroit": "Eastern Standard Time",
    "America/Chicago": "Central Standard Time",
    "America/Winnipeg": "Central Standard Time",
    "America/Denver": "Mountain Standard Time",
    "America/Edmonton": "Mountain Standard Time",
    "America/Phoenix": "US Mountain Standard Time",
    "America/Los_Angeles": "Pacific Standard Time",
    "America/Vancouver": "Pacific Standard Time",
    "America/Anchorage": "Alaskan Standard Time",
    "Pacific/Honolulu": "Hawaiian Standard Time",
    "America/Halifax": "Atlantic Standard Time",
    "America/St_Johns": "Newfoundland Standard Time",
    "America/Mexico_City": "Central Standard Time (Mexico)",
    "America/Bogota": "SA Pacific Standard Time",
    "America/Lima": "SA Pacific Standard Time",
    "America/Santiago": "Pacific SA Standard Time",
    "America/Sao_Paulo": "E. South America Standard Time",
    "America/Argentina/Buenos_Aires": "Argentina Standard Time",
    "Asia/Jerusalem": "Israel Standard Time",
    "Asia/Riyadh": "Arab Standard Time",
    "Asia/Dubai": "Arabian Standard Time",
    "Asia/Tehran": "Iran Standard Time",
    "Asia/Karachi": "Pakistan Standard Time",
    "Asia/Kolkata": "India Standard Time",
    "Asia/Calcutta": "India Standard Time",
    "Asia/Dhaka": "Bangladesh Standard Time",
    "Asia/Bangkok": "SE Asia Standard Time",
    "Asia/Jakarta": "SE Asia Standard Time",
    "Asia/Ho_Chi_Minh": "SE Asia Standard Time",
    "Asia/Singapore": "Singapore Standard Time",
    "Asia/Kuala_Lumpur": "Singapore Standard Time",
    "Asia/Manila": "Singapore Standard Time",
    "Asia/Shanghai": "China Standard Time",
    "Asia/Hong_Kong": "China Standard Time",
    "Asia/Taipei": "Taipei Standard Time",
    "Asia/Seoul": "Korea Standard Time",
    "Asia/Tokyo": "Tokyo Standard Time",
    "Australia/Perth": "W. Australia Standard Time",
    "Australia/Darwin": "AUS Central Standard Time",
    "Australia/Adelaide": "Cen. Australia Standard Time",
    "Australia/Brisbane": "E. Australia Standard Time",
    "Australia/Sydney": "AUS Eastern Standard Time",
    "Australia/Melbourne": "AUS Eastern Standard Time",
    "Australia/Canberra": "AUS Eastern Standard Time",
    "Australia/Hobart": "Tasmania Standard Time",
    "Pacific/Auckland": "New Zealand Standard Time",
}


def windows_time_zone(iana: str) -> str:
    """The Windows time-zone name Azure autoscale needs for an IANA zone such as ``Europe/Amsterdam``."""
    name = _WINDOWS_ZONES.get(iana)
    if name is None:
        raise InvalidRequest(
            f"timezone {iana!r} is not in CodeCapsule's IANA → Windows time-zone table (Azure autoscale needs "
            "Windows names); use a nearby city with the same clock, e.g. 'Europe/Amsterdam', "
            "'America/New_York' or 'Asia/Tokyo', or 'UTC'."
        )
    return name


def zone(iana: str) -> tzinfo:
    """The IANA zone as a tzinfo (stdlib zoneinfo), for computing the next change in local time."""
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    try:
        return ZoneInfo(iana)
    except (ZoneInfoNotFoundError, ValueError):
        raise InvalidRequest(
            f"timezone {iana!r} is unknown to this computer's time-zone database; install tzdata "
            "(pip install tzdata) or use a zone such as 'Europe/Amsterdam'."
        ) from None


def _minutes(text: str, what: str) -> int:
    hours, minutes = (int(part) for part in text.split(":"))
    if not (0 <= hours <= 24 and 0 <= minutes < 60) or (hours == 24 and minutes):
        raise InvalidRequest(f"lab hours: {what} time {text!r} is not a time of day (00:00-24:00).")
    return hours * 60 + minutes


def _days(text: str) -> tuple[int, ...]:
    found: list[int] = []
    for part in (p.strip().lower() for p in text.split(",")):
        ends = [e.strip()[:3] for e in part.split("-")]
        if not all(e in _DAY_INDEX for e in ends) or len(ends) > 2:
            raise InvalidRequest(
                f"lab hours: {part!r} is not a day or a day range; use Mon, Tue, Wed, Thu, Fri, Sat, Sun, "
                "e.g. 'Mon,Wed' or 'Mon-Fri'."
            )
        first, last = _DAY_INDEX[ends[0]], _DAY_INDEX[ends[-1]]
        if last < first:
            raise InvalidRequest(f"lab hours: day range {part!r} runs backwards; write it as e.g. 'Mon-Fri'.")
        found.extend(range(first, last + 1))
    return tuple(sorted(set(found)))


@dataclass(frozen=True, init=False)
class LabHours:
    """One weekly lab slot: ``LabHours("Mon,Wed 09:00-12:00", min=3, max=5)``.

    During the slot autoscale keeps between ``min`` and ``max`` VMs (CPU decides within the range); outside
    every slot the cluster falls back to the spec's ``idle_capacity``. Times are in the spec's ``timezone``.
    """

    text: str
    days: tuple[int, ...]  # 0 = Monday
    start: int  # minutes after midnight
    end: int
    min: int
    max: int

    def __init__(self, text: str, min: int = 1, max: int = 5) -> None:
        match = _HOURS_TEXT.match(text) if isinstance(text, str) else None
        if match is None:
            raise InvalidRequest(
                f"lab hours {text!r}: write days then a time range, e.g. LabHours('Mon,Wed 09:00-12:00', min=3, max=5)."
            )
        start, end = _minutes(match["start"], "start"), _minutes(match["end"], "end")
        if end <= start:
            raise InvalidRequest(
                f"lab hours {text!r}: the end must be after the start on the same day (split a lab that "
                "runs past midnight into two)."
            )
        for label, value in (("min", min), ("max", max)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise InvalidRequest(f"lab hours {text!r}: {label} must be a whole number ≥ 0, not {value!r}.")
        if not 1 <= min <= max:
            raise InvalidRequest(f"lab hours {text!r}: need 1 ≤ min ≤ max, got min={min}, max={max}.")
        object.__setattr__(self, "text", text.strip())
        object.__setattr__(self, "days", _days(match["days"]))
        object.__setattr__(self, "start", start)
        object.__setattr__(self, "end", end)
        object.__setattr__(self, "min", min)
        object.__setattr__(self, "max", max)

    def __repr__(self) -> str:
        return f"LabHours({self.text!r}, min={self.min}, max={self.max})"

    @property
    def hours_per_week(self) -> float:
        return len(self.days) * (self.end - self.start) / 60.0

    def slots(self) -> list[tuple[int, int]]:
        """(start, end) in minutes after Monday 00:00, one per day."""
        return [(day * 1440 + self.start, day * 1440 + self.end) for day in self.days]


def parse_lab_hours(text: str) -> tuple[LabHours, ...]:
    """Lab hours written on one line (``CODECAPSULE_LAB_HOURS``): ``"Mon,Wed 09:00-12:00 3-5; Fri 13:00-17:00 2-4"``
    (days, time range, min-max VMs; slots separated by ``;``)."""
    labs = []
    for part in (p.strip() for p in text.split(";")):
        if not part:
            continue
        slot, _, bounds = part.rpartition(" ")
        match = re.fullmatch(r"([0-9]+)-([0-9]+)", bounds)
        if not slot or match is None:
            raise InvalidRequest(
                f"lab hours {part!r}: write days, a time range and min-max VMs, e.g. 'Mon,Wed 09:00-12:00 3-5' "
                "(separate slots with ';')."
            )
        labs.append(LabHours(slot, min=int(match[1]), max=int(match[2])))
    return tuple(labs)


def check_no_overlap(labs: Sequence[LabHours]) -> None:
    """Refuse labs that overlap: their bounds would fight (the one validation of a schedule as a whole)."""
    slots = sorted((s, e, lab) for lab in labs for s, e in lab.slots())
    for (s1, e1, a), (s2, _, b) in itertools.pairwise(slots):
        if s2 < e1:
            day = DAYS[s1 // 1440][0]
            raise InvalidRequest(
                f"lab hours {a.text!r} and {b.text!r} overlap on {day}: give each time one lab (merge them "
                "with the larger min/max)."
            )


@dataclass(frozen=True)
class ProfileWish:
    """One recurring autoscale profile to write: at ``day`` ``minute`` the bounds become min..max."""

    name: str
    day: int
    minute: int
    minimum: int
    maximum: int
    default: int


def _clock(minute: int) -> str:
    return f"{minute // 60:02d}:{minute % 60:02d}"


def schedule_profiles(labs: Sequence[LabHours], idle: tuple[int, int]) -> list[ProfileWish]:
    """Recurring profiles: one at each lab start (lab bounds) and one at each lab end (idle bounds),
    skipping an end that is another lab's start. Names are unique and stable (Azure keys them by name)."""
    starts = {s: lab for lab in labs for s, _ in lab.slots()}
    wishes: list[ProfileWish] = []
    for lab in labs:
        for s, e in lab.slots():
            day = DAYS[s // 1440][0]
            wishes.append(
                ProfileWish(
                    f"lab {day} {_clock(lab.start)}-{_clock(lab.end)}", s // 1440, s % 1440, lab.min, lab.max, lab.min
                )
            )
            if e % _WEEK not in starts:  # back to back with the next lab: its start profile takes over
                end_day, end_minute = (e // 1440) % 7, e % 1440  # a lab ending at 24:00 ends next day 00:00
                wishes.append(
                    ProfileWish(f"idle after {day} {_clock(lab.end)}", end_day, end_minute, idle[0], idle[1], idle[0])
                )
    return sorted(wishes, key=lambda w: (w.day, w.minute))


def next_change(
    labs: Sequence[LabHours], idle: tuple[int, int], tz: tzinfo, now: datetime
) -> tuple[datetime, str] | None:
    """When capacity changes next after ``now`` and to what (a sentence), or None without a schedule."""
    wishes = schedule_profiles(labs, idle)
    if not wishes:
        return None
    local = now.astimezone(tz)
    monday = (local - timedelta(days=local.weekday())).replace(hour=0, minute=0, second=0, microsecond=0)
    for week in (0, 1):
        for wish in wishes:
            when = monday + timedelta(days=7 * week + wish.day, minutes=wish.minute)
            when = when.replace(tzinfo=tz)
            if when > local:
                what = (
                    f"lab starts: {wish.minimum}..{wish.maximum} VMs"
                    if wish.name.startswith("lab")
                    else f"lab ends: down to {wish.minimum} VM{'s' if wish.minimum != 1 else ''}"
                )
                return when, what
    return None


def next_lab_start(labs: Sequence[LabHours], tz: tzinfo, now: datetime) -> datetime | None:
    """When the next lab starts after ``now`` (local time in ``tz``), or None without lab hours."""
    local = now.astimezone(tz)
    monday = (local - timedelta(days=local.weekday())).replace(hour=0, minute=0, second=0, microsecond=0)
    starts = sorted(s for lab in labs for s, _ in lab.slots())
    for week in (0, 1):
        for start in starts:
            when = (monday + timedelta(days=7 * week, minutes=start)).replace(tzinfo=tz)
            if when > local:
                return when
    return None


def active_lab(labs: Sequence[LabHours], tz: tzinfo, now: datetime) -> LabHours | None:
    """The lab in session at ``now`` (local time in ``tz``), if any."""
    local = now.astimezone(tz)
    minute = local.weekday() * 1440 + local.hour * 60 + local.minute
    for lab in labs:
        if any(s <= minute < e for s, e in lab.slots()):
            return lab
    return None


def weekly_hours(labs: Sequence[LabHours]) -> tuple[list[tuple[LabHours, float]], float]:
    """Hours a week per lab, and the idle hours left of the week's 168."""
    per_lab = [(lab, lab.hours_per_week) for lab in labs]
    return per_lab, max(0.0, 168.0 - sum(h for _, h in per_lab))


def describe(labs: Sequence[LabHours], timezone: str, idle: int) -> str:
    """One line: ``Mon,Wed 09:00-12:00: 3..5 VMs; otherwise 0 (Europe/Amsterdam)``."""
    if not labs:
        return "no lab hours: autoscale follows CPU all week"
    parts = "; ".join(f"{lab.text}: {lab.min}..{lab.max} VMs" for lab in labs)
    return f"{parts}; otherwise {idle} VM{'s' if idle != 1 else ''} ({timezone})"


def as_dict(wish: ProfileWish) -> dict[str, Any]:
    """A wish as plain data (for the panel's schedule table and tests)."""
    return {
        "name": wish.name,
        "day": DAYS[wish.day][1],
        "time": _clock(wish.minute),
        "minimum": wish.minimum,
        "maximum": wish.maximum,
    }


@dataclass(frozen=True)
class ScheduleView:
    """The lab hours of a spec as people read them: the slots, the next change, the profiles Azure gets."""

    summary: str  # describe(): "Mon,Wed 09:00-12:00: 3..5 VMs; otherwise 0 VMs (Europe/Amsterdam)"
    timezone: str
    windows_time_zone: str
    profiles: tuple[dict[str, Any], ...]  # as_dict() of each recurring profile, in week order
    next_change_at: datetime | None
    next_change: str  # "lab starts: 3..5 VMs" / "lab ends: down to 0 VMs" / ""
    in_session: str | None  # the text of the lab running now, if any

    @property
    def next_change_text(self) -> str:
        if self.next_change_at is None:
            return "no scheduled change"
        return f"{self.next_change_at:%a %d %b %H:%M} ({self.timezone}): {self.next_change}"

    def __str__(self) -> str:
        lines = [f"Lab hours: {self.summary}", f"Next change: {self.next_change_text}"]
        if self.in_session:
            lines.append(f"In session now: {self.in_session}")
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        rows = "".join(
            f"<tr><td>{escape(p['day'])}</td><td>{escape(p['time'])}</td><td>{p['minimum']}..{p['maximum']}</td>"
            f"<td>{escape(p['name'])}</td></tr>"
            for p in self.profiles
        )
        table = (
            "<table><thead><tr><th>day</th><th>time</th><th>VMs</th><th>profile</th></tr></thead>"
            f"<tbody>{rows}</tbody></table>"
            if rows
            else ""
        )
        return (
            f"<div class='codecapsule-schedule'><p><b>Lab hours</b>: {escape(self.summary)}</p>"
            f"<p><b>Next change</b>: {escape(self.next_change_text)}</p>{table}</div>"
        )


def schedule_view(spec: ClusterSpec, now: datetime | None = None) -> ScheduleView:
    """The :class:`ScheduleView` of ``spec`` at ``now`` (default: the current time)."""
    from datetime import UTC

    moment = now or datetime.now(UTC)
    labs = spec.schedule
    tz = zone(spec.timezone)
    change = next_change(labs, spec.idle_bounds, tz, moment)
    running = active_lab(labs, tz, moment)
    return ScheduleView(
        summary=describe(labs, spec.timezone, spec.idle_capacity),
        timezone=spec.timezone,
        windows_time_zone=windows_time_zone(spec.timezone),
        profiles=tuple(as_dict(w) for w in schedule_profiles(labs, spec.idle_bounds)),
        next_change_at=change[0] if change else None,
        next_change=change[1] if change else "",
        in_session=running.text if running else None,
    )
