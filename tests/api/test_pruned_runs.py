"""Runs that keep none of their data (issue 17, "What is kept"): a live subscriber sees their
end; once the pruner has deleted them (`LOOM_PRUNE_NONE_AFTER_S` after the end), a
subscriber, a cancel, a retry and a webhook's repeat get a clean answer (NOT_FOUND, or the
webhook's normal one), never a 500, also when the prune lands in the middle of them. A
webhook's repeat by its Idempotency-Key gets the first run's answer from the key's row
(storage/idempotency.py) until the key expires, and only then starts a new run."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import timedelta
from itertools import pairwise
from typing import Any

import httpx
import pytest
from gql.transport.exceptions import TransportQueryError
from sqlmodel import update

from storage.db import Database
from storage.models import WebhookIdempotencyKey
from storage.retention import PruneRecord, RetentionPolicy, prune
from storage.types import utcnow
from tests.api.test_executions import create, execute
from tests.api.test_webhooks import activate
from tests.conftest import Caller
from tests.factories import edge, node
from tests.live import collect, http_url, serve
from tests.polling import until

CANCEL = """
mutation($id: ID!) { cancelExecution(id: $id) {
  __typename ... on Execution { status } ... on NotFoundError { id } } }
"""
RETRY = """
mutation($id: ID!) { retryExecution(id: $id) {
  __typename ... on Execution { id } ... on NotFoundError { id } } }
"""
STATUS = "query($id: ID!) { execution(id: $id) { status } }"
WAIT = node("wait", "Wait", "wait", parameters={"amount": 0.5, "unit": "seconds"})


@pytest.fixture
async def ws_url(app: Any) -> AsyncIterator[str]:
    async with serve(app) as url:
        yield url


@pytest.fixture
async def http(ws_url: str) -> AsyncIterator[httpx.AsyncClient]:
    base = http_url(ws_url).removesuffix("/graphql")
    async with httpx.AsyncClient(base_url=base, timeout=30) as client:
        yield client


async def prune_discarded(database: Database) -> PruneRecord:
    """The frequent prune, as it runs once the grace period has passed."""
    later = utcnow() + timedelta(seconds=61)
    # None while the server's own prune holds the lock: then again.
    found: PruneRecord = await until(
        lambda: prune(database, RetentionPolicy(), only_discarded=True, now=later),
        what="a prune (not skipped for the server's own)",
    )
    return found


async def ended(caller: Caller, execution_id: str) -> bool:
    shown = (await caller.gql(STATUS, {"id": execution_id}))["execution"]
    return shown is not None and shown["status"] == "SUCCEEDED"


async def manual_none_run(app: Any, caller: Caller, nodes: list[dict[str, Any]]) -> str:
    settings = {"saveManualExecutions": "none"}
    edges = [edge(a["id"], b["id"]) for a, b in pairwise(nodes)]
    workflow_id = await create(caller, nodes, edges, settings=settings)
    started = await execute(caller, workflow_id)
    assert started["__typename"] == "Execution", started
    return str(started["id"])


async def test_a_live_subscriber_of_a_manual_run_that_keeps_nothing_sees_its_end(
    app: Any, ws_url: str, alice: Caller, database: Database
) -> None:
    execution_id = await manual_none_run(
        app, alice, [node("start", "Start", "manual_trigger"), WAIT, node("done", "Done")]
    )
    events = await asyncio.wait_for(collect(ws_url, alice.token, execution_id), 20)
    assert (events[-1]["type"], events[-1]["status"]) == ("EXECUTION_FINISHED", "SUCCEEDED")
    assert (await prune_discarded(database)).executions_deleted == 1
    with pytest.raises(TransportQueryError) as failure:
        await asyncio.wait_for(collect(ws_url, alice.token, execution_id), 20)
    assert failure.value.errors is not None
    assert failure.value.errors[0]["extensions"]["code"] == "NOT_FOUND"
    cancelled = (await alice.gql(CANCEL, {"id": execution_id}))["cancelExecution"]
    assert cancelled == {"__typename": "NotFoundError", "id": execution_id}
    retried = (await alice.gql(RETRY, {"id": execution_id}))["retryExecution"]
    assert retried == {"__typename": "NotFoundError", "id": execution_id}


async def test_a_live_subscriber_of_a_webhook_run_that_keeps_nothing_sees_its_end(
    ws_url: str, http: httpx.AsyncClient, alice: Caller, database: Database
) -> None:
    hook = node("hook", "Hook", "webhook", parameters={"path": "kept-nothing"})
    nodes = [hook, WAIT, node("done", "Done")]
    edges = [edge("hook", "wait"), edge("wait", "done")]
    workflow_id = await create(alice, nodes, edges, settings={"saveDataOnSuccess": "none"})
    assert await activate(alice, workflow_id) == {"__typename": "Workflow", "active": True}
    key = {"Idempotency-Key": "kept-nothing-1"}
    accepted = await http.post("/webhook/kept-nothing", json={}, headers=key)
    assert accepted.status_code == 202, accepted.text
    execution_id = accepted.json()["executionId"]
    events = await asyncio.wait_for(collect(ws_url, alice.token, execution_id), 20)
    assert (events[-1]["type"], events[-1]["status"]) == ("EXECUTION_FINISHED", "SUCCEEDED")
    assert (await prune_discarded(database)).executions_deleted == 1
    with pytest.raises(TransportQueryError) as failure:
        await asyncio.wait_for(collect(ws_url, alice.token, execution_id), 20)
    assert failure.value.errors is not None
    assert failure.value.errors[0]["extensions"]["code"] == "NOT_FOUND"
    # The key outlives the run: the repeat gets the first run's id, and starts none.
    again = await http.post("/webhook/kept-nothing", json={}, headers=key)
    assert again.status_code == 202, again.text
    assert again.json()["executionId"] == execution_id
    assert await count(database, "executions") == 0


async def test_a_cancel_that_the_prune_overtakes_is_not_found(
    app: Any, alice: Caller, database: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    execution_id = await manual_none_run(app, alice, [node("start", "Start", "manual_trigger")])
    await until(lambda: ended(alice, execution_id), what="the run ended")
    store = app.state.services.lifecycle.store
    descendants = store.waited_descendants

    async def pruned_first(found_id: str) -> Any:
        # The cancel has read the execution; the prune deletes it before it reads it back.
        await prune_discarded(database)
        return await descendants(found_id)

    monkeypatch.setattr(store, "waited_descendants", pruned_first)
    cancelled = (await alice.gql(CANCEL, {"id": execution_id}))["cancelExecution"]
    assert cancelled == {"__typename": "NotFoundError", "id": execution_id}


async def count(database: Database, table: str) -> int:
    async with database.engine.connect() as connection:
        found = await connection.exec_driver_sql(f"SELECT count(*) FROM {table}")
        return int(found.scalar_one())


async def expire_keys(database: Database) -> None:
    """Backdate the webhook idempotency keys past `LOOM_IDEMPOTENCY_KEY_TTL_HOURS` (24)."""
    async with database.transaction() as session:
        await session.exec(  # type: ignore[call-overload]
            update(WebhookIdempotencyKey).values(created_at=utcnow() - timedelta(hours=25))
        )


def answering_hook(path: str) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    answer = node(
        "plus",
        "Plus",
        "set",
        parameters={"fields": [{"name": "n", "value": "{{ 5 }}"}], "include": "only_set"},
    )
    hook = node("hook", "Hook", "webhook", parameters={"path": path, "responseMode": "last_node"})
    return [hook, answer], [edge("hook", "plus")]


async def test_a_webhook_repeat_after_the_prune_gets_the_first_answer_from_its_key(
    http: httpx.AsyncClient, alice: Caller, database: Database
) -> None:
    nodes, edges = answering_hook("answer")
    workflow_id = await create(alice, nodes, edges, settings={"saveDataOnSuccess": "none"})
    assert await activate(alice, workflow_id) == {"__typename": "Workflow", "active": True}
    key = {"Idempotency-Key": "answer-1"}
    first = await http.post("/webhook/answer", json={}, headers=key)
    assert (first.status_code, first.json()) == (200, [{"n": 5}])
    assert (await prune_discarded(database)).executions_deleted == 1
    again = await http.post("/webhook/answer", json={}, headers=key)
    assert (again.status_code, again.json()) == (200, [{"n": 5}])
    assert await count(database, "executions") == 0


async def test_an_expired_key_of_a_pruned_run_starts_a_new_run(
    http: httpx.AsyncClient, alice: Caller, database: Database
) -> None:
    hook = node("hook", "Hook", "webhook", parameters={"path": "late"})
    workflow_id = await create(alice, [hook], [], settings={"saveDataOnSuccess": "none"})
    assert await activate(alice, workflow_id) == {"__typename": "Workflow", "active": True}
    key = {"Idempotency-Key": "late-1"}
    first = (await http.post("/webhook/late", json={}, headers=key)).json()["executionId"]
    await until(lambda: ended(alice, first), what="the run ended")
    assert (await prune_discarded(database)).executions_deleted == 1
    await expire_keys(database)
    again = await http.post("/webhook/late", json={}, headers=key)
    assert again.status_code == 202, again.text
    second = again.json()["executionId"]
    assert second != first
    # The key is the new run's now, for the next TTL.
    repeat = await http.post("/webhook/late", json={}, headers=key)
    assert repeat.json()["executionId"] == second


async def test_a_repeat_of_an_expired_key_that_the_prune_overtakes_starts_anew(
    app: Any,
    http: httpx.AsyncClient,
    alice: Caller,
    database: Database,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    nodes, edges = answering_hook("overtaken")
    workflow_id = await create(alice, nodes, edges, settings={"saveDataOnSuccess": "none"})
    assert await activate(alice, workflow_id) == {"__typename": "Workflow", "active": True}
    key = {"Idempotency-Key": "answer-2"}
    first = await http.post("/webhook/overtaken", json={}, headers=key)
    assert (first.status_code, first.json()) == (200, [{"n": 5}])
    # The key expired while the run is still stored: the executions' unique key finds it.
    await expire_keys(database)
    store = app.state.services.lifecycle.store
    find_started = store.find_started

    async def pruned_after_found(*args: Any) -> Any:
        # The repeat finds the first run by its key; the prune deletes it before the
        # repeat reads its answer.
        found = await find_started(*args)
        if found is not None:
            await prune_discarded(database)
        return found

    monkeypatch.setattr(store, "find_started", pruned_after_found)
    again = await http.post("/webhook/overtaken", json={}, headers=key)
    assert (again.status_code, again.json()) == (200, [{"n": 5}])
    assert await count(database, "executions") == 1  # the new run
    # The key is the new run's: its repeat gets its answer and starts none.
    monkeypatch.setattr(store, "find_started", find_started)
    await prune_discarded(database)
    third = await http.post("/webhook/overtaken", json={}, headers=key)
    assert (third.status_code, third.json()) == (200, [{"n": 5}])
    assert await count(database, "executions") == 0


async def test_a_retry_whose_source_the_prune_deletes_meanwhile_is_not_found(
    app: Any, alice: Caller, database: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    workflow_id = await create(alice, [node("start", "Start", "manual_trigger")], [])
    source = str((await execute(alice, workflow_id))["id"])
    await until(lambda: ended(alice, source), what="the run ended")
    store = app.state.services.lifecycle.store
    create_started = store.create

    async def pruned_first(*args: Any) -> Any:
        # The retry has read its source; the prune deletes it before the retry is written.
        later = utcnow() + timedelta(hours=2)
        record = await until(
            lambda: prune(database, RetentionPolicy(max_age_hours=1), now=later),
            what="a prune (not skipped for the server's own)",
        )
        assert record.executions_deleted == 1
        return await create_started(*args)

    monkeypatch.setattr(store, "create", pruned_first)
    retried = (await alice.gql(RETRY, {"id": source}))["retryExecution"]
    assert retried == {"__typename": "NotFoundError", "id": source}


async def test_a_run_to_a_node_whose_reused_execution_is_pruned_meanwhile_is_not_found(
    app: Any, alice: Caller, database: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    nodes = [node("start", "Start", "manual_trigger"), node("a", "A"), node("b", "B")]
    workflow_id = await create(alice, nodes, [edge("start", "a"), edge("a", "b")])
    source = str((await execute(alice, workflow_id))["id"])
    await until(lambda: ended(alice, source), what="the first run's end")
    lifecycle = app.state.services.lifecycle
    # The prune lands between the run's preparation (which read the earlier execution) and
    # its creation, on whichever path the process creates runs by.
    targets = [(lifecycle.store, "create")]
    if lifecycle.starts is not None:
        targets.append((lifecycle.starts, "store_and_run"))
    for holder, name in targets:
        original = getattr(holder, name)

        async def pruned_first(*args: Any, original: Any = original) -> Any:
            later = utcnow() + timedelta(hours=2)
            await until(
                lambda: prune(database, RetentionPolicy(max_age_hours=1), now=later),
                what="a prune",
            )
            return await original(*args)

        monkeypatch.setattr(holder, name, pruned_first)
    answer = await alice.gql(
        "mutation($id: ID!, $d: ID, $r: ID) { executeWorkflow(id: $id, destinationNodeId: $d,"
        " reuseFrom: $r) { __typename ... on NotFoundError { id } } }",
        {"id": workflow_id, "d": "b", "r": source},
    )
    assert answer["executeWorkflow"] == {"__typename": "NotFoundError", "id": source}
