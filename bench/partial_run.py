"""A run to the last node reusing the rest vs a full run: a 50-node chain whose last node's
expression changed (issue 16 point 2).

    .venv/bin/python bench/partial_run.py [--runs 7] [--latency-ms 20]

Seeds a SQLite database with a user and a workflow: Start, then 48 HTTP Request nodes that
each call a local API answering after `--latency-ms` (a fast real API; what upstream nodes
of an editor session usually are), then a Set node. The workflow runs once in full; the Set
node's expression then changes (`updateNode`). Then, alternating in the same process, each
`--runs` times:

- full run: `executeWorkflow(id)`, every node runs;
- run to the last node: `executeWorkflow(id, destinationNodeId: last, reuseFrom: first)`,
  the 49 unchanged nodes' outputs reused (loaded, recorded as REUSED), the Set node run.

Each is timed from the mutation to the end of the run (the embedded submitter's wait), over
the ASGI app in-process. Prints both medians and the ratio. `--latency-ms 0` shows the floor:
nodes that cost nothing to run, where reusing saves nothing but the calls.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

CHAIN = 50
EXECUTE = """
mutation($id: ID!, $to: ID, $from: ID) {
  executeWorkflow(id: $id, destinationNodeId: $to, reuseFrom: $from) {
    __typename ... on Execution { id } ... on ValidationError { message }
  }
}
"""
CHECK = """
query($id: ID!) { execution(id: $id) { status output nodeRuns { source } } }
"""


def api(latency_s: float) -> ThreadingHTTPServer:
    """A local API answering every GET with a small JSON object after `latency_s`."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            time.sleep(latency_s)
            body = json.dumps({"path": self.path, "ok": True}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def chain(port: int, total: str) -> dict[str, Any]:
    nodes: list[dict[str, Any]] = [{"id": "n0", "name": "Start", "type": "manual_trigger"}]
    nodes += [
        {
            "id": f"n{index}",
            "name": f"Call {index}",
            "type": "http_request",
            "parameters": {"url": f"http://127.0.0.1:{port}/step/{index}"},
        }
        for index in range(1, CHAIN - 1)
    ]
    nodes.append(
        {
            "id": f"n{CHAIN - 1}",
            "name": "Total",
            "type": "set",
            "parameters": {"fields": [{"name": "total", "value": total}]},
        }
    )
    edges = [{"source": f"n{i - 1}", "target": f"n{i}"} for i in range(1, CHAIN)]
    return {"name": "Partial run bench", "nodes": nodes, "edges": edges}


async def main(runs: int, latency_ms: float) -> None:
    import httpx

    from server.app import create_app
    from server.settings import Settings
    from storage import accounts
    from storage.db import Database
    from storage.migrate import upgrade

    server = api(latency_ms / 1000)
    port = server.server_address[1]
    with tempfile.TemporaryDirectory() as directory:
        url = f"sqlite+aiosqlite:///{directory}/bench.db"
        database = Database(url)
        await upgrade(database)
        async with database.transaction() as session:
            user = await accounts.create_user(session, "bench")
            _, token = await accounts.create_token(session, user.id, "bench")
        settings = Settings(  # type: ignore[call-arg]
            _env_file=None, database_url=url, http_allowed_networks="127.0.0.0/8"
        )
        app = create_app(settings, database=database)
        headers = {"Authorization": f"Bearer {token}"}
        transport = httpx.ASGITransport(app=app)
        async with (
            app.router.lifespan_context(app),
            httpx.AsyncClient(transport=transport, base_url="http://bench", timeout=120) as client,
        ):

            async def gql(query: str, variables: dict[str, Any]) -> Any:
                response = await client.post(
                    "/graphql", headers=headers, json={"query": query, "variables": variables}
                )
                body = response.json()
                assert "errors" not in body, body
                return body["data"]

            async def run(**variables: Any) -> tuple[float, str]:
                start = time.perf_counter()
                started = (await gql(EXECUTE, variables))["executeWorkflow"]
                assert started["__typename"] == "Execution", started
                await app.state.services.submitter.wait(started["id"])
                return (time.perf_counter() - start) * 1000, started["id"]

            created = await gql(
                "mutation($input: WorkflowInput!) { createWorkflow(input: $input) "
                "{ ... on Workflow { id } } }",
                {"input": chain(port, "{{ $json.ok }}")},
            )
            workflow_id = created["createWorkflow"]["id"]
            _, first = await run(id=workflow_id)
            last = f"n{CHAIN - 1}"
            changed = await gql(
                "mutation($w: ID!, $n: ID!, $node: NodeInput!) { updateNode(workflowId: $w, "
                "nodeId: $n, node: $node, expectedVersion: 1) { __typename } }",
                {
                    "w": workflow_id,
                    "n": last,
                    "node": chain(port, "{{ $json.path }}")["nodes"][-1],
                },
            )
            assert changed["updateNode"]["__typename"] == "Workflow", changed
            fulls: list[float] = []
            partials: list[float] = []
            for _ in range(runs):
                elapsed, _ = await run(id=workflow_id)
                fulls.append(elapsed)
                elapsed, partial_id = await run(id=workflow_id, to=last, **{"from": first})
                partials.append(elapsed)
            check = (await gql(CHECK, {"id": partial_id}))["execution"]
            assert check["status"] == "SUCCEEDED", check
            sources = [run["source"] for run in check["nodeRuns"]]
            assert sources == ["REUSED"] * (CHAIN - 1) + ["RAN"], sources
            assert check["output"] == [
                {"path": f"/step/{CHAIN - 2}", "ok": True, "total": f"/step/{CHAIN - 2}"}
            ]
        await database.dispose()
    server.shutdown()
    full, partial = statistics.median(fulls), statistics.median(partials)
    print(
        f"{CHAIN}-node chain ({CHAIN - 2} HTTP calls of {latency_ms:g} ms, then Set), "
        f"{runs} runs each"
    )
    print(f"  full run                       median {full:8.1f} ms")
    print(f"  run to the last node, reusing  median {partial:8.1f} ms")
    print(f"  ratio                          {full / partial:8.1f}x")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--latency-ms", type=float, default=20.0)
    arguments = parser.parse_args()
    asyncio.run(main(arguments.runs, arguments.latency_ms))
