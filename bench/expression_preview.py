"""`evaluateExpression` latency over a 1 MB item: in-process and over HTTP, against a floor.

    .venv/bin/python bench/expression_preview.py [--calls 1000]

Seeds a SQLite database with a user and a workflow (Start -> Target) run once on a 1 MB item,
then calls `evaluateExpression(... "{{ $json.name }}" ...)` for the Target node `--calls`
times, as the editor does on every keystroke:

- engine: `engine.preview.preview_expression` alone, on the decoded item (the evaluation);
- resolver: the GraphQL operation executed by the schema in-process (Strawberry, the
  resolver with its database reads and its output cache; no HTTP, no authentication), next
  to its floor, a trivial query (`{ viewer { id } }`) executed the same way;
- ASGI: the whole request through the ASGI app (httpx's ASGI transport: Starlette,
  Strawberry, the resolver with its database reads and its output cache, JSON encoding),
  next to its floor, a trivial query (`{ viewer { id } }`) through the same transport;
- over HTTP: the same against `uvicorn` in another process on loopback, with its floor.

Calls alternate with their floor's, so that both see the same machine. Prints p50 and p99 of
each and the ratio of p50s to the floor's.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

ROOT = Path(__file__).resolve().parent.parent
EXPRESSION = "{{ $json.name }}"
EVALUATE = """
query($w: ID!, $n: ID!, $e: String!) {
  evaluateExpression(workflowId: $w, nodeId: $n, expression: $e) {
    __typename ... on ExpressionValue { value } ... on ExpressionError { code message }
  }
}
"""
FLOOR = "{ viewer { id } }"


def big_item(target_bytes: int = 1024 * 1024) -> dict[str, Any]:
    """An item of about `target_bytes` of JSON: a name and many small records."""
    import orjson

    record = {"id": 0, "title": "lorem ipsum dolor sit amet", "score": 1.5, "tags": ["a", "b"]}
    per_record = len(orjson.dumps(record)) + 1
    count = target_bytes // per_record
    return {
        "name": "Ada",
        "records": [{**record, "id": index} for index in range(count)],
    }


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))]


async def seed(database_url: str) -> tuple[str, str, str]:
    """A user and a workflow run once on the item: (token, workflow id, execution id)."""
    import httpx

    from server.app import create_app
    from storage import accounts
    from storage.db import Database
    from storage.migrate import upgrade

    database = Database(database_url)
    await upgrade(database)
    async with database.transaction() as session:
        user = await accounts.create_user(session, "bench")
        _, token = await accounts.create_token(session, user.id, "bench")
    app = create_app(_settings(database_url), database=database)
    headers = {"Authorization": f"Bearer {token}"}
    transport = httpx.ASGITransport(app=app)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=transport, base_url="http://bench") as client,
    ):
        created = await client.post(
            "/graphql",
            headers=headers,
            json={
                "query": "mutation($input: WorkflowInput!) { createWorkflow(input: $input) "
                "{ ... on Workflow { id } } }",
                "variables": {
                    "input": {
                        "name": "Preview bench",
                        "nodes": [
                            {"id": "start", "name": "Start", "type": "manual_trigger"},
                            {"id": "target", "name": "Target", "type": "noop"},
                        ],
                        "edges": [{"source": "start", "target": "target"}],
                    }
                },
            },
        )
        workflow_id = created.json()["data"]["createWorkflow"]["id"]
        started = await client.post(
            "/graphql",
            headers=headers,
            json={
                "query": "mutation($id: ID!, $input: JSON) { executeWorkflow(id: $id, "
                "input: $input) { ... on Execution { id } } }",
                "variables": {"id": workflow_id, "input": big_item()},
            },
        )
        execution_id = started.json()["data"]["executeWorkflow"]["id"]
        await app.state.services.submitter.wait(execution_id)
    await database.dispose()
    return token, workflow_id, execution_id


def _settings(database_url: str) -> Any:
    from server.settings import Settings

    return Settings(_env_file=None, database_url=database_url)  # type: ignore[call-arg]


async def timed_pairs(
    calls: int, measured: Callable[[], Awaitable[None]], floor: Callable[[], Awaitable[None]]
) -> tuple[list[float], list[float]]:
    """Each call of `measured` then `floor`, in ms, after a warm-up of both."""
    for _ in range(20):
        await measured()
        await floor()
    times: list[float] = []
    floors: list[float] = []
    for _ in range(calls):
        start = time.perf_counter()
        await measured()
        times.append((time.perf_counter() - start) * 1000)
        start = time.perf_counter()
        await floor()
        floors.append((time.perf_counter() - start) * 1000)
    return times, floors


def report(label: str, times: list[float], floors: list[float] | None = None) -> None:
    p50, p99 = percentile(times, 0.5), percentile(times, 0.99)
    line = f"  {label:<34} p50 {p50:7.2f} ms   p99 {p99:7.2f} ms"
    if floors is not None:
        f50, f99 = percentile(floors, 0.5), percentile(floors, 0.99)
        line += f"\n  {'  floor { viewer { id } }':<34} p50 {f50:7.2f} ms   p99 {f99:7.2f} ms"
        line += f"\n  {'  ratio p50 / floor p50':<34} {p50 / f50:7.2f}x"
    print(line)


def engine_only(calls: int) -> list[float]:
    """The evaluation alone, on the decoded item."""
    from engine.expressions import ExpressionLimits
    from engine.preview import PreviewData, Rendered, preview_expression

    item = big_item()
    data = PreviewData([item], {}, {"id": "e"}, {"id": "w", "name": "n", "version": 1}, "")
    limits = ExpressionLimits()
    times: list[float] = []
    for _ in range(calls):
        start = time.perf_counter()
        result = preview_expression(EXPRESSION, data, 0, limits)
        times.append((time.perf_counter() - start) * 1000)
        assert isinstance(result, Rendered) and result.value == "Ada"
    return times


async def resolver_only(
    database_url: str, token: str, workflow_id: str, calls: int
) -> tuple[list[float], list[float]]:
    from starlette.requests import Request

    from resolvers.context import Context, RequestLoaders
    from schema.root import build_schema
    from server.app import create_app
    from storage.db import Database

    database = Database(database_url)
    app = create_app(_settings(database_url), database=database)
    services = app.state.services
    schema = build_schema()
    principal = await services.authenticator.authenticate(token)
    scope = {"type": "http", "method": "POST", "path": "/graphql", "headers": []}
    variables = {"w": workflow_id, "n": "target", "e": EXPRESSION}

    def context() -> Context:
        loaders = RequestLoaders(services.database)
        return Context(services, Request(scope), None, loaders, principal)

    async def measured() -> None:
        result = await schema.execute(EVALUATE, variables, context_value=context())
        assert result.data is not None and result.data["evaluateExpression"]["value"] == "Ada"

    async def floor() -> None:
        result = await schema.execute(FLOOR, context_value=context())
        assert result.errors is None

    async with app.router.lifespan_context(app):
        times, floors = await timed_pairs(calls, measured, floor)
    await database.dispose()
    return times, floors


async def in_process(
    database_url: str, token: str, workflow_id: str, calls: int
) -> tuple[list[float], list[float]]:
    import httpx

    from server.app import create_app
    from storage.db import Database

    database = Database(database_url)
    app = create_app(_settings(database_url), database=database)
    transport = httpx.ASGITransport(app=app)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=transport, base_url="http://bench") as client,
    ):
        times, floors = await _drive(client, token, workflow_id, calls)
    await database.dispose()
    return times, floors


async def _drive(
    client: Any, token: str, workflow_id: str, calls: int
) -> tuple[list[float], list[float]]:
    headers = {"Authorization": f"Bearer {token}"}
    preview = {"query": EVALUATE, "variables": {"w": workflow_id, "n": "target", "e": EXPRESSION}}
    floor_body = {"query": FLOOR}

    async def measured() -> None:
        response = await client.post("/graphql", json=preview, headers=headers)
        value = response.json()["data"]["evaluateExpression"]
        assert value == {"__typename": "ExpressionValue", "value": "Ada"}, value

    async def floor() -> None:
        response = await client.post("/graphql", json=floor_body, headers=headers)
        assert response.status_code == 200

    return await timed_pairs(calls, measured, floor)


async def over_http(
    database_url: str, token: str, workflow_id: str, calls: int
) -> tuple[list[float], list[float]]:
    import httpx

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "LOOM_DATABASE_URL": database_url,
        "LOOM_TOKEN_CACHE_S": "60",
    }
    server = subprocess.Popen(  # noqa: ASYNC220 (started once, before anything is timed)
        [
            sys.executable,
            "-m",
            "uvicorn",
            "server.app:create_app",
            "--factory",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--log-level",
            "warning",
        ],
        env=env,
        cwd=ROOT,
    )
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
            for _ in range(200):
                try:
                    await client.get("/healthz")
                    break
                except httpx.TransportError:
                    await asyncio.sleep(0.05)
            return await _drive(client, token, workflow_id, calls)
    finally:
        server.terminate()
        server.wait(timeout=10)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--calls", type=int, default=1000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as directory:
        database_url = f"sqlite+aiosqlite:///{directory}/bench.db"
        token, workflow_id, _ = await seed(database_url)
        print(f"evaluateExpression {EXPRESSION!r} over a 1 MB item, {args.calls} calls each:")
        report("engine (evaluation alone)", engine_only(args.calls))
        report(
            "resolver (schema.execute)",
            *await resolver_only(database_url, token, workflow_id, args.calls),
        )
        report(
            "in-process (ASGI, whole request)",
            *await in_process(database_url, token, workflow_id, args.calls),
        )
        report(
            "over HTTP (uvicorn, loopback)",
            *await over_http(database_url, token, workflow_id, args.calls),
        )


if __name__ == "__main__":
    asyncio.run(main())
