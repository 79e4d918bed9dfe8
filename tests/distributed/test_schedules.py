"""Schedules with two worker processes: both run a scheduler, each tick runs exactly once."""

from __future__ import annotations

from typing import Any

import pytest

from tests.distributed.cluster import Cluster
from tests.polling import until

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

    async def tick_rows() -> list[Any]:
        return await cluster.sql(
            "SELECT scheduled_at, execution_id FROM schedule_ticks WHERE workflow_id = :id",
            id=workflow_id,
        )

    async def three_ticks() -> bool:
        return len(await tick_rows()) >= 3

    await until(three_ticks, within_s=30, what="three ticks")
    await cluster.gql(
        "mutation($id: ID!) { setWorkflowActive(id: $id, active: false) { __typename } }",
        {"id": workflow_id},
    )
    # Final now: a tick in flight held the schedule's row, so the deactivation (which deletes
    # it) committed after that tick; a later one finds no row and fires nothing.
    ticks = await tick_rows()
    runs = await cluster.sql(
        "SELECT id, status FROM executions WHERE workflow_id = :id", id=workflow_id
    )
    assert len(ticks) >= 3
    assert len({row[0] for row in ticks}) == len(ticks)
    assert sorted(row[1] for row in ticks) == sorted(row[0] for row in runs)
    await cluster.wait_for([row[0] for row in runs], {"SUCCEEDED"}, within_s=30)
