"""The GraphQL endpoint: authentication, status codes and JSON error bodies over HTTP and WS."""

from __future__ import annotations

import asyncio
import contextlib
import json
from typing import Any

from cross_web import HTTPException
from graphql import GraphQLError
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.types import Receive, Scope, Send
from starlette.websockets import WebSocket, WebSocketDisconnect
from strawberry.asgi import GraphQL
from strawberry.exceptions import ConnectionRejectionError, MissingQueryError
from strawberry.http import GraphQLHTTPResponse, GraphQLRequestData
from strawberry.http.exceptions import WebSocketDisconnected
from strawberry.schema import BaseSchema
from strawberry.schema.exceptions import InvalidOperationTypeError
from strawberry.subscriptions import GRAPHQL_TRANSPORT_WS_PROTOCOL, GRAPHQL_WS_PROTOCOL
from strawberry.subscriptions.protocols.graphql_transport_ws.handlers import (
    BaseGraphQLTransportWSHandler,
)
from strawberry.types import ExecutionResult
from strawberry.types.execution import PreExecutionError

from engine import metrics
from resolvers.auth import connection_token, token_from_header
from resolvers.context import Context, RequestLoaders, Services
from resolvers.errors import UNAUTHENTICATED
from schema.sharing import encode_json, next_frame
from server import graphiql, telemetry
from server.graphql_http import (
    APPLICATION_JSON,
    RefusedOperation,
    http_operation_types,
    is_request_error,
    refusal,
    response_media_type,
    status_code,
)
from server.websocket_writes import direct_sender

_HTTP_CODES = {
    400: "BAD_REQUEST",
    401: UNAUTHENTICATED,
    404: "NOT_FOUND",
    405: "METHOD_NOT_ALLOWED",
    413: "PAYLOAD_TOO_LARGE",
    415: "UNSUPPORTED_MEDIA_TYPE",
}


def error_response(
    status_code: int,
    message: str,
    media_type: str = APPLICATION_JSON,
    *,
    code: str | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    """A GraphQL-shaped error body for failures before any operation runs (so no `data`)."""
    headers = dict(headers or {})
    if status_code == 401:
        headers["WWW-Authenticate"] = "Bearer"
    code = code or _HTTP_CODES.get(status_code, "BAD_REQUEST")
    return JSONResponse(
        {"errors": [{"message": message, "extensions": {"code": code}}]},
        status_code=status_code,
        headers=headers,
        media_type=media_type,
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

    async def run_operation(self, operation: Any) -> None:
        """Strawberry's, after authenticating again: queries and mutations over a websocket
        run with the caller's current roles (as over HTTP, through the same token cache),
        and a token revoked since the connection opened runs nothing more (UNAUTHENTICATED).
        Subscriptions check again while they stream (resolvers/subscriptions.py)."""
        context = self.context
        principal = await context.services.authenticator.authenticate(
            connection_token(context.connection_params)
        )
        if principal is None:
            error = GraphQLError(
                "authentication required: invalid or revoked token",
                extensions={"code": UNAUTHENTICATED},
            )
            await operation.send_initial_errors([error])
            return
        context.principal = principal
        await super().run_operation(operation)

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
    Media types and status codes follow the GraphQL-over-HTTP spec (server/graphql_http.py);
    HTTP runs no subscriptions. Websockets speak graphql-transport-ws; the legacy graphql-ws
    protocol only with `legacy_ws` (it has a history of authentication bypasses in other
    servers). Pages on other origins may open a websocket only if listed in
    `allowed_origins` (cross-site websocket hijacking).
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
            with metrics.websocket_open():
                await super().__call__(scope, receive, send)
            return
        request = Request(scope=scope, receive=receive)
        media_type = response_media_type(request.headers.get("accept"))
        try:
            response = await self.run(request)
        except RefusedOperation as exc:
            response = error_response(
                exc.status_code, exc.reason, media_type, code=exc.code, headers=exc.headers
            )
        except HTTPException as exc:
            response = error_response(exc.status_code, exc.reason, media_type)
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

    async def parse_http_body(self, request: Any) -> GraphQLRequestData | list[GraphQLRequestData]:
        """Strawberry's, which checks the types of `query`, `variables` and `extensions`, and
        here also of `operationName`: another type is a malformed request, not an unknown name."""
        parsed = await super().parse_http_body(request)
        for request_data in parsed if isinstance(parsed, list) else [parsed]:
            if not isinstance(request_data.operation_name, str | None):
                raise HTTPException(
                    400, "The GraphQL operation's `operationName` must be a string or null."
                )
        return parsed

    async def render_graphql_ide(self, request: Request) -> Response:
        """Loom's GraphiQL page, whose scripts Loom serves itself (server/graphiql.py)."""
        return HTMLResponse(
            graphiql.page_html(),
            headers={"Content-Security-Policy": graphiql.CONTENT_SECURITY_POLICY},
        )

    async def get_sub_response(self, request: Request | WebSocket) -> Response:
        sub_response = await super().get_sub_response(request)
        sub_response.media_type = response_media_type(request.headers.get("accept"))
        return sub_response

    def create_response(
        self,
        response_data: GraphQLHTTPResponse | list[GraphQLHTTPResponse],
        sub_response: Response,
    ) -> Response:
        response = super().create_response(response_data, sub_response)
        response.headers["content-type"] = sub_response.media_type or APPLICATION_JSON
        return response

    async def process_result(self, request: Request, result: ExecutionResult) -> Any:
        """The GraphQL response; one that failed before execution has no `data` entry."""
        response = await super().process_result(request, result)
        if is_request_error(result):
            response.pop("data", None)
        return response

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
        if isinstance(result, ExecutionResult):
            sub_response.status_code = status_code(result, sub_response.media_type or "")
        return result

    async def execute_single(
        self,
        request: Request,
        request_adapter: Any,
        sub_response: Response,
        context: Context,
        root_value: None,
        request_data: GraphQLRequestData,
    ) -> ExecutionResult:
        """Strawberry's, except that HTTP runs no subscriptions (Loom streams them over the
        websocket only; Strawberry would run one as a query and fail) and that a refused
        operation says what to do instead."""
        telemetry.note_operation(request_data.operation_name)
        try:
            return await self.schema.execute(
                request_data.query,
                root_value=root_value,
                variable_values=request_data.variables,
                context_value=context,
                operation_name=request_data.operation_name,
                allowed_operation_types=http_operation_types(request_adapter.method),
                operation_extensions=request_data.extensions,
            )
        except InvalidOperationTypeError as exc:
            raise refusal(exc.operation_type, request.url) from exc
        except MissingQueryError as exc:
            raise HTTPException(400, "No GraphQL query found in the request") from exc

    async def on_ws_connect(self, context: Context) -> Any:
        token = connection_token(context.connection_params)
        context.principal = await self.services.authenticator.authenticate(token)
        if context.principal is None:
            raise ConnectionRejectionError({"message": "authentication required"})
        return None


def _refuse_constant(name: str) -> None:
    raise ValueError(f"{name} is not JSON")
