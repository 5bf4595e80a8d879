"""Lab hours end to end: a spec with a timetable becomes Azure autoscale profiles (a start AND an idle profile
per lab, weekly, in a Windows time zone, plus the default), the fake autoscale engine follows them (0 VMs at
night), the client's error says when the cluster wakes, wake() opens an ad-hoc session, cost() follows the
timetable. Real azure-mgmt-* and cloudflare SDKs against the stateful fakes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from codecapsule._errors import InvalidRequest, TunnelNotConnected
from codecapsule.cluster import Cluster, ClusterSpec
from codecapsule.cluster.schedule import LabHours, next_change, schedule_view, windows_time_zone, zone
from tests.fakes.arm import FakeARM, active_profile
from tests.fakes.cloudflare import FakeCloudflare
from tests.fakes.piston import PistonTestServer

from .conftest import FakeVMs

AMSTERDAM = zone("Europe/Amsterdam")
# Wednesday 2 December 2026: 10:30 is inside the Wednesday lab, 22:00 is night.
WED_LAB = datetime(2026, 12, 2, 10, 30, tzinfo=AMSTERDAM)
WED_NIGHT = datetime(2026, 12, 2, 22, 0, tzinfo=AMSTERDAM)
LABS = [LabHours("Mon,Wed 09:00-12:00", min=3, max=5), LabHours("Fri 13:00-17:00", min=2, max=4)]


def _setting(arm: FakeARM, spec: ClusterSpec) -> dict[str, Any]:
    (setting,) = arm.find("microsoft.insights/autoscalesettings", spec.autoscale_name)
    return setting


def _capacity(arm: FakeARM, spec: ClusterSpec) -> int:
    (vmss,) = arm.find("Microsoft.Compute/virtualMachineScaleSets", spec.vmss_name)
    return int(vmss["sku"]["capacity"])


@pytest.fixture
def lab_cluster(spec: ClusterSpec, arm: FakeARM, cloudflare: FakeCloudflare, vms: FakeVMs, config_dir: Any) -> Cluster:
    lab_spec = spec.with_(schedule=LABS, timezone="Europe/Amsterdam", idle_capacity=0)
    return Cluster(lab_spec, credential=arm.credential, cloudflare_token=cloudflare.api_token)


def test_lab_hours_become_weekly_profiles_and_the_cluster_sleeps_at_night(
    lab_cluster: Cluster, arm: FakeARM, piston: PistonTestServer
) -> None:
    spec = lab_cluster.spec
    arm.clock = lambda: WED_NIGHT
    plan = lab_cluster.plan()
    (autoscale,) = [c for c in plan if c.resource == "autoscale setting"]
    assert "Mon,Wed 09:00-12:00: 3..5 VMs" in autoscale.detail

    lab_cluster.deploy(progress=False)
    profiles = _setting(arm, spec)["properties"]["profiles"]
    by_name = {p["name"]: p for p in profiles}
    # the default (no recurrence) plus a start and an idle profile for each of the four lab days
    assert set(by_name) == {
        "default",
        "lab Mon 09:00-12:00",
        "idle after Mon 12:00",
        "lab Wed 09:00-12:00",
        "idle after Wed 12:00",
        "lab Fri 13:00-17:00",
        "idle after Fri 17:00",
    }
    assert "recurrence" not in by_name["default"] or by_name["default"]["recurrence"] is None
    assert by_name["default"]["capacity"] == {"minimum": "0", "maximum": "0", "default": "0"}
    assert by_name["default"]["rules"] == []  # a fixed count needs no CPU rules
    wed = by_name["lab Wed 09:00-12:00"]
    assert wed["recurrence"] == {
        "frequency": "Week",
        "schedule": {"timeZone": "W. Europe Standard Time", "days": ["Wednesday"], "hours": [9], "minutes": [0]},
    }
    assert wed["capacity"] == {"minimum": "3", "maximum": "5", "default": "3"}
    idle = by_name["idle after Wed 12:00"]
    assert idle["recurrence"]["schedule"]["hours"] == [12] and idle["capacity"]["minimum"] == "0"

    # The fake autoscale engine applies the profile that started last: at night that is an idle one.
    assert _capacity(arm, spec) == 0
    assert active_profile(profiles, WED_LAB)["name"] == "lab Wed 09:00-12:00"  # type: ignore[index]

    status = lab_cluster.status()
    assert status.asleep and status.healthy, status.problems  # asleep on purpose is not a fault
    assert status.schedule is not None and "Next change:" in str(status) and "Lab hours" in status._repr_html_()
    assert any("asleep at 0 VMs" in w for w in status.warnings)

    # What a student meets: no connector for the tunnel. The error says when it wakes and what to do now.
    piston.faults.fail_next(5, 530)
    with lab_cluster.client(retries=0) as client, pytest.raises(TunnelNotConnected) as caught:
        client.execute("print(1)", "python")
    message = str(caught.value)
    assert "1033" in message and "it wakes" in message
    assert "cluster.wake(hours=2)" in message and "engine='local'" in message

    # Re-deploying at night changes nothing: the schedule is what Azure holds.
    assert lab_cluster.plan().empty


def test_wake_opens_a_session_that_wins_over_the_schedule(lab_cluster: Cluster, arm: FakeARM) -> None:
    spec = lab_cluster.spec
    now = datetime.now(UTC)
    arm.clock = lambda: datetime.now(UTC)
    lab_cluster.deploy(progress=False)
    start_capacity = _capacity(arm, spec)

    state = lab_cluster.wake(hours=2, progress=False)
    assert state.wake_until is not None and timedelta(hours=1.9) < state.wake_until - now < timedelta(hours=2.1)
    (wake,) = [p for p in _setting(arm, spec)["properties"]["profiles"] if p["name"] == "wake"]
    assert wake["fixedDate"]["timeZone"] == "UTC"
    assert _capacity(arm, spec) >= max(1, spec.min_capacity) >= 1
    assert _capacity(arm, spec) >= start_capacity

    # A deploy during the session keeps it; once it is over the schedule takes back the capacity.
    lab_cluster.deploy(progress=False)
    assert any(p["name"] == "wake" for p in _setting(arm, spec)["properties"]["profiles"])
    assert active_profile(_setting(arm, spec)["properties"]["profiles"], now + timedelta(hours=3))["name"] != "wake"  # type: ignore[index]

    with pytest.raises(InvalidRequest, match="hours"):
        lab_cluster.wake(hours=0, progress=False)


def test_cost_follows_the_timetable(lab_cluster: Cluster) -> None:
    always = Cluster(lab_cluster.spec.with_(schedule=())).cost()
    scheduled = lab_cluster.cost()
    # 10 lab hours a week at 2..5 VMs instead of 1..5 VMs all week
    assert scheduled.schedule and not always.schedule
    assert scheduled.total_min < always.total_min
    vms = next(i for i in scheduled.items if i.name.startswith("VMs"))
    hourly = next(i for i in always.items if i.name.startswith("VMs")).monthly_min / 730  # 1 VM all month
    lab_vm_hours = (6 * 3 + 4 * 2) * 730 / 168  # Mon+Wed 3 h at 3 VMs, Fri 4 h at 2 VMs, per week
    assert vms.monthly_min == pytest.approx(hourly * lab_vm_hours, abs=0.02)
    assert "labs at min" in str(scheduled)


def test_schedule_view_and_next_change() -> None:
    spec = ClusterSpec(
        domain="example.edu", subscription_id="", cloudflare_account_id="x", schedule=LABS, timezone="Europe/Amsterdam"
    )
    when, what = next_change(spec.schedule, spec.idle_bounds, AMSTERDAM, WED_LAB) or (None, "")
    assert when == datetime(2026, 12, 2, 12, 0, tzinfo=AMSTERDAM) and what.startswith("lab ends")
    view = schedule_view(spec, WED_NIGHT)
    assert view.next_change_at == datetime(2026, 12, 4, 13, 0, tzinfo=AMSTERDAM)
    assert view.in_session is None and schedule_view(spec, WED_LAB).in_session == "Mon,Wed 09:00-12:00"
    assert "<table>" in view._repr_html_() and "Friday" in view._repr_html_()


@pytest.mark.parametrize(
    "text,message",
    [
        ("Mon 12:00-09:00", "end must be after the start"),
        ("Funday 09:00-10:00", "not a day"),
        ("Mon 25:00-26:00", "not a time of day"),
        ("every day", "write days then a time range"),
    ],
)
def test_bad_lab_hours_say_what_to_write(text: str, message: str) -> None:
    with pytest.raises(InvalidRequest, match=message):
        LabHours(text)


def test_overlapping_labs_unknown_zones_and_too_many_profiles_are_refused() -> None:
    base = {"domain": "example.edu", "subscription_id": "", "cloudflare_account_id": "x"}
    with pytest.raises(InvalidRequest, match="overlap on Mon"):
        ClusterSpec(**base, schedule=[LabHours("Mon 09:00-12:00"), LabHours("Mon 11:00-13:00")])
    with pytest.raises(InvalidRequest, match="Windows time-zone table"):
        ClusterSpec(**base, timezone="Mars/Olympus_Mons")
    with pytest.raises(InvalidRequest, match="Azure allows 20"):
        ClusterSpec(**base, schedule=[LabHours(f"Mon-Fri {h:02d}:00-{h:02d}:30") for h in (8, 10)])
    assert windows_time_zone("America/New_York") == "Eastern Standard Time"
    # back-to-back labs need no idle profile between them
    spec = ClusterSpec(**base, schedule=[LabHours("Tue 09:00-10:00"), LabHours("Tue 10:00-11:00", min=2, max=3)])
    assert [p["name"] for p in schedule_view(spec).profiles] == [
        "lab Tue 09:00-10:00",
        "lab Tue 10:00-11:00",
        "idle after Tue 11:00",
    ]


def test_lab_hours_from_the_environment() -> None:
    env = {
        "CODECAPSULE_DOMAIN": "example.edu",
        "AZURE_SUBSCRIPTION_ID": "00000000-0000-0000-0000-000000000000",
        "CLOUDFLARE_ACCOUNT_ID": "acc",
        "CODECAPSULE_LAB_HOURS": "Mon,Wed 09:00-12:00 3-5; Fri 13:00-17:00 2-4",
        "CODECAPSULE_TIMEZONE": "Europe/Amsterdam",
        "CODECAPSULE_IDLE_CAPACITY": "1",
    }
    spec = ClusterSpec.from_env(env)
    assert spec.schedule == tuple(LABS) and spec.idle_capacity == 1 and spec.idle_bounds == (1, 1)
    with pytest.raises(InvalidRequest, match="min-max VMs"):
        ClusterSpec.from_env({**env, "CODECAPSULE_LAB_HOURS": "Mon 09:00-12:00"})


def test_cli_schedule_wake_and_token(
    lab_cluster: Cluster, cluster_env: dict[str, str], arm: FakeARM, cloudflare: FakeCloudflare
) -> None:
    from .test_cluster_story import run_cli

    env = {
        **cluster_env,
        "CODECAPSULE_LAB_HOURS": "Mon,Wed 09:00-12:00 3-5; Fri 13:00-17:00 2-4",
        "CODECAPSULE_TIMEZONE": "Europe/Amsterdam",
    }
    # the schedule needs no credentials at all
    bare = {k: v for k, v in env.items() if k in {"PATH", "HOME", "CODECAPSULE_LAB_HOURS", "CODECAPSULE_TIMEZONE"}}
    (schedule,) = run_cli(bare, ["cluster", "schedule"])
    assert schedule.returncode == 0, schedule.stderr
    assert "Wednesday 12:00  0..0 VMs  (idle after Wed 12:00)" in schedule.stdout and "Next change:" in schedule.stdout

    lab_cluster.deploy(progress=False)
    (status,) = run_cli(env, ["cluster", "token", "status"])
    assert status.returncode == 0, status.stderr
    assert "duration 8760h, expires" in status.stdout and "secret saved on this computer" in status.stdout
    (refreshed,) = run_cli(env, ["cluster", "token", "refresh"])
    assert refreshed.returncode == 0 and "Refreshed the Access service token" in refreshed.stdout
    (woken,) = run_cli(env, ["cluster", "wake", "--hours", "1"])
    assert woken.returncode == 0, woken.stderr
    assert "Awake until" in woken.stdout
    (setting,) = arm.find("microsoft.insights/autoscalesettings", lab_cluster.spec.autoscale_name)
    assert any(p["name"] == "wake" for p in setting["properties"]["profiles"])
    with cloudflare.lock:
        secrets = [t["client_secret"] for t in cloudflare.service_tokens.values()]
    for proc in (status, refreshed, woken):
        assert not any(secret in proc.stdout + proc.stderr for secret in secrets)
