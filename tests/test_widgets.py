"""The scaling panel with real ipywidgets objects against a Cluster on the stateful fakes.

Every test drives the panel the way the front end does (``button.click()``, setting a control's ``value``)
and checks what the fake ARM / fake Cloudflare now hold and what the panel shows. Background operations are
awaited with ``panel.wait_idle()`` (a threading.Event), never with sleeps.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from html import escape
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("ipywidgets")

from codecapsule import OperationInProgress
from codecapsule.cluster.cluster import Cluster
from codecapsule.cluster.schedule import LabHours
from codecapsule.cluster.spec import ClusterSpec
from codecapsule.widgets import ScalingPanel
from tests.cluster import conftest as cluster_fixtures
from tests.fakes.arm import FakeARM
from tests.fakes.cloudflare import FakeCloudflare
from tests.kernels import write_python_kernelspec

# The Cluster-on-fakes fixtures live in tests/cluster/conftest.py, which pytest applies only below
# tests/cluster/. Re-export all of them here (arm, cloudflare, piston, spec, cluster, cluster_env, ...).
_FIXTURE = type(cluster_fixtures.cluster)
globals().update({k: v for k, v in vars(cluster_fixtures).items() if isinstance(v, _FIXTURE)})

NOTEBOOK = Path(__file__).resolve().parents[1] / "notebooks" / "05-admin-scaling-panel.ipynb"
WAIT = 60.0  # generous upper bound for a background operation against the fakes (not a timing assertion)
VMSS = "codecapsule-piston"


@pytest.fixture
def deployed(cluster: Cluster, cloudflare: FakeCloudflare) -> Cluster:
    """The cluster deployed on the fakes, with one cloudflared connector attached to its tunnel."""
    cluster.deploy(progress=False)
    (tunnel,) = cloudflare.live_tunnels()
    cloudflare.connect(tunnel["id"], colo="AMS", origin_ip="10.0.1.4")
    return cluster


@pytest.fixture
def panel(deployed: Cluster) -> Iterator[ScalingPanel]:
    """A panel that has finished its first status read."""
    p = ScalingPanel(deployed)
    assert p.wait_idle(WAIT), "the first status read did not finish"
    yield p
    p.close()
    assert p.wait_idle(WAIT)


def vmss_capacity(arm: FakeARM) -> int:
    (vmss,) = arm.find("virtualMachineScaleSets", VMSS)
    return int(vmss["sku"]["capacity"])


def autoscale_setting(arm: FakeARM) -> dict[str, Any]:
    (setting,) = arm.find("autoscalesettings")
    return setting


def controls(p: ScalingPanel) -> list[Any]:
    return [
        p.capacity,
        p.apply_capacity,
        p.autoscale_enabled,
        p.autoscale_min,
        p.autoscale_max,
        p.scale_out_cpu,
        p.scale_in_cpu,
        p.apply_autoscale,
        p.refresh_button,
        p.reimage,
    ]


def all_widgets(root: Any) -> list[Any]:
    out = [root]
    for child in getattr(root, "children", ()):
        out.extend(all_widgets(child))
    return out


def all_text(p: ScalingPanel) -> str:
    """Every string a front end could show: values, descriptions, tooltips, placeholders, options."""
    parts: list[str] = [repr(p), p.log_text]
    for w in all_widgets(p.widget):
        for name in ("value", "description", "tooltip", "placeholder", "options", "_options_labels"):
            value = getattr(w, name, None)
            if value is not None:
                parts.append(str(value))
    return "\n".join(parts)


# -- capacity --------------------------------------------------------------------------------------


def test_first_refresh_shows_capacity_instances_tunnel_and_piston(panel: ScalingPanel, arm: FakeARM) -> None:
    assert vmss_capacity(arm) == 1
    assert panel.capacity.value == 1
    assert "Now: <b>1</b> instance" in panel.capacity_now.value
    assert (panel.capacity.min, panel.capacity.max) == (1, 5)  # the autoscale range
    assert panel.instances.value.count("<tr>") == 2  # header + instance 0
    assert "Succeeded" in panel.instances.value and "running" in panel.instances.value
    assert "healthy" in panel.tunnel.value and "AMS" in panel.tunnel.value and "10.0.1.4" in panel.tunnel.value
    assert "answering" in panel.piston.value and "round trip" in panel.piston.value
    assert "python" in panel.piston.value
    assert "Status: capacity 1" in panel.log_text
    assert all(not w.disabled for w in controls(panel))
    assert panel.progress.value == ""


def test_slider_and_apply_change_the_vmss_capacity_in_the_fake(panel: ScalingPanel, arm: FakeARM) -> None:
    panel.capacity.value = 3
    assert panel.apply_capacity.button_style == "primary"  # an unapplied change is highlighted
    panel.apply_capacity.click()
    assert panel.wait_idle(WAIT)

    assert vmss_capacity(arm) == 3
    assert "Capacity set to 3 instances (was 1)." in panel.log_text
    assert "Now: <b>3</b> instances" in panel.capacity_now.value
    assert panel.instances.value.count("<tr>") == 4
    assert panel.capacity.value == 3
    assert panel.apply_capacity.button_style == ""
    assert all(not w.disabled for w in controls(panel))


def test_slider_is_bounded_by_the_autoscale_range(panel: ScalingPanel) -> None:
    panel.capacity.value = 5
    panel.autoscale_max.value = 3  # narrowing the range clamps the slider
    assert (panel.capacity.min, panel.capacity.max, panel.capacity.value) == (1, 3, 3)
    panel.autoscale_min.value = 4  # min above max drags max along
    assert (panel.autoscale_min.value, panel.autoscale_max.value) == (4, 4)
    assert (panel.capacity.min, panel.capacity.max, panel.capacity.value) == (4, 4, 4)


def test_cost_estimate_follows_the_controls_without_cloud_calls(
    panel: ScalingPanel, deployed: Cluster, arm: FakeARM
) -> None:
    before = len(arm.requests)
    panel.capacity.value = 4
    four = deployed.cost(capacity=4)
    assert f"{four.total_min:,.2f}" in panel.cost_estimate.value
    assert ">4 VMs<" in panel.cost_estimate.value
    panel.autoscale_max.value = 8
    wide = deployed.cost(minimum=1, maximum=8)
    assert ">max 8<" in panel.cost_estimate.value
    assert f"{wide.total_max:,.2f}" in panel.cost_estimate.value
    assert len(arm.requests) == before  # the estimate is local arithmetic


# -- autoscale -------------------------------------------------------------------------------------


def test_autoscale_controls_change_the_setting_in_the_fake(panel: ScalingPanel, arm: FakeARM) -> None:
    assert autoscale_setting(arm)["properties"]["enabled"] is True
    assert panel.autoscale_enabled.value is True

    panel.autoscale_enabled.value = False
    panel.autoscale_min.value = 2
    panel.autoscale_max.value = 4
    panel.scale_out_cpu.value = 80
    panel.scale_in_cpu.value = 20
    panel.apply_autoscale.click()
    assert panel.wait_idle(WAIT)

    props = autoscale_setting(arm)["properties"]
    assert props["enabled"] is False
    (profile,) = props["profiles"]
    assert (profile["capacity"]["minimum"], profile["capacity"]["maximum"]) == ("2", "4")
    thresholds = sorted(rule["metricTrigger"]["threshold"] for rule in profile["rules"])
    assert thresholds == [20, 80]
    assert "Autoscale off: 2–4 instances" in panel.log_text
    # autoscale off leaves capacity 1 alone: the slider spans the range and the current capacity
    assert (panel.capacity.min, panel.capacity.max, panel.capacity.value) == (1, 4, 1)

    panel.autoscale_enabled.value = True
    panel.apply_autoscale.click()
    assert panel.wait_idle(WAIT)
    assert autoscale_setting(arm)["properties"]["enabled"] is True
    assert panel.autoscale_enabled.value is True
    assert "Autoscale on: 2–4 instances" in panel.log_text
    # switched on, autoscale pulls the capacity into 2..4 and the panel shows it
    assert vmss_capacity(arm) == 2
    assert (panel.capacity.min, panel.capacity.max, panel.capacity.value) == (2, 4, 2)


def test_invalid_thresholds_are_refused_with_the_library_message(panel: ScalingPanel, arm: FakeARM) -> None:
    writes = len(arm.requests_matching("PUT", "autoscalesettings"))
    panel.scale_in_cpu.value = 90  # above scale-out (70)
    panel.apply_autoscale.click()
    assert panel.wait_idle(WAIT)
    assert "CPU thresholds must satisfy 0 < scale_in_cpu < scale_out_cpu" in panel.log_text
    assert len(arm.requests_matching("PUT", "autoscalesettings")) == writes
    assert not panel.apply_autoscale.disabled


# -- failures and concurrency ----------------------------------------------------------------------


@pytest.mark.parametrize("status", [None, 409], ids=["operation-failed", "http-409"])
def test_a_failing_scale_shows_the_error_and_reenables_the_controls(
    panel: ScalingPanel,
    arm: FakeARM,
    status: int | None,
) -> None:
    arm.fail_next(
        "PATCH",
        f"virtualmachinescalesets/{VMSS}",
        code="QuotaExceeded",
        message="Operation could not be completed as it results in exceeding approved cores quota.",
        status=status,
    )
    panel.capacity.value = 4
    panel.apply_capacity.click()
    assert panel.wait_idle(WAIT)

    assert "Scaling to 4 instances failed:" in panel.log_text
    assert "quota" in panel.log_text.lower()
    assert "Traceback" not in panel.log_text and 'File "' not in panel.log_text
    assert "cc-bad" in panel.log.value  # shown as an error
    assert all(not w.disabled for w in controls(panel))
    assert panel.progress.value == ""
    assert not panel.busy
    assert vmss_capacity(arm) == 1 or status is None  # an HTTP refusal changed nothing


def test_a_second_click_during_an_operation_does_not_start_another(panel: ScalingPanel, arm: FakeARM) -> None:
    # Hold the operation at its closing status read, through the panel's public on_refresh hook.
    entered, release = threading.Event(), threading.Event()

    def hold(_status: object) -> None:
        entered.set()
        release.wait(WAIT)

    panel.on_refresh(hold)
    patches_before = len(arm.requests_matching("PATCH", f"virtualmachinescalesets/{VMSS}"))
    panel.capacity.value = 2
    panel.apply_capacity.click()
    try:
        assert entered.wait(WAIT), "the scale operation never reached its status read"
        assert panel.busy
        assert all(w.disabled for w in controls(panel))
        assert "cc-spinner" in panel.progress.value and "Scaling to 2" in panel.progress.value

        panel.capacity.value = 4
        panel.apply_capacity.click()
        panel.refresh_button.click()
        assert panel.refresh() is False
        assert panel.apply_capacity_now() is False
    finally:
        release.set()
    assert panel.wait_idle(WAIT)

    assert len(arm.requests_matching("PATCH", f"virtualmachinescalesets/{VMSS}")) == patches_before + 1
    assert vmss_capacity(arm) == 2
    assert panel.log_text.count("not started") == 4
    assert "another operation is still running (scaling to 2 instances)" in panel.log_text
    assert isinstance(panel.last_error, OperationInProgress)
    assert all(not w.disabled for w in controls(panel))


# -- status details --------------------------------------------------------------------------------


def test_instance_health_and_tunnel_problems_show_after_refresh(
    panel: ScalingPanel, deployed: Cluster, arm: FakeARM, cloudflare: FakeCloudflare
) -> None:
    deployed.scale(2)
    arm.set_instance_state(VMSS, "1", provisioning_state="Failed", power_state="stopped")
    (tunnel,) = cloudflare.live_tunnels()
    cloudflare.disconnect(tunnel["id"])
    panel.refresh_button.click()
    assert panel.wait_idle(WAIT)
    assert panel.instances.value.count("<tr>") == 3
    assert "failed" in panel.instances.value
    assert "No connectors" in panel.tunnel.value
    # the health box shows ClusterStatus's own verdict, word for word
    status = panel.status
    assert status is not None and status.problems
    assert all(escape(problem) in panel.health.value for problem in status.problems)


def test_the_token_expiry_and_its_warning_show(panel: ScalingPanel, cloudflare: FakeCloudflare) -> None:
    assert "expires" in panel.token.value and "cc-ok" in panel.token.value
    with cloudflare.lock:
        (token,) = cloudflare.service_tokens.values()
        soon = datetime.now(UTC) + timedelta(days=12)
        token["expires_at"] = soon.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    panel.refresh_button.click()
    assert panel.wait_idle(WAIT)
    assert "cc-warn" in panel.token.value and "(11 days)" in panel.token.value
    assert "refresh it with cluster.refresh_access_token()" in panel.health.value
    assert token["client_secret"] not in json.dumps([w.get_state() for w in panel._all_widgets()], default=str)


def test_a_panel_with_lab_hours_shows_the_schedule_and_wakes_the_cluster(
    spec: ClusterSpec, arm: FakeARM, cloudflare: FakeCloudflare, config_dir: Path
) -> None:
    lab_spec = spec.with_(schedule=[LabHours("Mon-Fri 09:00-17:00", min=2, max=4)], timezone="Europe/Amsterdam")
    cluster = Cluster(lab_spec, credential=arm.credential, cloudflare_token=cloudflare.api_token)
    cluster.deploy(progress=False)
    p = ScalingPanel(cluster)
    try:
        assert p.wait_idle(WAIT)
        assert "Next change" in p.schedule.value and "idle after Fri 17:00" in p.schedule.value
        assert "Following the lab hours" in p.cost_estimate.value
        p.wake.click()
        assert p.wait_idle(WAIT)
        assert "Awake until" in p.log_text
        (setting,) = arm.find("microsoft.insights/autoscalesettings")
        assert any(profile["name"] == "wake" for profile in setting["properties"]["profiles"])
    finally:
        p.close()


def test_preview_needs_no_credentials_and_calls_no_cloud(arm: FakeARM, cloudflare: FakeCloudflare) -> None:
    spec = ClusterSpec(
        domain="example.edu",
        subscription_id=arm.subscription_id,
        cloudflare_account_id=cloudflare.account_id,
        azure_endpoint=arm.endpoint,
        cloudflare_endpoint=cloudflare.endpoint,
        schedule=[LabHours("Tue 10:00-12:00", min=3, max=6)],
        timezone="Europe/London",
    )
    before_arm, before_cf = len(arm.requests), len(cloudflare.requests)
    p = ScalingPanel.preview(spec)
    try:
        assert "preview" in p.title.value and "What deploy would create" in p.plan.value
        assert "VM scale set" in p.plan.value and "dns record" in p.plan.value
        assert "lab Tue 10:00-12:00" in p.schedule.value
        assert p.apply_capacity.disabled and p.wake.disabled and p.refresh_button.disabled
        p.capacity.value = 3  # the cost still follows the sliders
        assert "3 VMs" in p.cost_estimate.value
        assert not p.refresh() and not p.apply_capacity_now()
        assert "this is a preview" in p.log_text
        assert "preview" in repr(p)
    finally:
        p.close()
    assert len(arm.requests) == before_arm and len(cloudflare.requests) == before_cf


def test_reimage_needs_a_confirmation(panel: ScalingPanel, arm: FakeARM) -> None:
    panel.reimage.click()
    assert panel.confirm_reimage.layout.display == "" and panel.reimage.layout.display == "none"
    panel.cancel_reimage.click()
    assert panel.confirm_reimage.layout.display == "none"
    assert not arm.requests_matching("POST", "reimage")

    panel.reimage.click()
    panel.confirm_reimage.click()
    assert panel.wait_idle(WAIT)
    assert arm.requests_matching("POST", "reimage")
    assert "Reimaged all instances" in panel.log_text


def test_panel_of_an_undeployed_cluster_explains_and_disables_apply(cluster: Cluster) -> None:
    p = cluster.panel()
    try:
        assert isinstance(p, ScalingPanel)
        assert p.wait_idle(WAIT)
        assert "Not deployed" in p.capacity_now.value
        assert "cluster.deploy()" in p.capacity_now.value
        assert p.apply_capacity.disabled and p.apply_autoscale.disabled and p.reimage.disabled
        assert not p.refresh_button.disabled
    finally:
        p.close()


# -- auto-refresh and closing ----------------------------------------------------------------------


def test_auto_refresh_repeats_and_stops_when_the_panel_closes(deployed: Cluster) -> None:
    reads = 0
    third = threading.Event()

    def count(_status: object) -> None:
        nonlocal reads
        reads += 1
        if reads >= 3:
            third.set()

    p = ScalingPanel(deployed, auto_refresh=0.5)
    p.on_refresh(count)
    assert p.auto_refresh.value is True and p.auto_refreshing
    assert third.wait(WAIT), "auto-refresh did not read the status repeatedly"
    p.close()
    assert not p.auto_refreshing  # close() joined the timer thread
    assert p.wait_idle(WAIT)
    assert p.refresh() is False  # a closed panel starts nothing
    assert p.widget.comm is None  # the widgets are closed


def test_unticking_auto_refresh_stops_the_timer(panel: ScalingPanel) -> None:
    panel.start_auto_refresh(30)
    assert panel.auto_refreshing and panel.auto_refresh_every.value == 30
    panel.auto_refresh.value = False
    assert not panel.auto_refreshing


# -- display, imports, secrets ---------------------------------------------------------------------


def test_panel_displays_as_its_vbox(panel: ScalingPanel) -> None:
    bundle = panel._repr_mimebundle_()
    assert bundle is not None
    assert bundle["application/vnd.jupyter.widget-view+json"]["model_id"] == panel.widget.model_id
    assert "cc-panel" in panel.widget._dom_classes
    for name, css in [
        ("capacity", "cc-capacity"),
        ("apply_capacity", "cc-apply-capacity"),
        ("autoscale_enabled", "cc-autoscale-enabled"),
        ("apply_autoscale", "cc-apply-autoscale"),
        ("log", "cc-log"),
        ("cost_estimate", "cc-cost"),
        ("instances", "cc-instances"),
    ]:
        assert css in getattr(panel, name)._dom_classes


def test_import_codecapsule_does_not_import_ipywidgets() -> None:
    code = (
        "import sys, codecapsule; codecapsule.Cluster; codecapsule.ClusterSpec; "
        "assert 'ipywidgets' not in sys.modules, 'ipywidgets imported'; "
        "import codecapsule.widgets; assert 'ipywidgets' in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


def test_no_secret_text_in_any_widget(
    panel: ScalingPanel,
    deployed: Cluster,
    arm: FakeARM,
    cloudflare: FakeCloudflare,
) -> None:
    # exercise success and failure paths first, so the log has content
    panel.capacity.value = 2
    panel.apply_capacity.click()
    assert panel.wait_idle(WAIT)
    arm.fail_next("PATCH", f"virtualmachinescalesets/{VMSS}", code="Conflict", message="busy", status=409)
    panel.capacity.value = 3
    panel.apply_capacity.click()
    assert panel.wait_idle(WAIT)

    (tunnel,) = cloudflare.live_tunnels()
    secrets = [cloudflare.api_token, arm.token, cloudflare.tunnel_token(tunnel["id"])]
    with cloudflare.lock:
        secrets += [t["client_secret"] for t in cloudflare.service_tokens.values()]
    assert all(len(s) >= 16 for s in secrets)
    text = all_text(panel)
    assert "failed" in text  # the failure is there...
    for secret in secrets:
        assert secret not in text  # ...but no secret


# -- the admin notebook -------------------------------------------------------------------------------------


@pytest.mark.timeout(300)
def test_admin_notebook_shows_the_panel_when_the_environment_names_a_cluster(
    deployed: Cluster,
    cluster_env: dict[str, str],
    cloudflare: FakeCloudflare,
    arm: FakeARM,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    write_python_kernelspec(tmp_path / "jupyter-path")
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "jupyter-path"))
    for name, value in cluster_env.items():
        if name not in {"PATH", "HOME"}:
            monkeypatch.setenv(name, value)

    nb = nbformat.read(NOTEBOOK, as_version=4)
    nbclient.NotebookClient(
        nb, kernel_name="python3", timeout=240, resources={"metadata": {"path": str(tmp_path)}}
    ).execute()

    def outputs(tag: str) -> list[dict[str, Any]]:
        (cell,) = [c for c in nb.cells if tag in c.metadata.get("tags", [])]
        assert all(o["output_type"] != "error" for o in cell.outputs), cell.outputs
        return list(cell.outputs)

    assert "Connected: <Cluster codecapsule-rg/codecapsule-piston" in outputs("connect")[0]["text"]
    views = [o for o in outputs("panel") if "application/vnd.jupyter.widget-view+json" in o.get("data", {})]
    assert len(views) == 1  # the panel's VBox
    cost = "".join(o.get("text", "") for o in outputs("cost"))  # the kernel may split the prints into chunks
    assert "total" in cost and "Lab hours: Mon,Wed 09:00-12:00: 3..5 VMs" in cost and "labs at min" in cost
    previews = [o for o in outputs("preview") if "application/vnd.jupyter.widget-view+json" in o.get("data", {})]
    assert len(previews) == 1  # the preview panel, without credentials of its own
    assert "Access service token: expires" in outputs("token")[0]["text"]
    (tunnel,) = cloudflare.live_tunnels()
    saved = nbformat.writes(nb)
    for secret in (cloudflare.api_token, arm.token, cloudflare.tunnel_token(tunnel["id"])):
        assert secret not in saved
