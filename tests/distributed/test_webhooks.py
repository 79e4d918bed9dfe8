"""Webhooks in distributed mode: the API process starts the run, a worker runs it, and the
API answers with the result it learns from the live events that come through Redis."""

from __future__ import annotations

from datetime import timedelta

import httpx
import pytest

from storage.retention import RetentionPolicy, prune
from storage.types import utcnow
from tests.distributed.cluster import Cluster
from tests.distributed.test_workers import trigger
from tests.polling import until

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


async def test_a_repeat_on_another_api_process_after_the_prune_gets_the_first_answer(
    cluster: Cluster,
) -> None:
    # Issue 17: the key's record (with the answer sent) is in the database, so a repeat that
    # lands on another API process, after the run that kept nothing was pruned, gets it.
    await cluster.start_worker()
    other = await cluster.start_another_api()
    hook = {
        "id": "hook",
        "name": "Hook",
        "type": "webhook",
        "parameters": {"path": "keyed", "responseMode": "respond_node"},
    }
    answer = {
        "id": "answer",
        "name": "Answer",
        "type": "respond_to_webhook",
        "parameters": {"status": 201, "body": "ok"},
    }
    workflow_id = await cluster.create_workflow(
        [hook, answer, trigger()],
        [{"source": "hook", "target": "answer"}],
        settings={"saveDataOnSuccess": "none"},
    )
    for mutation in (
        "mutation($id: ID!) { publishWorkflow(id: $id, expectedVersion: 1) { __typename } }",
        "mutation($id: ID!) { setWorkflowActive(id: $id, active: true) { __typename } }",
    ):
        assert "Workflow" in str(await cluster.gql(mutation, {"id": workflow_id}))
    key = {"Idempotency-Key": "k-1"}
    async with httpx.AsyncClient(base_url=cluster.base, timeout=30) as http:
        first = await http.post("/webhook/keyed", json={}, headers=key)
    assert (first.status_code, first.text) == (201, "ok")
    later = utcnow() + timedelta(hours=2)
    policy = RetentionPolicy(max_age_hours=1)

    async def pruned() -> bool:
        await until(lambda: prune(cluster.database, policy, now=later), what="a prune")
        return not await cluster.sql("SELECT id FROM executions")

    await until(pruned, what="the run pruned")
    async with httpx.AsyncClient(base_url=other, timeout=30) as http:
        again = await http.post("/webhook/keyed", json={}, headers=key)
    assert (again.status_code, again.text) == (201, "ok")
    assert not await cluster.sql("SELECT id FROM executions")
