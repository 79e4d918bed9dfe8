"""The hosts a credential may be sent to (its `allowedDomains`), compared as the HTTP client
sees them.

An entry is a host name (`api.example.com`), a wildcard for the names under one
(`*.example.com`: `a.example.com` and `a.b.example.com`, not `example.com` itself) or an IP
address. Entries and request hosts are compared in one normal form, the one yarl gives the
HTTP client (`engine.http_client.parse_url`): lower case, international names in their
ASCII (punycode) form, no trailing dot, IPv6 addresses compressed and without brackets.
Ports, user names and paths are not part of a host: an entry that has one is refused, and a
request's are ignored.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, Sequence

from yarl import URL

from engine.errors import EngineError

MAX_DOMAINS = 100
MAX_DOMAIN_CHARS = 253
_LABEL = r"[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?"
_HOST_NAME = re.compile(rf"(?:{_LABEL}\.)*{_LABEL}")


class InvalidDomain(EngineError, ValueError):
    """An `allowedDomains` entry that is not a host name, wildcard or IP address."""


def normal_host(host: str) -> str:
    """A request's host (yarl's `raw_host`, or any spelling of it) in the compared form."""
    text = host.strip().strip("[]").lower().rstrip(".")
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        pass
    try:
        raw = URL.build(scheme="http", host=text).raw_host
    except (ValueError, UnicodeError):
        return text
    return (raw or text).rstrip(".")


def normal_entry(entry: str) -> str:
    """An `allowedDomains` entry in the compared form, or `InvalidDomain` saying why not."""
    text = entry.strip()
    if not text or len(text) > MAX_DOMAIN_CHARS:
        raise InvalidDomain(f"must be a host name of 1 to {MAX_DOMAIN_CHARS} characters")
    if any(mark in text for mark in ("/", "@", "?", "#", " ")) or (
        text.count(":") == 1 and not text.startswith("[")
    ):
        raise InvalidDomain(
            f"{text[:100]!r} must be a host name alone, without scheme, port, user or path "
            "(as api.example.com or *.example.com)"
        )
    wildcard = text.startswith("*.")
    name = text[2:] if wildcard else text
    try:
        address = ipaddress.ip_address(name.strip("[]"))
    except ValueError:
        address = None
    if address is not None:
        if wildcard:
            raise InvalidDomain(f"{text[:100]!r}: a wildcard applies to names, not addresses")
        return str(address)
    if "*" in name:
        raise InvalidDomain(f"{text[:100]!r}: `*.` may only begin an entry, as *.example.com")
    normal = normal_host(name)
    if not _HOST_NAME.fullmatch(normal):
        raise InvalidDomain(
            f"{text[:100]!r} is not a host name (letters, digits and hyphens in dot-separated "
            "parts of at most 63 characters)"
        )
    if wildcard and "." not in normal:
        raise InvalidDomain(f"{text[:100]!r}: a wildcard needs a domain, as *.example.com")
    return f"*.{normal}" if wildcard else normal


def normal_entries(entries: Iterable[str]) -> list[str]:
    """The entries in the compared form, each once, in the order given."""
    found: list[str] = []
    for entry in entries:
        normal = normal_entry(entry)
        if normal not in found:
            found.append(normal)
    if len(found) > MAX_DOMAINS:
        raise InvalidDomain(f"at most {MAX_DOMAINS} entries")
    return found


def allows(entries: Sequence[str], host: str) -> bool:
    """Whether a request to `host` may carry a credential with these `allowedDomains`
    (entries in the compared form)."""
    normal = normal_host(host)
    for entry in entries:
        if entry.startswith("*."):
            if normal.endswith(entry[1:]):
                return True
        elif normal == entry:
            return True
    return False
