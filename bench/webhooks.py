"""Webhook benchmark: requests per second and latency, embedded mode, one `loom serve`.

    .venv/bin/python bench/webhooks.py [--seconds 10] [--clients 32] [--runs 3] [--only abc]

The shapes of n8n's own benchmark scenarios, on loopback, every execution recorded:
(a) a webhook that answers at once (202); (b) a webhook, three `set` nodes with expressions,
answering with the result (last_node); (c) a webhook, an HTTP Request to a local mock API,
answering with the result. Median of `--runs` windows of `--seconds`, aiohttp clients in
this process (the load generator shares the machine's two cores with the server).
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import aiohttp
from aiohttp import web

from bench.distributed import percentile
from tests.distributed.cluster import Cluster, create_cluster, destroy_cluster

TARGET_B = 400.0


def _set(node_id: str, name: str, value: str) -> dict[str, Any]:
    return {
        "id": node_id,
        "name": name,
        "type": "set",
        "parameters": {"fields": [{"name": name.lower(), "value": value}]},
    }


def scenarios(api: str) -> dict[str, tuple[list[dict[str, Any]], str]]:
    def hook(path: str, mode: str) -> dict[str, Any]:
        return {
            "id": "hook",
            "name": "Hook",
            "type": "webhook",
            "parameters": {"path": path, "responseMode": mode},
        }

    return {
        "(a) webhook, answer at once": ([hook("a", "immediately")], "a"),
        "(b) webhook, 3 set nodes with expressions, answer with the result": (
            [
                hook("b", "last_node"),
                _set("s1", "Total", "{{ $json.body.price * $json.body.qty }}"),
                _set("s2", "Label", "{{ $json.body.name.toUpperCase() }}"),
                _set("s3", "Big", "{{ $json.total > 10 }}"),
            ],
            "b",
        ),
        "(c) webhook, HTTP Request to a local API, answer with the result": (
            [
                hook("c", "last_node"),
                {
                    "id": "call",
                    "name": "Call",
                    "type": "http_request",
                    "parameters": {"url": f"{api}/price", "retry": {"maxAttempts": 1}},
                },
            ],
            "c",
        ),
    }


async def mock_api() -> tuple[web.AppRunner, str]:
    async def price(_: web.Request) -> web.Response:
        return web.json_response({"price": 4})

    app = web.Application()
    app.router.add_get("/price", price)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    return runner, f"http://127.0.0.1:{port}"


async def window(url: str, seconds: float, clients: int) -> tuple[float, list[float]]:
    latencies: list[float] = []
    end = time.monotonic() + seconds
    body = b'{"price": 4, "qty": 5, "name": "order"}'

    async def client(http: aiohttp.ClientSession) -> None:
        while time.monotonic() < end:
            sent = time.monotonic()
            async with http.post(url, data=body) as response:
                await response.read()
                assert response.status in (200, 202), response.status
            latencies.append((time.monotonic() - sent) * 1000)

    started = time.monotonic()
    connector = aiohttp.TCPConnector(limit=clients)
    headers = {"Content-Type": "application/json"}
    async with aiohttp.ClientSession(connector=connector, headers=headers) as http:
        await asyncio.gather(*(client(http) for _ in range(clients)))
    return len(latencies) / (time.monotonic() - started), latencies


async def activate(cluster: Cluster, nodes: list[dict[str, Any]]) -> None:
    edges = [{"source": a["id"], "target": b["id"]} for a, b in itertools.pairwise(nodes)]
    workflow_id = await cluster.create_workflow(nodes, edges)
    for mutation in (
        "mutation($id: ID!) { publishWorkflow(id: $id, expectedVersion: 1) { __typename } }",
        "mutation($id: ID!) { setWorkflowActive(id: $id, active: true) { __typename } }",
    ):
        data = await cluster.gql(mutation, {"id": workflow_id})
        assert next(iter(data.values()))["__typename"] == "Workflow", data


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--only", default="abc", help="scenarios to run, e.g. b")
    args = parser.parse_args()
    print("webhooks: embedded mode (SQLite), one loom serve, loopback, 2 CPUs, shared machine")
    runner, api = await mock_api()
    with tempfile.TemporaryDirectory() as workdir:
        cluster = await create_cluster(
            Path(workdir),
            LOOM_REDIS_URL="",
            LOOM_DATABASE_URL=f"sqlite:///{Path(workdir) / 'loom.db'}",
            LOOM_LOG_LEVEL="warning",
            LOOM_HTTP_ALLOWED_NETWORKS='["127.0.0.1/32"]',
        )
        try:
            await cluster.start_api()
            for label, (nodes, path) in scenarios(api).items():
                if path not in args.only:
                    continue
                await activate(cluster, nodes)
                url = f"{cluster.base}/webhook/{path}"
                await window(url, 1.0, 4)  # warm-up
                rates, latencies = [], []
                for _ in range(args.runs):
                    rate, got = await window(url, args.seconds, args.clients)
                    rates.append(rate)
                    latencies += got
                rate = statistics.median(rates)
                target = ""
                if label.startswith("(b)"):
                    met = "met" if rate >= TARGET_B else "MISSED"
                    target = f"; target >= {TARGET_B:.0f} req/s: {met}"
                print(
                    f"{label}: {rate:.0f} req/s (windows {', '.join(f'{r:.0f}' for r in rates)}),"
                    f" latency p50 {percentile(latencies, 0.5):.1f} ms, "
                    f"p99 {percentile(latencies, 0.99):.1f} ms{target}"
                )
        finally:
            await destroy_cluster(cluster)
            await runner.cleanup()


if __name__ == "__main__":
    asyncio.run(main())
