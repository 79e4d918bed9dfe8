"""A credential's `allowedDomains`: entries and request hosts compared in one normal form."""

from __future__ import annotations

import pytest

from engine.credential_domains import InvalidDomain, allows, normal_entries, normal_entry
from engine.http_client import parse_url


@pytest.mark.parametrize(
    ("entry", "normal"),
    [
        ("API.Example.COM", "api.example.com"),
        ("api.example.com.", "api.example.com"),
        ("Bücher.example", "xn--bcher-kva.example"),
        ("*.Example.com", "*.example.com"),
        ("127.0.0.1", "127.0.0.1"),
        ("[::FFFF:7F00:1]", "::ffff:7f00:1"),
        ("::1", "::1"),
    ],
)
def test_entries_are_kept_in_normal_form(entry: str, normal: str) -> None:
    assert normal_entry(entry) == normal


@pytest.mark.parametrize(
    "entry",
    [
        "",
        "https://api.example.com",
        "api.example.com:443",
        "user@api.example.com",
        "api.example.com/path",
        "*.127.0.0.1",
        "api.*.com",
        "*",
        "*.com.",
        "bad_host!.com",
        "[::1]:8080",
    ],
)
def test_an_entry_that_is_not_a_host_is_refused(entry: str) -> None:
    with pytest.raises(InvalidDomain):
        normal_entry(entry)


def test_entries_are_kept_once() -> None:
    assert normal_entries(["A.com", "a.com.", "b.com"]) == ["a.com", "b.com"]


@pytest.mark.parametrize(
    ("url", "allowed"),
    [
        ("https://api.example.com/x", True),
        ("https://API.EXAMPLE.COM./x", True),
        ("https://api.example.com:8443/x", True),  # the port is not part of the host
        ("https://user:pw@api.example.com/x", True),
        ("https://api.example.com@evil.test/x", False),  # evil.test is the host
        ("https://evil.test/api.example.com", False),
        ("https://api.example.com.evil.test/", False),
        ("https://xapi.example.com/", False),
        ("https://a.b.svc.example.org/", True),  # under the wildcard
        ("https://svc.example.org/", False),  # the wildcard's domain itself is not
        ("https://notexample.org/", False),
        ("https://BÜCHER.example/", True),
        ("https://xn--bcher-kva.example/", True),
        ("http://127.0.0.1:8080/", True),
        ("http://[::ffff:127.0.0.1]/", False),  # another address
        ("http://[0:0:0:0:0:0:0:1]/", True),
    ],
)
def test_request_hosts_compare_as_the_http_client_sees_them(url: str, allowed: bool) -> None:
    entries = normal_entries(["api.example.com", "*.svc.example.org", "bücher.example"])
    entries += normal_entries(["127.0.0.1", "::1"])
    host = parse_url(url).raw_host or ""
    assert allows(entries, host) is allowed
