"""The GraphQL websocket route authenticates in `connection_init`, like HTTP does per request."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from server.app import create_app
from tests.live import serve

PROTOCOL = "graphql-transport-ws"


@pytest.fixture
async def ws_url(database, settings, registry) -> AsyncIterator[str]:
    """A real uvicorn server on a free loopback port, running in the test's event loop."""
    async with serve(create_app(settings, database=database, registry=registry)) as url:
        yield url


async def _init(url: str, payload: dict | None) -> tuple[dict | None, int | None]:
    """Send `connection_init`; returns the server's answer, or the close code."""
    async with connect(url, subprotocols=[PROTOCOL], open_timeout=10) as websocket:
        assert websocket.subprotocol == PROTOCOL
        message: dict = {"type": "connection_init"}
        if payload is not None:
            message["payload"] = payload
        await websocket.send(json.dumps(message))
        try:
            answer = await asyncio.wait_for(websocket.recv(), timeout=10)
        except ConnectionClosed as closed:
            assert closed.rcvd is not None
            return None, closed.rcvd.code
        return json.loads(answer), None


@pytest.mark.parametrize(
    "payload",
    [None, {}, {"Authorization": "Bearer loom_wrong"}, {"Authorization": 5}, {"token": "x"}],
    ids=["no payload", "empty", "bad token", "not a string", "other key"],
)
async def test_connection_without_valid_authorization_is_rejected(ws_url, payload):
    answer, close_code = await _init(ws_url, payload)
    assert answer is None
    assert close_code == 4403


async def test_connection_with_a_token_is_acknowledged(ws_url, alice):
    answer, close_code = await _init(ws_url, {"Authorization": f"Bearer {alice.token}"})
    assert close_code is None
    assert answer is not None
    assert answer["type"] == "connection_ack"


async def test_operations_run_as_the_connected_user(ws_url, alice):
    async with connect(ws_url, subprotocols=[PROTOCOL], open_timeout=10) as websocket:
        init = {"type": "connection_init", "payload": {"Authorization": f"Bearer {alice.token}"}}
        await websocket.send(json.dumps(init))
        assert json.loads(await asyncio.wait_for(websocket.recv(), 10))["type"] == "connection_ack"
        subscribe = {"id": "1", "type": "subscribe", "payload": {"query": "{ viewer { name } }"}}
        await websocket.send(json.dumps(subscribe))
        result = json.loads(await asyncio.wait_for(websocket.recv(), 10))
        assert result == {
            "id": "1",
            "type": "next",
            "payload": {"data": {"viewer": {"name": "alice"}}},
        }
        done = json.loads(await asyncio.wait_for(websocket.recv(), 10))
        assert done == {"id": "1", "type": "complete"}


async def test_revoked_token_is_rejected(ws_url, alice):
    (token,) = (await alice.gql("{ apiTokens { id } }"))["apiTokens"]
    await alice.gql(
        "mutation($id: ID!) { revokeApiToken(id: $id) { __typename } }", {"id": token["id"]}
    )
    answer, close_code = await _init(ws_url, {"Authorization": f"Bearer {alice.token}"})
    assert (answer, close_code) == (None, 4403)


@pytest.mark.parametrize(
    "message",
    ['{"type": "connection_init", "payload": NaN}', "{not json", "[" * 5000],
    ids=["NaN", "malformed", "deep"],
)
async def test_malformed_messages_close_the_connection(ws_url, message):
    async with connect(ws_url, subprotocols=[PROTOCOL], open_timeout=10) as websocket:
        await websocket.send(message)
        with pytest.raises(ConnectionClosed) as closed:
            await asyncio.wait_for(websocket.recv(), timeout=10)
    assert closed.value.rcvd is not None
    assert closed.value.rcvd.code == 4400
