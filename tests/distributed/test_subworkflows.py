"""Sub-workflows in distributed mode: a caller waiting for its call goes WAITING and gives its
worker slot up, so calls nested deeper than the pool is wide still finish; the call's end
wakes the caller through the queue at once, not at its next check."""

from __future__ import annotations

import time
from typing import Any

import pytest

from tests.distributed.cluster import Cluster
from tests.distributed.test_workers import trigger

pytestmark = [pytest.mark.postgres, pytest.mark.redis]


def called_trigger() -> dict[str, Any]:
    return {"id": "called", "name": "Called", "type": "execute_workflow_trigger"}


def call(workflow_id: str, **parameters: Any) -> dict[str, Any]:
    return {
        "id": "call",
        "name": "Call",
        "type": "execute_workflow",
        "parameters": {"workflowId": workflow_id, "source": "draft", **parameters},
    }


def add_one() -> dict[str, Any]:
    return {
        "id": "add",
        "name": "Add",
        "type": "set",
        "parameters": {"fields": [{"name": "n", "value": "{{ $json.n + 1 }}"}]},
    }


async def test_calls_nested_deeper_than_one_slot_finish_on_a_one_slot_worker(
    cluster: Cluster,
) -> None:
    await cluster.start_worker(concurrency=1)
    # Level 3 adds one; levels 2 and 1 call the level below and add one to what it returns.
    innermost = await cluster.create_workflow(
        [called_trigger(), add_one()], [{"source": "called", "target": "add"}]
    )
    middle = await cluster.create_workflow(
        [called_trigger(), call(innermost), add_one()],
        [{"source": "called", "target": "call"}, {"source": "call", "target": "add"}],
    )
    outer = await cluster.create_workflow(
        [trigger(), call(middle), add_one()],
        [{"source": "start", "target": "call"}, {"source": "call", "target": "add"}],
    )
    started = time.monotonic()
    execution_id = await cluster.execute(outer, {"n": 0})
    await cluster.wait_for([execution_id], {"SUCCEEDED", "FAILED"}, within_s=30)
    elapsed = time.monotonic() - started
    data = await cluster.gql(
        """query($id: ID!) { execution(id: $id) { status output error { type message }
             subExecutions { id callDepth subExecutions { id callDepth status } } } }""",
        {"id": execution_id},
    )
    execution = data["execution"]
    assert execution["status"] == "SUCCEEDED", execution["error"]
    assert execution["output"] == [{"n": 3}]
    (child,) = execution["subExecutions"]
    (grandchild,) = child["subExecutions"]
    assert (child["callDepth"], grandchild["callDepth"]) == (1, 2)
    # Each caller parked while its call ran, and was woken by it rather than by its
    # five-minute check.
    events = [event_type for _, event_type, _ in await cluster.events(execution_id)]
    assert events.count("EXECUTION_WAITING") == 1 and events.count("EXECUTION_RESUMED") == 1
    assert elapsed < 10, elapsed


async def test_many_callers_waiting_at_once_do_not_starve_their_calls(cluster: Cluster) -> None:
    await cluster.start_worker(concurrency=2)
    callee = await cluster.create_workflow(
        [called_trigger(), add_one()], [{"source": "called", "target": "add"}]
    )
    caller = await cluster.create_workflow(
        [trigger(), call(callee)], [{"source": "start", "target": "call"}]
    )
    # Eight callers, two slots: without parking, two callers would hold both slots and wait
    # for calls that could never start.
    ids = [await cluster.execute(caller, {"n": index}) for index in range(8)]
    found = await cluster.wait_for(ids, {"SUCCEEDED", "FAILED"}, within_s=30)
    assert set(found.values()) == {"SUCCEEDED"}
    rows = await cluster.sql(
        "SELECT count(*) FROM executions WHERE parent_execution_id = ANY(:ids)", ids=ids
    )
    assert rows[0][0] == 8
