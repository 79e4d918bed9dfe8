"""Nodes that misbehave leave a correct, queryable record and a typed error.

The app here has three extra node types beside the installed ones: one that raises, one that
returns something that is not JSON, and one that never returns.
"""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import Any

import pytest

from engine.node_types import NodeGroup, NodeType, NodeTypeRegistry, load_registry
from engine.nodes.base import NodeRunContext, PortItems
from tests.api.test_executions import GET_EXECUTION, create, execute, finished
from tests.conftest import Caller
from tests.factories import edge, node


async def _crash(ctx: NodeRunContext, inputs: PortItems) -> PortItems:
    raise KeyError("missing thing")


async def _not_json(ctx: NodeRunContext, inputs: PortItems) -> PortItems:
    return {"main": [{"when": datetime(2026, 1, 1)}]}


async def _hang(ctx: NodeRunContext, inputs: PortItems) -> PortItems:
    await asyncio.Event().wait()
    return {}


def _type(name: str, behaviour: Any) -> NodeType:
    return NodeType(
        name=name,
        version=1,
        display_name=name,
        description=f"test node {name}",
        group=NodeGroup.ACTION,
        parameters_schema={"type": "object", "properties": {}},
        execute=behaviour,
    )


@pytest.fixture(scope="module")
def registry() -> NodeTypeRegistry:
    registry = load_registry()
    for name, behaviour in (
        ("test.crash", _crash),
        ("test.not_json", _not_json),
        ("test.hang", _hang),
    ):
        registry.register(_type(name, behaviour))
    return registry


async def _run_one(app: Any, caller: Caller, node_type: str, **node_fields: Any) -> dict:
    workflow_id = await create(
        caller,
        [node("start", "Start", "manual_trigger"), node("x", "Culprit", node_type, **node_fields)],
        [edge("start", "x")],
    )
    started = await execute(caller, workflow_id)
    return await finished(app, caller, started["id"])


@pytest.mark.parametrize(
    ("node_type", "fields", "error_type", "message"),
    [
        ("test.crash", {}, "NODE_CRASHED", "KeyError"),
        ("test.not_json", {}, "NODE_OUTPUT_INVALID", "not JSON"),
        ("test.hang", {"timeoutSeconds": 0.05}, "NODE_TIMEOUT", "did not finish within 0.05 s"),
    ],
)
async def test_a_misbehaving_node_is_recorded_with_a_typed_error(
    app: Any, alice: Caller, node_type: str, fields: dict, error_type: str, message: str
) -> None:
    execution = await _run_one(app, alice, node_type, **fields)
    assert execution["status"] == "FAILED"
    assert execution["error"]["type"] == error_type
    assert message in execution["error"]["message"]
    assert "'Culprit'" in execution["error"]["message"]
    culprit = next(run for run in execution["nodeRuns"] if run["nodeId"] == "x")
    assert culprit["status"] == "FAILED"
    assert culprit["error"]["type"] == error_type
    assert culprit["durationMs"] is not None


async def test_the_event_log_matches_the_node_runs(app: Any, alice: Caller) -> None:
    execution = await _run_one(app, alice, "test.crash")
    database = app.state.services.database
    from storage import executions

    async with database.session() as session:
        events = await executions.events(session, execution["id"])
    assert [event.sequence for event in events] == list(range(1, len(events) + 1))
    assert [event.type for event in events] == [
        "EXECUTION_QUEUED",
        "EXECUTION_STARTED",
        "NODE_STARTED",
        "NODE_SUCCEEDED",
        "NODE_STARTED",
        "NODE_FAILED",
        "EXECUTION_FINISHED",
    ]
    assert events[-1].status == "FAILED"
    stored = await alice.gql(GET_EXECUTION, {"id": execution["id"]})
    assert stored["execution"]["status"] == "FAILED"
