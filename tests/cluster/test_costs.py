"""The cost estimate: itemised, at minimum and maximum capacity, clear errors for what it cannot price."""

from __future__ import annotations

import pytest

from codecapsule._errors import InvalidRequest
from codecapsule.cluster.costs import HOURS_PER_MONTH, estimate_cost, known_vm_sizes
from codecapsule.cluster.spec import ClusterSpec


def spec(**changes: object) -> ClusterSpec:
    return ClusterSpec(
        domain="example.edu",
        subscription_id="00000000-0000-0000-0000-000000000000",
        cloudflare_account_id="acc",
    ).with_(**changes)


def item(estimate: object, prefix: str) -> tuple[float, float]:
    (found,) = [i for i in estimate.items if i.name.startswith(prefix)]  # type: ignore[attr-defined]
    return found.monthly_min, found.monthly_max


def test_vms_and_disks_scale_with_capacity_fixed_costs_do_not() -> None:
    est = estimate_cost(spec(location="westeurope", vm_size="Standard_B2s", min_capacity=1, max_capacity=5))
    assert (est.minimum, est.maximum, est.currency) == (1, 5, "USD")
    vm_min, vm_max = item(est, "VMs")
    assert vm_min == pytest.approx(0.0456 * HOURS_PER_MONTH, abs=0.01)
    assert vm_max == pytest.approx(5 * vm_min, abs=0.02)
    disk_min, disk_max = item(est, "OS disks")
    assert disk_max == pytest.approx(5 * disk_min, abs=0.02)
    nat_min, nat_max = item(est, "NAT gateway (hourly)")
    assert nat_min == nat_max == pytest.approx(0.045 * 730, abs=0.01)
    ip_min, ip_max = item(est, "Static public IP")
    assert ip_min == ip_max == pytest.approx(3.65, abs=0.01)
    assert item(est, "Cloudflare") == (0.0, 0.0)
    assert est.total_min == pytest.approx(sum(i.monthly_min for i in est.items), abs=0.01)
    assert est.total_max > est.total_min
    assert any("GB per VM" in a for a in est.assumptions)
    assert any("2025" in a for a in est.assumptions)


def test_fixed_capacity_and_explicit_bounds() -> None:
    fixed = estimate_cost(spec(), capacity=3)
    assert (fixed.minimum, fixed.maximum) == (3, 3)
    assert fixed.total_min == fixed.total_max
    bounds = estimate_cost(spec(), minimum=2, maximum=8)
    assert (bounds.minimum, bounds.maximum) == (2, 8)
    assert item(bounds, "NAT gateway (data")[1] == pytest.approx(4 * item(bounds, "NAT gateway (data")[0])


def test_data_assumption_is_a_parameter() -> None:
    none = estimate_cost(spec(), data_gb_per_instance=0)
    assert item(none, "NAT gateway (data") == (0.0, 0.0)
    lots = estimate_cost(spec(), data_gb_per_instance=100)
    assert item(lots, "NAT gateway (data")[0] == pytest.approx(4.5)


def test_unknown_size_lists_known_sizes_or_takes_a_price() -> None:
    with pytest.raises(InvalidRequest) as info:
        estimate_cost(spec(vm_size="Standard_NC6"))
    message = str(info.value)
    assert "Standard_NC6" in message and "Standard_B2s" in message and "prices=" in message
    est = estimate_cost(spec(vm_size="Standard_NC6"), prices={"Standard_NC6": 1.0})
    assert item(est, "VMs")[0] == pytest.approx(730.0)
    assert "Standard_B2s" in known_vm_sizes("westeurope")


def test_unknown_region_needs_a_price() -> None:
    with pytest.raises(InvalidRequest, match="westeurope"):
        estimate_cost(spec(location="japaneast"))
    est = estimate_cost(spec(location="japaneast"), prices={"Standard_B2s": 0.05})
    assert any("japaneast" in a for a in est.assumptions)


def test_bad_bounds_are_refused() -> None:
    with pytest.raises(InvalidRequest):
        estimate_cost(spec(), minimum=4, maximum=2)
    with pytest.raises(InvalidRequest):
        estimate_cost(spec(), capacity=-1)


def test_text_and_html() -> None:
    est = estimate_cost(spec(), minimum=1, maximum=5)
    text = str(est)
    assert "Standard_B2s" in text and "total" in text and "min 1 VM" in text and "max 5 VMs" in text
    assert f"{est.total_max:.2f}" in text
    html = est._repr_html_()
    assert "<table>" in html and f"{est.total_min:.2f}" in html
    weird = estimate_cost(spec(vm_size="Standard_<b>"), prices={"Standard_<b>": 0.1})
    assert "<b>" not in weird._repr_html_()
