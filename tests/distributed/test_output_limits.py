"""The output limit and capped reads in distributed mode: `loom worker` enforces the limit it
is configured with, and the API reads what a worker stored a page at a time."""

from __future__ import annotations

from typing import Any

import pytest

from tests.distributed.cluster import Cluster

pytestmark = [pytest.mark.postgres, pytest.mark.redis]


def _sized(characters: int) -> list[dict[str, Any]]:
    return [
        {"id": "start", "name": "Start", "type": "manual_trigger"},
        {
            "id": "big",
            "name": "Big",
            "type": "set",
            "parameters": {"fields": [{"name": "s", "value": f"{{{{ 'x' * {characters} }}}}"}]},
        },
    ]


async def test_a_worker_refuses_outputs_past_its_limit_and_the_api_reads_pages(
    cluster: Cluster,
) -> None:
    await cluster.start_worker(LOOM_MAX_NODE_OUTPUT_BYTES="65536")
    edges = [{"source": "start", "target": "big"}]
    too_large = await cluster.execute(await cluster.create_workflow(_sized(70_000), edges))
    fits = await cluster.execute(await cluster.create_workflow(_sized(30_000), edges))
    statuses = await cluster.wait_for([too_large, fits], {"SUCCEEDED", "FAILED"})
    assert statuses == {too_large: "FAILED", fits: "SUCCEEDED"}
    (failed,) = [run for run in await cluster.node_runs(too_large) if run["node_id"] == "big"]
    assert failed["error"]["type"] == "NODE_OUTPUT_TOO_LARGE"
    assert failed["error"]["details"]["maxBytes"] == 65536
    assert await cluster.sql(
        "SELECT count(*) FROM node_run_payloads WHERE execution_id = :id AND encoding != :ref",
        id=too_large,
        ref="ref:input",
    ) == [(0,)]

    data = await cluster.gql(
        """query($id: ID!) { execution(id: $id) {
             output(maxBytes: 1000) outputTruncated(maxBytes: 1000)
             nodeRuns { nodeId outputPage(maxBytes: 1000) { items total truncated } } } }""",
        {"id": fits},
    )
    (marker,) = data["execution"]["output"]
    assert marker["$truncated"] is True and marker["bytes"] == len('{"s":""}') + 30_000
    assert marker["preview"].startswith('{"s":"xxx')
    assert data["execution"]["outputTruncated"] is True
    page = next(run for run in data["execution"]["nodeRuns"] if run["nodeId"] == "big")
    assert page["outputPage"] == {"items": [marker], "total": 1, "truncated": True}
