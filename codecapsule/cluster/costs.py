"""A monthly cost estimate for a cluster, itemised, at its minimum and maximum capacity.

Pure arithmetic over a small price table: no network. The prices are Azure pay-as-you-go **list prices in USD
for Linux, as published in 2025 (checked 2025-06)** — approximate, without discounts, reservations, savings
plans or taxes. Check the Azure pricing calculator before you commit a budget; pass
``prices={size: usd_per_hour}``
to use your own VM prices.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from html import escape
from typing import TYPE_CHECKING

from .._errors import InvalidRequest
from .schedule import describe, weekly_hours

if TYPE_CHECKING:
    from .spec import ClusterSpec

__all__ = ["HOURS_PER_MONTH", "PRICES_CHECKED", "CostEstimate", "CostItem", "estimate_cost", "known_vm_sizes"]

HOURS_PER_MONTH = 730  # Azure's own convention for a month
PRICES_CHECKED = "2025-06"
CURRENCY = "USD"
DEFAULT_DATA_GB_PER_INSTANCE = 20.0


@dataclass(frozen=True)
class _RegionPrices:
    vm_hourly: Mapping[str, float]  # Linux pay-as-you-go, per VM per hour
    os_disk_monthly: float  # Standard HDD (Standard_LRS) S4, 32 GiB, per disk per month
    nat_hourly: float  # NAT gateway, per hour
    nat_per_gb: float  # NAT gateway, per GB processed
    public_ip_hourly: float  # Standard static public IPv4, per hour


# Approximate list prices (USD), checked 2025-06. Sizes: the B-series burstable sizes suit a class that is
# idle
# most of the week; the D/F sizes are for heavy compile loads (C++/Java) with a sustained CPU need.
_PRICES: dict[str, _RegionPrices] = {
    "eastus": _RegionPrices(
        vm_hourly={
            "Standard_B1ms": 0.0207,
            "Standard_B2s": 0.0416,
            "Standard_B2ms": 0.0832,
            "Standard_B4ms": 0.166,
            "Standard_D2s_v5": 0.096,
            "Standard_D4s_v5": 0.192,
            "Standard_F2s_v2": 0.0846,
            "Standard_F4s_v2": 0.169,
        },
        os_disk_monthly=1.54,
        nat_hourly=0.045,
        nat_per_gb=0.045,
        public_ip_hourly=0.005,
    ),
    "westeurope": _RegionPrices(
        vm_hourly={
            "Standard_B1ms": 0.0228,
            "Standard_B2s": 0.0456,
            "Standard_B2ms": 0.0912,
            "Standard_B4ms": 0.182,
            "Standard_D2s_v5": 0.115,
            "Standard_D4s_v5": 0.230,
            "Standard_F2s_v2": 0.0960,
            "Standard_F4s_v2": 0.192,
        },
        os_disk_monthly=1.70,
        nat_hourly=0.045,
        nat_per_gb=0.045,
        public_ip_hourly=0.005,
    ),
    "northeurope": _RegionPrices(
        vm_hourly={
            "Standard_B1ms": 0.0218,
            "Standard_B2s": 0.0436,
            "Standard_B2ms": 0.0872,
            "Standard_B4ms": 0.174,
            "Standard_D2s_v5": 0.107,
            "Standard_D4s_v5": 0.214,
            "Standard_F2s_v2": 0.0920,
            "Standard_F4s_v2": 0.184,
        },
        os_disk_monthly=1.64,
        nat_hourly=0.045,
        nat_per_gb=0.045,
        public_ip_hourly=0.005,
    ),
}
_FALLBACK_REGION = "eastus"


def known_vm_sizes(location: str | None = None) -> tuple[str, ...]:
    """The VM sizes the built-in price table knows (for one region, or for any)."""
    if location is not None and location.lower() in _PRICES:
        return tuple(sorted(_PRICES[location.lower()].vm_hourly))
    return tuple(sorted({size for region in _PRICES.values() for size in region.vm_hourly}))


@dataclass(frozen=True)
class CostItem:
    """One line of the estimate: monthly cost at minimum and at maximum capacity."""

    name: str
    monthly_min: float
    monthly_max: float
    note: str = ""


@dataclass(frozen=True)
class CostEstimate:
    """An itemised monthly estimate at minimum and maximum capacity (730 h a month)."""

    vm_size: str
    location: str
    minimum: int
    maximum: int
    items: tuple[CostItem, ...]
    assumptions: tuple[str, ...]
    currency: str = CURRENCY
    hours_per_month: int = HOURS_PER_MONTH
    schedule: str = ""  # the lab hours the estimate follows ("" = the same capacity all month)

    @property
    def total_min(self) -> float:
        return round(sum(item.monthly_min for item in self.items), 2)

    @property
    def total_max(self) -> float:
        return round(sum(item.monthly_max for item in self.items), 2)

    def _columns(self) -> tuple[str, str]:
        if self.schedule:
            return "labs at min", "labs at max"
        if self.minimum == self.maximum:
            label = f"{self.maximum} VM" + ("s" if self.maximum != 1 else "")
            return label, label
        return f"min {self.minimum} VM" + ("s" if self.minimum != 1 else ""), f"max {self.maximum} VMs"

    def __str__(self) -> str:
        low, high = self._columns()
        width = max(len(item.name) for item in self.items) if self.items else 10
        header = f"Monthly estimate for {self.vm_size} in {self.location} ({self.currency}, {self.hours_per_month} h)"
        lines = [header, f"{'':<{width}}  {low:>12}  {high:>12}"]
        for item in self.items:
            lines.append(f"{item.name:<{width}}  {item.monthly_min:>12.2f}  {item.monthly_max:>12.2f}")
        lines.append(f"{'total':<{width}}  {self.total_min:>12.2f}  {self.total_max:>12.2f}")
        lines.append("Assumptions:")
        lines.extend(f"  - {a}" for a in self.assumptions)
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        low, high = self._columns()
        rows = "".join(
            f"<tr><td>{escape(i.name)}</td><td style='text-align:right'>{i.monthly_min:.2f}</td>"
            f"<td style='text-align:right'>{i.monthly_max:.2f}</td><td>{escape(i.note)}</td></tr>"
            for i in self.items
        )
        total = (
            f"<tr><th>total</th><th style='text-align:right'>{self.total_min:.2f}</th>"
            f"<th style='text-align:right'>{self.total_max:.2f}</th><th></th></tr>"
        )
        notes = "".join(f"<li>{escape(a)}</li>" for a in self.assumptions)
        return (
            f"<div class='codecapsule-cost'><p>Monthly estimate for <code>{escape(self.vm_size)}</code> in "
            f"<code>{escape(self.location)}</code> ({escape(self.currency)}, {self.hours_per_month} "
            f"h/month)</p>"
            f"<table><thead><tr><th>item</th><th>{escape(low)}</th><th>{escape(high)}</th><th>note</th></tr>"
            f"</thead><tbody>{rows}{total}</tbody></table><ul>{notes}</ul></div>"
        )


def estimate_cost(
    spec: ClusterSpec,
    *,
    capacity: int | None = None,
    minimum: int | None = None,
    maximum: int | None = None,
    prices: Mapping[str, float] | None = None,
    data_gb_per_instance: float = DEFAULT_DATA_GB_PER_INSTANCE,
) -> CostEstimate:
    """Estimate the monthly cost of ``spec``'s cluster.

    ``capacity`` estimates a fixed size (minimum = maximum = capacity); otherwise ``minimum``/``maximum``
    default
    to the spec's autoscale bounds. ``prices`` maps VM sizes to your own USD-per-hour price (overrides the
    table).
    ``data_gb_per_instance`` is the traffic through the NAT gateway per VM per month (tunnel traffic, image
    and
    package downloads).
    """
    scheduled = bool(spec.schedule) and capacity is None and minimum is None and maximum is None
    if capacity is not None:
        minimum = maximum = capacity
    low = spec.min_capacity if minimum is None else minimum
    high = spec.max_capacity if maximum is None else maximum
    for label, value in (("minimum", low), ("maximum", high)):
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise InvalidRequest(f"cost: {label} capacity must be a whole number ≥ 0, not {value!r}.")
    if low > high:
        raise InvalidRequest(f"cost: minimum capacity {low} is larger than maximum {high}.")
    if data_gb_per_instance < 0:
        raise InvalidRequest("cost: data_gb_per_instance must be ≥ 0.")

    location = spec.location.lower()
    assumptions = [
        f"Approximate Azure pay-as-you-go list prices for Linux in USD, checked {PRICES_CHECKED}; no "
        f"discounts, "
        "reservations or taxes. Check the Azure pricing calculator before committing a budget.",
        f"{HOURS_PER_MONTH} hours a month, every VM running all month (autoscale usually keeps fewer running).",
    ]
    region = _PRICES.get(location)
    if region is None:
        if not prices or spec.vm_size not in prices:
            raise InvalidRequest(
                f"cost: no built-in prices for region {spec.location!r} (known: "
                f"{', '.join(sorted(_PRICES))}); "
                f"pass prices={{{spec.vm_size!r}: <USD per hour>}} to estimate with your own VM price."
            )
        region = _PRICES[_FALLBACK_REGION]
        assumptions.append(
            f"Region {spec.location!r} is not in the table: disk, NAT and public IP prices are {_FALLBACK_REGION}'s."
        )
    if prices and spec.vm_size in prices:
        vm_hourly = float(prices[spec.vm_size])
        assumptions.append(f"VM price {vm_hourly:g} USD/hour for {spec.vm_size} given by the caller.")
    elif spec.vm_size in region.vm_hourly:
        vm_hourly = region.vm_hourly[spec.vm_size]
    else:
        raise InvalidRequest(
            f"cost: no built-in price for VM size {spec.vm_size!r} in {location}; known sizes: "
            f"{', '.join(known_vm_sizes(location))}. Pass prices={{{spec.vm_size!r}: <USD per hour>}} to use "
            f"yours."
        )

    def money(value: float) -> float:
        return round(value, 2)

    vm_month = vm_hourly * HOURS_PER_MONTH
    nat_fixed = region.nat_hourly * HOURS_PER_MONTH
    if scheduled:
        # VM-months: each lab's hours at its min (or max) VMs, the rest of the week at idle_capacity
        per_lab, idle_hours = weekly_hours(spec.schedule)
        low_vms = (sum(h * lab.min for lab, h in per_lab) + idle_hours * spec.idle_capacity) / 168.0
        high_vms = (sum(h * lab.max for lab, h in per_lab) + idle_hours * spec.idle_capacity) / 168.0
        labs = describe(spec.schedule, spec.timezone, spec.idle_capacity)
        assumptions[1] = (
            f"{HOURS_PER_MONTH} hours a month following the lab hours ({labs}): "
            f"on average {low_vms:.2f} VMs with every lab at its min, {high_vms:.2f} at its max; a scale set at 0 "
            "has no VMs and no disks to pay for."
        )
        low_f, high_f = low_vms, high_vms
        low, high = min(lab.min for lab in spec.schedule), max(lab.max for lab in spec.schedule)
    else:
        low_f, high_f = float(low), float(high)
    items = (
        CostItem(
            f"VMs ({spec.vm_size})",
            money(vm_month * low_f),
            money(vm_month * high_f),
            f"{vm_hourly:g} USD/h per VM = {vm_month:.2f}/month",
        ),
        CostItem(
            "OS disks (Standard HDD S4)",
            money(region.os_disk_monthly * low_f),
            money(region.os_disk_monthly * high_f),
            f"{region.os_disk_monthly:.2f}/month per VM",
        ),
        CostItem("NAT gateway (hourly)", money(nat_fixed), money(nat_fixed), f"{region.nat_hourly:g} USD/h"),
        CostItem(
            "NAT gateway (data processed)",
            money(region.nat_per_gb * data_gb_per_instance * low_f),
            money(region.nat_per_gb * data_gb_per_instance * high_f),
            f"{region.nat_per_gb:g} USD/GB, {data_gb_per_instance:g} GB per VM per month assumed",
        ),
        CostItem(
            "Static public IP (NAT outbound)",
            money(region.public_ip_hourly * HOURS_PER_MONTH),
            money(region.public_ip_hourly * HOURS_PER_MONTH),
            f"{region.public_ip_hourly:g} USD/h",
        ),
        CostItem("Cloudflare Tunnel + Access", 0.0, 0.0, "free plan (Zero Trust free tier: up to 50 users)"),
    )
    assumptions.append(
        f"NAT data: {data_gb_per_instance:g} GB per VM per month (all student traffic goes through the "
        f"tunnel's "
        "outbound connections, plus Docker image and runtime downloads); internet egress within Azure's free "
        "100 GB a month."
    )
    assumptions.append("VNet, NSG, autoscale and run command are free.")
    return CostEstimate(
        vm_size=spec.vm_size,
        location=spec.location,
        minimum=low,
        maximum=high,
        items=items,
        assumptions=tuple(assumptions),
        schedule=describe(spec.schedule, spec.timezone, spec.idle_capacity) if scheduled else "",
    )
