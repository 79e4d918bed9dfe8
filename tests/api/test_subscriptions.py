"""Live execution events over a real websocket (gql client, embedded mode): history then
live, no gaps or duplicates, the same as what is stored."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from gql import gql
from gql.transport.exceptions import TransportQueryError

from server.app import create_app
from storage import executions
from storage.db import Database
from tests import polling
from tests.api.test_executions import create, execute
from tests.conftest import Caller
from tests.factories import edge, node
from tests.live import EXECUTION_EVENTS, client, collect, serve


@pytest.fixture
async def app(database, settings, registry) -> Any:
    return create_app(settings, database=database, registry=registry)


@pytest.fixture
async def ws_url(app) -> AsyncIterator[str]:
    async with serve(app) as url:
        yield url


def waits(seconds: float) -> dict[str, Any]:
    return {"amount": seconds, "unit": "seconds"}


def wait_then_done(seconds: float) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """A trigger, a wait of `seconds` (subscribers attach meanwhile), then a noop."""
    return (
        [
            node("start", "Start", "manual_trigger"),
            node("wait", "Wait", "wait", parameters=waits(seconds)),
            node("done", "Done", "noop"),
        ],
        [edge("start", "wait"), edge("wait", "done")],
    )


async def stored(database: Database, execution_id: str) -> list[dict[str, Any]]:
    async with database.session() as session:
        rows = await executions.events(session, execution_id)
    return [
        {
            "sequence": row.sequence,
            "type": row.type,
            "nodeId": row.node_id,
            "attempt": row.attempt,
            "status": row.status,
            "itemCount": row.output_items,
        }
        for row in rows
    ]


def essentials(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    keys = ("sequence", "type", "nodeId", "attempt", "status", "itemCount")
    return [{key: event[key] for key in keys} for event in events]


async def test_a_subscriber_gets_history_then_live_events_then_completion(
    app, ws_url: str, alice: Caller, database: Database
) -> None:
    workflow_id = await create(alice, *wait_then_done(0.3))
    execution_id = (await execute(alice, workflow_id))["id"]
    events = await asyncio.wait_for(collect(ws_url, alice.token, execution_id), 20)
    assert [event["sequence"] for event in events] == list(range(1, len(events) + 1))
    assert events[0]["type"] == "EXECUTION_QUEUED"
    assert events[-1]["type"] == "EXECUTION_FINISHED"
    assert events[-1]["status"] == "SUCCEEDED"
    assert essentials(events) == await stored(database, execution_id)


async def run_to_end(app: Any, caller: Caller, workflow_id: str, **variables: Any) -> str:
    execution_id = str((await execute(caller, workflow_id, **variables))["id"])
    await app.state.services.submitter.wait(execution_id)
    return execution_id


async def test_a_finished_execution_is_replayed_and_completes(
    app, ws_url: str, alice: Caller, database: Database
) -> None:
    workflow_id = await create(
        alice, [node("start", "Start", "manual_trigger"), node("n", "N")], [edge("start", "n")]
    )
    execution_id = await run_to_end(app, alice, workflow_id)
    events = await asyncio.wait_for(collect(ws_url, alice.token, execution_id), 20)
    assert essentials(events) == await stored(database, execution_id)
    later = await asyncio.wait_for(collect(ws_url, alice.token, execution_id, after=3), 20)
    assert [event["sequence"] for event in later] == [e["sequence"] for e in events[3:]]
    assert (
        await asyncio.wait_for(collect(ws_url, alice.token, execution_id, after=len(events)), 20)
        == []
    ), "nothing after the last event: completes at once"


async def test_a_reconnecting_client_continues_exactly_where_it_stopped(
    app, ws_url: str, alice: Caller, database: Database
) -> None:
    workflow_id = await create(
        alice,
        [node("start", "Start", "manual_trigger")]
        + [node(f"w{i}", f"Wait {i}", "wait", parameters=waits(0.05)) for i in range(6)],
        [edge("start", "w0")] + [edge(f"w{i}", f"w{i + 1}") for i in range(5)],
    )
    execution_id = str((await execute(alice, workflow_id))["id"])
    first = await asyncio.wait_for(collect(ws_url, alice.token, execution_id, limit=5), 20)
    rest = await asyncio.wait_for(
        collect(ws_url, alice.token, execution_id, after=first[-1]["sequence"]), 20
    )
    events = first + rest
    assert [event["sequence"] for event in events] == list(range(1, len(events) + 1))
    assert events[-1]["type"] == "EXECUTION_FINISHED"
    assert essentials(events) == await stored(database, execution_id)


async def test_the_stream_and_the_record_agree_on_retries_skips_and_failures(
    app, ws_url: str, alice: Caller, database: Database
) -> None:
    workflow_id = await create(
        alice,
        [
            node("start", "Start", "manual_trigger"),
            node(
                "gate",
                "Gate",
                "if",
                parameters={"conditions": [{"left": 1, "operator": "gt", "right": 5}]},
            ),
            node("skipped", "Skipped", "noop"),
            node("wait", "Wait", "wait", parameters=waits(0.2)),
            node(
                "flaky",
                "Flaky",
                "wait",
                parameters=waits(5),
                timeoutSeconds=0.05,
                retry={"maxAttempts": 3, "backoffSeconds": 0.01},
            ),
        ],
        [
            edge("start", "gate"),
            edge("gate", "skipped", sourceOutput="true"),
            edge("gate", "wait", sourceOutput="false"),
            edge("wait", "flaky"),
        ],
    )
    execution_id = str((await execute(alice, workflow_id))["id"])
    events = await asyncio.wait_for(collect(ws_url, alice.token, execution_id), 20)
    types = [event["type"] for event in events]
    assert "NODE_SKIPPED" in types
    assert types.count("NODE_RETRYING") == 2
    assert "NODE_FAILED" in types
    assert events[-1]["status"] == "FAILED"
    failed = next(event for event in events if event["type"] == "NODE_FAILED")
    assert failed["nodeId"] == "flaky"
    assert failed["attempt"] == 3
    assert failed["error"]["type"] == "NODE_TIMEOUT"
    assert essentials(events) == await stored(database, execution_id)


async def test_a_cancelled_execution_streams_its_cancellation(
    app, ws_url: str, alice: Caller, database: Database
) -> None:
    workflow_id = await create(
        alice,
        [
            node("start", "Start", "manual_trigger"),
            node("wait", "Wait", "wait", parameters=waits(10)),
        ],
        [edge("start", "wait")],
    )
    execution_id = str((await execute(alice, workflow_id))["id"])
    subscriber = asyncio.create_task(collect(ws_url, alice.token, execution_id))

    async def waiting_and_watched() -> bool:
        started = [(e["type"], e["nodeId"]) for e in await stored(database, execution_id)]
        return ("NODE_STARTED", "wait") in started and app.state.services.fanout.subscriptions > 0

    await polling.until(waiting_and_watched, what="the wait running, with a subscriber")
    await alice.gql(
        "mutation($id: ID!) { cancelExecution(id: $id) { __typename } }", {"id": execution_id}
    )
    events = await asyncio.wait_for(subscriber, 20)
    assert "NODE_CANCELLED" in [event["type"] for event in events]
    assert events[-1]["type"] == "EXECUTION_FINISHED"
    assert events[-1]["status"] == "CANCELLED"
    assert essentials(events) == await stored(database, execution_id)


async def test_another_users_execution_gives_an_error_not_events(
    app, ws_url: str, alice: Caller, bob: Caller
) -> None:
    workflow_id = await create(alice, [node("start", "Start", "manual_trigger")], [])
    execution_id = await run_to_end(app, alice, workflow_id)
    for missing in (execution_id, "no-such-execution"):
        with pytest.raises(TransportQueryError) as failure:
            await asyncio.wait_for(collect(ws_url, bob.token, missing), 20)
        assert failure.value.errors is not None
        assert failure.value.errors[0]["extensions"]["code"] == "NOT_FOUND"
        assert execution_id not in str(failure.value.data or "")


async def test_a_negative_after_sequence_is_refused(app, ws_url: str, alice: Caller) -> None:
    workflow_id = await create(alice, [node("start", "Start", "manual_trigger")], [])
    execution_id = await run_to_end(app, alice, workflow_id)
    with pytest.raises(TransportQueryError) as failure:
        await asyncio.wait_for(collect(ws_url, alice.token, execution_id, after=-1), 20)
    assert failure.value.errors is not None
    error = failure.value.errors[0]
    assert error["extensions"] == {"code": "BAD_USER_INPUT", "field": "afterSequence"}


async def revoke_own_token(caller: Caller) -> None:
    """Revoke the (first) API token of `caller`, the one its requests send."""
    tokens = await caller.gql("{ apiTokens { id } }")
    await caller.gql(
        "mutation($id: ID!) { revokeApiToken(id: $id) { __typename } }",
        {"id": tokens["apiTokens"][0]["id"]},
    )


async def test_a_token_revoked_after_connecting_cannot_start_a_subscription(
    app, ws_url: str, alice: Caller
) -> None:
    workflow_id = await create(alice, [node("start", "Start", "manual_trigger")], [])
    execution_id = await run_to_end(app, alice, workflow_id)
    async with client(ws_url, alice.token) as session:
        await revoke_own_token(alice)
        request = gql(EXECUTION_EVENTS)
        request.variable_values = {"id": execution_id}
        with pytest.raises(TransportQueryError) as failure:
            async for _ in session.subscribe(request):
                pass
    assert failure.value.errors is not None
    assert failure.value.errors[0]["extensions"]["code"] == "UNAUTHENTICATED"


def long_wait_workflow() -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    return (
        [
            node("start", "Start", "manual_trigger"),
            node("wait", "Wait", "wait", parameters=waits(30)),
        ],
        [edge("start", "wait")],
    )


async def history_while_waiting(database: Database, execution_id: str) -> int:
    """How many events an execution of `long_wait_workflow` has stored once it waits: no
    more come until it is cancelled."""
    deadline = asyncio.get_running_loop().time() + 10
    while True:
        events = await stored(database, execution_id)
        if any(event["type"] == "NODE_STARTED" and event["nodeId"] == "wait" for event in events):
            return len(events)
        assert asyncio.get_running_loop().time() < deadline, "not waiting"
        await asyncio.sleep(0.02)


async def until(condition: Any, within_s: float = 10.0) -> None:
    deadline = asyncio.get_running_loop().time() + within_s
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, "timed out"
        await asyncio.sleep(0.02)


async def test_a_client_that_disconnects_mid_stream_leaves_nothing_behind(
    app, ws_url: str, alice: Caller
) -> None:
    workflow_id = await create(alice, *long_wait_workflow())
    execution_id = str((await execute(alice, workflow_id))["id"])
    fanout = app.state.services.fanout
    tasks_before = {task.get_name() for task in asyncio.all_tasks()}
    events = await asyncio.wait_for(collect(ws_url, alice.token, execution_id, limit=3), 20)
    assert len(events) == 3
    # The client is gone: its subscription, buffer and operation task go with it.
    await until(lambda: fanout.subscriptions == 0)
    assert fanout._streams == {}
    await until(lambda: {task.get_name() for task in asyncio.all_tasks()} <= tasks_before)
    await alice.gql(
        "mutation($id: ID!) { cancelExecution(id: $id) { __typename } }", {"id": execution_id}
    )


@contextlib.asynccontextmanager
async def served(app: Any, caller: Caller) -> AsyncIterator[tuple[str, Caller]]:
    """`app` served, and `caller` sending its HTTP requests to that app."""
    transport = httpx.ASGITransport(app=app)
    async with (
        serve(app) as url,
        httpx.AsyncClient(transport=transport, base_url="http://loom.test") as http,
    ):
        yield url, dataclasses.replace(caller, http=http)


async def test_a_subscriber_that_falls_behind_catches_up_from_the_database(
    database: Database, settings, registry, alice: Caller
) -> None:
    # A buffer of one event: every commit of two or more overflows it.
    app = create_app(
        settings.model_copy(update={"subscription_buffer": 1}), database=database, registry=registry
    )
    async with served(app, alice) as (url, alice):
        workflow_id = await create(
            alice,
            [node("start", "Start", "manual_trigger")]
            + [node(f"w{i}", f"Wait {i}", "wait", parameters=waits(0.02)) for i in range(8)],
            [edge("start", "w0")] + [edge(f"w{i}", f"w{i + 1}") for i in range(7)],
        )
        execution_id = str((await execute(alice, workflow_id))["id"])
        events = await asyncio.wait_for(collect(url, alice.token, execution_id), 5)
    assert [event["sequence"] for event in events] == list(range(1, len(events) + 1))
    assert essentials(events) == await stored(database, execution_id)


async def test_subscription_limits_per_connection_and_per_process(
    database: Database, settings, registry, alice: Caller
) -> None:
    limited = settings.model_copy(
        update={"max_subscriptions_per_connection": 1, "max_subscriptions": 2}
    )
    app = create_app(limited, database=database, registry=registry)
    async with served(app, alice) as (url, alice):
        workflow_id = await create(alice, *long_wait_workflow())
        execution_id = str((await execute(alice, workflow_id))["id"])
        request = gql(EXECUTION_EVENTS)
        request.variable_values = {"id": execution_id}

        async def first_event(session: Any) -> None:
            async with contextlib.aclosing(session.subscribe(request)) as results:
                async for _ in results:
                    return

        async with client(url, alice.token) as one, client(url, alice.token) as two:
            streams = [
                asyncio.create_task(_hold(one, request)),
                asyncio.create_task(_hold(two, request)),
            ]
            await until(lambda: app.state.services.fanout.subscriptions == 2)
            # A second operation on the same connection: over the per-connection limit.
            with pytest.raises(TransportQueryError, match="Subscription limit reached"):
                await asyncio.wait_for(first_event(one), 10)
            # A third connection: over this process's limit.
            async with client(url, alice.token) as three:
                with pytest.raises(TransportQueryError) as failure:
                    await asyncio.wait_for(first_event(three), 10)
            assert failure.value.errors is not None
            assert failure.value.errors[0]["extensions"]["code"] == "SUBSCRIPTION_LIMIT"
            for stream in streams:
                stream.cancel()
            await asyncio.gather(*streams, return_exceptions=True)
        await alice.gql(
            "mutation($id: ID!) { cancelExecution(id: $id) { __typename } }", {"id": execution_id}
        )


async def _hold(session: Any, request: Any) -> None:
    async for _ in session.subscribe(request):
        pass


async def test_subscribers_of_one_execution_share_each_live_result(
    app, ws_url: str, alice: Caller, database: Database
) -> None:
    from schema.sharing import SharedEventResults

    workflow_id = await create(alice, *wait_then_done(0.5))
    execution_id = str((await execute(alice, workflow_id))["id"])
    hits = SharedEventResults.hits
    results = await asyncio.wait_for(
        asyncio.gather(*(collect(ws_url, alice.token, execution_id) for _ in range(5))), 20
    )
    expected = await stored(database, execution_id)
    for events in results:
        assert essentials(events) == expected
    # The live events after the wait (at least NODE_SUCCEEDED, NODE_STARTED, ...) were
    # resolved once for the five subscribers.
    assert SharedEventResults.hits - hits >= 4 * 3


async def test_a_busy_stream_ends_soon_after_its_token_is_revoked(
    app, ws_url: str, alice: Caller
) -> None:
    """Events keep coming (so no idle check happens): the token is checked between them."""
    steps = 40
    nodes = [node("start", "Start", "manual_trigger")]
    nodes += [node(f"w{i}", f"W{i}", "wait", parameters=waits(0.1)) for i in range(steps)]
    edges = [edge("start", "w0")] + [edge(f"w{i}", f"w{i + 1}") for i in range(steps - 1)]
    workflow_id = await create(alice, nodes, edges)
    execution_id = str((await execute(alice, workflow_id))["id"])
    received: list[dict[str, Any]] = []
    revoked_at = None
    request = gql(EXECUTION_EVENTS)
    request.variable_values = {"id": execution_id}
    async with client(ws_url, alice.token) as session:
        with pytest.raises(TransportQueryError) as failure:
            async for result in session.subscribe(request):
                received.append(result["executionEvents"])
                if len(received) == 3:
                    await revoke_own_token(alice)
                    revoked_at = asyncio.get_running_loop().time()
    ended_after_s = asyncio.get_running_loop().time() - (revoked_at or 0)
    assert failure.value.errors is not None
    assert failure.value.errors[0]["extensions"]["code"] == "UNAUTHENTICATED"
    assert all(event["type"] != "EXECUTION_FINISHED" for event in received)
    assert ended_after_s < 2.5, ended_after_s  # checked at most a second apart
    await app.state.services.submitter.cancel(execution_id)


async def test_a_stream_ends_when_its_token_is_revoked(
    app, ws_url: str, alice: Caller, monkeypatch: pytest.MonkeyPatch
) -> None:
    from resolvers import subscriptions

    monkeypatch.setattr(subscriptions, "IDLE_CHECK_S", 0.2)
    workflow_id = await create(alice, *long_wait_workflow())
    execution_id = str((await execute(alice, workflow_id))["id"])
    received: list[dict[str, Any]] = []
    request = gql(EXECUTION_EVENTS)
    request.variable_values = {"id": execution_id}
    async with client(ws_url, alice.token) as session:
        with pytest.raises(TransportQueryError) as failure:
            async for result in session.subscribe(request):
                received.append(result["executionEvents"])
                if len(received) == 3:
                    await revoke_own_token(alice)
    assert failure.value.errors is not None
    assert failure.value.errors[0]["extensions"]["code"] == "UNAUTHENTICATED"
    await app.state.services.submitter.cancel(execution_id)
