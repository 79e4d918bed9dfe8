"""Live events benchmark: from a node finishing to its event arriving at websocket clients.

    .venv/bin/python bench/events.py [--runs 3] [--subscribers 200]

Everything on this machine and on loopback, as `loom serve` / `loom worker` processes with
production defaults:

- embedded: one `loom serve` (SQLite), subscribers on it;
- distributed: PostgreSQL, Redis, one `loom worker`, and two `loom serve` API processes;
  subscribers split between them.

The workflow: a trigger, a `wait` of `--gate-s` (subscribers connect meanwhile), then a chain
of 40 `wait` nodes of 10 ms. Latency: for each NODE_SUCCEEDED event of the chain, the time
from the node's finish (`at`, taken where the node ran) to the event's arrival at each
client (same clock), p50 and p99 over all subscribers. With 1 subscriber and with
`--subscribers`; and the chain's time (first to last node of the chain, as recorded) with
those subscribers attached against none, median of `--runs` executions each.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from datetime import datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import aiohttp
import orjson
from sqlalchemy import text

from bench.distributed import percentile
from storage.db import Database, run_core
from tests.distributed.cluster import ADMIN_TOKEN, Cluster, create_cluster, destroy_cluster

REDIS_URL = "redis://127.0.0.1:6379/14"
TARGET_ONE_P50_MS = 5.0
TARGET_MANY_P50_MS = 20.0
TARGET_MANY_P99_MS = 100.0
TARGET_SLOWDOWN = 1.10
CHAIN = 40
SUBSCRIPTION = (
    "subscription($id: ID!) { executionEvents(executionId: $id) { sequence type nodeId at } }"
)

Sql = Callable[..., Awaitable[list[Any]]]


def workflow(gate_s: float) -> tuple[list[dict[str, Any]], list[dict[str, str]]]:
    nodes: list[dict[str, Any]] = [
        {"id": "start", "name": "Start", "type": "manual_trigger"},
        {
            "id": "gate",
            "name": "Gate",
            "type": "wait",
            "parameters": {"amount": gate_s, "unit": "seconds"},
        },
    ]
    nodes += [
        {
            "id": f"w{i}",
            "name": f"Wait {i}",
            "type": "wait",
            "parameters": {"amount": 0.01, "unit": "seconds"},
        }
        for i in range(1, CHAIN + 1)
    ]
    ids = [node["id"] for node in nodes]
    return nodes, [{"source": a, "target": b} for a, b in itertools.pairwise(ids)]


async def subscriber(url: str, execution_id: str, latencies: list[float]) -> None:
    """A light graphql-transport-ws client (aiohttp's websocket reader is C): the arrival
    time is taken before any parsing."""
    async with (
        aiohttp.ClientSession() as http,
        http.ws_connect(url, protocols=["graphql-transport-ws"], compress=0) as ws,
    ):
        init = {"type": "connection_init", "payload": {"Authorization": f"Bearer {ADMIN_TOKEN}"}}
        await ws.send_str(orjson.dumps(init).decode())
        assert orjson.loads((await ws.receive()).data)["type"] == "connection_ack"
        subscribe = {
            "id": "1",
            "type": "subscribe",
            "payload": {"query": SUBSCRIPTION, "variables": {"id": execution_id}},
        }
        await ws.send_str(orjson.dumps(subscribe).decode())
        async for raw in ws:
            arrived = time.time()
            message = orjson.loads(raw.data)
            if message["type"] == "ping":
                await ws.send_str('{"type":"pong"}')
            elif message["type"] == "next":
                event = message["payload"]["data"]["executionEvents"]
                node_id = event["nodeId"] or ""
                if event["type"] == "NODE_SUCCEEDED" and node_id.startswith("w"):
                    finished = datetime.fromisoformat(event["at"]).timestamp()
                    latencies.append((arrived - finished) * 1000)
            elif message["type"] in ("complete", "error"):
                assert message["type"] == "complete", message
                return


async def chain_seconds(sql: Sql, execution_id: str) -> float:
    rows = await sql(
        "SELECT node_id, finished_at FROM node_runs WHERE execution_id = :id "
        "AND node_id IN ('gate', :last)",
        id=execution_id,
        last=f"w{CHAIN}",
    )
    finished = {row[0]: row[1] for row in rows}
    gate, last = finished["gate"], finished[f"w{CHAIN}"]
    if isinstance(gate, str):  # SQLite through raw SQL
        gate, last = datetime.fromisoformat(gate), datetime.fromisoformat(last)
    return float((last - gate).total_seconds())


async def until_finished(sql: Sql, execution_id: str) -> None:
    for _ in range(6000):
        ((status,),) = await sql("SELECT status FROM executions WHERE id = :id", id=execution_id)
        if status in ("SUCCEEDED", "FAILED", "CANCELLED"):
            assert status == "SUCCEEDED", status
            return
        await asyncio.sleep(0.02)
    raise TimeoutError(execution_id)


async def one_run(
    cluster: Cluster, sql: Sql, urls: list[str], workflow_id: str, subscribers: int
) -> tuple[list[float], float]:
    execution_id = await cluster.execute(workflow_id)
    latencies: list[float] = []
    clients = [
        asyncio.create_task(subscriber(urls[i % len(urls)], execution_id, latencies))
        for i in range(subscribers)
    ]
    await until_finished(sql, execution_id)
    await asyncio.wait_for(asyncio.gather(*clients), 120)
    expected = subscribers * CHAIN
    assert len(latencies) == expected, f"{len(latencies)} live events, expected {expected}"
    return latencies, await chain_seconds(sql, execution_id)


async def measure(
    label: str,
    cluster: Cluster,
    sql: Sql,
    urls: list[str],
    runs: int,
    subscribers: int,
    gate_s: float,
) -> None:
    workflow_id = await cluster.create_workflow(*workflow(gate_s))
    await one_run(cluster, sql, urls, workflow_id, 1)  # warms caches and connections
    results: dict[int, tuple[list[float], list[float]]] = {}
    for count in (0, 1, subscribers):
        latencies: list[float] = []
        chains: list[float] = []
        for _ in range(runs):
            got, chain = await one_run(cluster, sql, urls, workflow_id, count)
            latencies += got
            chains.append(chain)
        results[count] = (latencies, chains)
    none = statistics.median(results[0][1])
    print(f"{label}: chain of {CHAIN} x 10 ms without subscribers {none * 1000:.0f} ms")
    for count in (1, subscribers):
        latencies, chains = results[count]
        p50, p99 = percentile(latencies, 0.5), percentile(latencies, 0.99)
        chain = statistics.median(chains)
        if count == 1:
            verdict = "met" if p50 <= TARGET_ONE_P50_MS else "MISSED"
            target = f"target p50 <= {TARGET_ONE_P50_MS:.0f} ms: {verdict}"
        else:
            met = p50 <= TARGET_MANY_P50_MS and p99 <= TARGET_MANY_P99_MS
            target = (
                f"target p50 <= {TARGET_MANY_P50_MS:.0f} ms, p99 <= {TARGET_MANY_P99_MS:.0f} ms: "
                + ("met" if met else "MISSED")
            )
        slowdown = chain / none
        where = f"on {len(urls)} API processes" if len(urls) > 1 else "on one process"
        print(
            f"  {count} subscriber(s) {where}: latency p50 {p50:.1f} ms, p99 {p99:.1f} ms "
            f"({len(latencies)} events; {target}); chain {chain * 1000:.0f} ms, "
            f"{slowdown:.2f}x without"
            + (
                f" (target <= {TARGET_SLOWDOWN:.2f}x: "
                + ("met" if slowdown <= TARGET_SLOWDOWN else "MISSED")
                + ")"
                if count > 1
                else ""
            )
        )


def ws(base: str) -> str:
    return base.replace("http://", "ws://") + "/graphql"


async def embedded(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory() as workdir:
        path = Path(workdir) / "loom.db"
        cluster = await create_cluster(
            Path(workdir),
            LOOM_REDIS_URL="",
            LOOM_DATABASE_URL=f"sqlite:///{path}",
            LOOM_LOG_LEVEL="warning",
        )
        database = Database(f"sqlite+aiosqlite:///{path}")

        async def sql(query: str, **params: Any) -> list[Any]:
            async with database.session() as session:
                return list((await run_core(session, text(query), params)).all())

        try:
            await cluster.start_api()
            await measure(
                "embedded (SQLite, one process)",
                cluster,
                sql,
                [ws(cluster.base)],
                args.runs,
                args.subscribers,
                args.gate_s,
            )
        finally:
            await database.dispose()
            await destroy_cluster(cluster)


async def distributed(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory() as workdir:
        cluster = await create_cluster(
            Path(workdir),
            LOOM_REDIS_URL=REDIS_URL,
            LOOM_LEASE_SECONDS="30",
            LOOM_SWEEP_INTERVAL_S="5",
            LOOM_LOG_LEVEL="warning",
        )
        try:
            await cluster.start_api()
            other = await cluster.start_another_api()
            await cluster.start_worker()
            await measure(
                "distributed (PostgreSQL, Redis, 1 worker, 2 API processes)",
                cluster,
                cluster.sql,
                [ws(cluster.base), ws(other)],
                args.runs,
                args.subscribers,
                args.gate_s,
            )
        finally:
            await destroy_cluster(cluster)


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--subscribers", type=int, default=200)
    parser.add_argument("--gate-s", type=float, default=3.0)
    parser.add_argument("--only", choices=["embedded", "distributed"])
    args = parser.parse_args()
    print("live events: loopback, 2 CPUs, shared machine")
    if args.only in (None, "embedded"):
        await embedded(args)
    if args.only in (None, "distributed"):
        await distributed(args)


if __name__ == "__main__":
    asyncio.run(main())
