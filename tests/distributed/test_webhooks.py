"""Webhooks in distributed mode: the API process starts the run, a worker runs it, and the
API answers with the result it learns from the live events that come through Redis."""

from __future__ import annotations

import httpx
import pytest

from tests.distributed.cluster import Cluster
from tests.distributed.test_workers import trigger

pytestmark = [pytest.mark.postgres, pytest.mark.redis]


async def test_a_webhook_answers_with_the_result_a_worker_computed(cluster: Cluster) -> None:
    await cluster.start_worker()
    hook = {
        "id": "hook",
        "name": "Hook",
        "type": "webhook",
        "parameters": {"path": "quote", "responseMode": "last_node"},
    }
    total = {
        "id": "total",
        "name": "Total",
        "type": "set",
        "parameters": {
            "fields": [{"name": "total", "value": "{{ $json.body.price * $json.body.qty }}"}],
            "include": "only_set",
        },
    }
    workflow_id = await cluster.create_workflow(
        [hook, total, trigger()], [{"source": "hook", "target": "total"}]
    )
    published = await cluster.gql(
        "mutation($id: ID!) { publishWorkflow(id: $id, expectedVersion: 1) { __typename } }",
        {"id": workflow_id},
    )
    assert published["publishWorkflow"]["__typename"] == "Workflow"
    active = await cluster.gql(
        "mutation($id: ID!) { setWorkflowActive(id: $id, active: true) { __typename } }",
        {"id": workflow_id},
    )
    assert active["setWorkflowActive"]["__typename"] == "Workflow"
    async with httpx.AsyncClient(base_url=cluster.base, timeout=30) as http:
        response = await http.post("/webhook/quote", json={"price": 3, "qty": 7})
        assert response.status_code == 200, response.text
        assert response.json() == [{"total": 21}]
        immediate = await http.post("/webhook/missing")
        assert immediate.status_code == 404
