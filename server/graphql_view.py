"""The GraphQL endpoint: authentication, status codes and JSON error bodies over HTTP and WS."""

from __future__ import annotations

import asyncio
import contextlib
import json
from typing import Any

from cross_web import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.types import Receive, Scope, Send
from starlette.websockets import WebSocket, WebSocketDisconnect
from strawberry.asgi import GraphQL
from strawberry.exceptions import ConnectionRejectionError
from strawberry.http import GraphQLRequestData
from strawberry.http.exceptions import WebSocketDisconnected
from strawberry.schema import BaseSchema
from strawberry.subscriptions import GRAPHQL_TRANSPORT_WS_PROTOCOL, GRAPHQL_WS_PROTOCOL
from strawberry.subscriptions.protocols.graphql_transport_ws.handlers import (
    BaseGraphQLTransportWSHandler,
)
from strawberry.types import ExecutionResult
from strawberry.types.execution import PreExecutionError

from resolvers.auth import token_from_header
from resolvers.context import Context, RequestLoaders, Services
from resolvers.errors import UNAUTHENTICATED
from schema.extensions import REQUEST_ERROR_CODES
from schema.sharing import encode_json, next_frame
from server.websocket_writes import direct_sender

_HTTP_CODES = {
    400: "BAD_REQUEST",
    401: UNAUTHENTICATED,
    404: "NOT_FOUND",
    405: "METHOD_NOT_ALLOWED",
    413: "PAYLOAD_TOO_LARGE",
    415: "UNSUPPORTED_MEDIA_TYPE",
}


def error_response(status_code: int, message: str) -> JSONResponse:
    """A GraphQL-shaped error body for failures before any operation runs."""
    headers = {"WWW-Authenticate": "Bearer"} if status_code == 401 else None
    code = _HTTP_CODES.get(status_code, "BAD_REQUEST")
    return JSONResponse(
        {"data": None, "errors": [{"message": message, "extensions": {"code": code}}]},
        status_code=status_code,
        headers=headers,
    )


class KeepAliveTransportWSHandler(BaseGraphQLTransportWSHandler[Context, None]):
    """graphql-transport-ws with a `ping` from the server every `keepalive_s` once the
    connection is acknowledged: proxies keep an idle subscription open, and clients (the
    `graphql-ws` library, `gql`) answer with `pong`."""

    keepalive_s: float = 15.0
    _pinger: asyncio.Task[None] | None = None

    async def handle_connection_init(self, message: Any) -> None:
        await super().handle_connection_init(message)
        if self.connection_acknowledged and self._pinger is None and self.keepalive_s > 0:
            self._pinger = asyncio.create_task(self._ping(), name="websocket keep-alive")

    async def _ping(self) -> None:
        while True:
            await asyncio.sleep(self.keepalive_s)
            try:
                await self.send_message({"type": "ping"})
            except Exception:  # the connection is going away; `shutdown` stops this task
                return

    async def handle_subscribe(self, message: Any) -> None:
        await super().handle_subscribe(message)
        operation = self.operations.get(message.get("id"))
        socket = getattr(self.websocket, "ws", None)
        if operation is None or operation.task is None or socket is None:
            return
        senders = self.context.direct_senders
        senders[operation.task] = direct_sender(operation, socket)
        operation.task.add_done_callback(lambda task: senders.pop(task, None))

    async def _send_result_stream(self, operation: Any, result_source: Any) -> None:
        """Strawberry's loop, with `next` frames built from a shared encoding of the data:
        subscribers of one live event share its result (schema/sharing.py), so its JSON is
        encoded once, not once per subscriber."""
        first = True
        async for result in result_source:
            if first and isinstance(result, PreExecutionError):
                await self._handle_pre_execution_error(operation, result)
                return
            if not isinstance(result, ExecutionResult):
                await self._reject_incremental_delivery(operation)
                return
            first = False
            socket = getattr(self.websocket, "ws", None)
            if result.errors or result.extensions or operation.completed or socket is None:
                await operation.send_next(result)
                continue
            try:
                await socket.send_text(next_frame(operation.id, result.data))
            except WebSocketDisconnect as exc:
                raise WebSocketDisconnected from exc

    async def shutdown(self) -> None:
        if self._pinger is not None:
            self._pinger.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._pinger
        await super().shutdown()


class LoomGraphQL(GraphQL[Context, None]):
    """Strawberry's ASGI app with Loom's authentication and HTTP semantics.

    Every operation needs a bearer token (401 without); the GraphiQL page itself does not.
    A request that fails to parse or validate is a 400, not a 200 with errors. Websockets
    speak graphql-transport-ws; the legacy graphql-ws protocol only with `legacy_ws` (it
    has a history of authentication bypasses in other servers). Pages on other origins may
    open a websocket only if listed in `allowed_origins` (cross-site websocket hijacking).
    """

    def __init__(
        self,
        schema: BaseSchema,
        services: Services,
        *,
        legacy_ws: bool = False,
        keepalive_s: float = 15.0,
        max_subscriptions_per_connection: int = 20,
        **options: Any,
    ) -> None:
        protocols: tuple[str, ...] = (GRAPHQL_TRANSPORT_WS_PROTOCOL,)
        if legacy_ws:
            protocols += (GRAPHQL_WS_PROTOCOL,)
        super().__init__(
            schema,
            subscription_protocols=protocols,
            keep_alive=keepalive_s > 0,
            keep_alive_interval=keepalive_s,
            **options,
        )
        self.services = services
        self.max_subscriptions_per_connection = max_subscriptions_per_connection
        self.graphql_transport_ws_handler_class = type(
            "LoomTransportWSHandler", (KeepAliveTransportWSHandler,), {"keepalive_s": keepalive_s}
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await super().__call__(scope, receive, send)
            return
        request = Request(scope=scope, receive=receive)
        try:
            response = await self.run(request)
        except HTTPException as exc:
            response = error_response(exc.status_code, exc.reason)
        await response(scope, receive, send)

    def decode_json(self, data: str | bytes) -> object:
        """Strict JSON; every failure is a `JSONDecodeError` (HTTP 400, websocket close 4400).

        Python's parser would accept NaN and Infinity, which no database stores as JSON, and
        fails with other errors on nesting deep enough to exhaust its recursion or on numbers
        longer than Python converts: a 500 instead of a 400.
        """
        try:
            return json.loads(data, parse_constant=_refuse_constant)
        except json.JSONDecodeError:
            raise
        except (ValueError, RecursionError) as exc:
            raise json.JSONDecodeError(f"invalid JSON ({type(exc).__name__})", "", 0) from exc

    def encode_json(self, data: object) -> str:
        """Responses through orjson (several times faster on large results), as text so that
        websocket frames stay text frames."""
        return encode_json(data)

    def parse_json(self, data: str | bytes) -> Any:
        """A JSON object (or a list: a batch, which Strawberry refuses); anything else is a 400."""
        parsed = super().parse_json(data)
        if not isinstance(parsed, dict | list):
            raise HTTPException(400, "The request must be a JSON object")
        return parsed

    async def get_context(self, request: Request | WebSocket, response: Any) -> Context:
        return Context(
            services=self.services,
            request=request,
            response=response,
            # Over a websocket, within the subscriptions' budget of connections.
            loaders=RequestLoaders(self.services.live_reads, cache=False)
            if isinstance(request, WebSocket)
            else RequestLoaders(self.services.database),
        )

    async def execute_operation(
        self,
        request: Request,
        request_adapter: Any,
        request_data: GraphQLRequestData | list[GraphQLRequestData],
        context: Context,
        root_value: None,
        sub_response: Response,
    ) -> Any:
        token = token_from_header(request.headers.get("authorization"))
        context.principal = await self.services.authenticator.authenticate(token)
        if context.principal is None:
            reason = "missing bearer token" if token is None else "invalid or revoked token"
            raise HTTPException(401, f"authentication required: {reason}")
        result = await super().execute_operation(
            request, request_adapter, request_data, context, root_value, sub_response
        )
        if isinstance(result, ExecutionResult) and _is_request_failure(result):
            sub_response.status_code = 400
        return result

    async def on_ws_connect(self, context: Context) -> Any:
        payload = context.connection_params
        header = payload.get("Authorization") if isinstance(payload, dict) else None
        token = token_from_header(header) if isinstance(header, str) else None
        context.principal = await self.services.authenticator.authenticate(token)
        if context.principal is None:
            raise ConnectionRejectionError({"message": "authentication required"})
        return None


def _refuse_constant(name: str) -> None:
    raise ValueError(f"{name} is not JSON")


def _is_request_failure(result: ExecutionResult) -> bool:
    """No data and only parse, validation or argument errors: the request itself was bad."""
    if result.data is not None or not result.errors:
        return False
    return all(
        (error.extensions or {}).get("code") in REQUEST_ERROR_CODES
        or (error.extensions or {}).get("code") in ("BAD_USER_INPUT", "INVALID_CURSOR")
        for error in result.errors
    )
