"""Outbound HTTP for nodes: one pooled aiohttp session per process, behind an SSRF guard.

The guard refuses destinations that are not globally routable (loopback, private, link-local
and so cloud metadata at 169.254.169.254, unique-local, carrier-grade NAT, multicast,
reserved), including IPv4 addresses carried in IPv6 (`engine.network_policy`), unless
`LOOM_HTTP_ALLOWED_NETWORKS` opens them. It checks:

- hostnames after DNS resolution, in the connector's resolver: aiohttp connects to exactly
  the addresses the resolver returned, so DNS cannot change between check and connect;
- IP literals (which aiohttp does not resolve) before each request;
- every redirect: Loom follows them itself (at most `max_redirects`). A hop to another
  origin goes without the credential (`Auth`: headers, query parameters, form fields) and
  without `Authorization`, `Proxy-Authorization` and `Cookie` headers, whatever the
  redirect's status; OAuth2 token requests go through here like any other.

Errors (`engine.http_errors`) say what happened in the user's terms.
"""

from __future__ import annotations

import asyncio
import ipaddress
import re
import socket
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urljoin

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import DefaultResolver
from multidict import CIMultiDict
from yarl import URL

from engine import tracing
from engine.credential_domains import allows
from engine.http_errors import (
    DestinationRefused,
    HttpError,
    InvalidUrl,
    ResponseTooLarge,
    client_error,
)
from engine.network_policy import NetworkPolicy

__all__ = [
    "Auth",
    "DestinationRefused",
    "HttpClient",
    "HttpError",
    "HttpResponse",
    "InvalidUrl",
    "NetworkPolicy",
    "ResponseTooLarge",
    "parse_url",
]

CREDENTIAL_HOST_NOT_ALLOWED = "CREDENTIAL_HOST_NOT_ALLOWED"
REDIRECTS = frozenset({301, 302, 303, 307, 308})
# Headers that carry a credential whoever set them (a node's own `Authorization` header, say):
# like browsers and `requests`, they are not sent on after a redirect leaves the origin.
CREDENTIAL_HEADERS = frozenset({"authorization", "proxy-authorization", "cookie"})
_HOST_NAME = re.compile(r"(?:[A-Za-z0-9_-]{1,63}\.)*[A-Za-z0-9_-]{1,63}\.?")
_MAX_HOST_NAME_CHARS = 253
_DIGITS_AND_DOTS = re.compile(r"[0-9.]+")
_HEADER_NAME = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")  # RFC 9110's token
_HEADER_VALUE_FORBIDDEN = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")


def parse_url(text: str) -> URL:
    """An absolute http(s) URL with a host that can be looked up, or `InvalidUrl`."""
    try:
        url = URL(text)
        scheme, host, port = url.scheme, url.raw_host, url.port
    except (ValueError, UnicodeError) as exc:
        raise InvalidUrl(_unreadable(str(exc))) from None
    if scheme not in ("http", "https"):
        raise InvalidUrl("it must start with http:// or https://")
    if not host:
        raise InvalidUrl("it has no host, as in https://example.com/path")
    if port == 0:
        raise InvalidUrl("the port must be a number from 1 to 65535")
    if _DIGITS_AND_DOTS.fullmatch(host) and not _is_ipv4(host):
        # aiohttp refuses `1.2.3` or `2130706433`, which getaddrinfo would read as addresses.
        raise InvalidUrl("the host is not a valid IPv4 address (four numbers from 0 to 255)")
    if ":" not in host and not (len(host) <= _MAX_HOST_NAME_CHARS and _HOST_NAME.fullmatch(host)):
        raise InvalidUrl(
            "the host is not a valid name (letters, digits and hyphens in dot-separated parts "
            "of at most 63 characters, no spaces)"
        )
    return url


def _is_ipv4(host: str) -> bool:
    try:
        ipaddress.IPv4Address(host)
    except ValueError:
        return False
    return True


def _unreadable(problem: str) -> str:
    """yarl's and urllib's reasons for refusing a URL, in the user's terms."""
    lowered = problem.lower()
    if "ipv6" in lowered:
        return "the IPv6 address in brackets is not closed or not valid"
    if "port" in lowered:
        return "the port must be a number from 1 to 65535"
    if "host is required" in lowered:
        return "it has no host, as in https://example.com/path"
    return "it cannot be read as a URL"


def check_literal(policy: NetworkPolicy, host: str) -> None:
    """Refuse a host that is an IP literal outside the policy (names are checked by the
    resolver, after the lookup)."""
    try:
        ip = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return
    refused = policy.refusal(ip)
    if refused is not None:
        raise DestinationRefused(f"destination {host} is not allowed: {refused}")


class GuardedResolver(AbstractResolver):
    """Resolves with `inner` (aiohttp's default resolver) and keeps only permitted
    addresses."""

    def __init__(self, policy: NetworkPolicy, inner: AbstractResolver | None = None) -> None:
        self.policy = policy
        self.inner = inner or DefaultResolver()

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        results = await self.inner.resolve(host, port, family)
        permitted = [result for result in results if self.policy.permits(result["host"])]
        if not permitted:
            # The addresses are not named: they would tell a workflow author about the
            # server's internal network.
            raise DestinationRefused(
                f"destination {host} resolves only to addresses that are not allowed "
                "(private, local or reserved)"
            )
        return permitted

    async def close(self) -> None:
        await self.inner.close()


@dataclass(slots=True)
class HttpResponse:
    status: int
    headers: CIMultiDict[str]
    body: bytes
    url: str


@dataclass(slots=True)
class Auth:
    """What a credential adds to a request: headers, query parameters and form fields (merged
    into a form body). They go to the first URL's origin only: a hop of a redirect to
    another origin is sent without them, whatever the redirect's status."""

    headers: dict[str, str] = field(default_factory=dict)
    query: dict[str, str] = field(default_factory=dict)
    form: dict[str, str] = field(default_factory=dict)
    # The credential's `allowedDomains` (engine.credential_domains, in the compared form):
    # a request that would carry it to another host fails before anything is sent.
    allowed_hosts: tuple[str, ...] | None = None
    name: str = ""


def _origin(url: URL) -> tuple[str, str, int | None]:
    return (url.scheme, url.host or "", url.port)


def _check_headers(headers: Mapping[str, str]) -> None:
    """Refuse what aiohttp would refuse with a bare ValueError, naming the header but never
    quoting its value (it may be a secret)."""
    for name, value in headers.items():
        if not _HEADER_NAME.fullmatch(name):
            raise HttpError(
                f"the header name {name[:100]!r} is not valid (letters, digits and "
                "!#$%&'*+-.^_`|~ only)",
                error_type="HTTP_INVALID_HEADER",
            )
        if _HEADER_VALUE_FORBIDDEN.search(value):
            raise HttpError(
                f"the value of header {name!r} holds a line break or another control character",
                error_type="HTTP_INVALID_HEADER",
            )


class HttpClient:
    """The process's outbound HTTP: one session, opened on first use, closed with the
    process. `resolver` looks names up before the guard checks them (default: aiohttp's)."""

    def __init__(
        self,
        policy: NetworkPolicy,
        *,
        connections: int = 100,
        resolver: AbstractResolver | None = None,
    ) -> None:
        self.policy = policy
        self._connections = connections
        self._resolver = resolver
        self._session: aiohttp.ClientSession | None = None
        self._lock = asyncio.Lock()

    async def session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            async with self._lock:
                if self._session is None or self._session.closed:
                    connector = aiohttp.TCPConnector(
                        resolver=GuardedResolver(self.policy, self._resolver),
                        limit=self._connections,
                    )
                    # No cookie jar: the session serves every workspace, and a cookie one
                    # workspace's request received must never ride on another's.
                    self._session = aiohttp.ClientSession(
                        connector=connector,
                        auto_decompress=True,
                        trust_env=False,
                        cookie_jar=aiohttp.DummyCookieJar(),
                    )
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def request(
        self,
        method: str,
        url: str,
        *,
        headers: Mapping[str, str] | None = None,
        query: Sequence[tuple[str, str]] | None = None,
        data: Any = None,
        json_body: Any = None,
        auth: Auth | None = None,
        timeout_s: float = 30.0,
        max_redirects: int = 5,
        max_bytes: int = 10 * 1024 * 1024,
    ) -> HttpResponse:
        """One request, following redirects itself; the whole exchange within `timeout_s`.

        `auth` goes to the origin of `url` only. Other headers that carry credentials
        (`CREDENTIAL_HEADERS`) are dropped too once a redirect leaves that origin; the body
        follows a 307 or 308 as HTTP says, without `auth.form`.
        """
        current = parse_url(url)
        origin = _origin(current)
        auth = auth or Auth()
        if auth.form and not isinstance(data, Mapping):
            raise ValueError("credential form fields need a form body")  # a caller's bug
        _check_headers({**(headers or {}), **auth.headers})
        session = await self.session()
        try:
            async with asyncio.timeout(timeout_s):
                for hop in range(max_redirects + 1):
                    check_literal(self.policy, current.host or "")
                    request_headers = dict(headers or {})
                    params = list(query or [])
                    body = data
                    if _origin(current) == origin:
                        _check_allowed(auth, current)
                        request_headers.update(auth.headers)
                        params += list(auth.query.items())
                        if auth.form and data is not None:  # a 303 turned it into a GET
                            body = {**data, **auth.form}
                    else:
                        request_headers = {
                            name: value
                            for name, value in request_headers.items()
                            if name.lower() not in CREDENTIAL_HEADERS
                        }
                    # The node run's trace context, unless the request sets its own.
                    tracing.inject(request_headers)
                    async with session.request(
                        method,
                        current,
                        headers=request_headers,
                        params=params or None,
                        data=body,
                        json=json_body,
                        allow_redirects=False,
                    ) as response:
                        location = response.headers.get("Location")
                        if response.status in REDIRECTS and location:
                            if hop == max_redirects:
                                raise HttpError(
                                    f"more than {max_redirects} redirects",
                                    error_type="HTTP_TOO_MANY_REDIRECTS",
                                )
                            current = _redirect_target(current, location)
                            if response.status == 303 or (
                                response.status in (301, 302) and method.upper() == "POST"
                            ):
                                method, data, json_body = "GET", None, None
                            continue
                        content = await _read(response, max_bytes)
                        return HttpResponse(
                            response.status, CIMultiDict(response.headers), content, str(current)
                        )
        except TimeoutError as exc:
            raise HttpError(
                f"no complete response within {timeout_s:g} s",
                error_type="HTTP_TIMEOUT",
                retryable=True,
            ) from exc
        except aiohttp.ClientError as exc:
            raise client_error(exc, current) from exc
        raise AssertionError("unreachable")  # pragma: no cover


def _check_allowed(auth: Auth, url: URL) -> None:
    """Refuse to send the credential to a host outside its `allowedDomains`."""
    if auth.allowed_hosts is None:
        return
    host = url.raw_host or ""
    if not allows(auth.allowed_hosts, host):
        where = ", ".join(auth.allowed_hosts) or "no host (a shared credential needs them)"
        raise HttpError(
            f"credential {auth.name!r} may be sent only to {where} (its allowedDomains), "
            f"not to {host}: nothing was sent",
            error_type=CREDENTIAL_HOST_NOT_ALLOWED,
        )


def _redirect_target(current: URL, location: str) -> URL:
    try:
        return parse_url(urljoin(str(current), location))
    except InvalidUrl as exc:
        raise HttpError(
            f"{current.host} redirected to a URL that cannot be requested: {exc.reason}",
            error_type="HTTP_INVALID_REDIRECT",
        ) from None


async def _read(response: aiohttp.ClientResponse, max_bytes: int) -> bytes:
    declared = response.content_length
    if declared is not None and declared > max_bytes:
        raise ResponseTooLarge(max_bytes)
    chunks: list[bytes] = []
    size = 0
    async for chunk in response.content.iter_chunked(64 * 1024):
        size += len(chunk)
        if size > max_bytes:
            raise ResponseTooLarge(max_bytes)
        chunks.append(chunk)
    return b"".join(chunks)
