"""The errors of outbound HTTP, and aiohttp's translated into them.

Each says what happened in the user's terms, never quoting headers, bodies or a query string,
nor naming a Python or aiohttp class:

    HttpError                   HTTP_ERROR, or the `error_type` it was given
     +-- InvalidUrl             HTTP_INVALID_URL: the URL cannot be requested
     +-- DestinationRefused     HTTP_DESTINATION_REFUSED: the SSRF guard said no
     +-- ResponseTooLarge       HTTP_RESPONSE_TOO_LARGE
"""

from __future__ import annotations

import aiohttp
from yarl import URL

from engine.errors import EngineError
from engine.network_policy import ALLOWED_NETWORKS_SETTING


class HttpError(EngineError):
    """A request that could not be made or completed."""

    def __init__(self, message: str, *, error_type: str = "HTTP_ERROR", retryable: bool = False):
        super().__init__(message)
        self.error_type = error_type
        self.retryable = retryable


class InvalidUrl(HttpError):
    """A URL that cannot be requested; `reason` says why without quoting the URL (its query
    may hold a key)."""

    def __init__(self, reason: str) -> None:
        super().__init__(f"the URL is not valid: {reason}", error_type="HTTP_INVALID_URL")
        self.reason = reason


class DestinationRefused(HttpError):
    """The destination is not allowed (SSRF guard)."""

    def __init__(self, message: str) -> None:
        super().__init__(
            f"{message}; private and local networks are reached only if the server's "
            f"{ALLOWED_NETWORKS_SETTING} setting allows them",
            error_type="HTTP_DESTINATION_REFUSED",
        )


class ResponseTooLarge(HttpError):
    def __init__(self, limit: int) -> None:
        super().__init__(
            f"the response is larger than {limit} bytes", error_type="HTTP_RESPONSE_TOO_LARGE"
        )


def client_error(exc: aiohttp.ClientError, url: URL) -> HttpError:
    """aiohttp's error in words: what failed and where, never the exception's class."""
    where = f"{url.host}:{url.port}"
    if isinstance(exc, aiohttp.ClientSSLError):
        return HttpError(
            f"the TLS connection to {where} failed (its certificate is not trusted, or the "
            "handshake was refused)",
            error_type="HTTP_TLS_FAILED",
        )
    if isinstance(exc, aiohttp.ClientConnectorDNSError):
        return HttpError(
            f"the host name {url.host} could not be resolved",
            error_type="HTTP_CONNECTION_FAILED",
            retryable=True,
        )
    if isinstance(exc, aiohttp.ClientConnectorError):
        message = f"could not connect to {where}"
    elif isinstance(exc, aiohttp.ServerDisconnectedError):
        message = f"{where} closed the connection before answering"
    elif isinstance(exc, aiohttp.ClientPayloadError):
        message = f"the response of {where} was cut short or is malformed"
    elif isinstance(exc, aiohttp.ClientResponseError):
        message = f"the answer of {where} is not valid HTTP"
    elif isinstance(exc, aiohttp.InvalidURL):
        return HttpError("the URL is not valid", error_type="HTTP_INVALID_URL")
    else:
        message = f"the connection to {where} failed"
    return HttpError(message, error_type="HTTP_CONNECTION_FAILED", retryable=True)
