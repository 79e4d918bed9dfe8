"""Which IP addresses outbound requests may reach (the SSRF policy), decided without I/O.

An address is refused unless it is globally routable unicast or inside a network the
operator allowed (`LOOM_HTTP_ALLOWED_NETWORKS`). Several IPv6 forms carry an IPv4 address,
and a connection to one ends at that IPv4 address (through the host's own stack, a NAT64
gateway or a tunnel relay), so each is decoded and the IPv4 rules apply to what it carries:

    form                        prefix                 the IPv4 address
    IPv4-mapped                 ::ffff:0:0/96          the last 32 bits
    IPv4-translated (SIIT)      ::ffff:0:0:0/96        the last 32 bits
    IPv4-compatible             ::/96                  the last 32 bits
    NAT64, well-known prefix    64:ff9b::/96           the last 32 bits
    NAT64, local-use prefix     64:ff9b:1::/48         where RFC 6052 puts it for the
                                                       operator's prefix length (48, 56,
                                                       64 or 96): unknown here, so every
                                                       one of those places must pass
    6to4                        2002::/16              bits 16-47
    Teredo                      2001::/32              the server (bits 32-63) and the
                                                       client (the last 32 bits, inverted):
                                                       both must pass

The prefixes above exist only to carry IPv4, so what they carry decides. Any other IPv6
address outside global unicast (2000::/3) is refused: the rest of the space is reserved, and
a form that cannot be decoded there cannot be judged safe. A global address whose interface
identifier is ISATAP's (0:5efe or 200:5efe, the IPv4 address in the last 32 bits) must pass
both as itself and for the IPv4 address it names, since the site's ISATAP router delivers it
there.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

# The setting that opens networks; refusals name it so an operator knows what to change.
ALLOWED_NETWORKS_SETTING = "LOOM_HTTP_ALLOWED_NETWORKS"

_GLOBAL_UNICAST = ipaddress.IPv6Network("2000::/3")
_SHARED_ADDRESS_SPACE = ipaddress.IPv4Network("100.64.0.0/10")  # carrier-grade NAT
_LAST_32_BITS = tuple(
    ipaddress.IPv6Network(prefix)
    for prefix in ("::ffff:0:0/96", "::ffff:0:0:0/96", "::/96", "64:ff9b::/96")
)
_NAT64_LOCAL_USE = ipaddress.IPv6Network("64:ff9b:1::/48")
# RFC 6052, section 2.2: which bytes of the address hold the IPv4 address for each prefix
# length (byte 8, bits 64-71, is always skipped).
_RFC6052_BYTES = {
    48: (6, 7, 9, 10),
    56: (7, 9, 10, 11),
    64: (9, 10, 11, 12),
    96: (12, 13, 14, 15),
}
_ISATAP_INTERFACE_IDS = (0x00005EFE, 0x02005EFE)


def carried_ipv4(address: ipaddress.IPv6Address) -> tuple[ipaddress.IPv4Address, ...] | None:
    """The IPv4 addresses an IPv6 address carries (every candidate, when its place is not
    known), or None when it is not one of the forms that carry one."""
    if address.ipv4_mapped is not None:
        return (address.ipv4_mapped,)
    if address.sixtofour is not None:
        return (address.sixtofour,)
    if address.teredo is not None:
        server, client = address.teredo  # `ipaddress` already inverts the client's bits
        return (server, client)
    if any(address in prefix for prefix in _LAST_32_BITS):  # all IPv6: `in` is safe
        return (ipaddress.IPv4Address(int(address) & 0xFFFFFFFF),)
    if address in _NAT64_LOCAL_USE:
        packed = address.packed
        return tuple(
            ipaddress.IPv4Address(bytes(packed[index] for index in places))
            for places in _RFC6052_BYTES.values()
        )
    return None


def isatap_ipv4(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address in an ISATAP interface identifier, if the address has one."""
    if (int(address) >> 32) & 0xFFFFFFFF in _ISATAP_INTERFACE_IDS:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return None


def _kind(address: IPAddress) -> str:
    """Why an address is not globally routable, in a few words."""
    if address.is_unspecified:
        return "an unspecified address"
    if address.is_loopback:
        return "a loopback address"
    if address.is_link_local:
        return "a link-local address (cloud metadata services live there)"
    if address.is_multicast:
        return "a multicast address"
    if address.version == 4 and address in _SHARED_ADDRESS_SPACE:
        return "a carrier-grade NAT address"
    if address.is_private:
        return "a private address"
    return "a reserved address"


@dataclass(frozen=True)
class NetworkPolicy:
    """Which destinations requests may reach: global unicast, and `allowed`."""

    allowed: tuple[IPNetwork, ...] = ()

    @classmethod
    def from_strings(cls, networks: Iterable[str]) -> NetworkPolicy:
        return cls(tuple(ipaddress.ip_network(network, strict=False) for network in networks))

    def permits(self, address: str | IPAddress) -> bool:
        return self.refusal(address) is None

    def refusal(self, address: str | IPAddress) -> str | None:
        """Why requests may not reach `address`, or None when they may."""
        ip = ipaddress.ip_address(address) if isinstance(address, str) else address
        if any(ip.version == network.version and ip in network for network in self.allowed):
            return None
        if isinstance(ip, ipaddress.IPv4Address):
            return None if ip.is_global and not ip.is_multicast else _kind(ip)
        if ip.is_loopback or ip.is_unspecified:
            return _kind(ip)
        carried = carried_ipv4(ip)
        if carried is not None:
            local_use = ip in _NAT64_LOCAL_USE
            form = "a local-use NAT64 address that may carry" if local_use else "an IPv6 form of"
            for ipv4 in carried:
                if (refused := self.refusal(ipv4)) is not None:
                    return f"{form} {ipv4}, {refused}"
            return None
        if ip not in _GLOBAL_UNICAST or not ip.is_global or ip.is_multicast:
            return _kind(ip)
        isatap = isatap_ipv4(ip)
        if isatap is not None and (refused := self.refusal(isatap)) is not None:
            return f"an ISATAP address of {isatap}, {refused}"
        return None
