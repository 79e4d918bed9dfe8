"""Error policy: every error gets an `extensions.code`; unexpected ones are masked and logged.

Syntax, validation and limit errors, and `RequestError`s raised by resolvers, are the
client's to read and stay as they are. Anything else is an internal error: the client gets a
fixed message with the request id, and the log gets the exception with the same id.
"""

from __future__ import annotations

import contextlib
import logging
import re
from collections.abc import Iterator
from typing import Any

from graphql import GraphQLError
from strawberry.extensions import ParserCache, SchemaExtension

logger = logging.getLogger("loom.graphql")

INTERNAL_ERROR = "INTERNAL_SERVER_ERROR"
PARSE_FAILED = "GRAPHQL_PARSE_FAILED"
VALIDATION_FAILED = "GRAPHQL_VALIDATION_FAILED"

# graphql-core suggests schema names ("Did you mean 'name'?") in validation and variable
# errors; Strawberry's `disable_field_suggestions` removes only the field ones.
_SUGGESTION = re.compile(r" ?Did you mean (?:the enum value )?'[^']*'(?:(?:,| or|, or) '[^']*')*\?")


def is_unexpected(error: GraphQLError) -> bool:
    """An exception from our code that is not a deliberate GraphQL error."""
    original = error.original_error
    return original is not None and not isinstance(original, GraphQLError)


def request_id_of(context: Any) -> str:
    return str(getattr(context, "request_id", "-"))


class ErrorPolicy(SchemaExtension):
    """Gives every error a code and masks unexpected ones (see the module docstring)."""

    def on_operation(self) -> Iterator[None]:
        yield
        self._code(self.execution_context.result)

    def on_stream_result(self, result: Any) -> Iterator[None]:
        """Each result of a subscription, before it is sent: a stream's results reach the
        client long before its operation ends."""
        self._code(result)
        yield

    def _code(self, result: Any) -> None:
        errors = getattr(result, "errors", None)
        if not errors:
            return
        request_id = request_id_of(self.execution_context.context)
        result.errors = [self._coded(error, request_id) for error in errors]

    def _coded(self, error: GraphQLError, request_id: str) -> GraphQLError:
        if is_unexpected(error):
            return GraphQLError(
                f"Internal server error (request id {request_id})",
                nodes=error.nodes,
                source=error.source,
                positions=error.positions,
                path=error.path,
                extensions={"code": INTERNAL_ERROR, "requestId": request_id},
            )
        message = _SUGGESTION.sub("", error.message)
        extensions = dict(error.extensions or {})
        if "code" not in extensions:
            original = error.original_error
            if isinstance(original, GraphQLError) and original.extensions:
                extensions.update(original.extensions)
        if "code" not in extensions:
            is_syntax = error.message.startswith("Syntax Error")
            extensions["code"] = PARSE_FAILED if is_syntax else VALIDATION_FAILED
        return GraphQLError(
            message,
            nodes=error.nodes,
            source=error.source,
            positions=error.positions,
            path=error.path,
            extensions=extensions,
        )


class CachedParse(ParserCache):
    """Strawberry's parser cache, except that a document that fails to parse is left alone.

    `ParserCache` parses on entering the parse step, where a syntax error escapes the
    operation and with it `ErrorPolicy`: the client got a 200 without `extensions.code`.
    Left unparsed, the document is parsed again by Strawberry inside the step, whose errors
    are ordinary results. Only invalid documents pay for the second parse.
    """

    def on_parse(self) -> Iterator[None]:
        context = self.execution_context
        with contextlib.suppress(GraphQLError):
            context.graphql_document = self.cached_parse_document(
                context.query, **context.parse_options
            )
        yield


def log_unexpected(errors: list[GraphQLError], context: Any) -> None:
    """Log unexpected errors with their traceback and the request id the client sees."""
    for error in errors:
        if is_unexpected(error):
            logger.error(
                "unexpected error in %s (request id %s)",
                ".".join(str(part) for part in error.path or ()) or "operation",
                request_id_of(context),
                exc_info=error.original_error,
            )
