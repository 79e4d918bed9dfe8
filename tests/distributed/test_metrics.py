"""Metrics and system status with real processes: a `loom worker` serves its metrics on a
port of its own and counts what it runs; the API process serves its own with the token; both
processes are listed alive by `systemStatus`."""

from __future__ import annotations

import os
import signal
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.distributed.cluster import Cluster, create_cluster, destroy_cluster, free_port
from tests.distributed.conftest import _require_services
from tests.distributed.test_workers import (
    chain,
    set_node,
    trigger,
    wait_node,
    wait_until_running,
)
from tests.polling import until
from tests.server.test_metrics import Samples, parse, total

pytestmark = [pytest.mark.postgres, pytest.mark.redis]

TOKEN = "distributed-metrics-token-0123"
AUTHORIZED = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture
async def cluster(tmp_path: Path) -> AsyncIterator[Cluster]:
    await _require_services()
    created = await create_cluster(
        tmp_path, LOOM_METRICS_TOKEN=TOKEN, LOOM_METRICS_SAMPLE_S="0.2", LOOM_HEARTBEAT_S="1"
    )
    try:
        await created.start_api()
        yield created
    finally:
        await destroy_cluster(created)


async def scrape(url: str) -> Samples:
    async with httpx.AsyncClient(timeout=10) as client:
        response = await client.get(url, headers=AUTHORIZED)
    assert response.status_code == 200, response.text
    return parse(response.text)


async def test_a_worker_counts_what_it_runs_and_both_are_listed(cluster: Cluster) -> None:
    port = free_port()
    await cluster.start_worker(concurrency=4, LOOM_METRICS_PORT=str(port))
    worker_url = f"http://127.0.0.1:{port}/metrics"
    async with httpx.AsyncClient(timeout=10) as client:
        assert (await client.get(worker_url)).status_code == 401
        assert (await client.get(f"{cluster.base}/metrics")).status_code == 401
    workflow_id = await cluster.create_workflow(
        [trigger(), set_node("a", "A"), set_node("b", "B")], chain("start", "a", "b")
    )
    ids = [await cluster.execute(workflow_id, {"n": index}) for index in range(3)]
    await cluster.wait_for(ids, {"SUCCEEDED"})

    async def counted() -> Samples | None:
        samples = await scrape(worker_url)
        done = total(samples, "loom_executions_finished_total", status="SUCCEEDED")
        return samples if done == 3 else None

    worker = await until(counted, within_s=30, what="the worker's counters")
    assert total(worker, "loom_process_info", role="worker") == 1
    assert total(worker, "loom_executions_started_total", mode="manual") == 3
    assert total(worker, "loom_node_runs_total", node_type="set", status="SUCCEEDED") == 6
    assert total(worker, "loom_pick_up_latency_seconds_count") == 3
    assert total(worker, "loom_group_commit_batch_size_count") >= 1
    assert ("loom_leases_held", ()) in worker
    assert total(worker, "loom_leases_lost_total") == 0

    api = await scrape(f"{cluster.base}/metrics")
    assert total(api, "loom_process_info", role="api") == 1
    # Executions ran in the worker, not here; the sampled gauges see the shared database.
    assert total(api, "loom_executions_finished_total") == 0
    assert api[("loom_queue_depth", ())] == 0

    data = await cluster.gql(
        "{ systemStatus { ... on SystemStatus { queueDepth processes { role version alive } } } }"
    )
    processes: list[dict[str, Any]] = data["systemStatus"]["processes"]
    assert sorted(process["role"] for process in processes) == ["api", "worker"]
    assert all(process["alive"] and process["version"] for process in processes)


@pytest.mark.timeout(180)
async def test_a_lease_taken_over_after_a_kill_counts_as_expired(cluster: Cluster) -> None:
    victim = await cluster.start_worker()
    workflow_id = await cluster.create_workflow(
        [trigger(), wait_node("w", 3), set_node("b", "B")], chain("start", "w", "b")
    )
    execution_id = await cluster.execute(workflow_id, {"n": 1})
    await wait_until_running(cluster, execution_id, "w")
    # Killed within its 3 s wait (not longer than LOOM_DURABLE_WAIT_S: it stays in the
    # worker), before the worker that takes the lease over starts.
    os.kill(victim.pid, signal.SIGKILL)
    assert victim.popen.wait(timeout=10) == -signal.SIGKILL
    assert (await cluster.statuses([execution_id]))[execution_id] == "RUNNING"
    port = free_port()
    await cluster.start_worker(LOOM_METRICS_PORT=str(port))
    await cluster.wait_for([execution_id], {"SUCCEEDED"}, within_s=90)

    async def counted() -> Samples | None:
        samples = await scrape(f"http://127.0.0.1:{port}/metrics")
        return samples if total(samples, "loom_executions_finished_total") == 1 else None

    taker = await until(counted, within_s=30, what="the taking worker's counters")
    assert total(taker, "loom_leases_expired_total") == 1
    assert total(taker, "loom_executions_started_total") == 0  # resumed, not started
    assert total(taker, "loom_node_runs_total", node_type="wait", status="SUCCEEDED") == 1
