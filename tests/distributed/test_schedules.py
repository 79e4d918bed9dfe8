"""Schedules with two worker processes: both run a scheduler, each tick runs exactly once."""

from __future__ import annotations

import asyncio

import pytest

from tests.distributed.cluster import Cluster

pytestmark = [pytest.mark.postgres, pytest.mark.redis]


async def test_each_tick_runs_exactly_once_with_two_workers(cluster: Cluster) -> None:
    await cluster.start_worker()
    await cluster.start_worker()
    tick = {
        "id": "tick",
        "name": "Tick",
        "type": "schedule",
        "parameters": {"mode": "interval", "intervalSeconds": 1},
    }
    workflow_id = await cluster.create_workflow(
        [tick, {"id": "n", "name": "N", "type": "noop"}], [{"source": "tick", "target": "n"}]
    )
    for mutation in (
        "mutation($id: ID!) { publishWorkflow(id: $id, expectedVersion: 1) { __typename } }",
        "mutation($id: ID!) { setWorkflowActive(id: $id, active: true) { __typename } }",
    ):
        data = await cluster.gql(mutation, {"id": workflow_id})
        assert next(iter(data.values()))["__typename"] == "Workflow"
    await asyncio.sleep(5)
    await cluster.gql(
        "mutation($id: ID!) { setWorkflowActive(id: $id, active: false) { __typename } }",
        {"id": workflow_id},
    )
    await asyncio.sleep(1.5)  # a tick in flight lands
    ticks = await cluster.sql(
        "SELECT scheduled_at, execution_id FROM schedule_ticks WHERE workflow_id = :id",
        id=workflow_id,
    )
    runs = await cluster.sql(
        "SELECT id, status FROM executions WHERE workflow_id = :id", id=workflow_id
    )
    assert len(ticks) >= 3
    assert len({row[0] for row in ticks}) == len(ticks)
    assert sorted(row[1] for row in ticks) == sorted(row[0] for row in runs)
    await cluster.wait_for([row[0] for row in runs], {"SUCCEEDED"}, within_s=30)
