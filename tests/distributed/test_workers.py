"""Distributed mode end to end: `loom serve` enqueues, `loom worker` processes run, and the
database stays the truth through kills, pauses, Redis flushes, restarts and cancels.

Leases last 3 s here (LOOM_LEASE_SECONDS) and the sweeper runs every 0.5 s, so that the
faults resolve in seconds; the production defaults are 30 s and 5 s.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import re
import signal
import time
from collections import Counter
from typing import Any

import pytest
from redis.asyncio import Redis

from tests.conftest import REDIS_URL
from tests.distributed.cluster import Cluster
from tests.polling import until

pytestmark = [pytest.mark.postgres, pytest.mark.redis]

TERMINAL = {"SUCCEEDED", "FAILED", "CANCELLED"}


def trigger(node_id: str = "start") -> dict[str, Any]:
    return {"id": node_id, "name": "Start", "type": "manual_trigger"}


def set_node(node_id: str, name: str) -> dict[str, Any]:
    return {
        "id": node_id,
        "name": name,
        "type": "set",
        "parameters": {"fields": [{"name": "n", "value": "{{ ($json.n || 0) + 1 }}"}]},
    }


def wait_node(node_id: str, seconds: float, name: str = "Wait") -> dict[str, Any]:
    return {
        "id": node_id,
        "name": name,
        "type": "wait",
        "parameters": {"amount": seconds, "unit": "seconds"},
    }


def chain(*node_ids: str) -> list[dict[str, str]]:
    return [{"source": a, "target": b} for a, b in itertools.pairwise(node_ids)]


async def wait_until_running(cluster: Cluster, execution_id: str, node_id: str) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        runs = await cluster.node_runs(execution_id)
        if any(r["node_id"] == node_id and r["status"] == "RUNNING" for r in runs):
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"{node_id} never ran: {await cluster.node_runs(execution_id)}")


async def output_shows(process: Any, text: str, within_s: float) -> bool:
    deadline = time.monotonic() + within_s
    while text not in process.output():
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.1)
    return True


def worker_running(cluster: Cluster, execution_id: str) -> int:
    """Which worker took the execution's job (from the workers' logs)."""
    holders = [
        index
        for index, worker in enumerate(cluster.workers)
        if f"{execution_id}:" in worker.output() and worker.alive()
    ]
    assert len(holders) == 1, [worker.output()[-2000:] for worker in cluster.workers]
    return holders[0]


@pytest.mark.timeout(240)
async def test_300_executions_across_two_workers_each_node_once(cluster: Cluster) -> None:
    await cluster.start_worker()
    await cluster.start_worker()
    workflow_id = await cluster.create_workflow(
        [
            trigger(),
            set_node("a", "A"),
            set_node("b", "B"),
            {"id": "c", "name": "C", "type": "noop"},
        ],
        chain("start", "a", "b", "c"),
    )
    ids: list[str] = []
    for batch in range(15):
        ids += await asyncio.gather(
            *(cluster.execute(workflow_id, {"n": batch * 20 + i}) for i in range(20))
        )
    statuses = await cluster.wait_for(ids, TERMINAL, within_s=120)
    assert Counter(statuses.values()) == {"SUCCEEDED": 300}
    rows = await cluster.sql("SELECT execution_id, node_id, attempt, status FROM node_runs")
    per_execution = Counter(row[0] for row in rows)
    assert set(per_execution) == set(ids) and set(per_execution.values()) == {4}
    assert {(row[2], row[3]) for row in rows} == {(1, "SUCCEEDED")}
    # Both workers took a share.
    for worker in cluster.workers:
        assert worker.output().count(":run_execution(") > 0


@pytest.mark.timeout(120)
async def test_a_killed_worker_s_execution_completes_on_the_other(cluster: Cluster) -> None:
    await cluster.start_worker()
    await cluster.start_worker()
    workflow_id = await cluster.create_workflow(
        [trigger(), set_node("a", "A"), wait_node("w", 3), set_node("b", "B")],
        chain("start", "a", "w", "b"),
    )
    execution_id = await cluster.execute(workflow_id, {"n": 1})
    await wait_until_running(cluster, execution_id, "w")
    victim = cluster.workers[worker_running(cluster, execution_id)]
    killed_at = time.monotonic()
    os.kill(victim.pid, signal.SIGKILL)
    # Within the lease (3 s), a sweep (0.5 s) and the wait (3 s) again, with room to spare.
    await cluster.wait_for([execution_id], TERMINAL, within_s=15)
    assert time.monotonic() - killed_at < 15
    assert (await cluster.statuses([execution_id]))[execution_id] == "SUCCEEDED"
    runs = [
        (r["node_id"], r["attempt"], r["status"]) for r in await cluster.node_runs(execution_id)
    ]
    assert runs == [
        ("start", 1, "SUCCEEDED"),
        ("a", 1, "SUCCEEDED"),  # not re-run
        ("w", 1, "FAILED"),
        ("w", 2, "SUCCEEDED"),
        ("b", 1, "SUCCEEDED"),
    ]
    lost = (await cluster.node_runs(execution_id))[2]["error"]
    assert lost["type"] == "WORKER_LOST"
    sequences = [sequence for sequence, _, _ in await cluster.events(execution_id)]
    assert sequences == list(range(1, len(sequences) + 1))


@pytest.mark.timeout(120)
async def test_a_worker_that_lost_its_lease_records_nothing_more(cluster: Cluster) -> None:
    await cluster.start_worker()
    await cluster.start_worker()
    workflow_id = await cluster.create_workflow(
        [trigger(), wait_node("w", 4), set_node("b", "B")], chain("start", "w", "b")
    )
    execution_id = await cluster.execute(workflow_id)
    await wait_until_running(cluster, execution_id, "w")
    paused = cluster.workers[worker_running(cluster, execution_id)]
    os.kill(paused.pid, signal.SIGSTOP)
    try:
        await cluster.wait_for([execution_id], TERMINAL, within_s=20)
        events_before = await cluster.events(execution_id)
        runs_before = await cluster.node_runs(execution_id)
    finally:
        os.kill(paused.pid, signal.SIGCONT)
    # The paused worker wakes up past its lease: its wait ends, it tries to record the rest,
    # and its job ends (arq logs "←" for a job that returned, "!" for one that raised).
    assert await output_shows(paused, "lease", within_s=10), paused.output()[-3000:]
    ended = re.compile(rf"[←!] {re.escape(execution_id)}:\d+:run_execution")
    assert await until(lambda: ended.search(paused.output()), what="the paused worker's job end")
    assert await cluster.events(execution_id) == events_before
    assert await cluster.node_runs(execution_id) == runs_before
    assert (await cluster.statuses([execution_id]))[execution_id] == "SUCCEEDED"
    succeeded = [r["node_id"] for r in runs_before if r["status"] == "SUCCEEDED"]
    assert sorted(succeeded) == ["b", "start", "w"]


@pytest.mark.timeout(120)
async def test_flushing_redis_loses_nothing(cluster: Cluster) -> None:
    await cluster.start_worker(concurrency=4)
    await cluster.start_worker(concurrency=4)
    workflow_id = await cluster.create_workflow(
        [trigger(), wait_node("w", 0.5), set_node("b", "B")], chain("start", "w", "b")
    )
    ids = list(await asyncio.gather(*(cluster.execute(workflow_id) for _ in range(40))))

    async def some_run_most_queued() -> Counter[str]:
        statuses = Counter((await cluster.statuses(ids)).values())
        return statuses if statuses["QUEUED"] and len(ids) > statuses["QUEUED"] else Counter()

    await until(some_run_most_queued, what="some executions running, others queued")
    # Only the test database: other Redis databases on this machine are not the test's.
    redis = Redis.from_url(REDIS_URL)
    try:
        await redis.flushdb()
    finally:
        await redis.aclose()
    final = await cluster.wait_for(ids, TERMINAL, within_s=60)
    assert Counter(final.values()) == {"SUCCEEDED": 40}


@pytest.mark.timeout(120)
async def test_cancel_from_the_api_stops_the_worker_s_run(cluster: Cluster) -> None:
    await cluster.start_worker()
    workflow_id = await cluster.create_workflow(
        [trigger(), wait_node("w", 20), set_node("b", "B")], chain("start", "w", "b")
    )
    execution_id = await cluster.execute(workflow_id)
    await wait_until_running(cluster, execution_id, "w")
    started = time.monotonic()
    data = await cluster.gql(
        "mutation($id: ID!) { cancelExecution(id: $id) { ... on Execution { status } } }",
        {"id": execution_id},
    )
    elapsed = time.monotonic() - started
    assert data["cancelExecution"]["status"] == "CANCELLED"
    assert elapsed < 0.5, elapsed
    runs = {r["node_id"]: r["status"] for r in await cluster.node_runs(execution_id)}
    assert runs == {"start": "SUCCEEDED", "w": "CANCELLED", "b": "CANCELLED"}


@pytest.mark.timeout(120)
async def test_max_concurrent_executions_holds_across_two_workers(cluster: Cluster) -> None:
    await cluster.start_worker()
    await cluster.start_worker()
    workflow_id = await cluster.create_workflow(
        [trigger(), wait_node("w", 2.0)],
        chain("start", "w"),
        settings={"maxConcurrentExecutions": 2},
    )
    ids = [await cluster.execute(workflow_id, {"i": i}) for i in range(8)]
    statuses = Counter((await cluster.statuses(ids)).values())
    assert statuses["RUNNING"] <= 2 and statuses["QUEUED"] >= 6, statuses
    await cluster.wait_for(ids, {"SUCCEEDED"}, within_s=60)
    rows = await cluster.sql(
        "SELECT id, started_at, finished_at, admitted_at FROM executions WHERE id = ANY(:ids)",
        ids=ids,
    )
    spans = {row[0]: (row[1], row[2]) for row in rows}
    admitted = {row[0]: row[3] for row in rows}
    points = sorted(
        [(start, 1) for start, _ in spans.values()] + [(end, -1) for _, end in spans.values()],
        key=lambda point: (point[0], point[1]),
    )
    running = peak = 0
    for _, change in points:
        running += change
        peak = max(peak, running)
    assert peak <= 2
    # FIFO: admitted in the order they were created. (Not started: two admitted together
    # when two slots free at once are claimed by two workers in either order.)
    admissions = [admitted[i] for i in ids]
    assert admissions == sorted(admissions)


@pytest.mark.timeout(180)
async def test_a_durable_wait_survives_a_worker_restart(cluster: Cluster) -> None:
    # Issue 4 asked for a 60 s wait past the 30 s threshold; the same path with both scaled
    # down (a 12 s wait, parked past 2 s) keeps the suite's time for what it tests.
    parks_after = {"LOOM_DURABLE_WAIT_S": "2"}
    worker = await cluster.start_worker(concurrency=1, **parks_after)
    waiting_flow = await cluster.create_workflow(
        [trigger(), wait_node("w", 12), set_node("b", "B")], chain("start", "w", "b")
    )
    quick_flow = await cluster.create_workflow([trigger(), set_node("a", "A")], chain("start", "a"))
    execution_id = await cluster.execute(waiting_flow, {"n": 1})
    await cluster.wait_for([execution_id], {"WAITING"}, within_s=10)
    # The only slot of the only worker is free meanwhile.
    quick = await cluster.execute(quick_flow)
    await cluster.wait_for([quick], {"SUCCEEDED"}, within_s=5)
    worker.popen.send_signal(signal.SIGTERM)
    assert worker.popen.wait(timeout=20) == 0
    await cluster.start_worker(concurrency=1, **parks_after)
    await cluster.wait_for([execution_id], {"SUCCEEDED"}, within_s=40)
    runs = [
        (r["node_id"], r["attempt"], r["status"]) for r in await cluster.node_runs(execution_id)
    ]
    assert runs == [("start", 1, "SUCCEEDED"), ("w", 1, "SUCCEEDED"), ("b", 1, "SUCCEEDED")]
    ((started, finished),) = await cluster.sql(
        "SELECT started_at, finished_at FROM node_runs WHERE execution_id = :id AND node_id = 'w'",
        id=execution_id,
    )
    assert (finished - started).total_seconds() >= 11.9


@pytest.mark.timeout(120)
async def test_sigterm_lets_running_nodes_finish_and_hands_the_rest_on(cluster: Cluster) -> None:
    worker = await cluster.start_worker()
    workflow_id = await cluster.create_workflow(
        [trigger(), wait_node("w", 2), set_node("b", "B")], chain("start", "w", "b")
    )
    execution_id = await cluster.execute(workflow_id, {"n": 1})
    await wait_until_running(cluster, execution_id, "w")
    worker.popen.send_signal(signal.SIGTERM)
    assert worker.popen.wait(timeout=20) == 0
    runs = {r["node_id"]: r["status"] for r in await cluster.node_runs(execution_id)}
    assert runs == {"start": "SUCCEEDED", "w": "SUCCEEDED"}  # finished, nothing new started
    assert (await cluster.statuses([execution_id]))[execution_id] == "RUNNING"
    await cluster.start_worker()
    await cluster.wait_for([execution_id], {"SUCCEEDED"}, within_s=20)
    runs_after = [(r["node_id"], r["attempt"]) for r in await cluster.node_runs(execution_id)]
    assert runs_after == [("start", 1), ("w", 1), ("b", 1)]


@pytest.mark.timeout(120)
async def test_a_job_taken_by_a_process_that_died_before_claiming_runs_anyway(
    cluster: Cluster,
) -> None:
    workflow_id = await cluster.create_workflow(
        [trigger(), set_node("a", "A")], chain("start", "a")
    )
    execution_id = await cluster.execute(workflow_id, {"n": 1})
    # A worker took the job (arq's in-progress key, for its ten-year job timeout) and was
    # killed before it claimed the execution: arq alone would never run that job id again.
    redis = Redis.from_url(REDIS_URL)
    try:
        await redis.set(f"arq:in-progress:{execution_id}:0", b"1", ex=3600)
    finally:
        await redis.aclose()
    worker = await cluster.start_worker()
    await cluster.wait_for([execution_id], {"SUCCEEDED"}, within_s=20)
    assert "taken and never started" in worker.output()
