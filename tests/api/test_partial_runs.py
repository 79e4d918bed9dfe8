"""Running to a node, reusing what is still valid, and running one node on given items
(issue 16 point 2): what runs, what is reused and shown so, and every bad request refused
with nothing stored."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from sqlmodel import col, delete, select, update

from engine.events import Event, EventType, NodeRunState, Record
from engine.states import NodeRunStatus
from storage import executions, payloads, workflows
from storage.db import Database
from storage.models import Execution, NodeRun, NodeRunPayload, Workflow, new_id
from storage.recorder import GroupCommitWriter
from tests.api.test_executions import create, execute, finished
from tests.api.test_node_type_policies import set_enabled
from tests.conftest import Caller, DbState, MakeCaller
from tests.factories import UPDATE_NODE, edge, node, only

RUN_TO = """
mutation($id: ID!, $to: ID, $from: ID, $input: JSON, $start: ID) {
  executeWorkflow(id: $id, destinationNodeId: $to, reuseFrom: $from, input: $input,
                  startNodeId: $start) {
    __typename
    ... on Execution { id destinationNodeId reusedFrom nodeOnly mode }
    ... on ValidationError { problems { code field nodeId message } }
    ... on NotFoundError { id }
  }
}
"""
EXECUTE_NODE = """
mutation($wf: ID!, $node: ID!, $items: JSON!) {
  executeNode(workflowId: $wf, nodeId: $node, items: $items) {
    __typename
    ... on Execution { id destinationNodeId reusedFrom nodeOnly mode }
    ... on ValidationError { problems { code field nodeId message } }
    ... on NotFoundError { id }
  }
}
"""
RUNS = """
query($id: ID!) {
  execution(id: $id) {
    status output destinationNodeId reusedFrom nodeOnly input
    nodeRuns { nodeId status source output }
  }
}
"""


def _set(node_id: str, name: str, value: str) -> dict[str, Any]:
    return node(
        node_id, node_id.upper(), "set", parameters={"fields": [{"name": name, "value": value}]}
    )


NO_ID = "00000000-0000-0000-0000-000000000000"
NODES = [
    node("start", "Start", "manual_trigger"),
    _set("a", "a", "{{ 1 }}"),
    _set("b", "b", "{{ $json.a + 1 }}"),
    _set("c", "c", "{{ $json.b * 10 }}"),
    _set("side", "side", "{{ 'not needed' }}"),
]
EDGES = [edge("start", "a"), edge("a", "b"), edge("b", "c"), edge("start", "side")]


async def run_to(caller: Caller, workflow_id: str, **variables: Any) -> Any:
    return only(await caller.gql(RUN_TO, {"id": workflow_id, **variables}))


async def runs_of(app: Any, caller: Caller, execution_id: str) -> dict[str, Any]:
    await finished(app, caller, execution_id)
    return dict((await caller.gql(RUNS, {"id": execution_id}))["execution"])


def sources(execution: dict[str, Any]) -> dict[str, str]:
    return {run["nodeId"]: run["source"] for run in execution["nodeRuns"]}


async def change_node(caller: Caller, workflow_id: str, data: dict[str, Any], version: int) -> None:
    result = only(
        await caller.gql(
            UPDATE_NODE, {"wf": workflow_id, "nodeId": data["id"], "node": data, "v": version}
        )
    )
    assert result["__typename"] == "Workflow", result


async def test_a_run_to_the_last_node_reuses_every_unchanged_ancestor(app, alice: Caller) -> None:
    workflow_id = await create(alice, NODES, EDGES)
    first = await runs_of(app, alice, (await execute(alice, workflow_id))["id"])
    assert first["status"] == "SUCCEEDED"
    first_id = (await alice.gql("{ executions { edges { node { id } } } }"))["executions"]["edges"][
        0
    ]["node"]["id"]
    await change_node(alice, workflow_id, _set("c", "c", "{{ $json.b * 100 }}"), 1)
    started = await run_to(alice, workflow_id, to="c")
    assert started["__typename"] == "Execution", started
    assert (started["mode"], started["destinationNodeId"], started["reusedFrom"]) == (
        "manual",
        "c",
        first_id,
    )
    execution = await runs_of(app, alice, started["id"])
    assert execution["status"] == "SUCCEEDED", execution
    # The side branch is not needed: not run, not recorded.
    assert sources(execution) == {"start": "REUSED", "a": "REUSED", "b": "REUSED", "c": "RAN"}
    runs = {run["nodeId"]: run for run in execution["nodeRuns"]}
    assert runs["b"]["output"] == [{"a": 1, "b": 2}]
    assert execution["output"] == [{"a": 1, "b": 2, "c": 200}]


async def test_a_changed_node_runs_again_with_everything_after_it(app, alice: Caller) -> None:
    workflow_id = await create(alice, NODES, EDGES)
    first = (await execute(alice, workflow_id))["id"]
    await finished(app, alice, first)
    await change_node(alice, workflow_id, _set("a", "a", "{{ 5 }}"), 1)
    execution = await runs_of(app, alice, (await run_to(alice, workflow_id, to="c"))["id"])
    assert sources(execution) == {"start": "REUSED", "a": "RAN", "b": "RAN", "c": "RAN"}
    assert execution["output"] == [{"a": 5, "b": 6, "c": 60}]


async def test_reused_outputs_are_copied_and_outlive_the_execution_they_came_from(
    app, alice: Caller, database: Database
) -> None:
    """Each execution owns its node runs' payload rows (copied in the database, not pointed
    at): deleting the earlier execution (retention) leaves the reused outputs readable."""
    workflow_id = await create(alice, NODES, EDGES)
    first = (await execute(alice, workflow_id))["id"]
    await finished(app, alice, first)
    await change_node(alice, workflow_id, _set("c", "c", "{{ $json.b * 100 }}"), 1)
    later = (await run_to(alice, workflow_id, to="c"))["id"]
    await finished(app, alice, later)

    async def stored(execution_id: str) -> dict[str, tuple[str, int, bytes]]:
        async with database.session() as session:
            rows = await session.exec(
                select(
                    NodeRun.node_id,
                    NodeRunPayload.encoding,
                    NodeRunPayload.raw_bytes,
                    NodeRunPayload.data,
                )
                .join(NodeRunPayload, col(NodeRunPayload.node_run_id) == col(NodeRun.id))
                .where(NodeRun.execution_id == execution_id)
            )
            return {node_id: (encoding, size, data) for node_id, encoding, size, data in rows}

    earlier, copied = await stored(first), await stored(later)
    # Rows of their own, as they were (the trigger's a reference to the input, equal in both).
    assert {node_id: copied[node_id] for node_id in ("start", "a", "b")} == {
        node_id: earlier[node_id] for node_id in ("start", "a", "b")
    }
    assert copied["start"][0] == "ref:input"
    async with database.transaction() as session:
        await session.exec(delete(Execution).where(col(Execution.id) == first))
    execution = await runs_of(app, alice, later)
    assert execution["reusedFrom"] is None
    assert sources(execution) == {"start": "REUSED", "a": "REUSED", "b": "REUSED", "c": "RAN"}
    assert {run["nodeId"]: run["output"] for run in execution["nodeRuns"]} == {
        "start": [{}],
        "a": [{"a": 1}],
        "b": [{"a": 1, "b": 2}],
        "c": [{"a": 1, "b": 2, "c": 200}],
    }


async def test_a_run_to_a_middle_node_stops_there(app, alice: Caller) -> None:
    workflow_id = await create(alice, NODES, EDGES)
    execution = await runs_of(app, alice, (await run_to(alice, workflow_id, to="b"))["id"])
    # Nothing to reuse yet: what the node needs runs, and nothing else.
    assert execution["reusedFrom"] is None
    assert sources(execution) == {"start": "RAN", "a": "RAN", "b": "RAN"}
    assert execution["output"] == [{"a": 1, "b": 2}]


async def test_another_input_reuses_nothing(app, alice: Caller) -> None:
    workflow_id = await create(alice, NODES, EDGES)
    await finished(app, alice, (await execute(alice, workflow_id, input={"x": 1}))["id"])
    execution = await runs_of(
        app, alice, (await run_to(alice, workflow_id, to="c", input={"x": 2}))["id"]
    )
    assert set(sources(execution).values()) == {"RAN"}


async def test_reuse_from_a_chosen_execution(app, alice: Caller) -> None:
    workflow_id = await create(alice, NODES, EDGES)
    chosen = (await execute(alice, workflow_id))["id"]
    await finished(app, alice, chosen)
    await change_node(alice, workflow_id, _set("a", "a", "{{ 7 }}"), 1)
    await finished(app, alice, (await execute(alice, workflow_id))["id"])
    # The chosen (older) execution's `a` is not the draft's any more; `start` still is.
    started = await run_to(alice, workflow_id, to="b", **{"from": chosen})
    assert started["reusedFrom"] == chosen
    execution = await runs_of(app, alice, started["id"])
    assert sources(execution) == {"start": "REUSED", "a": "RAN", "b": "RAN"}


async def test_execute_node_runs_one_node_on_given_items(app, alice: Caller) -> None:
    workflow_id = await create(alice, NODES, EDGES)
    started = only(
        await alice.gql(
            EXECUTE_NODE, {"wf": workflow_id, "node": "c", "items": [{"b": 3}, {"b": 4}]}
        )
    )
    assert started["__typename"] == "Execution", started
    assert (started["mode"], started["nodeOnly"], started["destinationNodeId"]) == (
        "manual",
        True,
        "c",
    )
    execution = await runs_of(app, alice, started["id"])
    assert execution["status"] == "SUCCEEDED", execution
    assert sources(execution) == {"c": "RAN"}
    assert execution["output"] == [{"b": 3, "c": 30}, {"b": 4, "c": 40}]
    assert execution["input"] == {"items": [{"b": 3}, {"b": 4}]}
    # A node run on given items is never what a later run to a node reuses.
    later = await run_to(alice, workflow_id, to="c")
    assert later["reusedFrom"] is None


async def test_execute_node_needs_only_that_node_to_be_valid(
    app, alice: Caller, db_state: DbState
) -> None:
    """As n8n's "test step": other nodes may have problems still; the node's own stop it."""
    broken = _set("a", "a", "{{ $json.a + }}")
    workflow_id = await create(alice, [NODES[0], broken, *NODES[2:]], EDGES)
    started = only(
        await alice.gql(EXECUTE_NODE, {"wf": workflow_id, "node": "c", "items": [{"b": 3}]})
    )
    assert started["__typename"] == "Execution", started
    execution = await runs_of(app, alice, started["id"])
    assert (execution["status"], execution["output"]) == ("SUCCEEDED", [{"b": 3, "c": 30}])
    result = await _refused(
        alice, db_state, EXECUTE_NODE, {"wf": workflow_id, "node": "a", "items": [{}]}
    )
    assert result["__typename"] == "ValidationError", result
    assert {(p["code"], p["nodeId"]) for p in result["problems"]} == {("EXPRESSION_SYNTAX", "a")}
    # A whole run still needs every node valid.
    whole = only(await alice.gql(RUN_TO, {"id": workflow_id, "to": "c"}))
    assert whole["__typename"] == "ValidationError", whole


async def _refused(caller: Caller, db_state: DbState, query: str, variables: Any) -> Any:
    before = await db_state()
    result = only(await caller.gql(query, variables))
    assert await db_state() == before
    return result


@pytest.mark.parametrize(
    ("variables", "code", "field"),
    [
        ({"to": "ghost"}, "INVALID_DESTINATION_NODE", "destinationNodeId"),
        ({"to": "orphan"}, "DESTINATION_NOT_DOWNSTREAM", "destinationNodeId"),
        ({"to": "c", "start": "orphan"}, "DESTINATION_NOT_DOWNSTREAM", "destinationNodeId"),
        (
            {"from": "00000000-0000-0000-0000-000000000000"},
            "REUSE_WITHOUT_DESTINATION",
            "reuseFrom",
        ),
    ],
    ids=[
        "no such node",
        "not downstream of a trigger",
        "not downstream of the start",
        "no destination",
    ],
)
@pytest.mark.parametrize("ran_before", [False, True], ids=["first run", "ran before"])
async def test_bad_runs_to_a_node_are_refused(
    app,
    alice: Caller,
    db_state: DbState,
    variables: dict[str, Any],
    code: str,
    field: str,
    ran_before: bool,
) -> None:
    orphan = node("orphan", "Orphan", "noop")
    workflow_id = await create(alice, [*NODES, orphan], EDGES)
    if ran_before:  # this revision checked and run to a node already: checked again
        await finished(app, alice, (await run_to(alice, workflow_id, to="c"))["id"])
    result = await _refused(alice, db_state, RUN_TO, {"id": workflow_id, **variables})
    assert result["__typename"] == "ValidationError", result
    assert [(p["code"], p["field"]) for p in result["problems"]] == [(code, field)]


async def test_reuse_from_another_workflow_or_another_user_is_refused(
    app, alice: Caller, bob: Caller, db_state: DbState
) -> None:
    workflow_id = await create(alice, NODES, EDGES)
    other = await create(alice, NODES, EDGES)
    others = (await execute(alice, other))["id"]
    await finished(app, alice, others)
    result = await _refused(alice, db_state, RUN_TO, {"id": workflow_id, "to": "c", "from": others})
    assert [(p["code"], p["field"]) for p in result["problems"]] == [
        ("REUSE_FROM_OTHER_WORKFLOW", "reuseFrom")
    ]
    bobs_workflow = await create(bob, NODES, EDGES)
    bobs = (await execute(bob, bobs_workflow))["id"]
    await finished(app, bob, bobs)
    result = await _refused(alice, db_state, RUN_TO, {"id": workflow_id, "to": "c", "from": bobs})
    assert (result["__typename"], result["id"]) == ("NotFoundError", bobs)


@pytest.mark.parametrize(
    ("node_id", "items", "code", "field"),
    [
        ("ghost", [{"b": 1}], "NODE_NOT_FOUND", "nodeId"),
        ("c", [{"b": 1}, 2], "INVALID_ITEMS", "items[1]"),
        ("c", {"b": 1}, "INVALID_ITEMS", "items"),
    ],
)
async def test_bad_execute_node_requests_are_refused(
    alice: Caller, db_state: DbState, node_id: str, items: Any, code: str, field: str
) -> None:
    workflow_id = await create(alice, NODES, EDGES)
    result = await _refused(
        alice, db_state, EXECUTE_NODE, {"wf": workflow_id, "node": node_id, "items": items}
    )
    assert [(p["code"], p["field"]) for p in result["problems"]] == [(code, field)]


async def test_a_disabled_node_type_refuses_execute_node_and_runs_to_a_node(
    app, alice: Caller, make_caller: MakeCaller, db_state: DbState
) -> None:
    admin = await make_caller("root", admin=True)
    workflow_id = await create(alice, NODES, EDGES)
    # Run to the node once at this revision: the next run to it checks the policies again.
    await finished(app, alice, (await run_to(alice, workflow_id, to="c"))["id"])
    assert (await set_enabled(admin, "set", False))["__typename"] == "NodeType"
    for query, variables in (
        (EXECUTE_NODE, {"wf": workflow_id, "node": "c", "items": [{"b": 1}]}),
        (RUN_TO, {"id": workflow_id, "to": "c"}),
    ):
        result = await _refused(alice, db_state, query, variables)
        assert result["__typename"] == "ValidationError", result
        assert {p["code"] for p in result["problems"]} == {"NODE_TYPE_DISABLED"}


async def test_a_failure_on_the_way_cancels_only_what_the_node_needs(app, alice: Caller) -> None:
    nodes = [NODES[0], _set("a", "a", "{{ $json.x.y }}"), *NODES[2:]]
    workflow_id = await create(alice, nodes, EDGES)
    execution = await runs_of(app, alice, (await run_to(alice, workflow_id, to="c"))["id"])
    assert execution["status"] == "FAILED"
    statuses = {run["nodeId"]: run["status"] for run in execution["nodeRuns"]}
    assert statuses == {"start": "SUCCEEDED", "a": "FAILED", "b": "CANCELLED", "c": "CANCELLED"}


async def test_a_run_started_elsewhere_is_not_reused(app, alice: Caller) -> None:
    # Two roots feed `m`: a run from the trigger and a run from `r2` give it different items.
    nodes = [
        node("start", "Start", "manual_trigger"),
        _set("a", "a", "{{ 1 }}"),
        _set("r2", "r", "{{ 'r2' }}"),
        _set("m", "m", "{{ $json.a || $json.r }}"),
        _set("c", "c", "{{ $json.m }}"),
    ]
    edges = [edge("start", "a"), edge("a", "m"), edge("r2", "m"), edge("m", "c")]
    workflow_id = await create(alice, nodes, edges)
    whole = (await execute(alice, workflow_id))["id"]
    await runs_of(app, alice, whole)
    from_r2 = await run_to(alice, workflow_id, to="c", start="r2")
    execution = await runs_of(app, alice, from_r2["id"])
    assert "REUSED" not in sources(execution).values(), execution
    assert execution["output"] == [{"r": "r2", "m": "r2", "c": "r2"}]


async def test_a_partial_run_is_not_retried_as_a_whole_run(app, alice: Caller) -> None:
    workflow_id = await create(alice, NODES, EDGES)
    retry = "mutation($id: ID!) { retryExecution(id: $id) { __typename " + (
        "... on ValidationError { problems { code field } } } }"
    )
    tested = only(
        await alice.gql(EXECUTE_NODE, {"wf": workflow_id, "node": "c", "items": [{"b": 3}]})
    )
    partial = await run_to(alice, workflow_id, to="b")
    for started in (tested, partial):
        await runs_of(app, alice, started["id"])
        result = only(await alice.gql(retry, {"id": started["id"]}))
        assert [(p["code"], p["field"]) for p in result["problems"]] == [
            ("PARTIAL_RUN_NOT_RETRYABLE", "id")
        ]


async def test_execute_node_of_a_node_with_several_inputs_is_refused(
    alice: Caller, db_state: DbState
) -> None:
    nodes = [*NODES, node("merge", "Merge", "merge")]
    edges = [
        *EDGES,
        edge("b", "merge", targetInput="input1"),
        edge("c", "merge", targetInput="input2"),
    ]
    workflow_id = await create(alice, nodes, edges)
    result = await _refused(
        alice, db_state, EXECUTE_NODE, {"wf": workflow_id, "node": "merge", "items": [{"x": 1}]}
    )
    assert [(p["code"], p["field"]) for p in result["problems"]] == [
        ("NODE_HAS_SEVERAL_INPUTS", "nodeId")
    ]


async def test_a_reuse_from_that_cannot_be_an_id_is_not_found(
    alice: Caller, db_state: DbState
) -> None:
    workflow_id = await create(alice, NODES, EDGES)
    for bad in ("ab\x00c", "x" * 100):
        result = await _refused(
            alice, db_state, RUN_TO, {"id": workflow_id, "to": "c", "from": bad}
        )
        assert result["__typename"] == "NotFoundError", result


@pytest.mark.parametrize("status", ["QUEUED", "RUNNING", "WAITING"])
async def test_reuse_from_an_unfinished_execution_is_refused(
    app, alice: Caller, database: Database, db_state: DbState, status: str
) -> None:
    """As the default reuseFrom: a run still going has not stored what it will (and the
    saved-data settings may yet delete its payloads when it ends)."""
    workflow_id = await create(alice, NODES, EDGES)
    going = (await execute(alice, workflow_id))["id"]
    await finished(app, alice, going)
    async with database.transaction() as session:
        await session.exec(
            update(Execution).where(col(Execution.id) == going).values(status=status)
        )
    result = await _refused(alice, db_state, RUN_TO, {"id": workflow_id, "to": "c", "from": going})
    assert result["__typename"] == "ValidationError", result
    assert [(p["code"], p["field"]) for p in result["problems"]] == [
        ("REUSE_FROM_UNFINISHED", "reuseFrom")
    ]


@pytest.mark.parametrize("gone", [False, True], ids=["copied", "earlier row gone"])
async def test_a_reused_output_is_stored_even_when_the_earlier_row_is_gone(
    app, alice: Caller, database: Database, gone: bool
) -> None:
    """A run to a node loads the earlier outputs, then the writer copies their payload rows:
    an earlier execution deleted in between (retention, a deletion) leaves no node run that
    succeeded without its output; the output the run holds is stored instead."""
    workflow_id = await create(alice, NODES, EDGES)
    first = (await execute(alice, workflow_id))["id"]
    await finished(app, alice, first)
    async with database.transaction() as session:
        earlier_run = (
            await session.exec(
                select(NodeRun.id).where(NodeRun.execution_id == first, NodeRun.node_id == "b")
            )
        ).one()
        workflow = await session.get(Workflow, workflow_id)
        assert workflow is not None
        snapshot = await workflows.ensure_snapshot(session, workflow, None)
        later = await executions.create_execution(
            session, workflow=workflow, snapshot=snapshot, mode="manual", input={}, created_by=None
        )
    if gone:
        async with database.transaction() as session:
            await session.exec(delete(Execution).where(col(Execution.id) == first))
    now = datetime.now(UTC)
    state = NodeRunState(
        new_id(), "b", "B", 1, NodeRunStatus.SUCCEEDED, now, now, 1, 1, source="REUSED"
    )
    outputs = {"main": [{"a": 1, "b": 2}]}
    event = Event(later.id, 2, EventType.NODE_SUCCEEDED, now, "b", "B", 1, "SUCCEEDED")
    writer = GroupCommitWriter(database)
    writer.fence(later.id, 0)
    try:
        writer.emit(Record(event, state, payload_from=earlier_run, reused=outputs))
        await writer.flush()
    finally:
        await writer.stop()
    async with database.session() as session:
        stored = (
            await session.exec(
                select(NodeRunPayload.encoding, NodeRunPayload.data).where(
                    NodeRunPayload.node_run_id == state.id
                )
            )
        ).one()
    assert payloads.decode(stored[1], stored[0]) == outputs


async def test_execute_node_is_not_refused_for_another_nodes_disabled_type(
    app, alice: Caller, make_caller: MakeCaller, db_state: DbState
) -> None:
    """Another node of a disabled type does not refuse the node run alone; the node's own
    disabled type does (dangling edges and unknown types, which a draft cannot be saved
    with, are tests/engine/test_partial.py's)."""
    admin = await make_caller("root", admin=True)
    workflow_id = await create(alice, [*NODES, node("idle", "Idle", "noop")], EDGES)
    assert (await set_enabled(admin, "noop", False))["__typename"] == "NodeType"
    started = only(
        await alice.gql(EXECUTE_NODE, {"wf": workflow_id, "node": "c", "items": [{"b": 3}]})
    )
    assert started["__typename"] == "Execution", started
    execution = await runs_of(app, alice, started["id"])
    assert (execution["status"], execution["output"]) == ("SUCCEEDED", [{"b": 3, "c": 30}])
    result = await _refused(
        alice, db_state, EXECUTE_NODE, {"wf": workflow_id, "node": "idle", "items": [{}]}
    )
    assert {(p["code"], p["nodeId"]) for p in result["problems"]} == {
        ("NODE_TYPE_DISABLED", "idle")
    }


async def test_a_run_reuses_outputs_that_were_reused_themselves(
    app, alice: Caller, database: Database
) -> None:
    """E3 reuses E2, which reused E1: the copies are copied again, and stay whole when E1
    and E2 are deleted."""
    workflow_id = await create(alice, NODES, EDGES)
    first = (await execute(alice, workflow_id))["id"]
    await finished(app, alice, first)
    await change_node(alice, workflow_id, _set("c", "c", "{{ $json.b * 100 }}"), 1)
    second = await run_to(alice, workflow_id, to="c")
    assert second["reusedFrom"] == first
    await finished(app, alice, second["id"])
    await change_node(alice, workflow_id, _set("c", "c", "{{ $json.b * 1000 }}"), 2)
    third = await run_to(alice, workflow_id, to="c")
    assert third["reusedFrom"] == second["id"]
    await finished(app, alice, third["id"])
    async with database.transaction() as session:
        await session.exec(delete(Execution).where(col(Execution.id).in_([first, second["id"]])))
    execution = await runs_of(app, alice, third["id"])
    assert sources(execution) == {"start": "REUSED", "a": "REUSED", "b": "REUSED", "c": "RAN"}
    assert {run["nodeId"]: run["output"] for run in execution["nodeRuns"]} == {
        "start": [{}],
        "a": [{"a": 1}],
        "b": [{"a": 1, "b": 2}],
        "c": [{"a": 1, "b": 2, "c": 2000}],
    }
