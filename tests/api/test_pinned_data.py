"""Pinned data (issue 16 point 1): items pinned as a node's output on the draft, used by
manual executions instead of running the node, ignored by every other kind of execution,
and every bad pin refused with nothing stored."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import httpx
import pytest
from sqlalchemy import event
from sqlmodel import col, select

from engine.nodes.base import SubworkflowCall
from engine.nodes.subworkflow import TRIGGER
from engine.ports import CreatedExecution, StartRequest
from server.app import create_app
from server.settings import Settings
from storage import errors, executions, workflows
from storage.db import Database
from storage.execution_source import DatabaseExecutionSource
from storage.models import Workflow, WorkflowVersion, new_id
from storage.recorder import GroupCommitWriter
from storage.subworkflows import DatabaseWorkflowCaller
from tests.api.test_executions import create, execute, finished
from tests.api.test_expression_preview import EVALUATE_PARAMETERS
from tests.conftest import Caller, DbState
from tests.factories import (
    DUPLICATE,
    PUBLISH,
    REMOVE_NODE,
    RESULT_FIELDS,
    UPDATE,
    edge,
    node,
    only,
)

PIN = f"""
mutation($wf: ID!, $nodeId: ID!, $items: JSON!, $v: Int!) {{
  pinNodeData(workflowId: $wf, nodeId: $nodeId, items: $items, expectedVersion: $v) {{
    {RESULT_FIELDS}
    ... on Workflow {{ nodes {{ id pinnedData }} }}
  }}
}}
"""
UNPIN = f"""
mutation($wf: ID!, $nodeId: ID!, $v: Int!) {{
  unpinNodeData(workflowId: $wf, nodeId: $nodeId, expectedVersion: $v) {{
    {RESULT_FIELDS}
    ... on Workflow {{ nodes {{ id pinnedData }} }}
  }}
}}
"""
PINS = "query($id: ID!) { workflow(id: $id) { nodes { id pinnedData } } }"
RUNS = """
query($id: ID!) {
  execution(id: $id) {
    status output nodeRuns { nodeId status source inputItems outputItems output }
  }
}
"""

NODES = [
    node("start", "Start", "manual_trigger"),
    # Fails when it runs (`$json.x` is undefined): as a call of an unreachable service would.
    node(
        "fetch", "Fetch", "set", parameters={"fields": [{"name": "a", "value": "{{ $json.x.y }}"}]}
    ),
    node(
        "total",
        "Total",
        "set",
        parameters={"fields": [{"name": "total", "value": "{{ $json.price * 2 }}"}]},
    ),
]
EDGES = [edge("start", "fetch"), edge("fetch", "total")]
ITEMS = [{"price": 4}, {"price": 5}]
EVALUATE = """
query($w: ID!, $n: ID!, $e: String!) {
  evaluateExpression(workflowId: $w, nodeId: $n, expression: $e, itemIndex: 0) {
    __typename ... on ExpressionValue { value }
  }
}
"""


async def pin(caller: Caller, workflow_id: str, node_id: str, items: Any, version: int) -> Any:
    return only(
        await caller.gql(PIN, {"wf": workflow_id, "nodeId": node_id, "items": items, "v": version})
    )


async def unpin(caller: Caller, workflow_id: str, node_id: str, version: int) -> Any:
    return only(await caller.gql(UNPIN, {"wf": workflow_id, "nodeId": node_id, "v": version}))


def pins_of(workflow: dict[str, Any]) -> dict[str, Any]:
    return {n["id"]: n["pinnedData"] for n in workflow["nodes"] if n["pinnedData"] is not None}


async def test_pins_are_a_versioned_draft_change_shown_on_the_node(alice: Caller) -> None:
    workflow_id = await create(alice, NODES, EDGES)
    pinned = await pin(alice, workflow_id, "fetch", ITEMS, 1)
    assert pinned["__typename"] == "Workflow", pinned
    assert pinned["version"] == 2
    assert pins_of(pinned) == {"fetch": ITEMS}
    # Pinning again replaces the items; a stale version is a conflict.
    stale = await pin(alice, workflow_id, "fetch", [{"price": 1}], 1)
    assert (stale["__typename"], stale["currentVersion"]) == ("VersionConflictError", 2)
    again = await pin(alice, workflow_id, "fetch", [{"price": 1}], 2)
    assert (again["version"], pins_of(again)) == (3, {"fetch": [{"price": 1}]})
    unpinned = await unpin(alice, workflow_id, "fetch", 3)
    assert (unpinned["version"], pins_of(unpinned)) == (4, {})
    refused = await unpin(alice, workflow_id, "fetch", 4)
    assert [(p["code"], p["field"]) for p in refused["problems"]] == [("NOT_PINNED", "nodeId")]


async def test_a_manual_execution_gives_pinned_items_without_running_the_node(
    app, alice: Caller
) -> None:
    workflow_id = await create(alice, NODES, EDGES)
    await pin(alice, workflow_id, "fetch", ITEMS, 1)
    started = await execute(alice, workflow_id)
    await finished(app, alice, started["id"])
    execution = (await alice.gql(RUNS, {"id": started["id"]}))["execution"]
    assert execution["status"] == "SUCCEEDED", execution
    assert execution["output"] == [{"price": 4, "total": 8}, {"price": 5, "total": 10}]
    runs = {run["nodeId"]: run for run in execution["nodeRuns"]}
    assert {node_id: run["source"] for node_id, run in runs.items()} == {
        "start": "RAN",
        "fetch": "PINNED",
        "total": "RAN",
    }
    assert runs["fetch"] == {
        "nodeId": "fetch",
        "status": "SUCCEEDED",
        "source": "PINNED",
        "inputItems": 1,
        "outputItems": 2,
        "output": ITEMS,
    }
    # Unpinned, the node runs again (and here fails, as it would call the service).
    await unpin(alice, workflow_id, "fetch", 2)
    again = await finished(app, alice, (await execute(alice, workflow_id))["id"])
    assert again["status"] == "FAILED"


async def test_a_pinned_trigger_gives_its_items_instead_of_the_input(app, alice: Caller) -> None:
    workflow_id = await create(alice, NODES[:1] + NODES[2:], [edge("start", "total")])
    await pin(alice, workflow_id, "start", [{"price": 21}], 1)
    execution = await finished(app, alice, (await execute(alice, workflow_id))["id"])
    assert execution["output"] == [{"price": 21, "total": 42}]


async def test_an_execution_uses_the_pins_of_the_draft_it_snapshotted(
    app, alice: Caller, database: Database
) -> None:
    workflow_id = await create(alice, NODES, EDGES)
    await pin(alice, workflow_id, "fetch", ITEMS, 1)
    first = await finished(app, alice, (await execute(alice, workflow_id))["id"])
    await pin(alice, workflow_id, "fetch", [{"price": 50}], 2)
    second = await finished(app, alice, (await execute(alice, workflow_id))["id"])
    assert first["output"] == [{"price": 4, "total": 8}, {"price": 5, "total": 10}]
    assert second["output"] == [{"price": 50, "total": 100}]
    async with database.session() as session:
        query = (
            select(WorkflowVersion.version, WorkflowVersion.pinned_data)
            .where(WorkflowVersion.workflow_id == workflow_id)
            .order_by(col(WorkflowVersion.version))
        )
        snapshots = [tuple(row) for row in await session.exec(query)]
    assert snapshots == [(2, {"fetch": ITEMS}), (3, {"fetch": [{"price": 50}]})]


@pytest.mark.parametrize("mode", ["webhook", "schedule", "retry", "subworkflow"])
async def test_other_executions_than_manual_ignore_pins(
    alice: Caller, database: Database, mode: str
) -> None:
    workflow_id = await create(alice, NODES, EDGES)
    await pin(alice, workflow_id, "fetch", ITEMS, 1)
    async with database.transaction() as session:
        workflow = await session.get(Workflow, workflow_id)
        assert workflow is not None
        snapshot = await workflows.ensure_snapshot(session, workflow, None)
        rows = {
            each: await executions.create_execution(
                session,
                workflow=workflow,
                snapshot=snapshot,
                mode=each,
                input={},
                created_by=None,
            )
            for each in ("manual", mode)
        }
    source = DatabaseExecutionSource(database, GroupCommitWriter(database))
    manual = await source.load(rows["manual"].id)
    other = await source.load(rows[mode].id)
    assert manual is not None and other is not None
    assert manual.pinned == {"fetch": ITEMS}
    assert other.pinned == {}


async def test_removing_a_node_removes_its_pins(alice: Caller) -> None:
    workflow_id = await create(alice, NODES, EDGES)
    await pin(alice, workflow_id, "total", ITEMS, 1)
    await pin(alice, workflow_id, "fetch", ITEMS, 2)
    removed = only(await alice.gql(REMOVE_NODE, {"wf": workflow_id, "nodeId": "total", "v": 3}))
    assert removed["__typename"] == "Workflow", removed
    shown = only(
        await alice.gql(
            "query($id: ID!) { workflow(id: $id) { nodes { id pinnedData } } }",
            {"id": workflow_id},
        )
    )
    assert pins_of(shown) == {"fetch": ITEMS}


@pytest.mark.parametrize(
    ("node_id", "items", "code", "field"),
    [
        ("ghost", ITEMS, "NODE_NOT_FOUND", "nodeId"),
        ("fetch", {"price": 4}, "INVALID_ITEMS", "items"),
        ("fetch", [{"price": 4}, 7], "INVALID_ITEMS", "items[1]"),
        ("fetch", [["nested"]], "INVALID_ITEMS", "items[0]"),
        ("fetch", "text", "INVALID_ITEMS", "items"),
    ],
)
async def test_bad_pins_are_refused_and_nothing_is_stored(
    alice: Caller, db_state: DbState, node_id: str, items: Any, code: str, field: str
) -> None:
    workflow_id = await create(alice, NODES, EDGES)
    before = await db_state()
    refused = await pin(alice, workflow_id, node_id, items, 1)
    assert refused["__typename"] == "ValidationError", refused
    assert [(p["code"], p["field"]) for p in refused["problems"]] == [(code, field)]
    assert await db_state() == before


async def test_pins_over_the_size_limit_are_refused(
    alice: Caller, database: Database, registry: Any, db_state: DbState
) -> None:
    settings = Settings(_env_file=None, token_cache_s=0.0, max_pinned_bytes=1000)  # type: ignore[call-arg]
    app = create_app(settings, database=database, registry=registry)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as http:
        small = Caller(http=http, user_id=alice.user_id, name=alice.name, token=alice.token)
        await _over_the_limit(alice, small, db_state)


async def _over_the_limit(alice: Caller, small: Caller, db_state: DbState) -> None:
    workflow_id = await create(alice, NODES, EDGES)
    assert (await pin(small, workflow_id, "start", [{"x": "a" * 400}], 1))["version"] == 2
    before = await db_state()
    # Together with the pins already there, over the limit.
    refused = await pin(small, workflow_id, "fetch", [{"x": "a" * 700}], 2)
    assert refused["__typename"] == "ValidationError", refused
    (problem,) = refused["problems"]
    assert (problem["code"], problem["nodeId"], problem["field"]) == (
        "PINS_TOO_LARGE",
        "fetch",
        "items",
    )
    assert "at most 1000" in problem["message"]
    assert await db_state() == before


async def test_another_users_workflow_cannot_be_pinned(
    alice: Caller, bob: Caller, db_state: DbState
) -> None:
    workflow_id = await create(alice, NODES, EDGES)
    before = await db_state()
    assert (await pin(bob, workflow_id, "fetch", ITEMS, 1))["__typename"] == "NotFoundError"
    assert (await unpin(bob, workflow_id, "fetch", 1))["__typename"] == "NotFoundError"
    assert await db_state() == before


async def test_a_duplicate_keeps_the_pins_and_a_whole_update_keeps_those_of_kept_nodes(
    alice: Caller,
) -> None:
    workflow_id = await create(alice, NODES, EDGES)
    await pin(alice, workflow_id, "fetch", ITEMS, 1)
    await pin(alice, workflow_id, "total", [{"total": 1}], 2)
    copy = only(await alice.gql(DUPLICATE, {"id": workflow_id}))
    shown = only(await alice.gql(PINS, {"id": copy["id"]}))
    assert pins_of(shown) == {"fetch": ITEMS, "total": [{"total": 1}]}
    updated = only(
        await alice.gql(
            UPDATE,
            {
                "id": workflow_id,
                "input": {"name": "Without total", "nodes": NODES[:2], "edges": EDGES[:1]},
                "v": 3,
            },
        )
    )
    assert updated["__typename"] == "Workflow", updated
    assert pins_of(only(await alice.gql(PINS, {"id": workflow_id}))) == {"fetch": ITEMS}


class _ColumnsRead:
    """The names of the columns of every result set the database returns meanwhile."""

    def __init__(self, database: Database) -> None:
        self.engine = database.engine.sync_engine
        self.columns: list[str] = []

    def _after(self, conn: Any, cursor: Any, *args: Any) -> None:
        self.columns += [column[0] for column in cursor.description or ()]

    def __enter__(self) -> _ColumnsRead:
        event.listen(self.engine, "after_cursor_execute", self._after)
        return self

    def __exit__(self, *exc: object) -> None:
        event.remove(self.engine, "after_cursor_execute", self._after)


async def test_pins_are_read_only_where_they_are_used(
    app, alice: Caller, database: Database
) -> None:
    """A workflow list, a draft read without pins, a snapshot, the check of what uses a
    credential and the editor's previews (on every keystroke) do not read (decode) pinned
    items; a node's pinnedData does (a sub-workflow call's start: the test below)."""
    workflow_id = await create(alice, NODES, EDGES)
    assert (await pin(alice, workflow_id, "fetch", [{"price": 3}], 1))["__typename"] == "Workflow"
    await finished(app, alice, (await execute(alice, workflow_id))["id"])
    listing = "{ workflows { edges { node { id nodes { id } } } } }"
    with _ColumnsRead(database) as read:
        assert (await alice.gql(listing))["workflows"]["edges"]
        preview = await alice.gql(
            EVALUATE, {"w": workflow_id, "n": "total", "e": "{{ $json.price + 1 }}"}
        )
        assert preview["evaluateExpression"] == {"__typename": "ExpressionValue", "value": 4}
        rendered = await alice.gql(EVALUATE_PARAMETERS, {"w": workflow_id, "n": "total"})
        assert rendered["evaluateParameters"]["__typename"] == "ExpressionValue", rendered
        async with database.transaction() as session:
            draft = await workflows.get_workflow(session, workflow_id, [], pins=False)
            assert draft is None  # not in these workspaces
            workspace_id = (
                await session.exec(select(Workflow.workspace_id).where(Workflow.id == workflow_id))
            ).one()
            draft = await workflows.get_workflow(session, workflow_id, [workspace_id], pins=False)
            assert draft is not None
            snapshot = await workflows.ensure_snapshot(session, draft, None)
            await workflows.workflows_using(session, workspace_id, lambda nodes: True)
    assert "pinned_data" not in read.columns
    # The snapshot has the pins all the same (copied in the database).
    async with database.session() as session:
        version = await session.get(WorkflowVersion, snapshot.id)
        assert version is not None and version.pinned_data == {"fetch": [{"price": 3}]}
    with _ColumnsRead(database) as read:
        found = await alice.gql("{ workflows { edges { node { nodes { id pinnedData } } } } }")
    assert "pinned_data" in read.columns
    (edge_,) = found["workflows"]["edges"]
    assert {n["id"]: n["pinnedData"] for n in edge_["node"]["nodes"]} == {
        "start": None,
        "fetch": [{"price": 3}],
        "total": None,
    }


async def test_a_snapshot_of_a_draft_changed_since_it_was_read_is_a_conflict(
    alice: Caller, database: Database
) -> None:
    """The snapshot's graph and pins come from one version of the draft: a pin committed
    between reading the draft and snapshotting it writes no snapshot of the old version with
    the new pins (review finding 1)."""
    workflow_id = await create(alice, NODES, EDGES)
    await pin(alice, workflow_id, "fetch", ITEMS, 1)
    async with database.transaction() as session:
        stale = await session.get(Workflow, workflow_id)
        assert stale is not None and stale.version == 2
        session.expunge(stale)
    # Another caller pins other items (version 3) before the snapshot is written.
    await pin(alice, workflow_id, "fetch", [{"price": 50}], 2)
    with pytest.raises(errors.VersionConflictError):
        async with database.transaction() as session:
            await workflows.ensure_snapshot(session, stale, None)
    async with database.session() as session:
        query = select(WorkflowVersion.version).where(WorkflowVersion.workflow_id == workflow_id)
        assert list(await session.exec(query)) == []
    # The current version snapshots with its own pins.
    async with database.transaction() as session:
        current = await session.get(Workflow, workflow_id)
        assert current is not None
        snapshot = await workflows.ensure_snapshot(session, current, None)
    async with database.session() as session:
        version = await session.get(WorkflowVersion, snapshot.id)
        assert version is not None
        assert (version.version, version.pinned_data) == (3, {"fetch": [{"price": 50}]})


async def test_a_row_read_without_pins_does_not_hide_them_from_a_later_read(
    alice: Caller, database: Database
) -> None:
    """A draft or version read without its pins is not the row a later read of it in the
    same session gets: that one has its pins (review finding 4: it raised, a 500)."""
    workflow_id = await create(alice, NODES, EDGES)
    await pin(alice, workflow_id, "fetch", ITEMS, 1)
    async with database.transaction() as session:
        workspace_id = (
            await session.exec(select(Workflow.workspace_id).where(Workflow.id == workflow_id))
        ).one()
        draft = await workflows.get_workflow(session, workflow_id, [workspace_id], pins=False)
        assert draft is not None
        snapshot = await workflows.ensure_snapshot(session, draft, None)
        version = await workflows.get_version(session, workflow_id, 2, [workspace_id], pins=False)
        assert version is not None and (draft.version, version.nodes) == (2, draft.nodes)
        whole = await session.get(Workflow, workflow_id)
        assert whole is not None and whole.pinned_data == {"fetch": ITEMS}
        whole_version = await session.get(WorkflowVersion, snapshot.id)
        assert whole_version is not None and whole_version.pinned_data == {"fetch": ITEMS}


@pytest.mark.parametrize("use_draft", [True, False], ids=["draft", "published"])
async def test_a_sub_workflow_call_reads_no_pins(
    alice: Caller, database: Database, use_draft: bool
) -> None:
    """A sub-workflow call starts the called workflow's draft or published version without
    reading their pins (a called run ignores them)."""
    nodes = [node("called", "Called", TRIGGER), *NODES[1:]]
    workflow_id = await create(alice, nodes, [edge("called", "fetch"), EDGES[1]])
    await pin(alice, workflow_id, "fetch", ITEMS, 1)
    published = only(await alice.gql(PUBLISH, {"id": workflow_id, "v": 2}))
    assert published["__typename"] == "Workflow", published
    async with database.session() as session:
        workspace_id = (
            await session.exec(select(Workflow.workspace_id).where(Workflow.id == workflow_id))
        ).one()
    requests: list[StartRequest] = []

    async def start_calls(made: Sequence[StartRequest]) -> Sequence[CreatedExecution]:
        requests.extend(made)
        return []

    caller = DatabaseWorkflowCaller(database, 5, start_calls, GroupCommitWriter(database))
    call = SubworkflowCall(
        workspace_id, workflow_id, use_draft, [[{"x": 1}]], False, new_id(), "call", new_id(), 1
    )
    with _ColumnsRead(database) as read:
        await caller.start(call)
    assert "pinned_data" not in read.columns
    assert [(request.mode, request.version) for request in requests] == [("subworkflow", 2)]
