"""Declarative node type benchmark (issue 15): one request per item against a local API, a
declarative type against an `http_request` node making the same calls.

    .venv/bin/python bench/declarative.py [--items 200] [--runs 7]

The API (aiohttp, in a process of its own so that serving does not share the engine's event
loop) answers `GET /items/{id}` with a small JSON object. Two plans run in this process,
alternating, through `Executor` + `MemoryRecorder` with the same guarded HTTP client
(loopback allowed): trigger -> split_out (`--items` items) -> X, where X is

- an `http_request` node, `url = http://127.0.0.1:PORT/items/{{ $json.id }}`;
- a declarative type (`ws.get_item`) whose request template has the same URL and whose
  response mapping selects `data` and keeps two fields (the work it adds).

Figures: X's own duration (what its node run records), median over `--runs` runs, and the
ratio declarative / http_request, of the medians and run by run (each run times both, one
after the other: the median of those ratios resists a busy machine better). Target: at most
1.2x.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import statistics
import sys
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from engine.declarative import build_node_type
from engine.events import EventType
from engine.executor import Executor, RunOptions, RunRequest
from engine.graph import Graph
from engine.memory_recorder import MemoryRecorder
from engine.network_policy import NetworkPolicy
from engine.node_types import NodeTypeLookup, WorkspaceNodeTypes, load_registry
from engine.nodes.base import NodeResources, RunInfo
from engine.plan import Plan, compile_plan

TARGET_RATIO = 1.2


def serve(port: int) -> None:
    """The local API (run in its own process)."""
    from aiohttp import web

    async def item(request: web.Request) -> web.Response:
        identifier = int(request.match_info["id"])
        return web.json_response(
            {"data": {"id": identifier, "name": f"item {identifier}", "price": identifier * 1.5}}
        )

    app = web.Application()
    app.router.add_get("/items/{id}", item)
    web.run_app(app, host="127.0.0.1", port=port, print=None, access_log=None)


class _NoCredentials:
    async def fields(self, workspace_id: str, kind: str, credential_id: str) -> dict[str, Any]:
        raise LookupError(credential_id)


def plan(node_types: NodeTypeLookup, x: dict[str, Any]) -> Plan:
    nodes = [
        {"id": "start", "name": "Start", "type": "manual_trigger"},
        {"id": "split", "name": "Split", "type": "split_out", "parameters": {"field": "rows"}},
        {"id": "x", "name": "X", **x},
    ]
    edges = [{"source": "start", "target": "split"}, {"source": "split", "target": "x"}]
    return compile_plan(str(uuid.uuid4()), Graph.from_json(nodes, edges), node_types)


async def node_ms(the_plan: Plan, run_input: dict[str, Any], resources: NodeResources) -> float:
    recorder = MemoryRecorder()
    execution_id = str(uuid.uuid4())
    request = RunRequest(
        execution_id=execution_id,
        plan=the_plan,
        info=RunInfo(execution_id=execution_id, now=datetime.now(UTC).isoformat()),
        input=run_input,
    )
    outcome = await Executor(recorder).run(request, RunOptions(resources=resources))
    assert outcome.status.value == "SUCCEEDED", outcome.error
    (duration,) = [
        event.duration_ms
        for event in recorder.events()
        if event.type is EventType.NODE_SUCCEEDED and event.node_id == "x"
    ]
    assert duration is not None
    return duration


async def main(items: int, runs: int, port: int) -> None:
    base = f"http://127.0.0.1:{port}"
    registry = load_registry()
    definition = {
        "displayName": "Get item",
        "requestTemplate": {"url": base + "/items/{{ $json.id }}"},
        "responseMapping": {"select": "data", "keep": ["id", "name"]},
    }
    declared = WorkspaceNodeTypes(
        registry, {"ws.get_item": {1: build_node_type("ws.get_item", 1, definition)}}
    )
    http_plan = plan(
        registry, {"type": "http_request", "parameters": {"url": base + "/items/{{ $json.id }}"}}
    )
    declarative_plan = plan(declared, {"type": "ws.get_item"})
    resources = NodeResources(NetworkPolicy.from_strings(["127.0.0.1/32"]), _NoCredentials())
    rows = {"rows": [{"id": index} for index in range(items)]}
    try:
        await node_ms(http_plan, rows, resources)  # warm up: connections, compile caches
        await node_ms(declarative_plan, rows, resources)
        http_ms, declarative_ms = [], []
        for _ in range(runs):
            http_ms.append(await node_ms(http_plan, rows, resources))
            declarative_ms.append(await node_ms(declarative_plan, rows, resources))
    finally:
        await resources.close()
    ratios = [d / h for d, h in zip(declarative_ms, http_ms, strict=True)]
    print(f"{items} items, one request each (median of {runs} runs, the node's own ms)")
    print(f"   http_request  {statistics.median(http_ms):8.1f}   runs: {_list(http_ms)}")
    print(
        f"   declarative   {statistics.median(declarative_ms):8.1f}   runs: {_list(declarative_ms)}"
    )
    ratio = statistics.median(declarative_ms) / statistics.median(http_ms)
    print(f"   ratio         {ratio:8.3f}x  (of the medians)")
    print(f"   run by run    {statistics.median(ratios):8.3f}x  (median of: {_list(ratios, 3)})")
    verdict = "meets" if ratio <= TARGET_RATIO else "MISSES"
    print(f"   the declarative type {verdict} the {TARGET_RATIO:g}x target")


def _list(values: list[float], digits: int = 1) -> str:
    return ", ".join(f"{value:.{digits}f}" for value in values)


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_listening(port: int, within_s: float = 10.0) -> None:
    import socket

    deadline = time.monotonic() + within_s
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--items", type=int, default=200)
    parser.add_argument("--runs", type=int, default=7)
    arguments = parser.parse_args()
    api_port = _free_port()
    server = multiprocessing.Process(target=serve, args=(api_port,), daemon=True)
    server.start()
    try:
        _wait_listening(api_port)
        asyncio.run(main(arguments.items, arguments.runs, api_port))
    finally:
        server.terminate()
        server.join()
