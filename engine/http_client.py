"""Outbound HTTP for nodes: one pooled aiohttp session per process, behind an SSRF guard.

The guard refuses destinations that are not globally routable (loopback, private, link-local
and so cloud metadata at 169.254.169.254, unique-local, carrier-grade NAT, multicast,
reserved), including IPv4 addresses mapped into IPv6 or NAT64, unless
`LOOM_HTTP_ALLOWED_NETWORKS` opens them. It checks:

- hostnames after DNS resolution, in the connector's resolver: aiohttp connects to exactly
  the addresses the resolver returned, so DNS cannot change between check and connect;
- IP literals (which aiohttp does not resolve) before each request;
- every redirect: Loom follows them itself (at most `max_redirects`), and drops the
  credential's headers and query parameters when a redirect leaves the origin.

Errors (`HttpError` and subclasses) say what happened without quoting headers or bodies.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urljoin

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import DefaultResolver
from multidict import CIMultiDict
from yarl import URL

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

REDIRECTS = frozenset({301, 302, 303, 307, 308})
_NAT64 = ipaddress.ip_network("64:ff9b::/96")


class HttpError(Exception):
    """A request that could not be made or completed."""

    def __init__(self, message: str, *, error_type: str = "HTTP_ERROR", retryable: bool = False):
        super().__init__(message)
        self.error_type = error_type
        self.retryable = retryable


class DestinationRefused(HttpError):
    """The destination is not allowed (SSRF guard)."""

    def __init__(self, message: str) -> None:
        super().__init__(message, error_type="HTTP_DESTINATION_REFUSED")


class ResponseTooLarge(HttpError):
    def __init__(self, limit: int) -> None:
        super().__init__(
            f"the response is larger than {limit} bytes", error_type="HTTP_RESPONSE_TOO_LARGE"
        )


def _unmapped(address: IPAddress) -> IPAddress:
    """The IPv4 address inside an IPv4-mapped or NAT64 IPv6 address, else the address."""
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return address.ipv4_mapped
        if address in _NAT64:
            return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return address


@dataclass(frozen=True)
class NetworkPolicy:
    """Which destinations requests may reach."""

    allowed: tuple[IPNetwork, ...] = ()

    @classmethod
    def from_strings(cls, networks: Iterable[str]) -> NetworkPolicy:
        return cls(tuple(ipaddress.ip_network(network, strict=False) for network in networks))

    def permits(self, address: str | IPAddress) -> bool:
        ip = ipaddress.ip_address(address) if isinstance(address, str) else address
        ip = _unmapped(ip)
        if any(ip.version == network.version and ip in network for network in self.allowed):
            return True
        return ip.is_global and not ip.is_multicast

    def check_literal(self, host: str) -> None:
        """Refuse a host that is an IP literal outside the policy (names are checked by the
        resolver)."""
        try:
            ip = ipaddress.ip_address(host.strip("[]"))
        except ValueError:
            return
        if not self.permits(ip):
            raise DestinationRefused(f"destination {host} is not allowed (private or local)")


class GuardedResolver(AbstractResolver):
    """Resolves with aiohttp's default resolver and keeps only permitted addresses."""

    def __init__(self, policy: NetworkPolicy, inner: AbstractResolver | None = None) -> None:
        self.policy = policy
        self.inner = inner or DefaultResolver()

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        results = await self.inner.resolve(host, port, family)
        permitted = [result for result in results if self.policy.permits(result["host"])]
        if not permitted:
            raise DestinationRefused(
                f"destination {host} resolves only to addresses that are not allowed"
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
    """What a credential adds to a request, dropped when a redirect leaves `origin`."""

    headers: dict[str, str] = field(default_factory=dict)
    query: dict[str, str] = field(default_factory=dict)


def _origin(url: URL) -> tuple[str, str, int | None]:
    return (url.scheme, url.host or "", url.port)


class HttpClient:
    """The process's outbound HTTP: one session, opened on first use, closed with the
    process."""

    def __init__(self, policy: NetworkPolicy, *, connections: int = 100) -> None:
        self.policy = policy
        self._connections = connections
        self._session: aiohttp.ClientSession | None = None
        self._lock = asyncio.Lock()

    async def session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            async with self._lock:
                if self._session is None or self._session.closed:
                    connector = aiohttp.TCPConnector(
                        resolver=GuardedResolver(self.policy), limit=self._connections
                    )
                    self._session = aiohttp.ClientSession(
                        connector=connector, auto_decompress=True, trust_env=False
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
        """One request, following redirects itself; the whole exchange within `timeout_s`."""
        session = await self.session()
        current = URL(url)
        origin = _origin(current)
        auth = auth or Auth()
        try:
            async with asyncio.timeout(timeout_s):
                for hop in range(max_redirects + 1):
                    if current.scheme not in ("http", "https") or not current.host:
                        raise HttpError(f"only http and https URLs can be requested: {current}")
                    self.policy.check_literal(current.host)
                    same_origin = _origin(current) == origin
                    request_headers = dict(headers or {})
                    params = list(query or [])
                    if same_origin:
                        request_headers.update(auth.headers)
                        params += list(auth.query.items())
                    async with session.request(
                        method,
                        current,
                        headers=request_headers,
                        params=params or None,
                        data=data,
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
                            current = URL(urljoin(str(current), location))
                            if response.status == 303 or (
                                response.status in (301, 302) and method.upper() == "POST"
                            ):
                                method, data, json_body = "GET", None, None
                            continue
                        body = await _read(response, max_bytes)
                        return HttpResponse(
                            response.status, CIMultiDict(response.headers), body, str(current)
                        )
        except TimeoutError as exc:
            raise HttpError(
                f"no complete response within {timeout_s:g} s",
                error_type="HTTP_TIMEOUT",
                retryable=True,
            ) from exc
        except DestinationRefused:
            raise
        except aiohttp.ClientConnectorError as exc:
            if isinstance(exc.__cause__, DestinationRefused):
                raise exc.__cause__ from None
            raise HttpError(
                f"could not connect to {current.host}:{current.port}",
                error_type="HTTP_CONNECTION_FAILED",
                retryable=True,
            ) from exc
        except aiohttp.ClientError as exc:
            raise HttpError(
                f"the request to {current.host} failed ({type(exc).__name__})",
                error_type="HTTP_CONNECTION_FAILED",
                retryable=True,
            ) from exc
        raise AssertionError("unreachable")  # pragma: no cover


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
