"""What an operator sees of a Loom process: its log format, access log and traces.

`configure_logging` and `configure_tracing` run once as `loom serve` or `loom worker` starts
(docs/operations.md, "Tracing" and "Logs"); `RequestObservation` is the API's middleware
that gives each HTTP request an id for its log lines, a span, and an access log line.
OpenTelemetry is imported only when tracing is on, python-json-logger only for JSON logs.
"""

from __future__ import annotations

import logging
import time
import uuid
from typing import IO, TYPE_CHECKING, Any

from engine import log_context, tracing

if TYPE_CHECKING:
    from starlette.middleware import Middleware
    from starlette.types import ASGIApp, Message, Receive, Scope, Send

    from server.settings import Settings

access_logger = logging.getLogger("loom.access")
# What spans and access-log lines say of a request no route matched. They name the route a
# request matched, never its path: webhook paths are capabilities (whoever knows one starts
# runs), and scanners' paths are unbounded.
UNMATCHED = "unmatched"


def configure_logging(settings: Settings) -> None:
    """Log at `LOOM_LOG_LEVEL` to stderr, as text (`levelname logger message`) or as one JSON
    object per line (`LOOM_LOG_FORMAT=json`)."""
    logging.basicConfig(
        level=settings.log_level.upper(), handlers=[log_handler(settings)], force=True
    )
    # Alembic announces each of its plugins at INFO; the migrations it runs stay visible.
    logging.getLogger("alembic.runtime.plugins").setLevel(logging.WARNING)
    # The JSON format writes the ids of the execution and node in hand: the engine binds them.
    tracing.bind_log_context(settings.log_format == "json")


def log_handler(settings: Settings, stream: IO[str] | None = None) -> logging.Handler:
    """A handler writing records to `stream` (stderr) in the settings' log format. JSON
    lines carry time, level, message, logger, the ids bound in engine/log_context.py and,
    with tracing on, the trace and span ids; an exception's traceback under `exception`."""
    handler = logging.StreamHandler(stream)
    if settings.log_format == "text":
        handler.setFormatter(logging.Formatter("%(levelname)s %(name)s %(message)s"))
        return handler
    from pythonjsonlogger.core import RESERVED_ATTRS
    from pythonjsonlogger.orjson import OrjsonFormatter

    handler.setFormatter(
        OrjsonFormatter(
            "%(levelname)s %(name)s %(message)s",
            rename_fields={"levelname": "level", "name": "logger", "exc_info": "exception"},
            timestamp="time",
            # uvicorn's copy of its message with terminal colours.
            reserved_attrs=[*RESERVED_ATTRS, "color_message"],
        )
    )
    handler.addFilter(log_context.LogContextFilter(tracing.current_ids))
    return handler


def uvicorn_log_config(settings: Settings) -> dict[str, Any] | None:
    """uvicorn's own logging: its default (text) or, for JSON, none, so that its records go
    to the root handler `configure_logging` set up. Its access log is never used: it would
    write query strings and webhook paths (`RequestObservation` writes Loom's)."""
    if settings.log_format == "json":
        return None
    from uvicorn.config import LOGGING_CONFIG

    return LOGGING_CONFIG


def configure_tracing(settings: Settings, process: str) -> None:
    """Export spans over OTLP/HTTP when `LOOM_TRACING=otlp`; nothing is imported otherwise."""
    if settings.tracing == "otlp":
        tracing.configure_otlp(process)


def middleware(settings: Settings) -> list[Middleware]:
    """The API's `RequestObservation`, when something uses it (tracing, JSON logs or the
    access log): with all of them off a request pays nothing for it."""
    if settings.tracing == "off" and settings.log_format == "text" and not settings.access_log:
        return []
    from starlette.middleware import Middleware

    return [Middleware(RequestObservation, access_log=settings.access_log)]


def note_operation(operation_name: str | None) -> None:
    """Name the GraphQL operation on the request's span (its name only: never the query
    text or variables)."""
    if operation_name and tracing.enabled():
        from opentelemetry import trace

        trace.get_current_span().set_attribute("graphql.operation.name", operation_name[:128])


class RequestObservation:
    """Per HTTP request: a request id bound for log lines (and given to the GraphQL context,
    so an internal error's message names it), a server span (for `/graphql`, a child of the
    caller's `traceparent`, if it sends one; elsewhere, a root linking to it) and, with
    `access_log`, one log line when it ends. Websockets get a request id per connection."""

    def __init__(self, app: ASGIApp, *, access_log: bool) -> None:
        self.app = app
        self.access_log = access_log

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        log_context.bind(request_id=uuid.uuid4().hex[:16])
        if scope["type"] == "websocket":
            await self.app(scope, receive, send)
            return
        method: str = scope["method"]
        status = 500
        started = time.perf_counter()

        async def observed_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        headers: dict[str, str] = {}
        for name, value in scope["headers"]:
            if name == b"traceparent":
                headers["traceparent"] = value.decode("latin-1")
        attributes = {"http.request.method": method}
        try:
            # Only the API, which authenticates its callers, continues a caller's trace; a
            # span of any other route (webhooks above all) links to it from a trace of its own.
            trusted = scope["path"] == "/graphql"
            with tracing.span(
                method, attributes, parent=headers, kind="SERVER", link=not trusted
            ) as span:
                try:
                    await self.app(scope, receive, observed_send)
                finally:
                    if span is not None:
                        route = _route(scope)
                        span.update_name(f"{method} {route}")
                        span.set_attribute("http.route", route)
                        span.set_attribute("http.response.status_code", status)
        finally:
            if self.access_log:
                duration_ms = (time.perf_counter() - started) * 1000
                route = _route(scope)
                access_logger.info(
                    "%s %s %d %.1f ms",
                    method,
                    route,
                    status,
                    duration_ms,
                    extra={
                        "method": method,
                        "path": route,
                        "status": status,
                        "duration_ms": round(duration_ms, 2),
                    },
                )


def _route(scope: Scope) -> str:
    """The path template of the route the router matched (set once the app has run)."""
    path = getattr(scope.get("route"), "path", None)
    return path if isinstance(path, str) else UNMATCHED
