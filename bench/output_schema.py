"""`NodeRun.outputSchema` of a node run with 100,000 items: time and peak memory.

    .venv/bin/python bench/output_schema.py [--items 100000] [--calls 50]

Seeds a SQLite database with a workflow (Start -> Split) run once: Split Out turns the input's
list into `--items` items of mixed shapes (nested objects, arrays, missing fields). Then
executes `execution(id) { nodeRuns { outputSchema { ... } } }` in-process (`schema.execute`)
`--calls` times with the shape cache emptied before each (every call reads and infers), next
to its floor, the same query selecting `outputItems` only. Prints p50 and p99 of both, the
ratio, and the peak of memory allocated during one call (tracemalloc), against the size of
the stored output.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

SHAPE = """
query($id: ID!) { execution(id: $id) { nodeRuns { nodeId outputSchema {
  port totalItems sampledItems truncated fields { path types example itemCount }
} } } }
"""
FLOOR = "query($id: ID!) { execution(id: $id) { nodeRuns { nodeId outputItems } } }"


def rows(count: int) -> list[dict[str, Any]]:
    """Items of a few shapes: some fields missing, types varying, objects and arrays nested."""
    made: list[dict[str, Any]] = []
    for index in range(count):
        row: dict[str, Any] = {
            "id": index,
            "name": f"customer {index}",
            "address": {"city": "Oslo", "zip": f"{index % 9999:04d}"} if index % 3 else None,
            "tags": ["a", "b"][: index % 3],
        }
        if index % 2:
            row["orders"] = [{"sku": f"s{index}", "qty": index % 5}]
        if index % 5 == 0:
            row["score"] = "n/a" if index % 10 else 4.5
        made.append(row)
    return made


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))]


async def main() -> None:
    import httpx
    from starlette.requests import Request

    from resolvers.caches import Lru
    from resolvers.context import Context, RequestLoaders
    from schema.root import build_schema
    from server.app import create_app
    from server.settings import Settings
    from storage import accounts
    from storage.db import Database
    from storage.migrate import upgrade

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--items", type=int, default=100_000)
    parser.add_argument("--calls", type=int, default=50)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as directory:
        database_url = f"sqlite+aiosqlite:///{directory}/bench.db"
        database = Database(database_url)
        await upgrade(database)
        async with database.transaction() as session:
            user = await accounts.create_user(session, "bench")
            _, token = await accounts.create_token(session, user.id, "bench")
        # The input carries every row: a larger body than the API takes by default.
        settings = Settings(  # type: ignore[call-arg]
            _env_file=None, database_url=database_url, max_body_bytes=256 * 1024 * 1024
        )
        app = create_app(settings, database=database)
        services = app.state.services
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
                            "name": "Shape bench",
                            "nodes": [
                                {"id": "start", "name": "Start", "type": "manual_trigger"},
                                {
                                    "id": "split",
                                    "name": "Split",
                                    "type": "split_out",
                                    "parameters": {"field": "rows"},
                                },
                            ],
                            "edges": [{"source": "start", "target": "split"}],
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
                    "variables": {"id": workflow_id, "input": {"rows": rows(args.items)}},
                },
            )
            assert "data" in started.json(), started.text[:500]
            execution_id = started.json()["data"]["executeWorkflow"]["id"]
            await services.submitter.wait(execution_id)

            schema = build_schema()
            principal = await services.authenticator.authenticate(token)
            scope = {"type": "http", "method": "POST", "path": "/graphql", "headers": []}
            variables = {"id": execution_id}

            async def run(query: str) -> Any:
                loaders = RequestLoaders(services.database)
                context = Context(services, Request(scope), None, loaders, principal)
                result = await schema.execute(query, variables, context_value=context)
                assert result.errors is None and result.data is not None, result.errors
                return result.data

            async def shape() -> dict[str, Any]:
                # A fresh cache: every call reads the output's first items and infers.
                object.__setattr__(services, "output_shapes", Lru())
                data = await run(SHAPE)
                runs = data["execution"]["nodeRuns"]
                found: dict[str, Any] = next(r for r in runs if r["nodeId"] == "split")
                return found["outputSchema"]

            first = await shape()
            assert first["totalItems"] == args.items, first
            for _ in range(5):
                await shape()
                await run(FLOOR)
            times: list[float] = []
            floors: list[float] = []
            for _ in range(args.calls):
                start = time.perf_counter()
                await shape()
                times.append((time.perf_counter() - start) * 1000)
                start = time.perf_counter()
                await run(FLOOR)
                floors.append((time.perf_counter() - start) * 1000)
            tracemalloc.start(25)
            await shape()
            _, peak = tracemalloc.get_traced_memory()
            snap = tracemalloc.take_snapshot()
            tracemalloc.stop()
            import os

            if os.environ.get("SHAPE_DEBUG"):
                for stat in snap.statistics("traceback")[:3]:
                    print(stat)
                    for line in stat.traceback.format()[-30:]:
                        print(line)
            stored = await _stored_bytes(database, execution_id)
        await database.dispose()
    p50, p99 = percentile(times, 0.5), percentile(times, 0.99)
    f50, f99 = percentile(floors, 0.5), percentile(floors, 0.99)
    print(f"outputSchema of a node run with {args.items:,} items, {args.calls} calls, in-process:")
    print(f"  outputSchema (uncached)   p50 {p50:7.2f} ms   p99 {p99:7.2f} ms  (target <= 50 ms)")
    print(f"  floor (outputItems only)  p50 {f50:7.2f} ms   p99 {f99:7.2f} ms")
    print(f"  ratio p50 / floor p50     {p50 / f50:7.2f}x")
    print(
        f"  peak memory of one call   {peak / 1e6:7.2f} MB (tracemalloc); the output is "
        f"{stored[0] / 1e6:.1f} MB of JSON, {stored[1] / 1e6:.1f} MB stored"
    )
    print(
        f"  fields {len(first['fields'])}, sampled {first['sampledItems']:,} of "
        f"{first['totalItems']:,} items, truncated {first['truncated']}"
    )


async def _stored_bytes(database: Any, execution_id: str) -> tuple[int, int]:
    from sqlalchemy import func
    from sqlmodel import select

    from storage.models import NodeRunPayload

    query = select(NodeRunPayload.raw_bytes, func.length(NodeRunPayload.data)).where(
        NodeRunPayload.execution_id == execution_id
    )
    async with database.session() as session:
        sizes = (await session.exec(query)).all()
    return max(raw for raw, _ in sizes), max(size for _, size in sizes)


if __name__ == "__main__":
    asyncio.run(main())
