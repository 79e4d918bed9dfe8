"""Executing workflows over GraphQL in embedded mode, and what is recorded."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from sqlmodel import col, select

from storage import payloads
from storage.db import Database
from storage.models import ExecutionPayload, NodeRun, NodeRunPayload
from tests.conftest import Caller
from tests.factories import CREATE, edge, node

EXECUTION_FIELDS = """
  id status mode workflowVersion input output engineVersion retryOf createdAt startedAt finishedAt
  durationMs error { type message details }
  nodeRuns { id nodeId nodeName status attempt inputItems outputItems durationMs
             error { type message details } output outputTruncated outputPorts }
"""
EXECUTE = """
mutation($id: ID!, $input: JSON, $key: String, $start: ID) {
  executeWorkflow(id: $id, input: $input, idempotencyKey: $key, startNodeId: $start) {
    __typename
    ... on Execution { id status workflowVersion }
    ... on ValidationError { message problems { code message nodeId field } }
    ... on NotFoundError { message id }
  }
}
"""
GET_EXECUTION = f"query($id: ID!) {{ execution(id: $id) {{ {EXECUTION_FIELDS} }} }}"


async def create(caller: Caller, nodes: list[dict], edges: list[dict], **extra: Any) -> str:
    data = await caller.gql(
        CREATE, {"input": {"name": "Run me", "nodes": nodes, "edges": edges, **extra}}
    )
    result = data["createWorkflow"]
    assert result["__typename"] == "Workflow", result
    return str(result["id"])


async def execute(caller: Caller, workflow_id: str, **variables: Any) -> dict[str, Any]:
    data = await caller.gql(EXECUTE, {"id": workflow_id, **variables})
    return dict(data["executeWorkflow"])


async def finished(app: Any, caller: Caller, execution_id: str) -> dict[str, Any]:
    await app.state.services.submitter.wait(execution_id)
    data = await caller.gql(GET_EXECUTION, {"id": execution_id})
    return dict(data["execution"])


PIPELINE_NODES = [
    node("start", "Start", "manual_trigger"),
    node(
        "set",
        "Price",
        "set",
        parameters={"fields": [{"name": "total", "value": "{{ $json.price * $json.qty }}"}]},
    ),
    node(
        "if",
        "Big",
        "if",
        parameters={"conditions": [{"left": "{{ $json.total }}", "operator": "gt", "right": 10}]},
    ),
    node("big", "Big order", "noop"),
    node("small", "Small order", "noop"),
]
PIPELINE_EDGES = [
    edge("start", "set"),
    edge("set", "if"),
    edge("if", "big", sourceOutput="true"),
    edge("if", "small", sourceOutput="false"),
]


async def test_execute_runs_records_and_reports(app, alice: Caller) -> None:
    workflow_id = await create(alice, PIPELINE_NODES, PIPELINE_EDGES)
    started = await execute(alice, workflow_id, input={"price": 4, "qty": 5})
    assert started["__typename"] == "Execution"
    assert started["status"] in ("QUEUED", "RUNNING")
    execution = await finished(app, alice, started["id"])
    assert execution["status"] == "SUCCEEDED", execution
    assert execution["output"] == [{"price": 4, "qty": 5, "total": 20}]
    assert execution["workflowVersion"] == 1
    assert execution["engineVersion"]
    runs = {run["nodeId"]: run for run in execution["nodeRuns"]}
    assert {node_id: run["status"] for node_id, run in runs.items()} == {
        "start": "SUCCEEDED",
        "set": "SUCCEEDED",
        "if": "SUCCEEDED",
        "big": "SUCCEEDED",
        "small": "SKIPPED",
    }
    assert runs["set"]["output"] == [{"price": 4, "qty": 5, "total": 20}]
    assert runs["if"]["outputPorts"] == ["true"]
    assert runs["small"]["output"] is None
    # Executing snapshots the version that ran.
    versions = await alice.gql(
        "query($id: ID!) { workflow(id: $id) { versions { version } } }", {"id": workflow_id}
    )
    assert versions["workflow"]["versions"] == [{"version": 1}]


async def test_outputs_stored_once_are_referenced_not_stored_again(
    app, alice: Caller, database: Database
) -> None:
    """The trigger's output is the execution input and the execution output is the last
    node's: both are stored as references, and read back as the data."""
    workflow_id = await create(alice, PIPELINE_NODES, PIPELINE_EDGES)
    started = await execute(alice, workflow_id, input={"price": 4, "qty": 5})
    execution = await finished(app, alice, started["id"])
    runs = {run["nodeId"]: run for run in execution["nodeRuns"]}
    assert runs["start"]["output"] == [{"price": 4, "qty": 5}]
    assert runs["start"]["outputPorts"] == ["main"]
    assert execution["output"] == runs["big"]["output"] == [{"price": 4, "qty": 5, "total": 20}]
    async with database.session() as session:
        encodings = dict(
            (
                await session.exec(
                    select(NodeRun.node_id, NodeRunPayload.encoding)
                    .join(NodeRunPayload, col(NodeRunPayload.node_run_id) == col(NodeRun.id))
                    .where(NodeRun.execution_id == started["id"])
                )
            ).all()
        )
        output_row = (
            await session.exec(
                select(ExecutionPayload).where(
                    ExecutionPayload.execution_id == started["id"],
                    ExecutionPayload.kind == "output",
                )
            )
        ).one()
    assert encodings["start"] == payloads.INPUT_REFERENCE
    assert encodings["set"] == payloads.CHUNKED
    assert output_row.encoding == payloads.RUN_REFERENCE
    # A retry from the start reads the referenced trigger output of the first execution.
    data = await alice.gql(
        "mutation($id: ID!) { retryExecution(id: $id) { __typename ... on Execution { id } } }",
        {"id": started["id"]},
    )
    retry = await finished(app, alice, data["retryExecution"]["id"])
    assert retry["output"] == execution["output"]


async def test_a_lone_trigger_outputs_its_input_through_two_references(app, alice: Caller) -> None:
    workflow_id = await create(alice, [node("start", "Start", "manual_trigger")], [])
    started = await execute(alice, workflow_id, input={"a": [1, 2]})
    execution = await finished(app, alice, started["id"])
    assert execution["output"] == [{"a": [1, 2]}]
    assert execution["nodeRuns"][0]["output"] == [{"a": [1, 2]}]


async def test_idempotency_key_returns_the_same_execution(app, alice: Caller) -> None:
    workflow_id = await create(alice, PIPELINE_NODES, PIPELINE_EDGES)
    first = await execute(alice, workflow_id, key="order-17")
    second = await execute(alice, workflow_id, key="order-17")
    assert first["id"] == second["id"]
    await finished(app, alice, first["id"])
    listed = await alice.gql(
        "query($w: ID!) { executions(workflowId: $w) { edges { node { id } } } }",
        {"w": workflow_id},
    )
    assert len(listed["executions"]["edges"]) == 1


@pytest.mark.parametrize("bad_input", [[1, 2], "text", 3])
async def test_input_must_be_an_object(alice: Caller, bad_input: Any) -> None:
    workflow_id = await create(alice, PIPELINE_NODES, PIPELINE_EDGES)
    result = await execute(alice, workflow_id, input=bad_input)
    assert result["__typename"] == "ValidationError"
    assert result["problems"][0]["field"] == "input"


async def test_parameter_problems_block_execution(alice: Caller) -> None:
    workflow_id = await create(
        alice,
        [node("start", "Start", "manual_trigger"), node("l", "Limit", "limit")],
        [edge("start", "l")],
    )
    result = await execute(alice, workflow_id)
    assert result["__typename"] == "ValidationError"
    assert {problem["nodeId"] for problem in result["problems"]} == {"l"}


async def test_expression_syntax_errors_block_execution(alice: Caller) -> None:
    workflow_id = await create(
        alice,
        [
            node("start", "Start", "manual_trigger"),
            node(
                "s", "Set", "set", parameters={"fields": [{"name": "a", "value": "{{ $json. }}"}]}
            ),
        ],
        [edge("start", "s")],
    )
    result = await execute(alice, workflow_id)
    assert result["__typename"] == "ValidationError"
    problem = result["problems"][0]
    assert problem["nodeId"] == "s"
    assert problem["field"] == "parameters.fields[0].value"


async def test_failure_is_recorded_with_a_typed_error(app, alice: Caller) -> None:
    workflow_id = await create(
        alice,
        [
            node("start", "Start", "manual_trigger"),
            node(
                "stop", "Stop", "stop_and_error", parameters={"message": "bad order {{ $json.id }}"}
            ),
            node("wait", "Wait", "wait", parameters={"amount": 5, "unit": "seconds"}),
            node("never", "Never", "noop"),
        ],
        [edge("start", "stop"), edge("start", "wait"), edge("wait", "never")],
    )
    started = await execute(alice, workflow_id, input={"id": 7})
    execution = await finished(app, alice, started["id"])
    assert execution["status"] == "FAILED"
    assert execution["error"]["type"] == "STOP_AND_ERROR"
    assert "bad order 7" in execution["error"]["message"]
    runs = {run["nodeId"]: run["status"] for run in execution["nodeRuns"]}
    assert runs == {
        "start": "SUCCEEDED",
        "stop": "FAILED",
        "wait": "CANCELLED",
        "never": "CANCELLED",
    }


async def test_expression_failure_names_node_parameter_and_expression(app, alice: Caller) -> None:
    workflow_id = await create(
        alice,
        [
            node("start", "Start", "manual_trigger"),
            node(
                "s",
                "Set",
                "set",
                parameters={"fields": [{"name": "a", "value": "{{ $json.x.y }}"}]},
            ),
        ],
        [edge("start", "s")],
    )
    started = await execute(alice, workflow_id)
    execution = await finished(app, alice, started["id"])
    error = execution["error"]
    assert error["type"] == "EXPRESSION_ERROR"
    assert "'Set'" in error["message"] and "$json.x.y" in error["message"]
    assert error["details"]["parameter"] == "fields[0].value"


async def test_cancel_a_running_execution(app, alice: Caller) -> None:
    workflow_id = await create(
        alice,
        [
            node("start", "Start", "manual_trigger"),
            node("wait", "Wait", "wait", parameters={"amount": 30, "unit": "seconds"}),
            node("after", "After", "noop"),
        ],
        [edge("start", "wait"), edge("wait", "after")],
    )
    started = await execute(alice, workflow_id)
    for _ in range(100):
        data = await alice.gql(GET_EXECUTION, {"id": started["id"]})
        if any(run["status"] == "RUNNING" for run in data["execution"]["nodeRuns"]):
            break
        await asyncio.sleep(0.02)
    data = await alice.gql(
        "mutation($id: ID!) { cancelExecution(id: $id) { ... on Execution { status } } }",
        {"id": started["id"]},
    )
    assert data["cancelExecution"]["status"] == "CANCELLED"
    execution = await finished(app, alice, started["id"])
    # One attempt each: the cancelled wait is not given a second, cancelled attempt.
    runs = sorted((run["nodeId"], run["status"]) for run in execution["nodeRuns"])
    assert runs == [("after", "CANCELLED"), ("start", "SUCCEEDED"), ("wait", "CANCELLED")]


async def test_retry_from_the_failed_node_reuses_earlier_outputs(app, alice: Caller) -> None:
    workflow_id = await create(
        alice,
        [
            node("start", "Start", "manual_trigger"),
            node(
                "set",
                "Stamp",
                "set",
                parameters={"fields": [{"name": "at", "value": "{{ $now }}"}]},
            ),
            node("stop", "Stop", "stop_and_error", parameters={"message": "fail"}),
        ],
        [edge("start", "set"), edge("set", "stop")],
    )
    first = await finished(app, alice, (await execute(alice, workflow_id))["id"])
    assert first["status"] == "FAILED"
    data = await alice.gql(
        "mutation($id: ID!) { retryExecution(id: $id) { __typename ... on Execution { id } } }",
        {"id": first["id"]},
    )
    retry = await finished(app, alice, data["retryExecution"]["id"])
    assert retry["retryOf"] == first["id"]
    assert retry["mode"] == "retry"
    # Only the failed node ran again; the others' outputs were reused, not re-run.
    assert [run["nodeId"] for run in retry["nodeRuns"]] == ["stop"]


async def test_other_users_cannot_see_run_or_cancel_executions(
    app, alice: Caller, bob: Caller
) -> None:
    workflow_id = await create(alice, PIPELINE_NODES, PIPELINE_EDGES)
    started = await execute(alice, workflow_id)
    await finished(app, alice, started["id"])
    assert (await execute(bob, workflow_id))["__typename"] == "NotFoundError"
    assert (await bob.gql(GET_EXECUTION, {"id": started["id"]}))["execution"] is None
    listed = await bob.gql("{ executions { edges { node { id } } } }")
    assert listed["executions"]["edges"] == []
    for mutation in ("cancelExecution", "retryExecution"):
        data = await bob.gql(
            f"mutation($id: ID!) {{ {mutation}(id: $id) {{ __typename }} }}", {"id": started["id"]}
        )
        assert data[mutation]["__typename"] == "NotFoundError"


async def test_executing_a_deleted_workflow_is_not_found(alice: Caller) -> None:
    workflow_id = await create(alice, PIPELINE_NODES, PIPELINE_EDGES)
    await alice.gql(
        "mutation($id: ID!) { deleteWorkflow(id: $id) { __typename } }", {"id": workflow_id}
    )
    assert (await execute(alice, workflow_id))["__typename"] == "NotFoundError"


async def test_output_preview_is_capped_and_pages(app, alice: Caller) -> None:
    workflow_id = await create(
        alice,
        [
            node("start", "Start", "manual_trigger"),
            node("split", "Split", "split_out", parameters={"field": "rows"}),
        ],
        [edge("start", "split")],
    )
    rows = [{"n": index, "pad": "x" * 100} for index in range(50)]
    execution = await finished(
        app, alice, (await execute(alice, workflow_id, input={"rows": rows}))["id"]
    )
    run_id = next(run["id"] for run in execution["nodeRuns"] if run["nodeId"] == "split")
    data = await alice.gql(
        """query($id: ID!) { execution(id: $id) { nodeRuns {
             id output(maxBytes: 1000) outputTruncated(maxBytes: 1000)
             outputPage(offset: 40, limit: 5) {
               port items offset total truncated nextOffset } } } }""",
        {"id": execution["id"]},
    )
    split = next(run for run in data["execution"]["nodeRuns"] if run["id"] == run_id)
    assert split["outputTruncated"] is True
    assert 1 <= len(split["output"]) < 50
    page = split["outputPage"]
    assert page["offset"] == 40 and page["total"] == 50 and page["nextOffset"] == 45
    assert [item["n"] for item in page["items"]] == [40, 41, 42, 43, 44]


async def test_nul_characters_survive_in_outputs(app, alice: Caller) -> None:
    workflow_id = await create(alice, PIPELINE_NODES, PIPELINE_EDGES)
    started = await execute(alice, workflow_id, input={"price": 1, "qty": 1, "note": "a\u0000b"})
    execution = await finished(app, alice, started["id"])
    assert execution["status"] == "SUCCEEDED"
    run = next(run for run in execution["nodeRuns"] if run["nodeId"] == "set")
    assert run["output"][0]["note"] == "a\u0000b"


async def test_concurrent_first_runs_of_a_revision_all_start(app, alice: Caller) -> None:
    """The first run of a revision writes its snapshot; concurrent runs must not use the
    snapshot before that transaction commits."""
    workflow_id = await create(alice, PIPELINE_NODES, PIPELINE_EDGES)

    async def later(delay: float, price: int) -> dict[str, Any]:
        await asyncio.sleep(delay)  # staggered: some arrive while the first one commits
        return await execute(alice, workflow_id, input={"price": price, "qty": 1})

    started = await asyncio.gather(*(later(i * 0.0005, i) for i in range(40)))
    assert {result["__typename"] for result in started} == {"Execution"}
    for result in started:
        await app.state.services.submitter.wait(result["id"])
