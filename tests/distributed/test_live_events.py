"""Live execution events in distributed mode: events committed by a worker reach subscribers
on every API process through Redis, in order, without gaps, and agree with the record."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import pytest
from gql import gql

from tests.distributed.cluster import ADMIN_TOKEN, Cluster
from tests.distributed.test_workers import chain, trigger, wait_node, wait_until_running
from tests.live import client, collect
from tests.polling import until

pytestmark = [pytest.mark.postgres, pytest.mark.redis]


def ws(base: str) -> str:
    return base.replace("http://", "ws://") + "/graphql"


async def stored(cluster: Cluster, execution_id: str) -> list[tuple[int, str, str | None]]:
    return await cluster.events(execution_id)


def essentials(events: list[dict[str, Any]]) -> list[tuple[int, str, str | None]]:
    return [(event["sequence"], event["type"], event["nodeId"]) for event in events]


async def test_subscribers_on_two_api_processes_each_receive_every_event_in_order(
    cluster: Cluster,
) -> None:
    other = await cluster.start_another_api()
    await cluster.start_worker()
    ids = ["start", *(f"w{i}" for i in range(10))]
    workflow_id = await cluster.create_workflow(
        [trigger(), *(wait_node(f"w{i}", 0.1, f"Wait {i}") for i in range(10))], chain(*ids)
    )
    execution_id = await cluster.execute(workflow_id)
    urls = [ws(cluster.base), ws(other)]
    subscribers = [
        asyncio.create_task(collect(urls[i % 2], ADMIN_TOKEN, execution_id)) for i in range(200)
    ]
    received = await asyncio.wait_for(asyncio.gather(*subscribers), 120)
    expected = await stored(cluster, execution_id)
    assert expected[-1][1] == "EXECUTION_FINISHED"
    for events in received:
        assert essentials(events) == expected
    assert received[0][-1]["status"] == "SUCCEEDED"


async def test_the_stream_agrees_with_the_record_on_retries_skips_failures_and_cancels(
    cluster: Cluster,
) -> None:
    await cluster.start_worker()
    url = ws(cluster.base)
    workflow_id = await cluster.create_workflow(
        [
            trigger(),
            {
                "id": "gate",
                "name": "Gate",
                "type": "if",
                "parameters": {"conditions": [{"left": 1, "operator": "gt", "right": 5}]},
            },
            {"id": "skipped", "name": "Skipped", "type": "noop"},
            {
                **wait_node("flaky", 5, "Flaky"),
                "timeoutSeconds": 0.05,
                "retry": {"maxAttempts": 3, "backoffSeconds": 0.01},
            },
        ],
        [
            {"source": "start", "target": "gate"},
            {"source": "gate", "target": "skipped", "sourceOutput": "true"},
            {"source": "gate", "target": "flaky", "sourceOutput": "false"},
        ],
    )
    execution_id = await cluster.execute(workflow_id)
    events = await asyncio.wait_for(collect(url, ADMIN_TOKEN, execution_id), 60)
    types = [event["type"] for event in events]
    assert "NODE_SKIPPED" in types and types.count("NODE_RETRYING") == 2
    assert events[-1]["status"] == "FAILED"
    assert essentials(events) == await stored(cluster, execution_id)

    long_id = await cluster.create_workflow([trigger(), wait_node("w", 20)], chain("start", "w"))
    execution_id = await cluster.execute(long_id)
    subscriber = asyncio.create_task(collect(url, ADMIN_TOKEN, execution_id))
    await wait_until_running(cluster, execution_id, "w")
    await cluster.gql(
        "mutation($id: ID!) { cancelExecution(id: $id) { __typename } }", {"id": execution_id}
    )
    events = await asyncio.wait_for(subscriber, 60)
    assert events[-1]["status"] == "CANCELLED"
    assert essentials(events) == await stored(cluster, execution_id)


async def test_execution_updates_reach_another_api_process(cluster: Cluster) -> None:
    other = await cluster.start_another_api()
    await cluster.start_worker()
    workflow_id = await cluster.create_workflow(
        [trigger(), wait_node("w", 0.2)], chain("start", "w")
    )
    seen: list[dict[str, Any]] = []

    async def listen() -> None:
        request = gql("subscription { executionUpdates { id status } }")
        async with (
            client(ws(other), ADMIN_TOKEN) as session,
            contextlib.aclosing(session.subscribe(request)) as results,
        ):
            async for result in results:
                seen.append(result["executionUpdates"])

    listener = asyncio.create_task(listen())
    try:

        async def reports_an_execution() -> bool:
            """Subscribed once it reports one: this starts one a second until it does."""
            if not seen:
                await cluster.execute(workflow_id)
            return bool(seen)

        await until(reports_an_execution, within_s=30, interval_s=1, what="a first update")
        execution_id = await cluster.execute(workflow_id)
        deadline = asyncio.get_running_loop().time() + 30
        while {"id": execution_id, "status": "SUCCEEDED"} not in seen:
            assert asyncio.get_running_loop().time() < deadline, seen
            await asyncio.sleep(0.05)
    finally:
        listener.cancel()
        await asyncio.gather(listener, return_exceptions=True)
