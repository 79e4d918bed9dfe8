"""A real uvicorn server in the test's event loop, and a GraphQL websocket client (gql)."""

from __future__ import annotations

import asyncio
import contextlib
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
