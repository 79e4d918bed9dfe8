"""The websocket transport around subscriptions: keep-alive pings, the legacy protocol only
when enabled, origins, and `executionUpdates`."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from gql import gql
from gql.transport.exceptions import TransportQueryError
from gql.transport.websockets import WebsocketsTransport
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from server.app import create_app
from tests.api.test_executions import create, execute
from tests.conftest import Caller
from tests.factories import edge, node
from tests.live import client, collect, serve

TRANSPORT_WS = "graphql-transport-ws"
LEGACY_WS = "graphql-ws"
UPDATES = """
subscription($workflowId: ID) {
  executionUpdates(workflowId: $workflowId) { id workflowId status }
}
"""


@contextlib.asynccontextmanager
async def served(
    database: Any, settings: Any, registry: Any, caller: Caller, **overrides: Any
) -> AsyncIterator[tuple[str, Caller]]:
    app = create_app(settings.model_copy(update=overrides), database=database, registry=registry)
    transport = httpx.ASGITransport(app=app)
    async with (
        serve(app) as url,
        httpx.AsyncClient(transport=transport, base_url="http://loom.test") as http,
    ):
        yield url, dataclasses.replace(caller, http=http)


async def close_code(websocket: Any) -> int:
    """Wait for the server to close the websocket; its close code."""
    with pytest.raises(ConnectionClosed) as closed:
        await asyncio.wait_for(websocket.recv(), 10)
    assert closed.value.rcvd is not None
    return closed.value.rcvd.code


async def _acknowledged(websocket: Any, token: str) -> None:
    init = {"type": "connection_init", "payload": {"Authorization": f"Bearer {token}"}}
    await websocket.send(json.dumps(init))
    assert json.loads(await asyncio.wait_for(websocket.recv(), 10))["type"] == "connection_ack"


async def test_the_server_pings_an_idle_connection(database, settings, registry, alice) -> None:
    async with (
        served(database, settings, registry, alice, ws_keepalive_s=0.2) as (url, _),
        connect(url, subprotocols=[TRANSPORT_WS], open_timeout=10) as websocket,
    ):
        await _acknowledged(websocket, alice.token)
        message = json.loads(await asyncio.wait_for(websocket.recv(), 5))
        assert message == {"type": "ping"}
        await websocket.send(json.dumps({"type": "pong"}))


async def test_the_legacy_protocol_is_refused_unless_enabled(
    database, settings, registry, alice
) -> None:
    async with (
        served(database, settings, registry, alice) as (url, _),
        connect(url, subprotocols=[LEGACY_WS], open_timeout=10) as websocket,
    ):
        assert websocket.subprotocol is None
        assert await close_code(websocket) == 4406


async def test_the_legacy_protocol_when_enabled_streams_and_requires_init(
    database, settings, registry, alice
) -> None:
    async with served(database, settings, registry, alice, graphql_ws_legacy=True) as (url, alice):
        workflow_id = await create(
            alice,
            [node("start", "Start", "manual_trigger"), node("n", "N")],
            [edge("start", "n")],
        )
        execution_id = str((await execute(alice, workflow_id))["id"])
        events = await asyncio.wait_for(
            collect(
                url, alice.token, execution_id, subprotocol=WebsocketsTransport.APOLLO_SUBPROTOCOL
            ),
            20,
        )
        assert [event["sequence"] for event in events] == list(range(1, len(events) + 1))
        assert events[-1]["type"] == "EXECUTION_FINISHED"
        # An operation before `connection_init` is refused, not run.
        async with connect(url, subprotocols=[LEGACY_WS], open_timeout=10) as websocket:
            start = {
                "id": "1",
                "type": "start",
                "payload": {
                    "query": "subscription($id: ID!) { executionEvents(executionId: $id) "
                    "{ sequence } }",
                    "variables": {"id": execution_id},
                },
            }
            await websocket.send(json.dumps(start))
            assert await close_code(websocket) == 4401


async def test_pages_on_other_origins_cannot_open_a_websocket(
    database, settings, registry, alice
) -> None:
    allowed = ["https://app.example"]
    async with served(database, settings, registry, alice, allowed_origins=allowed) as (url, _):
        with pytest.raises(InvalidStatus) as refused:
            async with connect(
                url,
                subprotocols=[TRANSPORT_WS],
                origin="https://evil.example",  # type: ignore[arg-type]
                open_timeout=10,
            ):
                pass
        assert refused.value.response.status_code == 403
        async with connect(
            url,
            subprotocols=[TRANSPORT_WS],
            origin="https://app.example",  # type: ignore[arg-type]
            open_timeout=10,
        ) as websocket:
            await _acknowledged(websocket, alice.token)


async def _updates(url: str, token: str, seen: list[dict[str, Any]], **variables: Any) -> None:
    request = gql(UPDATES)
    request.variable_values = variables
    async with (
        client(url, token) as session,
        contextlib.aclosing(session.subscribe(request)) as results,
    ):
        async for result in results:
            seen.append(result["executionUpdates"])


async def until(condition: Any, within_s: float = 10.0) -> None:
    deadline = asyncio.get_running_loop().time() + within_s
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, "timed out"
        await asyncio.sleep(0.02)


async def test_execution_updates_stream_the_viewers_status_changes_only(
    database, settings, registry, alice, bob
) -> None:
    async with served(database, settings, registry, alice) as (url, alice):
        bob = dataclasses.replace(bob, http=alice.http)
        nodes = [
            node("start", "Start", "manual_trigger"),
            node("wait", "Wait", "wait", parameters={"amount": 0.2, "unit": "seconds"}),
        ]
        alice_workflow = await create(alice, nodes, [edge("start", "wait")])
        other_workflow = await create(alice, nodes, [edge("start", "wait")])
        bob_workflow = await create(bob, nodes, [edge("start", "wait")])
        fanout_before = 0
        alice_seen: list[dict[str, Any]] = []
        filtered: list[dict[str, Any]] = []
        bob_seen: list[dict[str, Any]] = []
        listeners = [
            asyncio.create_task(_updates(url, alice.token, alice_seen)),
            asyncio.create_task(_updates(url, alice.token, filtered, workflowId=alice_workflow)),
            asyncio.create_task(_updates(url, bob.token, bob_seen)),
        ]
        try:
            services = alice.http._transport.app.state.services  # type: ignore[attr-defined]
            await until(lambda: services.fanout.subscriptions == fanout_before + 3)
            mine = str((await execute(alice, alice_workflow))["id"])
            other = str((await execute(alice, other_workflow))["id"])
            bobs = str((await execute(bob, bob_workflow))["id"])

            def final(seen: list[dict[str, Any]], execution_id: str) -> bool:
                return any(
                    update["id"] == execution_id and update["status"] == "SUCCEEDED"
                    for update in seen
                )

            await until(lambda: final(alice_seen, mine) and final(alice_seen, other))
            await until(lambda: final(filtered, mine) and final(bob_seen, bobs))
        finally:
            for listener in listeners:
                listener.cancel()
            await asyncio.gather(*listeners, return_exceptions=True)
    assert {update["id"] for update in alice_seen} == {mine, other}
    assert {update["id"] for update in filtered} == {mine}
    assert {update["id"] for update in bob_seen} == {bobs}
    # Each status once, in order, for each execution.
    statuses = [update["status"] for update in alice_seen if update["id"] == mine]
    assert statuses[-1] == "SUCCEEDED"
    assert len(statuses) == len(set(statuses))


async def test_execution_updates_recover_changes_the_bus_lost(
    database, settings, registry, alice, monkeypatch
) -> None:
    from storage import cancellation, executions, workflows
    from storage.models import Workflow

    async with served(database, settings, registry, alice) as (url, alice):
        services = alice.http._transport.app.state.services  # type: ignore[attr-defined]
        monkeypatch.setattr(services.updates_feed, "idle_check_s", 0.2)
        workflow_id = await create(alice, [node("start", "Start", "manual_trigger")], [])
        seen: list[dict[str, Any]] = []
        listener = asyncio.create_task(_updates(url, alice.token, seen))
        try:
            await until(lambda: services.fanout.subscriptions == 1)
            # An execution the bus never announced (as if Redis lost the message)...
            async with database.transaction() as session:
                workflow = await session.get(Workflow, workflow_id)
                snapshot = await workflows.ensure_snapshot(session, workflow, alice.user_id)
                hidden = await executions.create_execution(
                    session,
                    workflow=workflow,
                    snapshot=snapshot,
                    mode="manual",
                    input={},
                    created_by=alice.user_id,
                )
            # A negative with no event to wait on: unannounced, it stays unseen through two
            # idle checks (0.2 s each), which look again only at executions already seen.
            await asyncio.sleep(0.5)
            assert seen == []
            # ...is found once the bus says it lost messages.
            services.fanout.wake_all()
            await until(
                lambda: {"id": hidden.id, "workflowId": workflow_id, "status": "QUEUED"} in seen
            )
            # A change of it that is not announced either: the idle check finds it.
            async with database.transaction() as session:
                assert await cancellation.cancel_unheld_in(session, hidden.id)
            await until(
                lambda: (
                    seen[-1] == {"id": hidden.id, "workflowId": workflow_id, "status": "CANCELLED"}
                )
            )
        finally:
            listener.cancel()
            await asyncio.gather(listener, return_exceptions=True)


async def test_execution_updates_of_a_subscriber_that_falls_behind_are_read_again(
    database, settings, registry, alice, monkeypatch
) -> None:
    """A subscriber with more changes waiting than it may hold (a slow client) lets them go
    and is shown again its unfinished executions and those that ended since it was last
    caught up (one that began and ended in the gap included)."""
    from storage import cancellation, executions, workflows
    from storage.models import Workflow

    async with served(database, settings, registry, alice) as (url, alice):
        services = alice.http._transport.app.state.services  # type: ignore[attr-defined]
        feed = services.updates_feed
        monkeypatch.setattr(feed, "backlog", 2)
        workflow_id = await create(alice, [node("start", "Start", "manual_trigger")], [])
        seen: list[dict[str, Any]] = []
        listener = asyncio.create_task(_updates(url, alice.token, seen))
        try:
            await until(lambda: len(feed.watchers) == 1)
            # Three executions in one round, one of them already cancelled: more than the
            # subscriber may hold.
            async with database.transaction() as session:
                workflow = await session.get(Workflow, workflow_id)
                snapshot = await workflows.ensure_snapshot(session, workflow, alice.user_id)
                created = [
                    await executions.create_execution(
                        session,
                        workflow=workflow,
                        snapshot=snapshot,
                        mode="manual",
                        input={},
                        created_by=alice.user_id,
                    )
                    for _ in range(3)
                ]
                assert await cancellation.cancel_unheld_in(session, created[0].id)
            services.fanout.wake([execution.id for execution in created])
            # What it let go of is read again: its unfinished executions, and the one that
            # began and ended in the gap.
            expected = {(execution.id, "QUEUED") for execution in created[1:]}
            expected.add((created[0].id, "CANCELLED"))
            await until(lambda: {(u["id"], u["status"]) for u in seen} >= expected)
        finally:
            listener.cancel()
            await asyncio.gather(listener, return_exceptions=True)


async def test_execution_updates_end_when_the_token_is_revoked_even_with_nothing_to_send(
    database, settings, registry, alice, monkeypatch
) -> None:
    from resolvers import subscriptions

    monkeypatch.setattr(subscriptions, "IDLE_CHECK_S", 0.2)
    monkeypatch.setattr(subscriptions, "RECHECK_S", 0.2)
    async with served(database, settings, registry, alice) as (url, alice):
        feed = alice.http._transport.app.state.services.updates_feed  # type: ignore[attr-defined]
        request = gql(UPDATES)
        request.variable_values = {}
        async with client(url, alice.token) as session:

            async def stream() -> None:
                async for _ in session.subscribe(request):
                    pass

            listening = asyncio.create_task(stream())
            await until(lambda: len(feed.watchers) == 1)
            tokens = await alice.gql("{ apiTokens { id } }")
            await alice.gql(
                "mutation($id: ID!) { revokeApiToken(id: $id) { __typename } }",
                {"id": tokens["apiTokens"][0]["id"]},
            )
            with pytest.raises(TransportQueryError) as failure:
                await asyncio.wait_for(listening, 10)
    assert failure.value.errors is not None
    assert failure.value.errors[0]["extensions"]["code"] == "UNAUTHENTICATED"
