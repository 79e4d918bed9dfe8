"""Sub-workflows in embedded mode: the Execute Workflow node calls another workflow of the same
workspace, waits for it (its execution goes WAITING meanwhile) or not, per item or with all
items; the call is linked in the API; refusals name the cause; a depth limit stops runaway
recursion; cancelling a caller cancels what it waits for."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from server.settings import Settings
from storage.db import Database
from tests.api.test_durable_wait import event_types
from tests.api.test_executions import create, execute
from tests.conftest import Caller
from tests.factories import PUBLISH, edge, node, only

EXECUTION = """
query($id: ID!) { execution(id: $id) {
  id status mode output callDepth parentExecutionId parentNodeId
  error { type message details }
  nodeRuns { nodeId status attempt error { type message details } }
  subExecutions { id status mode input output callDepth parentExecutionId parentNodeId }
} }
"""
UPDATE = """
mutation($id: ID!, $input: WorkflowInput!, $v: Int!) {
  updateWorkflow(id: $id, input: $input, expectedVersion: $v) {
    __typename ... on ValidationError { problems { code nodeId field message } }
  }
}
"""
CANCEL = (
    "mutation($id: ID!) { cancelExecution(id: $id) { __typename ... on Execution { status } } }"
)


@pytest.fixture
def settings() -> Settings:
    return Settings(  # type: ignore[call-arg]
        _env_file=None,
        token_cache_s=0.0,
        secret_key="test-secret-key-for-credentials",
        max_subworkflow_depth=3,
        max_node_output_bytes=OUTPUT_LIMIT,
    )


# The smallest output limit: calls whose outputs add up past it are refused.
OUTPUT_LIMIT = 64 * 1024


def caller_nodes(workflow_id: str, **parameters: Any) -> list[dict[str, Any]]:
    return [
        node("start", "Start", "manual_trigger"),
        node(
            "call",
            "Call",
            "execute_workflow",
            parameters={"workflowId": workflow_id, "source": "draft", **parameters},
        ),
    ]


CALLER_EDGES = [edge("start", "call")]

# Doubles `n` of every item it is sent.
DOUBLER_NODES = [
    node("called", "Called", "execute_workflow_trigger"),
    node(
        "double",
        "Double",
        "set",
        parameters={"fields": [{"name": "n", "value": "{{ $json.n * 2 }}"}], "include": "only_set"},
    ),
]
DOUBLER_EDGES = [edge("called", "double")]


async def fetch(caller: Caller, execution_id: str) -> dict[str, Any]:
    return dict((await caller.gql(EXECUTION, {"id": execution_id}))["execution"])


async def until(
    caller: Caller, execution_id: str, statuses: set[str], timeout_s: float = 10.0
) -> dict[str, Any]:
    deadline = asyncio.get_running_loop().time() + timeout_s
    while True:
        execution = await fetch(caller, execution_id)
        if execution["status"] in statuses:
            return execution
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"never reached {statuses}: {execution}")
        await asyncio.sleep(0.02)


async def run(caller: Caller, workflow_id: str, input: dict[str, Any]) -> dict[str, Any]:
    started = await execute(caller, workflow_id, input=input)
    assert started.get("id"), started
    return await until(caller, started["id"], {"SUCCEEDED", "FAILED", "CANCELLED"})


async def test_a_call_waits_for_the_called_workflow_and_outputs_what_it_returns(
    app: Any, alice: Caller, database: Database
) -> None:
    called = await create(alice, DOUBLER_NODES, DOUBLER_EDGES)
    calling = await create(alice, caller_nodes(called), CALLER_EDGES)
    done = await run(alice, calling, {"n": 21})
    assert done["status"] == "SUCCEEDED", done["error"]
    assert done["output"] == [{"n": 42}]
    (child,) = done["subExecutions"]
    assert child["mode"] == "subworkflow"
    assert child["status"] == "SUCCEEDED"
    assert child["input"] == {"items": [{"n": 21}]}
    assert child["output"] == [{"n": 42}]
    assert (child["parentExecutionId"], child["parentNodeId"], child["callDepth"]) == (
        done["id"],
        "call",
        1,
    )
    assert (done["parentExecutionId"], done["callDepth"]) == (None, 0)
    # The caller waited parked, holding no slot, and the child woke it.
    types = await event_types(database, done["id"])
    assert "EXECUTION_WAITING" in types and "EXECUTION_RESUMED" in types
    # One attempt of the calling node, continued after the wait.
    assert [(r["nodeId"], r["attempt"]) for r in done["nodeRuns"]] == [("start", 1), ("call", 1)]


async def test_each_item_runs_its_own_execution_and_outputs_keep_item_order(
    app: Any, alice: Caller
) -> None:
    slow_first = [
        node("called", "Called", "execute_workflow_trigger"),
        # The first item's execution takes longest: the output order must not follow the
        # order in which they end.
        node(
            "wait",
            "Wait",
            "wait",
            parameters={"amount": "{{ 0.3 if $json.n == 1 else 0 }}", "unit": "seconds"},
        ),
    ]
    called = await create(alice, slow_first, [edge("called", "wait")])
    fan_out = [
        node("start", "Start", "manual_trigger"),
        node("split", "Split", "split_out", parameters={"field": "ns"}),
        node(
            "call",
            "Call",
            "execute_workflow",
            parameters={"workflowId": called, "source": "draft", "mode": "each_item"},
        ),
    ]
    calling = await create(alice, fan_out, [edge("start", "split"), edge("split", "call")])
    done = await run(alice, calling, {"ns": [{"n": 1}, {"n": 2}, {"n": 3}]})
    assert done["status"] == "SUCCEEDED", done["error"]
    assert done["output"] == [{"n": 1}, {"n": 2}, {"n": 3}]
    assert len(done["subExecutions"]) == 3
    assert sorted(child["input"]["items"][0]["n"] for child in done["subExecutions"]) == [1, 2, 3]


async def test_calls_whose_outputs_add_up_past_the_output_limit_fail_before_they_are_read(
    app: Any, alice: Caller
) -> None:
    # Each call returns 30 KB, under the limit; four of them are the calling node's output.
    large = [
        node("called", "Called", "execute_workflow_trigger"),
        node(
            "grow",
            "Grow",
            "set",
            parameters={"fields": [{"name": "s", "value": "{{ 'x' * 30000 }}"}]},
        ),
    ]
    called = await create(alice, large, [edge("called", "grow")])
    fan_out = [
        node("start", "Start", "manual_trigger"),
        node("split", "Split", "split_out", parameters={"field": "ns"}),
        node(
            "call",
            "Call",
            "execute_workflow",
            parameters={"workflowId": called, "source": "draft", "mode": "each_item"},
        ),
    ]
    calling = await create(alice, fan_out, [edge("start", "split"), edge("split", "call")])
    done = await run(alice, calling, {"ns": [{"n": n} for n in range(4)]})
    assert done["status"] == "FAILED"
    assert all(child["status"] == "SUCCEEDED" for child in done["subExecutions"])
    error = done["error"]
    assert error["type"] == "NODE_OUTPUT_TOO_LARGE"
    assert error["details"]["maxBytes"] == OUTPUT_LIMIT
    # Refused on the outputs' stored sizes: the third call's passes the limit.
    third = sorted(done["subExecutions"], key=lambda child: child["input"]["items"][0]["n"])[2]
    assert error["message"].endswith(f"items of called execution {third['id']}"), error


async def test_fire_and_forget_passes_the_items_on_and_the_call_still_runs(
    app: Any, alice: Caller
) -> None:
    called = await create(alice, DOUBLER_NODES, DOUBLER_EDGES)
    calling = await create(alice, caller_nodes(called, waitForCompletion=False), CALLER_EDGES)
    done = await run(alice, calling, {"n": 5})
    assert done["status"] == "SUCCEEDED", done["error"]
    assert done["output"] == [{"n": 5}]
    (child,) = done["subExecutions"]
    child_done = await until(alice, child["id"], {"SUCCEEDED", "FAILED"})
    assert child_done["output"] == [{"n": 10}]


async def test_the_published_version_runs_unless_the_draft_is_asked_for(
    app: Any, alice: Caller
) -> None:
    called = await create(alice, DOUBLER_NODES, DOUBLER_EDGES)
    calling = await create(alice, caller_nodes(called, source="published"), CALLER_EDGES)
    refused = await run(alice, calling, {"n": 1})
    assert refused["status"] == "FAILED"
    assert refused["error"]["type"] == "WORKFLOW_NOT_PUBLISHED"
    assert refused["subExecutions"] == []
    published = only(await alice.gql(PUBLISH, {"id": called, "v": 1}))
    assert published["__typename"] == "Workflow", published
    # The draft changes after publishing: the call still runs what was published.
    changed = [
        DOUBLER_NODES[0],
        node(
            "double",
            "Double",
            "set",
            parameters={"fields": [{"name": "n", "value": "{{ $json.n * 100 }}"}]},
        ),
    ]
    result = only(
        await alice.gql(
            UPDATE,
            {
                "id": called,
                "v": 1,
                "input": {"name": "Doubler", "nodes": changed, "edges": DOUBLER_EDGES},
            },
        )
    )
    assert result["__typename"] == "Workflow", result
    done = await run(alice, calling, {"n": 3})
    assert done["status"] == "SUCCEEDED", done["error"]
    assert done["output"] == [{"n": 6}]


async def test_a_failed_call_fails_the_node_with_the_called_execution_named(
    app: Any, alice: Caller
) -> None:
    failing = [
        node("called", "Called", "execute_workflow_trigger"),
        node(
            "stop", "Stop", "stop_and_error", parameters={"message": "no stock for {{ $json.sku }}"}
        ),
    ]
    called = await create(alice, failing, [edge("called", "stop")])
    calling = await create(alice, caller_nodes(called), CALLER_EDGES)
    done = await run(alice, calling, {"sku": "A-1"})
    assert done["status"] == "FAILED"
    error = done["error"]
    assert error["type"] == "SUBWORKFLOW_FAILED"
    (child,) = done["subExecutions"]
    assert error["details"]["executionId"] == child["id"]
    assert "node 'Call'" in error["message"] and "no stock for A-1" in error["message"]
    assert child["status"] == "FAILED"


async def test_a_failed_call_can_be_routed_like_any_node_error(app: Any, alice: Caller) -> None:
    failing = [
        node("called", "Called", "execute_workflow_trigger"),
        node("stop", "Stop", "stop_and_error", parameters={"message": "broken"}),
    ]
    called = await create(alice, failing, [edge("called", "stop")])
    nodes = caller_nodes(called)
    nodes[1]["onError"] = "CONTINUE"
    calling = await create(alice, nodes, CALLER_EDGES)
    done = await run(alice, calling, {})
    assert done["status"] == "SUCCEEDED"
    assert done["output"][0]["error"]["type"] == "SUBWORKFLOW_FAILED"


async def test_a_workflow_calling_itself_stops_at_the_depth_limit(app: Any, alice: Caller) -> None:
    nodes = [
        node("called", "Called", "execute_workflow_trigger"),
        node("start", "Start", "manual_trigger"),
        node(
            "call",
            "Call",
            "execute_workflow",
            parameters={"workflowId": "{{ $workflow.id }}", "source": "draft"},
        ),
    ]
    edges = [edge("called", "call"), edge("start", "call")]
    workflow_id = await create(alice, nodes, edges)
    done = await run(alice, workflow_id, {})
    assert done["status"] == "FAILED"
    # The innermost call was refused; every level above failed with its child.
    depth, current = 0, done
    while current["subExecutions"]:
        (child,) = current["subExecutions"]
        current = await fetch(alice, child["id"])
        depth += 1
    assert depth == 3
    assert current["callDepth"] == 3
    assert current["error"]["type"] == "SUBWORKFLOW_DEPTH_EXCEEDED"
    assert "LOOM_MAX_SUBWORKFLOW_DEPTH" in current["error"]["message"]
    assert done["error"]["type"] == "SUBWORKFLOW_FAILED"


async def test_a_workflow_without_the_called_trigger_is_refused(app: Any, alice: Caller) -> None:
    plain = [node("start", "Start", "manual_trigger")]
    called = await create(alice, plain, [])
    calling = await create(alice, caller_nodes(called), CALLER_EDGES)
    done = await run(alice, calling, {})
    assert done["status"] == "FAILED"
    assert done["error"]["type"] == "NO_SUBWORKFLOW_TRIGGER"
    assert done["error"]["details"]["workflowId"] == called
    assert done["subExecutions"] == []


async def test_another_users_workflow_cannot_be_called_at_save_or_at_run_time(
    app: Any, alice: Caller, bob: Caller
) -> None:
    bobs = await create(bob, DOUBLER_NODES, DOUBLER_EDGES)
    # Named outright: refused at save, with the node and field.
    result = only(
        await alice.gql(
            """mutation($input: WorkflowInput!) { createWorkflow(input: $input) {
                __typename ... on ValidationError { problems { code nodeId field message } } } }""",
            {"input": {"name": "Sneaky", "nodes": caller_nodes(bobs), "edges": CALLER_EDGES}},
        )
    )
    assert result["__typename"] == "ValidationError"
    assert [(p["code"], p["nodeId"], p["field"]) for p in result["problems"]] == [
        ("UNKNOWN_WORKFLOW", "call", "parameters.workflowId")
    ]
    # Through an expression: refused when it runs, without saying whose it is.
    calling = await create(alice, caller_nodes("{{ $json.target }}"), CALLER_EDGES)
    done = await run(alice, calling, {"target": bobs})
    assert done["status"] == "FAILED"
    assert done["error"]["type"] == "UNKNOWN_WORKFLOW"
    assert done["subExecutions"] == []
    bobs_executions = await bob.gql("{ executions(first: 10) { edges { node { id } } } }")
    assert bobs_executions["executions"]["edges"] == []


async def test_cancelling_the_caller_cancels_the_call_it_waits_for(app: Any, alice: Caller) -> None:
    slow = [
        node("called", "Called", "execute_workflow_trigger"),
        node("wait", "Wait", "wait", parameters={"amount": 30, "unit": "seconds"}),
    ]
    called = await create(alice, slow, [edge("called", "wait")])
    calling = await create(alice, caller_nodes(called), CALLER_EDGES)
    started = await execute(alice, calling, input={})
    waiting = await until(alice, started["id"], {"WAITING"})
    (child,) = waiting["subExecutions"]
    await until(alice, child["id"], {"RUNNING", "WAITING"})
    cancelled = only(await alice.gql(CANCEL, {"id": started["id"]}))
    assert cancelled["status"] == "CANCELLED"
    child_done = await until(alice, child["id"], {"CANCELLED", "SUCCEEDED", "FAILED"})
    assert child_done["status"] == "CANCELLED"


async def test_cancelling_the_call_fails_the_caller_at_once(app: Any, alice: Caller) -> None:
    slow = [
        node("called", "Called", "execute_workflow_trigger"),
        node("wait", "Wait", "wait", parameters={"amount": 30, "unit": "seconds"}),
    ]
    called = await create(alice, slow, [edge("called", "wait")])
    calling = await create(alice, caller_nodes(called), CALLER_EDGES)
    started = await execute(alice, calling, input={})
    waiting = await until(alice, started["id"], {"WAITING"})
    (child,) = waiting["subExecutions"]
    await until(alice, child["id"], {"RUNNING", "WAITING"})
    await alice.gql(CANCEL, {"id": child["id"]})
    done = await until(alice, started["id"], {"FAILED", "SUCCEEDED"}, timeout_s=5)
    assert done["error"]["type"] == "SUBWORKFLOW_FAILED"
    assert done["error"]["details"]["status"] == "CANCELLED"


async def test_a_long_wait_beside_a_call_parks_again_when_the_call_wakes_the_run(
    app: Any, alice: Caller, database: Database
) -> None:
    called = await create(alice, DOUBLER_NODES, DOUBLER_EDGES)
    nodes = [
        *caller_nodes(called),
        # Longer than the durable wait threshold (30 s): parked, not slept.
        node("wait", "Wait", "wait", parameters={"amount": 60, "unit": "seconds"}),
    ]
    calling = await create(alice, nodes, [*CALLER_EDGES, edge("start", "wait")])
    started = await execute(alice, calling, input={"n": 1})
    for _ in range(250):
        execution = await fetch(alice, started["id"])
        runs = {run["nodeId"]: run["status"] for run in execution["nodeRuns"]}
        if execution["status"] == "WAITING" and runs.get("call") == "SUCCEEDED":
            break
        await asyncio.sleep(0.02)
    else:
        raise AssertionError(f"the call never completed while the wait stayed parked: {execution}")
    assert runs["wait"] == "RUNNING"
    # Woken once for the call; the wait went back to being parked rather than sleeping.
    types = await event_types(database, started["id"])
    assert types.count("EXECUTION_WAITING") == 2
    cancelled = only(await alice.gql(CANCEL, {"id": started["id"]}))
    assert cancelled["status"] == "CANCELLED"
