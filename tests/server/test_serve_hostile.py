"""Hostile workflows against a real `loom serve` (embedded mode): the API keeps answering.

While the issue's attacks run (refused with EXPRESSION_LIMIT) and a workflow spends nearly the
whole expression budget on every one of its items, `/healthz` is sent every 20 ms with real
HTTP requests: its p99 stays within 50 ms. `cancelExecution` stops that workflow within
250 ms, and the attack that once grew the process by gigabytes leaves its memory alone.
"""

from __future__ import annotations

import asyncio
import itertools
import statistics
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.server.test_serve_process import _free_port, _start, _stop, _wait_ready

TOKEN = "loom_test_hostile_token_0123456789abcdef"
HEADERS = {"Authorization": f"Bearer {TOKEN}"}
# Nearly the whole default budget on every item (about 95,000 of 100,000 steps): encoding
# 6,200 small objects, the costliest work per step.
BUDGET = "{{ len(json([{'a': $json.n, 'b': [1, 2]}] * 6200)) }}"
ATTACKS = {
    "equality": "{{ ([[0]*100000]*100000 == [[0]*100000]*100000) }}",
    "round": "{{ round(5, -10000000) }}",
    "repeat": "{{ ['x'*1000000]*200 }}",
    "template": "{{ 'x'*1000000 }}" * 1000,
}


def _workflow(value: str, split: bool) -> dict[str, Any]:
    nodes: list[dict[str, Any]] = [{"id": "start", "name": "Start", "type": "manual_trigger"}]
    if split:
        nodes.append(
            {"id": "split", "name": "Split", "type": "split_out", "parameters": {"field": "rows"}}
        )
    nodes.append(
        {
            "id": "set",
            "name": "Set",
            "type": "set",
            "parameters": {"fields": [{"name": "value", "value": value}]},
        }
    )
    edges = [{"source": a["id"], "target": b["id"]} for a, b in itertools.pairwise(nodes)]
    return {"nodes": nodes, "edges": edges}


class Api:
    def __init__(self, client: httpx.AsyncClient) -> None:
        self.client = client

    async def gql(self, query: str, variables: dict[str, Any] | None = None) -> dict[str, Any]:
        response = await self.client.post(
            "/graphql", json={"query": query, "variables": variables or {}}, headers=HEADERS
        )
        body = response.json()
        assert response.status_code == 200 and "errors" not in body, body
        data: dict[str, Any] = body["data"]
        return data

    async def create(self, name: str, workflow: dict[str, Any]) -> str:
        data = await self.gql(
            "mutation($input: WorkflowInput!) { createWorkflow(input: $input) {"
            " __typename ... on Workflow { id } } }",
            {"input": {"name": name, **workflow}},
        )
        assert data["createWorkflow"]["__typename"] == "Workflow", data
        return str(data["createWorkflow"]["id"])

    async def execute(self, workflow_id: str, input: dict[str, Any]) -> str:
        data = await self.gql(
            "mutation($id: ID!, $input: JSON) { executeWorkflow(id: $id, input: $input) {"
            " ... on Execution { id } } }",
            {"id": workflow_id, "input": input},
        )
        return str(data["executeWorkflow"]["id"])

    async def execution(self, execution_id: str) -> dict[str, Any]:
        data = await self.gql(
            "query($id: ID!) { execution(id: $id) { status error { type message details } } }",
            {"id": execution_id},
        )
        execution: dict[str, Any] = data["execution"]
        return execution

    async def until(self, execution_id: str, statuses: set[str]) -> dict[str, Any]:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            execution = await self.execution(execution_id)
            if execution["status"] in statuses:
                return execution
            await asyncio.sleep(0.02)
        raise AssertionError(f"execution {execution_id} never reached {statuses}")


async def _sample_healthz(base: str, latencies: list[float], stop: asyncio.Event) -> None:
    """`/healthz` every 20 ms, each request on its own (open loop), latencies in seconds."""
    async with httpx.AsyncClient(base_url=base, timeout=30) as client:

        async def one() -> None:
            sent = time.perf_counter()
            response = await client.get("/healthz")
            assert response.status_code == 200
            latencies.append(time.perf_counter() - sent)

        pending: set[asyncio.Task[None]] = set()
        next_at = time.perf_counter()
        while not stop.is_set():
            task = asyncio.create_task(one())
            pending.add(task)
            task.add_done_callback(pending.discard)
            next_at += 0.02
            await asyncio.sleep(max(0.0, next_at - time.perf_counter()))
        await asyncio.gather(*pending)


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


@pytest.mark.timeout(180)
async def test_the_api_keeps_answering_while_hostile_workflows_run(tmp_path: Path) -> None:
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    process = _start(tmp_path, port, LOOM_ADMIN_TOKEN=TOKEN, LOOM_LOG_LEVEL="warning")
    try:
        await asyncio.to_thread(_wait_ready, base, process)
        async with httpx.AsyncClient(base_url=base, timeout=30) as client:
            api = Api(client)
            attacks = {
                name: await api.create(name, _workflow(v, False)) for name, v in ATTACKS.items()
            }
            budget = await api.create("budget", _workflow(BUDGET, True))
            # The server's first run pays for what it loads once: not the test's subject.
            await api.until(await api.execute(attacks["round"], {}), {"FAILED"})

            latencies: list[float] = []
            stop = asyncio.Event()
            sampling = asyncio.create_task(_sample_healthz(base, latencies, stop))
            rows = {"rows": [{"n": index} for index in range(400)]}
            heavy = [await api.execute(budget, rows) for _ in range(2)]
            for name, workflow_id in attacks.items():
                rss_before_mb = _rss_mb(process.pid)
                for _ in range(3):
                    failed = await api.until(await api.execute(workflow_id, {}), {"FAILED"})
                    assert failed["error"]["type"] == "EXPRESSION_LIMIT", (name, failed)
                    assert failed["error"]["details"]["parameter"] == "fields[0].value"
                assert _rss_mb(process.pid) - rss_before_mb < 100, name
            for execution_id in heavy:
                assert (await api.until(execution_id, {"SUCCEEDED", "FAILED"}))["status"] == (
                    "SUCCEEDED"
                )

            # Cancelled through the API while it spends the budget on every item.
            long_run = await api.execute(budget, {"rows": [{"n": n} for n in range(5000)]})
            await api.until(long_run, {"RUNNING"})
            # Not a wait for a condition: the cancel is meant to arrive well into the run,
            # half a second of budget-heavy items in (the run lasts several seconds).
            await asyncio.sleep(0.5)
            sent = time.perf_counter()
            data = await api.gql(
                "mutation($id: ID!) { cancelExecution(id: $id) { ... on Execution { status } } }",
                {"id": long_run},
            )
            answered_s = time.perf_counter() - sent
            stop.set()
            await sampling
    finally:
        _stop(process)
    assert data["cancelExecution"]["status"] == "CANCELLED"
    assert answered_s < 0.25, f"cancelExecution answered in {answered_s * 1000:.0f} ms"
    assert len(latencies) >= 100
    latencies.sort()
    p99_s = latencies[int(len(latencies) * 0.99)]
    assert p99_s <= 0.05, (
        f"/healthz p50 {statistics.median(latencies) * 1000:.1f} ms, "
        f"p99 {p99_s * 1000:.1f} ms over {len(latencies)} requests"
    )
