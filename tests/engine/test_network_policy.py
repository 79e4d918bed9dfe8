"""The SSRF policy on its own (no I/O): every IPv6 form that carries an IPv4 address is
judged by the IPv4 address it carries; other non-global forms are refused; public ones pass."""

from __future__ import annotations

import ipaddress

import pytest

from engine.network_policy import NetworkPolicy, carried_ipv4

DEFAULT = NetworkPolicy()

REFUSED = [
    # (address, why), the form named first
    ("::127.0.0.1", "an IPv6 form of 127.0.0.1, a loopback address"),  # IPv4-compatible
    ("::10.0.0.1", "an IPv6 form of 10.0.0.1, a private address"),
    ("::ffff:127.0.0.1", "an IPv6 form of 127.0.0.1, a loopback address"),  # IPv4-mapped
    ("::ffff:169.254.169.254", "an IPv6 form of 169.254.169.254, a link-local address"),
    ("::ffff:0:7f00:1", "an IPv6 form of 127.0.0.1, a loopback address"),  # IPv4-translated
    ("::ffff:0:a9fe:a9fe", "an IPv6 form of 169.254.169.254, a link-local address"),
    ("2002:7f00:1::1", "an IPv6 form of 127.0.0.1, a loopback address"),  # 6to4
    ("2002:a00:1::", "an IPv6 form of 10.0.0.1, a private address"),
    ("2002:6440:1::1", "an IPv6 form of 100.64.0.1, a carrier-grade NAT address"),
    # Teredo: server 127.0.0.1 (bits 32-63); client 8.8.8.8 (last 32 bits inverted).
    ("2001:0:7f00:1::f7f7:f7f7", "an IPv6 form of 127.0.0.1, a loopback address"),
    # Teredo: server 8.8.8.8; client 127.0.0.1, stored inverted as 80ff:fffe.
    ("2001:0:808:808::80ff:fffe", "an IPv6 form of 127.0.0.1, a loopback address"),
    ("64:ff9b::7f00:1", "an IPv6 form of 127.0.0.1, a loopback address"),  # NAT64 well-known
    ("64:ff9b::a9fe:a9fe", "an IPv6 form of 169.254.169.254, a link-local address"),
    # NAT64 local-use: the prefix length is the network's; every reading must pass.
    ("64:ff9b:1::7f00:1", "a local-use NAT64 address that may carry 0.0.0.0"),
    # Read with a /48 prefix, 8.8.8.8; with /56 8.8.8.0; /64 8.8.0.127; /96 127.0.0.1.
    ("64:ff9b:1:808:8:800:7f00:1", "a local-use NAT64 address that may carry 127.0.0.1"),
    ("2001:4860::5efe:7f00:1", "an ISATAP address of 127.0.0.1, a loopback address"),
    ("2001:4860::200:5efe:a00:1", "an ISATAP address of 10.0.0.1, a private address"),
    ("fd00::5efe:808:808", "a private address"),  # ISATAP in a unique-local prefix
    ("::1", "a loopback address"),
    ("::", "an unspecified address"),
    ("::1:0:1", "a reserved address"),  # reserved space, not a known form
    ("100::1", "a private address"),  # discard-only
    ("fec0::1", "a reserved address"),  # deprecated site-local
    ("fe80::1", "a link-local address"),
    ("fd12:3456::1", "a private address"),
    ("ff0e::1", "a multicast address"),
    ("2001:db8::1", "a private address"),  # documentation
    ("127.0.0.1", "a loopback address"),
    ("169.254.169.254", "a link-local address (cloud metadata services live there)"),
    ("100.64.0.1", "a carrier-grade NAT address"),
    ("224.0.0.1", "a multicast address"),
]

PERMITTED = [
    "8.8.8.8",
    "2001:4860:4860::8888",
    "::8.8.8.8",
    "::ffff:8.8.8.8",
    "::ffff:0:808:808",
    "2002:808:808::1",
    "64:ff9b::808:808",
    "2001:0:808:808::f7f7:f7f7",  # Teredo: server and client 8.8.8.8
    "2001:4860::200:5efe:808:808",  # ISATAP naming a public address
]


@pytest.mark.parametrize(("address", "why"), REFUSED, ids=[address for address, _ in REFUSED])
def test_forms_carrying_or_being_a_local_address_are_refused(address: str, why: str) -> None:
    refusal = DEFAULT.refusal(address)
    assert refusal is not None and refusal.startswith(why), refusal
    assert not DEFAULT.permits(address)


@pytest.mark.parametrize("address", PERMITTED)
def test_public_addresses_in_every_form_are_permitted(address: str) -> None:
    assert DEFAULT.refusal(address) is None


def test_an_allowed_ipv4_network_is_allowed_in_every_form_that_carries_it() -> None:
    policy = NetworkPolicy.from_strings(["127.0.0.0/8"])
    for address in ("127.0.0.1", "::127.0.0.1", "::ffff:127.0.0.1", "2002:7f00:1::1"):
        assert policy.permits(address), address
    assert not policy.permits("::1")  # IPv6 loopback is another network
    assert not policy.permits("::ffff:10.0.0.1")


def test_an_allowed_ipv6_network_is_allowed_as_written() -> None:
    policy = NetworkPolicy.from_strings(["64:ff9b:1::/48"])
    assert policy.permits("64:ff9b:1::7f00:1")


def test_teredo_gives_the_server_and_the_inverted_client() -> None:
    address = ipaddress.IPv6Address("2001:0:4136:e378:8000:63bf:3fff:fdd2")
    assert carried_ipv4(address) == (
        ipaddress.IPv4Address("65.54.227.120"),
        ipaddress.IPv4Address("192.0.2.45"),
    )
