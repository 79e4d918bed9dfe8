"""Request-level errors: bad arguments and limits, reported as GraphQL errors with a code.

Expected outcomes of mutations (not found, invalid graph, stale version) are not errors but
union results; unexpected exceptions are masked by `schema.extensions.ErrorPolicy`.
"""

from __future__ import annotations

from graphql import GraphQLError

BAD_USER_INPUT = "BAD_USER_INPUT"
INVALID_CURSOR = "INVALID_CURSOR"
UNAUTHENTICATED = "UNAUTHENTICATED"
FORBIDDEN = "FORBIDDEN"


class RequestError(GraphQLError):
    """A problem with the request itself; shown to the client as is, with `extensions.code`."""

    def __init__(self, message: str, code: str = BAD_USER_INPUT, **extensions: object) -> None:
        super().__init__(message, extensions={"code": code, **extensions})
