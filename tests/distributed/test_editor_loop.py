"""The editor loop on a `loom worker` process (issue 16): a manual run gives a node's pinned
items without running it, and a run to a node reuses the earlier outputs, copied into the
new execution's own rows, while the node changed runs again."""

from __future__ import annotations

from typing import Any

import pytest

from tests.api.test_pinned_data import PIN
from tests.distributed.cluster import Cluster
from tests.distributed.test_workers import trigger
from tests.factories import UPDATE_NODE

pytestmark = [pytest.mark.postgres, pytest.mark.redis]

RUN_TO = """
mutation($id: ID!, $to: ID!) {
  executeWorkflow(id: $id, destinationNodeId: $to) {
    __typename ... on Execution { id reusedFrom }
  }
}
"""
RUNS = """
query($id: ID!) { execution(id: $id) { output nodeRuns { nodeId source output } } }
"""


def _set(node_id: str, field: str, value: str) -> dict[str, Any]:
    return {
        "id": node_id,
        "name": node_id.upper(),
        "type": "set",
        "parameters": {"fields": [{"name": field, "value": value}]},
    }


async def _runs(cluster: Cluster, execution_id: str) -> dict[str, Any]:
    statuses = await cluster.wait_for([execution_id], {"SUCCEEDED", "FAILED"})
    assert statuses[execution_id] == "SUCCEEDED", await cluster.node_runs(execution_id)
    return (await cluster.gql(RUNS, {"id": execution_id}))["execution"]


async def test_pins_and_a_run_to_a_node_on_a_worker(cluster: Cluster) -> None:
    await cluster.start_worker()
    nodes = [
        trigger(),
        _set("a", "a", "{{ 1 }}"),
        _set("b", "b", "{{ $json.a + 1 }}"),
        _set("c", "c", "{{ $json.b * 10 }}"),
    ]
    edges = [
        {"source": "start", "target": "a"},
        {"source": "a", "target": "b"},
        {"source": "b", "target": "c"},
    ]
    workflow_id = await cluster.create_workflow(nodes, edges)
    pinned = await cluster.gql(PIN, {"wf": workflow_id, "nodeId": "b", "items": [{"b": 7}], "v": 1})
    assert pinned["pinNodeData"]["__typename"] == "Workflow", pinned
    first_id = await cluster.execute(workflow_id)
    first = await _runs(cluster, first_id)
    assert {run["nodeId"]: run["source"] for run in first["nodeRuns"]} == {
        "start": "RAN",
        "a": "RAN",
        "b": "PINNED",
        "c": "RAN",
    }
    assert first["output"] == [{"b": 7, "c": 70}]

    changed = await cluster.gql(
        UPDATE_NODE,
        {"wf": workflow_id, "nodeId": "c", "node": _set("c", "c", "{{ $json.b * 100 }}"), "v": 2},
    )
    assert changed["updateNode"]["__typename"] == "Workflow", changed
    started = (await cluster.gql(RUN_TO, {"id": workflow_id, "to": "c"}))["executeWorkflow"]
    assert started["reusedFrom"] == first_id, started
    later = await _runs(cluster, started["id"])
    assert {run["nodeId"]: run["source"] for run in later["nodeRuns"]} == {
        "start": "REUSED",
        "a": "REUSED",
        "b": "PINNED",
        "c": "RAN",
    }
    assert later["output"] == [{"b": 7, "c": 700}]
    # The reused outputs are rows of the new execution, equal to the earlier ones.
    copies = await cluster.sql(
        "SELECT r.node_id, p.encoding, p.data FROM node_run_payloads p "
        "JOIN node_runs r ON r.id = p.node_run_id WHERE p.execution_id = :id "
        "AND r.node_id IN ('start', 'a')",
        id=started["id"],
    )
    originals = await cluster.sql(
        "SELECT r.node_id, p.encoding, p.data FROM node_run_payloads p "
        "JOIN node_runs r ON r.id = p.node_run_id WHERE p.execution_id = :id "
        "AND r.node_id IN ('start', 'a')",
        id=first_id,
    )
    assert sorted(map(tuple, copies)) == sorted(map(tuple, originals))
    assert len(copies) == 2
