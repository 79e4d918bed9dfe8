"""A real distributed Loom for tests: `loom serve` and `loom worker` processes on a fresh
PostgreSQL database and the test Redis."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from redis.asyncio import Redis
from sqlalchemy import text

from storage.db import Database, run_core
from tests.conftest import PG_URL, REDIS_URL

LOOM = Path(sys.executable).parent / "loom"
ADMIN_TOKEN = "distributed-test-admin-token-0123456789"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Process:
    name: str
    popen: subprocess.Popen[bytes]
    log: Path

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None


@dataclass
class Cluster:
    """One API process and any number of workers sharing a database and Redis."""

    workdir: Path
    database_name: str
    env: dict[str, str]
    port: int
    database: Database
    api: Process | None = None
    workers: list[Process] = field(default_factory=list)
    # More API processes (beside `api`), with the port each listens on.
    more_apis: list[tuple[Process, int]] = field(default_factory=list)
    _count: int = 0

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _spawn(self, name: str, args: list[str], **env: str) -> Process:
        self._count += 1
        log = self.workdir / f"{name}-{self._count}.log"
        handle = log.open("wb")
        popen = subprocess.Popen(
            [str(LOOM), *args],
            env={**self.env, **env},
            stdout=handle,
            stderr=subprocess.STDOUT,
            cwd=self.workdir,
        )
        handle.close()
        return Process(name, popen, log)

    async def start_api(self) -> Process:
        self.api = self._spawn("api", ["serve"])
        await self._until_ready(self.api, self.port)
        return self.api

    async def start_another_api(self) -> str:
        """One more `loom serve` on the same database and Redis; returns its base URL."""
        port = free_port()
        api = self._spawn("api", ["serve"], LOOM_PORT=str(port))
        self.more_apis.append((api, port))
        await self._until_ready(api, port)
        return f"http://127.0.0.1:{port}"

    @staticmethod
    async def _until_ready(api: Process, port: int) -> None:
        deadline = time.monotonic() + 60
        async with httpx.AsyncClient() as client:
            while time.monotonic() < deadline:
                if not api.alive():
                    raise AssertionError(f"loom serve exited:\n{api.output()}")
                try:
                    response = await client.get(f"http://127.0.0.1:{port}/readyz", timeout=1)
                    if response.status_code == 200:
                        return
                except httpx.HTTPError:
                    pass
                await asyncio.sleep(0.1)
        raise AssertionError(f"loom serve not ready:\n{api.output()}")

    async def start_worker(self, concurrency: int = 10, **env: str) -> Process:
        worker = self._spawn("worker", ["worker", "--concurrency", str(concurrency)], **env)
        self.workers.append(worker)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if not worker.alive():
                raise AssertionError(f"loom worker exited:\n{worker.output()}")
            if " ready (concurrency " in worker.output():
                return worker
            await asyncio.sleep(0.05)
        raise AssertionError(f"loom worker not ready:\n{worker.output()}")

    async def gql(self, query: str, variables: dict[str, Any] | None = None) -> dict[str, Any]:
        async with httpx.AsyncClient(timeout=30) as client:
            response = await client.post(
                f"{self.base}/graphql",
                json={"query": query, "variables": variables or {}},
                headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
            )
        body = response.json()
        assert response.status_code == 200 and not body.get("errors"), body
        data: dict[str, Any] = body["data"]
        return data

    async def create_workflow(
        self, nodes: list[dict[str, Any]], edges: list[dict[str, Any]], **extra: Any
    ) -> str:
        data = await self.gql(
            "mutation($input: WorkflowInput!) { createWorkflow(input: $input) {"
            " __typename ... on Workflow { id } ... on ValidationError { message } } }",
            {
                "input": {
                    "name": f"wf-{uuid.uuid4().hex[:8]}",
                    "nodes": nodes,
                    "edges": edges,
                    **extra,
                }
            },
        )
        assert data["createWorkflow"]["__typename"] == "Workflow", data
        return str(data["createWorkflow"]["id"])

    async def execute(self, workflow_id: str, input: dict[str, Any] | None = None) -> str:
        data = await self.gql(
            "mutation($id: ID!, $input: JSON) { executeWorkflow(id: $id, input: $input) {"
            " __typename ... on Execution { id } } }",
            {"id": workflow_id, "input": input or {}},
        )
        assert data["executeWorkflow"]["__typename"] == "Execution", data
        return str(data["executeWorkflow"]["id"])

    async def sql(self, query: str, **params: Any) -> list[Any]:
        """The rows of a read-only SQL query on the cluster's database."""
        async with self.database.session() as session:
            rows = await run_core(session, text(query), params)
            return list(rows.all())

    async def statuses(self, execution_ids: Iterable[str]) -> dict[str, str]:
        rows = await self.sql(
            "SELECT id, status FROM executions WHERE id = ANY(:ids)", ids=list(execution_ids)
        )
        return {row[0]: row[1] for row in rows}

    async def wait_for(
        self, execution_ids: Iterable[str], statuses: set[str], within_s: float = 60
    ) -> dict[str, str]:
        ids = list(execution_ids)
        deadline = time.monotonic() + within_s
        while True:
            found = await self.statuses(ids)
            if len(found) == len(ids) and all(value in statuses for value in found.values()):
                return found
            if time.monotonic() > deadline:
                pending = {k: v for k, v in found.items() if v not in statuses}
                raise AssertionError(f"not {statuses} after {within_s} s: {pending}")
            await asyncio.sleep(0.05)

    async def node_runs(self, execution_id: str) -> list[dict[str, Any]]:
        rows = await self.sql(
            "SELECT node_id, attempt, status, error FROM node_runs "
            "WHERE execution_id = :id ORDER BY created_at, attempt",
            id=execution_id,
        )
        return [{"node_id": r[0], "attempt": r[1], "status": r[2], "error": r[3]} for r in rows]

    async def events(self, execution_id: str) -> list[tuple[int, str, str | None]]:
        rows = await self.sql(
            "SELECT sequence, type, node_id FROM execution_events "
            "WHERE execution_id = :id ORDER BY sequence",
            id=execution_id,
        )
        return [(r[0], r[1], r[2]) for r in rows]

    def stop_all(self) -> None:
        processes = [
            *self.workers,
            *([self.api] if self.api else []),
            *(api for api, _ in self.more_apis),
        ]
        for process in processes:
            if process.alive():
                with contextlib.suppress(ProcessLookupError):
                    os.kill(process.pid, signal.SIGCONT)
                process.popen.send_signal(signal.SIGTERM)
        for process in processes:
            try:
                process.popen.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.popen.kill()
                process.popen.wait()


async def create_cluster(workdir: Path, **settings: str) -> Cluster:
    name = f"loom_dist_{uuid.uuid4().hex[:10]}"
    admin = Database(PG_URL)
    async with admin.engine.connect() as connection:
        connection = await connection.execution_options(isolation_level="AUTOCOMMIT")
        await connection.execute(text(f'CREATE DATABASE "{name}"'))
    await admin.dispose()
    url = PG_URL.rsplit("/", 1)[0] + f"/{name}"
    redis = Redis.from_url(REDIS_URL)
    await redis.flushdb()
    await redis.aclose()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("LOOM_")},
        "LOOM_DATABASE_URL": url,
        "LOOM_REDIS_URL": REDIS_URL,
        "LOOM_SECRET_KEY": "distributed-test-secret",
        "LOOM_ADMIN_TOKEN": ADMIN_TOKEN,
        "LOOM_DATA_DIR": str(workdir),
        "LOOM_LOG_LEVEL": "info",
        "LOOM_LEASE_SECONDS": "3",
        "LOOM_SWEEP_INTERVAL_S": "0.5",
        "LOOM_SHUTDOWN_GRACE_S": "5",
        **settings,
    }
    port = free_port()
    env["LOOM_PORT"] = str(port)
    return Cluster(workdir, name, env, port, Database(url))


async def destroy_cluster(cluster: Cluster) -> None:
    cluster.stop_all()
    await cluster.database.dispose()
    admin = Database(PG_URL)
    async with admin.engine.connect() as connection:
        connection = await connection.execution_options(isolation_level="AUTOCOMMIT")
        await connection.execute(
            text(f'DROP DATABASE IF EXISTS "{cluster.database_name}" WITH (FORCE)')
        )
    await admin.dispose()
