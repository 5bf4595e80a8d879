"""The network of a cluster, one class per Azure resource: what it should be (an SDK model) and how what
exists differs from that (an action and a detail). Deploy order: NSG, public IP, NAT gateway, VNet/subnet.

Each class is one unit of :meth:`AzureProvider.resources`: the provider reads it with
``NetworkManagementClient.<operations>.get`` and writes it with ``begin_create_or_update``; nothing about a
resource lives anywhere else (the ids it refers to come from :class:`AzureIds`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from ._sdk import dig, same_id, text

if TYPE_CHECKING:
    from .spec import ClusterSpec

__all__ = ["NETWORK", "AzureIds", "NatGateway", "NetworkUnit", "PublicIP", "SecurityGroup", "VirtualNetwork"]

DENY_RULE = "deny-all-inbound-from-internet"

Diff = tuple[str, str]


@dataclass(frozen=True)
class AzureIds:
    """The ARM ids of a spec's resources (what one resource uses to point at another)."""

    spec: ClusterSpec

    @property
    def resource_group(self) -> str:
        return f"/subscriptions/{self.spec.subscription_id}/resourceGroups/{self.spec.resource_group}"

    def of(self, provider_type: str, name: str) -> str:
        return f"{self.resource_group}/providers/{provider_type}/{name}"

    @property
    def nsg(self) -> str:
        return self.of("Microsoft.Network/networkSecurityGroups", self.spec.nsg_name)

    @property
    def public_ip(self) -> str:
        return self.of("Microsoft.Network/publicIPAddresses", self.spec.public_ip_name)

    @property
    def nat_gateway(self) -> str:
        return self.of("Microsoft.Network/natGateways", self.spec.nat_gateway_name)

    @property
    def subnet(self) -> str:
        return self.of("Microsoft.Network/virtualNetworks", self.spec.vnet_name) + f"/subnets/{self.spec.subnet_name}"

    @property
    def vmss(self) -> str:
        return self.of("Microsoft.Compute/virtualMachineScaleSets", self.spec.vmss_name)


@dataclass(frozen=True)
class NetworkUnit:
    """One network resource of the spec."""

    key: ClassVar[str]  # the unit's key in a walk
    kind: ClassVar[str]  # shown to people
    operations: ClassVar[str]  # the NetworkManagementClient operations group
    spec: ClusterSpec
    ids: AzureIds

    @property
    def name(self) -> str:
        raise NotImplementedError

    def desired(self) -> Any:
        raise NotImplementedError

    def diff(self, current: Any) -> Diff:
        raise NotImplementedError


class SecurityGroup(NetworkUnit):
    """Denies every inbound connection from the internet: cloudflared dials out, nothing needs to dial in."""

    key, kind, operations = "nsg", "network security group", "network_security_groups"

    @property
    def name(self) -> str:
        return self.spec.nsg_name

    def desired(self) -> Any:
        from azure.mgmt.network import models as n

        deny = n.SecurityRule(
            name=DENY_RULE,
            properties=n.SecurityRulePropertiesFormat(
                priority=100,
                direction="Inbound",
                access="Deny",
                protocol="*",
                source_address_prefix="Internet",
                source_port_range="*",
                destination_address_prefix="*",
                destination_port_range="*",
                description="CodeCapsule VMs accept no connections from the internet.",
            ),
        )
        return n.NetworkSecurityGroup(
            location=self.spec.location,
            tags=self.spec.tag_dict,
            properties=n.NetworkSecurityGroupPropertiesFormat(security_rules=[deny]),
        )

    def diff(self, current: Any) -> Diff:
        if current is None:
            return "create", "denies all inbound traffic from the internet"
        for rule in current.security_rules or []:
            if (
                rule.priority == 100
                and text(rule.direction).lower() == "inbound"
                and text(rule.access).lower() == "deny"
                and text(rule.source_address_prefix).lower() == "internet"
                and rule.destination_port_range == "*"
                and rule.protocol == "*"
            ):
                return "unchanged", ""
        return "update", "add the priority-100 rule denying all inbound traffic from the internet"


class PublicIP(NetworkUnit):
    """The NAT gateway's outbound address (Standard, static)."""

    key, kind, operations = "public ip", "public IP", "public_ip_addresses"

    @property
    def name(self) -> str:
        return self.spec.public_ip_name

    def desired(self) -> Any:
        from azure.mgmt.network import models as n

        return n.PublicIPAddress(
            location=self.spec.location,
            tags=self.spec.tag_dict,
            sku=n.PublicIPAddressSku(name="Standard", tier="Regional"),
            properties=n.PublicIPAddressPropertiesFormat(
                public_ip_allocation_method="Static", public_ip_address_version="IPv4"
            ),
        )

    def diff(self, current: Any) -> Diff:
        if current is None:
            return "create", "Standard, static (outbound address of the NAT gateway)"
        if dig(current, "sku", "name") != "Standard" or text(current.public_ip_allocation_method) != "Static":
            return "update", "make it a Standard static address"
        return "unchanged", ""


class NatGateway(NetworkUnit):
    """Outbound internet for the private subnet (apt, Docker's registry, Piston packages, Cloudflare)."""

    key, kind, operations = "nat", "NAT gateway", "nat_gateways"

    @property
    def name(self) -> str:
        return self.spec.nat_gateway_name

    def desired(self) -> Any:
        from azure.mgmt.network import models as n

        return n.NatGateway(
            location=self.spec.location,
            tags=self.spec.tag_dict,
            sku=n.NatGatewaySku(name="Standard"),
            properties=n.NatGatewayPropertiesFormat(
                public_ip_addresses=[n.SubResource(id=self.ids.public_ip)], idle_timeout_in_minutes=4
            ),
        )

    def diff(self, current: Any) -> Diff:
        if current is None:
            return "create", f"outbound internet access for subnet {self.spec.subnet_name}"
        if not any(same_id(ref.id, self.ids.public_ip) for ref in current.public_ip_addresses or []):
            return "update", f"attach public IP {self.spec.public_ip_name}"
        return "unchanged", ""


class VirtualNetwork(NetworkUnit):
    """The VNet with its one private subnet, behind the NSG and the NAT gateway."""

    key, kind, operations = "vnet", "virtual network", "virtual_networks"

    @property
    def name(self) -> str:
        return self.spec.vnet_name

    def desired(self) -> Any:
        from azure.mgmt.network import models as n

        s = self.spec
        # New subnets are private (no default outbound access): the NAT gateway gives the VMs their way out to
        # Cloudflare, Docker's registry and apt; the NSG keeps inbound closed.
        subnet = n.Subnet(
            name=s.subnet_name,
            properties=n.SubnetPropertiesFormat(
                address_prefix=s.subnet_prefix,
                network_security_group=n.NetworkSecurityGroup(id=self.ids.nsg),
                nat_gateway=n.SubResource(id=self.ids.nat_gateway),
                default_outbound_access=False,
            ),
        )
        return n.VirtualNetwork(
            location=s.location,
            tags=s.tag_dict,
            properties=n.VirtualNetworkPropertiesFormat(
                address_space=n.AddressSpace(address_prefixes=[s.vnet_prefix]), subnets=[subnet]
            ),
        )

    def diff(self, current: Any) -> Diff:
        s = self.spec
        if current is None:
            return "create", f"{s.vnet_prefix}, private subnet {s.subnet_name} {s.subnet_prefix} with NSG and NAT"
        problems = []
        if s.vnet_prefix not in (dig(current, "address_space", "address_prefixes") or []):
            problems.append(f"address space {s.vnet_prefix}")
        subnet = next((x for x in current.subnets or [] if str(x.name).lower() == s.subnet_name.lower()), None)
        if subnet is None:
            problems.append(f"add subnet {s.subnet_name}")
        else:
            if subnet.address_prefix != s.subnet_prefix:
                problems.append(f"subnet prefix {s.subnet_prefix}")
            if not same_id(dig(subnet, "network_security_group", "id"), self.ids.nsg):
                problems.append(f"attach NSG {s.nsg_name}")
            if not same_id(dig(subnet, "nat_gateway", "id"), self.ids.nat_gateway):
                problems.append(f"attach NAT gateway {s.nat_gateway_name}")
        return ("update", ", ".join(problems)) if problems else ("unchanged", "")


#: The network resources in deploy order (each refers only to earlier ones).
NETWORK: tuple[type[NetworkUnit], ...] = (SecurityGroup, PublicIP, NatGateway, VirtualNetwork)
