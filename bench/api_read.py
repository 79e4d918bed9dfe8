"""Read-path benchmark: GraphQL `workflow(id)` against a plain Starlette JSON route.

    .venv/bin/python bench/api_read.py [--duration 5] [--rounds 3] [--connections 8]

Starts one uvicorn process (SQLite, embedded mode) serving Loom plus a plain route that reads
the same workflow row from the same database and returns the same fields as JSON (the floor),
then drives both from one load generator on loopback (`wrk` when installed, else an aiohttp
client in its own process), alternating rounds and taking the median. It also prints where
GraphQL's time goes (cProfile of in-process executions) and the SQL statement count and rate
of `workflows(first: 50)` with nodes.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import json
import os
import pstats
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

WORKFLOW_QUERY = """
query($id: ID!) { workflow(id: $id) {
  id name description tags version publishedVersion active settings createdAt updatedAt
  nodes { id name type typeVersion parameters position { x y } disabled notes
          retry { maxAttempts backoffSeconds backoffFactor maxBackoffSeconds }
          timeoutSeconds onError credentials issues { code message nodeId field severity } }
  edges { id source sourceOutput target targetInput }
} }
"""
LIST_QUERY = """
query { workflows(first: 50) { edges { cursor node {
  id name version tags nodes { id name type parameters position { x y } } edges { source target }
  workspace { id name } createdBy { id name } versions { version }
} } pageInfo { hasNextPage endCursor } } }
"""


def plain_workflow_json(row: Any) -> dict[str, Any]:
    """The same fields the GraphQL query selects, straight from the row."""
    issues = row.node_issues
    return {
        "id": row.id,
        "name": row.name,
        "description": row.description,
        "tags": row.tags,
        "version": row.version,
        "publishedVersion": row.published_version,
        "active": row.active,
        "settings": row.settings,
        "createdAt": row.created_at.isoformat(),
        "updatedAt": row.updated_at.isoformat(),
        "nodes": [{**node, "issues": issues.get(node["id"], [])} for node in row.nodes],
        "edges": [
            {
                "id": f"{e['source']}:{e['sourceOutput']}->{e['target']}:{e['targetInput']}",
                **e,
            }
            for e in row.edges
        ],
    }


def build_app() -> Any:
    """Loom's app plus the plain floor route, authenticating the same way."""
    from resolvers.auth import token_from_header
    from server.app import create_app
    from storage import workflows

    app = create_app()
    services = app.state.services

    async def plain(request: Request) -> JSONResponse:
        token = token_from_header(request.headers.get("authorization"))
        principal = await services.authenticator.authenticate(token)
        if principal is None:
            return JSONResponse({"error": "unauthenticated"}, status_code=401)
        async with services.database.session() as session:
            row = await workflows.get_workflow(
                session, request.path_params["id"], principal.workspace_ids
            )
        if row is None:
            return JSONResponse({"data": {"workflow": None}})
        return JSONResponse({"data": {"workflow": plain_workflow_json(row)}})

    app.router.routes.insert(0, Route("/plain/workflow/{id}", plain))
    return app


async def seed(database_url: str) -> tuple[str, str]:
    """A user, one 50-node workflow and 49 more for the listing; returns (token, id)."""
    from engine.graph import Edge, Graph, Node, Position
    from storage import accounts, workflows
    from storage.db import Database
    from storage.migrate import upgrade
    from storage.models import Workflow

    database = Database(database_url)
    await upgrade(database)
    async with database.transaction() as session:
        user = await accounts.create_user(session, "bench")
        _, token = await accounts.create_token(session, user.id, "bench")
        nodes = [Node(id="n0", name="Start", type="manual_trigger")]
        nodes += [
            Node(
                id=f"n{i}",
                name=f"Set {i}",
                type="set",
                parameters={"fields": [{"name": "price", "value": f"{{{{ $json.price * {i} }}}}"}]},
                position=Position(x=i * 200.0, y=100.0),
            )
            for i in range(1, 50)
        ]
        graph = Graph(
            nodes=tuple(nodes),
            edges=tuple(Edge(source=f"n{i - 1}", target=f"n{i}") for i in range(1, 50)),
        )
        ids = []
        for index in range(50):
            row = Workflow(
                workspace_id=user.personal_workspace_id,
                name=f"Bench workflow {index}",
                tags=["bench"],
                nodes=graph.nodes_to_json(),
                edges=graph.edges_to_json(),
                settings={"timezone": "UTC"},
                created_by=user.id,
            )
            await workflows.create_workflow(session, row)
            ids.append(row.id)
    await database.dispose()
    return token, ids[0]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for(url: str, timeout_s: float = 20.0) -> None:
    import urllib.request

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(url, timeout=1)
            return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"server at {url} did not come up")


def run_wrk(url: str, token: str, body: str | None, duration_s: float, connections: int) -> float:
    script = None
    args = [
        "wrk",
        "-t1",
        f"-c{connections}",
        f"-d{max(1, round(duration_s))}s",
        "-H",
        f"Authorization: Bearer {token}",
    ]
    if body is not None:
        with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as handle:
            handle.write(
                'wrk.method = "POST"\n'
                f"wrk.body = {json.dumps(body)}\n"
                'wrk.headers["Content-Type"] = "application/json"\n'
            )
        script = handle.name
        args += ["-s", script]
    output = subprocess.run([*args, url], capture_output=True, text=True, check=True).stdout
    if script:
        os.unlink(script)
    if "Non-2xx" in output:
        raise RuntimeError(f"non-2xx responses:\n{output}")
    match = re.search(r"Requests/sec:\s+([\d.]+)", output)
    assert match, output
    return float(match.group(1))


def run_aiohttp(
    url: str, token: str, body: str | None, duration_s: float, connections: int
) -> float:
    output = subprocess.run(
        [
            sys.executable,
            str(Path(__file__).with_name("loadgen.py")),
            url,
            token,
            body or "",
            str(duration_s),
            str(connections),
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return float(output.strip())


async def count_list_statements(database_url: str, token: str) -> tuple[int, float]:
    """SQL statements and in-process time of `workflows(first: 50)` with nodes."""
    import httpx
    from sqlalchemy import event

    from server.app import create_app
    from server.settings import Settings
    from storage.db import Database

    database = Database(database_url)
    app = create_app(Settings(_env_file=None), database=database)  # type: ignore[call-arg]
    statements = 0

    def count(*_: Any) -> None:
        nonlocal statements
        statements += 1

    transport = httpx.ASGITransport(app=app)
    headers = {"Authorization": f"Bearer {token}"}
    async with httpx.AsyncClient(transport=transport, base_url="http://bench") as client:
        await client.post("/graphql", json={"query": LIST_QUERY}, headers=headers)  # warm up
        event.listen(database.engine.sync_engine, "before_cursor_execute", count)
        response = await client.post("/graphql", json={"query": LIST_QUERY}, headers=headers)
        event.remove(database.engine.sync_engine, "before_cursor_execute", count)
        assert response.status_code == 200 and "errors" not in response.json(), response.text
        assert len(response.json()["data"]["workflows"]["edges"]) == 50
        timings = []
        for _ in range(20):
            start = time.perf_counter()
            await client.post("/graphql", json={"query": LIST_QUERY}, headers=headers)
            timings.append(time.perf_counter() - start)
    await database.dispose()
    return statements, statistics.median(timings) * 1000


async def profile_graphql(database_url: str, token: str, workflow_id: str, runs: int) -> str:
    """Where an in-process `workflow(id)` execution spends its time."""
    import httpx

    from server.app import create_app
    from server.settings import Settings
    from storage.db import Database

    database = Database(database_url)
    app = create_app(Settings(_env_file=None), database=database)  # type: ignore[call-arg]
    transport = httpx.ASGITransport(app=app)
    headers = {"Authorization": f"Bearer {token}"}
    payload = {"query": WORKFLOW_QUERY, "variables": {"id": workflow_id}}
    async with httpx.AsyncClient(transport=transport, base_url="http://bench") as client:
        for _ in range(20):
            await client.post("/graphql", json=payload, headers=headers)
        profiler = cProfile.Profile()
        profiler.enable()
        for _ in range(runs):
            await client.post("/graphql", json=payload, headers=headers)
        profiler.disable()
    await database.dispose()
    stats = pstats.Stats(profiler)
    total = stats.total_tt  # type: ignore[attr-defined]
    buckets = {
        "graphql-core execution (field resolution, completion)": r"graphql/execution",
        "strawberry (schema, types, extensions, http)": r"strawberry/",
        "database (sqlalchemy, aiosqlite, sqlite3)": r"sqlalchemy/|aiosqlite|sqlite3",
        "json encoding/decoding": r"json/",
        "httpx test transport + starlette": r"httpx/|starlette/",
        "loom (resolvers, mapping, storage)": r"/(resolvers|schema|storage|server|engine)/",
    }
    tottime: dict[str, float] = dict.fromkeys(buckets, 0.0)
    other = 0.0
    for (filename, _, _), (_, _, tt, _, _) in stats.stats.items():  # type: ignore[attr-defined]
        for name, pattern in buckets.items():
            if re.search(pattern, filename):
                tottime[name] += tt
                break
        else:
            other += tt
    lines = [f"  profile of {runs} in-process requests, {total / runs * 1000:.2f} ms each:"]
    for name, seconds in sorted(tottime.items(), key=lambda item: -item[1]):
        lines.append(f"    {seconds / total:6.1%}  {name}")
    lines.append(f"    {other / total:6.1%}  other (asyncio, builtins)")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--duration", type=float, default=5.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.serve:
        import uvicorn

        uvicorn.run(
            build_app,
            factory=True,
            host="127.0.0.1",
            port=args.port,
            log_level="warning",
            access_log=False,
        )
        return

    workdir = Path(tempfile.mkdtemp(prefix="loom-bench-"))
    database_url = f"sqlite+aiosqlite:///{workdir / 'loom.db'}"
    token, workflow_id = asyncio.run(seed(database_url))
    port = free_port()
    env = {**os.environ, "LOOM_DATABASE_URL": database_url, "LOOM_TOKEN_CACHE_S": "5"}
    server = subprocess.Popen([sys.executable, __file__, "--serve", "--port", str(port)], env=env)
    try:
        base = f"http://127.0.0.1:{port}"
        wait_for(f"{base}/healthz")
        load = run_wrk if shutil.which("wrk") else run_aiohttp
        generator = "wrk" if load is run_wrk else "aiohttp (install wrk for a lighter generator)"
        body = json.dumps({"query": WORKFLOW_QUERY, "variables": {"id": workflow_id}})
        load(f"{base}/graphql", token, body, 2, args.connections)  # warm up
        load(f"{base}/plain/workflow/{workflow_id}", token, None, 2, args.connections)
        graphql_rps, plain_rps, ratios = [], [], []
        for _ in range(args.rounds):
            g = load(f"{base}/graphql", token, body, args.duration, args.connections)
            p = load(
                f"{base}/plain/workflow/{workflow_id}", token, None, args.duration, args.connections
            )
            graphql_rps.append(g)
            plain_rps.append(p)
            ratios.append(g / p)
        list_body = json.dumps({"query": LIST_QUERY})
        list_rps = load(f"{base}/graphql", token, list_body, args.duration, args.connections)
    finally:
        server.terminate()
        server.wait()
    statements, list_ms = asyncio.run(count_list_statements(database_url, token))
    profile = asyncio.run(profile_graphql(database_url, token, workflow_id, 300))
    shutil.rmtree(workdir, ignore_errors=True)

    def rounds(values: list[float], spec: str) -> str:
        return ", ".join(format(value, spec) for value in values)

    print(
        f"api_read: 50-node workflow, SQLite, 1 uvicorn process, load generator: {generator}, "
        f"{args.connections} connections, {args.rounds} rounds of {args.duration:g} s"
    )
    print(
        f"  GraphQL workflow(id):      {statistics.median(graphql_rps):8.0f} req/s "
        f"(median; rounds {rounds(graphql_rps, '.0f')})"
    )
    print(
        f"  plain JSON route (floor):  {statistics.median(plain_rps):8.0f} req/s "
        f"(median; rounds {rounds(plain_rps, '.0f')})"
    )
    print(
        f"  ratio GraphQL / floor:     {statistics.median(ratios):8.2f}x "
        f"(target >= 0.25x; per round {rounds(ratios, '.2f')})"
    )
    print(
        f"  workflows(first: 50) with nodes (50 x 50 nodes): {list_rps:.0f} req/s over HTTP, "
        f"{list_ms:.1f} ms in-process, {statements} SQL statements"
    )
    print(profile)


if __name__ == "__main__":
    main()
