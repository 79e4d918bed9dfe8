"""The GraphQL websocket route authenticates in `connection_init`, like HTTP does per request."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from gql import gql
from gql.transport.exceptions import TransportQueryError
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from server.app import create_app
from tests.conftest import Caller, MakeCaller
from tests.factories import LIST, only, workflow_input
from tests.live import client, serve
from tests.teams import CHANGE_ROLE, CREATE_IN, REMOVE_MEMBER, team

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


async def test_queries_and_mutations_over_a_websocket_see_membership_changes(
    app: Any, alice: Caller, bob: Caller, make_caller: MakeCaller
) -> None:
    carol = await make_caller("carol")
    # Each operation authenticates again: a removed member changes nothing, a demoted one
    # only what the new role allows, however long the connection has been open.
    workspace_id = await team(alice, {"editor": bob, "admin": carol})
    async with (
        serve(app) as url,
        client(url, bob.token) as bobs,
        client(url, carol.token) as carols,
    ):
        assert await _create_over(bobs, workspace_id, "A") == "Workflow"
        only(await alice.gql(REMOVE_MEMBER, {"ws": workspace_id, "user": bob.user_id}))
        assert await _create_over(bobs, workspace_id, "B") == "NotFoundError"
        demoted = {"ws": workspace_id, "user": carol.user_id, "role": "viewer"}
        assert only(await alice.gql(CHANGE_ROLE, demoted))["__typename"] == "WorkspaceMember"
        assert await _create_over(carols, workspace_id, "C") == "ForbiddenError"
    listed = (await alice.gql(LIST))["workflows"]["edges"]
    assert [edge["node"]["name"] for edge in listed] == ["A"]


async def test_a_token_revoked_while_connected_runs_no_more_queries(
    app: Any, alice: Caller
) -> None:
    async with serve(app) as url, client(url, alice.token) as session:
        assert (await session.execute(gql("{ viewer { name } }")))["viewer"]["name"] == "alice"
        (token,) = (await alice.gql("{ apiTokens { id } }"))["apiTokens"]
        await alice.gql(
            "mutation($id: ID!) { revokeApiToken(id: $id) { __typename } }",
            {"id": token["id"]},
        )
        with pytest.raises(TransportQueryError) as failure:
            await session.execute(gql("{ viewer { name } }"))
    assert failure.value.errors is not None
    assert failure.value.errors[0]["extensions"]["code"] == "UNAUTHENTICATED"


async def _create_over(session: Any, workspace_id: str, name: str) -> str:
    request = gql(CREATE_IN)
    request.variable_values = {"input": workflow_input(name), "ws": workspace_id}
    return str((await session.execute(request))["createWorkflow"]["__typename"])
