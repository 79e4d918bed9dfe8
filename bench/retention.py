"""Retention benchmark (issue 17): pruning 20,000 executions, the API's latency while it runs,
and the database size that `summary` saves over `all`.

    .venv/bin/python bench/retention.py [--executions 20000] [--runs 10000] [--postgres URL]

1. Inserts `--executions` ended executions (2 node runs each, with payloads and events, as
   tests/storage/execution_rows.py makes them) and prunes them to 1,000 (`prune`, batches of
   `LOOM_PRUNE_BATCH_SIZE`'s default), timing it, while 4 clients send `executeWorkflow`
   (a 2-node workflow: a write through the group-commit writer) to a Loom served in the same
   process, as the background pruner of `loom serve` would run; their p50/p99 latency while
   pruning is compared with the same load idle (before).
2. Runs a 5-node workflow `--runs` times with `saveManualExecutions` `all`, then in a new
   database `summary`, and prints the database size after each.

SQLite by default (a file in a temporary directory); `--postgres` runs both on PostgreSQL (a
schema of its own, dropped after).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import text

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from server.app import create_app
from server.settings import Settings
from storage import accounts
from storage.db import Database
from storage.migrate import upgrade
from storage.retention import RetentionPolicy, prune
from tests.live import serve
from tests.storage.execution_rows import insert_executions, make_workflow

CREATE = """mutation($input: WorkflowInput!) { createWorkflow(input: $input) {
  ... on Workflow { id } } }"""
EXECUTE = """mutation($id: ID!, $input: JSON) { executeWorkflow(id: $id, input: $input) {
  __typename ... on Execution { id } } }"""
CLIENTS = 4


def _chain(count: int) -> dict[str, Any]:
    nodes = [{"id": "n0", "name": "Start", "type": "manual_trigger"}]
    for index in range(1, count):
        field = {"name": f"f{index}", "value": f"{{{{ $json.text + '-{index}' }}}}"}
        nodes.append(
            {
                "id": f"n{index}",
                "name": f"Step {index}",
                "type": "set",
                "parameters": {"fields": [field]},
            }
        )
    edges = [{"source": f"n{i - 1}", "target": f"n{i}"} for i in range(1, count)]
    return {"nodes": nodes, "edges": edges}


@contextlib.asynccontextmanager
async def _database(postgres: str | None) -> AsyncIterator[Database]:
    if postgres is None:
        with tempfile.TemporaryDirectory() as directory:
            database = Database(f"sqlite+aiosqlite:///{directory}/loom.db")
            await upgrade(database)
            try:
                yield database
            finally:
                await database.dispose()
        return
    schema = f"loom_bench_{uuid.uuid4().hex[:8]}"
    admin = Database(postgres)
    async with admin.engine.begin() as connection:
        await connection.execute(text(f'CREATE SCHEMA "{schema}"'))
    database = Database(postgres, pg_search_path=schema)
    await upgrade(database)
    try:
        yield database
    finally:
        await database.dispose()
        async with admin.engine.begin() as connection:
            await connection.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        await admin.dispose()


@contextlib.asynccontextmanager
async def _served(database: Database) -> AsyncIterator[httpx.AsyncClient]:
    settings = Settings(  # type: ignore[call-arg]
        _env_file=None, secret_key="bench-secret-key", executions_max_age_hours=None
    )
    app = create_app(settings, database=database)
    token = await accounts.create_user_with_token(
        database, f"bench-{uuid.uuid4().hex[:6]}", "admin"
    )
    async with serve(app) as url:  # uvicorn runs the app's lifespan
        base = url.replace("ws://", "http://").removesuffix("/graphql")
        headers = {"Authorization": f"Bearer {token}"}
        async with httpx.AsyncClient(base_url=base, headers=headers, timeout=60) as client:
            yield client


async def _gql(client: httpx.AsyncClient, query: str, variables: dict[str, Any]) -> Any:
    response = await client.post("/graphql", json={"query": query, "variables": variables})
    response.raise_for_status()
    body = response.json()
    assert "errors" not in body, body
    return body["data"]


async def _workflow(client: httpx.AsyncClient, nodes: int, settings: dict[str, Any]) -> str:
    data = await _gql(
        client, CREATE, {"input": {"name": "bench", **_chain(nodes), "settings": settings}}
    )
    return str(data["createWorkflow"]["id"])


async def _load(
    client: httpx.AsyncClient, workflow_id: str, stop: asyncio.Event, latencies: list[float]
) -> None:
    while not stop.is_set():
        started = time.perf_counter()
        try:
            await _gql(client, EXECUTE, {"id": workflow_id, "input": {"text": "x" * 100}})
        except httpx.TransportError:
            continue  # a kept-alive connection the server closed meanwhile: not counted
        latencies.append(time.perf_counter() - started)


def _percentiles(latencies: list[float]) -> str:
    if len(latencies) < 20:
        return f"{len(latencies)} requests (too few)"
    cuts = statistics.quantiles(latencies, n=100)
    return f"{len(latencies)} requests, p50 {cuts[49] * 1000:.1f} ms, p99 {cuts[98] * 1000:.1f} ms"


async def prune_under_load(
    postgres: str | None, executions: int, idle_s: float, batch_size: int
) -> None:
    async with _database(postgres) as database:
        owner = await make_workflow(database)
        started = time.perf_counter()
        await insert_executions(database, owner, executions)
        print(f"inserted {executions} executions in {time.perf_counter() - started:.1f} s")
        async with _served(database) as client:
            workflow_id = await _workflow(client, 2, {"saveManualExecutions": "none"})
            idle: list[float] = []
            stop = asyncio.Event()
            clients = [
                asyncio.create_task(_load(client, workflow_id, stop, idle)) for _ in range(CLIENTS)
            ]
            await asyncio.sleep(idle_s)
            stop.set()
            await asyncio.gather(*clients)
            busy: list[float] = []
            stop = asyncio.Event()
            clients = [
                asyncio.create_task(_load(client, workflow_id, stop, busy)) for _ in range(CLIENTS)
            ]
            started = time.perf_counter()
            record = await prune(database, RetentionPolicy(max_count=1000, batch_size=batch_size))
            elapsed = time.perf_counter() - started
            stop.set()
            await asyncio.gather(*clients)
        assert record is not None
        print(
            f"pruned {record.executions_deleted} executions in {elapsed:.1f} s:",
            record.rows_deleted,
        )
        print(f"executeWorkflow idle:          {_percentiles(idle)}")
        print(f"executeWorkflow while pruning: {_percentiles(busy)}")


async def _size(database: Database) -> int:
    async with database.engine.connect() as connection:
        if database.is_sqlite:
            await connection.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
            pages = (await connection.exec_driver_sql("PRAGMA page_count")).scalar_one()
            free = (await connection.exec_driver_sql("PRAGMA freelist_count")).scalar_one()
            size = (await connection.exec_driver_sql("PRAGMA page_size")).scalar_one()
            return int((pages - free) * size)
        query = text(
            "SELECT sum(pg_total_relation_size(c.oid)) FROM pg_class c "
            "JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = current_schema() AND c.relkind = 'r'"
        )
        return int((await connection.execute(query)).scalar_one())


async def size_after_runs(postgres: str | None, runs: int, saved: str) -> None:
    async with _database(postgres) as database:
        before = await _size(database)
        async with _served(database) as client:
            workflow_id = await _workflow(client, 5, {"saveManualExecutions": saved})
            started = time.perf_counter()
            queue = iter(range(runs))

            async def send() -> None:
                for _ in queue:
                    await _gql(client, EXECUTE, {"id": workflow_id, "input": {"text": "x" * 200}})

            await asyncio.gather(*(send() for _ in range(8)))
            elapsed = time.perf_counter() - started
        # Leaving the server waited for every run to be recorded.
        size = await _size(database) - before
        print(
            f"{runs} runs of a 5-node workflow, saveManualExecutions={saved}: {elapsed:.1f} s, "
            f"database grew by {size / 1e6:.1f} MB ({size / runs:.0f} bytes per run)"
        )


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--executions", type=int, default=20_000)
    parser.add_argument("--runs", type=int, default=10_000)
    parser.add_argument("--idle-s", type=float, default=10.0)
    parser.add_argument("--postgres", help="a PostgreSQL URL (postgresql+asyncpg://...)")
    parser.add_argument("--batch-size", type=int, default=RetentionPolicy().batch_size)
    parser.add_argument("--skip-size", action="store_true")
    parser.add_argument("--skip-prune", action="store_true")
    args = parser.parse_args()
    print("backend:", "postgresql" if args.postgres else "sqlite")
    if not args.skip_prune:
        await prune_under_load(args.postgres, args.executions, args.idle_s, args.batch_size)
    if not args.skip_size:
        for saved in ("all", "summary"):
            await size_after_runs(args.postgres, args.runs, saved)


if __name__ == "__main__":
    asyncio.run(main())
