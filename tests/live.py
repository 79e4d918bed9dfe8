"""A real uvicorn server in the test's event loop, and a GraphQL websocket client (gql)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
import socket
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from gql import Client, gql
from gql.transport.websockets import WebsocketsTransport

from tests.conftest import services_required

# The npm project of the tests that drive JavaScript clients (`make test` runs `npm ci`).
JS_DIR = Path(__file__).resolve().parent / "js"

EVENT_FIELDS = """
  executionId sequence type nodeId nodeName attempt status at durationMs inputItems itemCount
  error { type message } preview
"""
EXECUTION_EVENTS = f"""
subscription($id: ID!, $after: Int) {{
  executionEvents(executionId: $id, afterSequence: $after) {{ {EVENT_FIELDS} }}
}}
"""


@contextlib.asynccontextmanager
async def serve(app: Any) -> AsyncIterator[str]:
    """Serve `app` on a free loopback port; yields the websocket URL of /graphql."""
    # Listening before the server starts: a client may connect at once, no waiting needed.
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen()
    port = sock.getsockname()[1]
    config = uvicorn.Config(
        app, ws="websockets-sansio", lifespan="on", log_level="warning", access_log=False
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        yield f"ws://127.0.0.1:{port}/graphql"
    finally:
        server.should_exit = True
        await task
        sock.close()


def node_with(package: str) -> str:
    """The `node` binary, when tests/js has `package` installed; without them the test is
    skipped, except where services are required (CI), where it fails."""
    found = shutil.which("node")
    if found is None or not (JS_DIR / "node_modules" / package).exists():
        message = "Node.js or tests/js/node_modules missing (`make test` installs them with npm)"
        if services_required():
            pytest.fail(message + "; CI requires them")
        pytest.skip(message)
    return found


def http_url(ws_url: str) -> str:
    """The HTTP address of the endpoint `serve` yields the websocket address of."""
    return "http" + ws_url.removeprefix("ws")


def client(url: str, token: str, subprotocol: str | None = None) -> Client:
    transport = WebsocketsTransport(
        url=url,
        init_payload={"Authorization": f"Bearer {token}"},
        subprotocols=[subprotocol or WebsocketsTransport.GRAPHQLWS_SUBPROTOCOL],
    )
    return Client(transport=transport, fetch_schema_from_transport=False)


async def collect(
    url: str,
    token: str,
    execution_id: str,
    after: int | None = None,
    limit: int | None = None,
    subprotocol: str | None = None,
) -> list[dict[str, Any]]:
    """Every event the subscription sends until it completes (or `limit` events)."""
    events: list[dict[str, Any]] = []
    async with client(url, token, subprotocol) as session:
        request = gql(EXECUTION_EVENTS)
        request.variable_values = {"id": execution_id, "after": after}
        # Closed explicitly on `break`: that is when gql tells the server to stop.
        async with contextlib.aclosing(session.subscribe(request)) as results:
            async for result in results:
                events.append(result["executionEvents"])
                if limit is not None and len(events) >= limit:
                    break
    return events


class RawSubscription:
    """One graphql-transport-ws subscription read by a background task that keeps counts, not
    payloads (cheap enough for thousands of events)."""

    def __init__(self) -> None:
        self.received = 0
        self.payloads: list[dict[str, Any]] = []
        # `error` messages, `next` payloads with errors, an early `complete`, a close.
        self.errors: list[Any] = []
        self.keep_payloads = False

    def on_message(self, message: dict[str, Any]) -> bool:
        """Count one server message; False when the subscription is over."""
        kind = message.get("type")
        if kind == "next":
            payload = message["payload"]
            if payload.get("errors"):
                self.errors.append(payload["errors"])
            self.received += 1
            if self.keep_payloads:
                self.payloads.append(payload)
            return True
        if kind in ("error", "complete"):
            self.errors.append(message)
            return False
        return True


@contextlib.asynccontextmanager
async def raw_subscription(
    url: str,
    token: str,
    query: str,
    variables: dict[str, Any] | None = None,
    *,
    keep_payloads: bool = False,
) -> AsyncIterator[RawSubscription]:
    """Subscribe over a real websocket; the stream's counts fill in as messages arrive."""
    from websockets.asyncio.client import connect
    from websockets.exceptions import ConnectionClosed

    stream = RawSubscription()
    stream.keep_payloads = keep_payloads
    # Without compression, as Loom serves by default (LOOM_WS_COMPRESSION): shared messages
    # then go out framed once (server/websocket_writes.py).
    async with connect(
        url,
        subprotocols=["graphql-transport-ws"],  # type: ignore[list-item]
        compression=None,
    ) as websocket:
        init = {"type": "connection_init", "payload": {"Authorization": f"Bearer {token}"}}
        await websocket.send(json.dumps(init))
        assert json.loads(await asyncio.wait_for(websocket.recv(), 10))["type"] == "connection_ack"
        subscribe = {"id": "1", "type": "subscribe", "payload": {"query": query}}
        subscribe["payload"]["variables"] = variables or {}
        await websocket.send(json.dumps(subscribe))

        async def read() -> None:
            try:
                async for raw in websocket:
                    message = json.loads(raw)
                    if message.get("type") == "ping":
                        await websocket.send('{"type":"pong"}')
                    elif not stream.on_message(message):
                        return
            except ConnectionClosed as closed:
                stream.errors.append(f"closed: {closed}")

        reader = asyncio.create_task(read())
        try:
            yield stream
        finally:
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reader
