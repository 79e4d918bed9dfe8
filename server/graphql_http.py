"""GraphQL over HTTP: the media type and status code of a response, as the GraphQL-over-HTTP
spec says.

- The response is `application/graphql-response+json` when the client's `Accept` header
  prefers it, otherwise `application/json` (also without an `Accept` header, with `*/*`, and
  when the two tie: every client reads `application/json`).
- A GraphQL request error (the document does not parse or validate, no operation can be
  chosen, a variable does not coerce) has no `data` entry. With `application/json` it is a
  200, as every GraphQL response to a well-formed HTTP request; with
  `application/graphql-response+json` it is a 400.
- Requests that are not well-formed GraphQL-over-HTTP requests (a body that is not JSON, no
  `query`, an operation the method cannot run) are 4xx whatever the media type.
- GET runs queries, POST queries and mutations. A mutation over GET is a 405; a subscription
  over HTTP is a 400 that names the websocket endpoint, where Loom streams subscriptions.
"""

from __future__ import annotations

import mimeparse
from cross_web import HTTPException
from starlette.datastructures import URL
from strawberry.types import ExecutionResult
from strawberry.types.graphql import OperationType

APPLICATION_JSON = "application/json"
GRAPHQL_RESPONSE_JSON = "application/graphql-response+json"
# In rising order of preference for a tie: the last one wins it.
_PRODUCED = [GRAPHQL_RESPONSE_JSON, APPLICATION_JSON]


def response_media_type(accept: str | None) -> str:
    """The media type to answer with, given the request's `Accept` header."""
    if not accept:
        return APPLICATION_JSON
    try:
        chosen: str = mimeparse.best_match(_PRODUCED, accept)
    except mimeparse.MimeTypeParseException:
        return APPLICATION_JSON  # an unreadable header is treated as no header
    # Neither accepted: the spec lets a server answer 406 or `application/json`; the latter
    # still lets a client that sent a stray Accept header read the answer.
    return chosen or APPLICATION_JSON


def is_request_error(result: ExecutionResult) -> bool:
    """An error raised before execution began: no data, and no error belongs to a field.

    The GraphQL spec gives every field error a `path`; parse, validation, operation and
    variable errors have none.
    """
    if result.data is not None or not result.errors:
        return False
    return all(error.path is None for error in result.errors)


def status_code(result: ExecutionResult, media_type: str) -> int:
    """The HTTP status of a response carrying `result`."""
    if media_type == GRAPHQL_RESPONSE_JSON and is_request_error(result):
        return 400
    return 200


def http_operation_types(method: str) -> set[OperationType]:
    """The operations a request with this method may run."""
    return (
        {OperationType.QUERY} if method == "GET" else {OperationType.QUERY, OperationType.MUTATION}
    )


class RefusedOperation(HTTPException):
    """An operation this HTTP request cannot run, with the error code and headers to send."""

    def __init__(
        self, status_code: int, reason: str, code: str, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(status_code, reason)
        self.code = code
        self.headers = headers or {}


def refusal(operation_type: OperationType, url: URL) -> RefusedOperation:
    """Why a request to `url` cannot run an operation of `operation_type`, and what to do."""
    if operation_type is OperationType.SUBSCRIPTION:
        websocket_url = url.replace(scheme="wss" if url.scheme == "https" else "ws", query="")
        return RefusedOperation(
            400,
            "Subscriptions run over a websocket, not over HTTP: connect to "
            f"{websocket_url} with the graphql-transport-ws protocol (as GraphiQL and the "
            "graphql-ws library do).",
            "WEBSOCKET_REQUIRED",
        )
    return RefusedOperation(
        405,
        f"{operation_type.value.capitalize()}s need POST: GET runs queries only.",
        "METHOD_NOT_ALLOWED",
        {"Allow": "POST"},
    )
