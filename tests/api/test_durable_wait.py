"""Durable waits in embedded mode: a long wait parks the execution (WAITING) and resumes it,
continuing the same attempt; cancelling a parked execution; concurrency limits."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from server.settings import Settings
from storage import executions
from storage.db import Database
from tests import polling
from tests.api.test_executions import GET_EXECUTION, create, execute
from tests.conftest import Caller
from tests.factories import edge, node


@pytest.fixture
def settings() -> Settings:
    # Waits longer than 0.3 s park the execution.
    return Settings(_env_file=None, token_cache_s=0.0, durable_wait_s=0.3)  # type: ignore[call-arg]


WAIT_NODES = [
    node("start", "Start", "manual_trigger"),
    node("wait", "Wait", "wait", parameters={"amount": 1.2, "unit": "seconds"}),
    node("after", "After", "noop"),
]
WAIT_EDGES = [edge("start", "wait"), edge("wait", "after")]


async def status_of(caller: Caller, execution_id: str) -> dict[str, Any]:
    data = await caller.gql(GET_EXECUTION, {"id": execution_id})
    return dict(data["execution"])


async def until(caller: Caller, execution_id: str, statuses: set[str]) -> dict[str, Any]:
    for _ in range(300):
        execution = await status_of(caller, execution_id)
        if execution["status"] in statuses:
            return execution
        await asyncio.sleep(0.02)
    raise AssertionError(f"execution never reached {statuses}: {execution['status']}")


async def event_types(database: Database, execution_id: str) -> list[str]:
    async with database.session() as session:
        rows = await executions.events(session, execution_id)
    assert [row.sequence for row in rows] == list(range(1, len(rows) + 1))
    return [row.type for row in rows]


async def test_a_long_wait_parks_the_execution_and_resumes_the_same_attempt(
    app, alice: Caller, database: Database
) -> None:
    workflow_id = await create(alice, WAIT_NODES, WAIT_EDGES)
    started = await execute(alice, workflow_id, input={"n": 1})
    waiting = await until(alice, started["id"], {"WAITING"})
    runs = {run["nodeId"]: run["status"] for run in waiting["nodeRuns"]}
    assert runs == {"start": "SUCCEEDED", "wait": "RUNNING"}
    done = await until(alice, started["id"], {"SUCCEEDED", "FAILED"})
    assert done["status"] == "SUCCEEDED", done["error"]
    assert done["output"] == [{"n": 1}]
    assert [(run["nodeId"], run["attempt"], run["status"]) for run in done["nodeRuns"]] == [
        ("start", 1, "SUCCEEDED"),
        ("wait", 1, "SUCCEEDED"),
        ("after", 1, "SUCCEEDED"),
    ]
    # The wait took its whole time, parked or not.
    assert done["nodeRuns"][1]["durationMs"] >= 1150
    types = await event_types(database, started["id"])
    assert types == [
        "EXECUTION_QUEUED",
        "EXECUTION_STARTED",
        "NODE_STARTED",
        "NODE_SUCCEEDED",
        "NODE_STARTED",
        "EXECUTION_WAITING",
        "EXECUTION_RESUMED",
        "NODE_SUCCEEDED",
        "NODE_STARTED",
        "NODE_SUCCEEDED",
        "EXECUTION_FINISHED",
    ]


async def test_cancelling_a_waiting_execution(app, alice: Caller) -> None:
    workflow_id = await create(alice, WAIT_NODES, WAIT_EDGES)
    started = await execute(alice, workflow_id)
    await until(alice, started["id"], {"WAITING"})
    data = await alice.gql(
        "mutation($id: ID!) { cancelExecution(id: $id) { ... on Execution { status } } }",
        {"id": started["id"]},
    )
    assert data["cancelExecution"]["status"] == "CANCELLED"
    # Its parked task ended (cancelled, or past its resume time): nothing can run it again.
    submitter = app.state.services.submitter
    await polling.until(lambda: started["id"] not in submitter.running(), what="its task to end")
    execution = await status_of(alice, started["id"])
    assert execution["status"] == "CANCELLED"
    assert {run["nodeId"]: run["status"] for run in execution["nodeRuns"]} == {
        "start": "SUCCEEDED",
        "wait": "CANCELLED",
    }


async def test_short_waits_do_not_park(app, alice: Caller, database: Database) -> None:
    nodes = [
        node("start", "Start", "manual_trigger"),
        node("wait", "Wait", "wait", parameters={"amount": 0.1, "unit": "seconds"}),
    ]
    workflow_id = await create(alice, nodes, [edge("start", "wait")])
    started = await execute(alice, workflow_id)
    await app.state.services.submitter.wait(started["id"])
    assert (await status_of(alice, started["id"]))["status"] == "SUCCEEDED"
    assert "EXECUTION_WAITING" not in await event_types(database, started["id"])


async def test_max_concurrent_executions_queues_the_rest_fifo(app, alice: Caller) -> None:
    nodes = [
        node("start", "Start", "manual_trigger"),
        # Long enough that the first is still running when the three have been read, on a
        # loaded machine too.
        node("wait", "Wait", "wait", parameters={"amount": 1.0, "unit": "seconds"}),
    ]
    workflow_id = await create(
        alice, nodes, [edge("start", "wait")], settings={"maxConcurrentExecutions": 1}
    )
    ids = [(await execute(alice, workflow_id, input={"i": i}))["id"] for i in range(3)]
    statuses = [(await status_of(alice, i))["status"] for i in ids]
    # The first holds the slot while it runs or waits (a wait this long parks it).
    assert statuses[0] in ("QUEUED", "RUNNING", "WAITING") and statuses[1:] == ["QUEUED"] * 2
    finished = [await until(alice, i, {"SUCCEEDED"}) for i in ids]
    starts = [execution["startedAt"] for execution in finished]
    ends = [execution["finishedAt"] for execution in finished]
    assert starts == sorted(starts)  # first in, first out
    assert starts[1] >= ends[0] and starts[2] >= ends[1]  # one at a time


async def test_cancelling_an_execution_gives_its_slot_to_the_next(app, alice: Caller) -> None:
    workflow_id = await create(
        alice, WAIT_NODES, WAIT_EDGES, settings={"maxConcurrentExecutions": 1}
    )
    first = (await execute(alice, workflow_id))["id"]
    second = (await execute(alice, workflow_id))["id"]
    await until(alice, first, {"WAITING"})
    assert (await status_of(alice, second))["status"] == "QUEUED"
    await alice.gql(
        "mutation($id: ID!) { cancelExecution(id: $id) { ... on Execution { status } } }",
        {"id": first},
    )
    # The second one gets the slot at once, and parks in its turn.
    assert (await until(alice, second, {"WAITING", "RUNNING"}))["status"] in ("WAITING", "RUNNING")
