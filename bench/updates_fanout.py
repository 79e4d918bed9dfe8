"""Server CPU per `executionUpdates` message, in-process.

    .venv/bin/python bench/updates_fanout.py [--subscribers 200] [--rounds 40] [--changes 10]

One Loom app (embedded mode, SQLite in a temporary directory) served by uvicorn in this
process; `--subscribers` websocket clients (aiohttp, graphql-transport-ws) in another process
subscribe to `executionUpdates(workflowId)`. Each round flips the status of `--changes`
executions in the database and announces them on the bus (as a worker's commits would),
then waits until every client has received every update. Prints this process's CPU time per
message received, the event loop's lag (a 5 ms timer's lateness) meanwhile, p50 and p99.
No workflow runs: the figure is what the subscribers cost, nothing else.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import httpx
from sqlalchemy import text

from server.app import create_app
from server.settings import Settings
from storage import accounts
from storage.db import Database
from storage.migrate import upgrade
from tests.live import serve

CLIENTS = r"""
import asyncio, sys, aiohttp, orjson

QUERY = "subscription($w: ID) { executionUpdates(workflowId: $w) { id status finishedAt } }"

async def one(url, token, workflow_id, counts, index):
    async with aiohttp.ClientSession() as http, http.ws_connect(
        url, protocols=["graphql-transport-ws"], compress=0
    ) as ws:
        init = {"type": "connection_init", "payload": {"Authorization": "Bearer " + token}}
        await ws.send_str(orjson.dumps(init).decode())
        await ws.receive()
        subscribe = {"id": "1", "type": "subscribe",
                     "payload": {"query": QUERY, "variables": {"w": workflow_id}}}
        await ws.send_str(orjson.dumps(subscribe).decode())
        async for raw in ws:
            message = orjson.loads(raw.data)
            if message["type"] == "next":
                counts[index] += 1
            elif message["type"] == "ping":
                await ws.send_str('{"type":"pong"}')
            else:
                print("unexpected:", message, file=sys.stderr)
                return

async def main():
    url, token, workflow_id, count = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    counts = [0] * count
    tasks = [asyncio.create_task(one(url, token, workflow_id, counts, i)) for i in range(count)]
    reader = asyncio.StreamReader()
    loop = asyncio.get_running_loop()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    while await reader.readline():  # each line asks how many messages arrived
        print(sum(counts), flush=True)

asyncio.run(main())
"""


async def until(condition: Callable[[], bool]) -> None:
    while True:
        if condition():
            return
        await asyncio.sleep(0.05)


async def measure(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory() as workdir:
        database = Database(f"sqlite+aiosqlite:///{workdir}/loom.db")
        await upgrade(database)
        async with database.transaction() as session:
            user = await accounts.create_user(session, "bench", accounts.ROLE_ADMIN)
            _, token = await accounts.create_token(session, user.id, "bench")
        settings = Settings(  # type: ignore[call-arg]
            _env_file=None, data_dir=Path(workdir), secret_key="bench-secret-key"
        )
        app = create_app(settings, database=database)
        services = app.state.services
        headers = {"Authorization": f"Bearer {token}"}
        async with (
            serve(app) as url,
            httpx.AsyncClient(
                transport=httpx.ASGITransport(app=app), base_url="http://loom", headers=headers
            ) as http,
        ):

            async def gql(query: str, variables: dict[str, Any]) -> dict[str, Any]:
                answer = await http.post("/graphql", json={"query": query, "variables": variables})
                data: dict[str, Any] = answer.json()["data"]
                return data

            created = await gql(
                "mutation($i: WorkflowInput!) { createWorkflow(input: $i) {"
                " ... on Workflow { id } } }",
                {
                    "i": {
                        "name": "bench",
                        "nodes": [{"id": "s", "name": "S", "type": "manual_trigger"}],
                        "edges": [],
                    }
                },
            )
            workflow_id = created["createWorkflow"]["id"]
            execute = "mutation($id: ID!) { executeWorkflow(id: $id) { ... on Execution { id } } }"
            execution_ids = [
                (await gql(execute, {"id": workflow_id}))["executeWorkflow"]["id"]
                for _ in range(args.changes)
            ]
            for execution_id in execution_ids:
                await services.submitter.wait(execution_id)
            clients = await asyncio.create_subprocess_exec(
                sys.executable,
                "-c",
                CLIENTS,
                url,
                token,
                workflow_id,
                str(args.subscribers),
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
            )
            assert clients.stdin is not None and clients.stdout is not None

            async def received() -> int:
                assert clients.stdin is not None and clients.stdout is not None
                clients.stdin.write(b"?\n")
                await clients.stdin.drain()
                return int(await clients.stdout.readline())

            await until(lambda: len(services.updates_feed.watchers) >= args.subscribers)
            lags_ms: list[float] = []

            async def lag() -> None:
                while True:
                    started = time.perf_counter()
                    await asyncio.sleep(0.005)
                    lags_ms.append((time.perf_counter() - started - 0.005) * 1000)

            watching = asyncio.create_task(lag())
            expected = 0
            cpu_before_s = time.process_time()
            for round_index in range(args.rounds):
                status = "RUNNING" if round_index % 2 == 0 else "WAITING"
                async with database.transaction() as session:
                    await session.exec(  # type: ignore[call-overload]
                        text("UPDATE executions SET status = :status").bindparams(status=status)
                    )
                services.fanout.wake(execution_ids)
                expected += args.subscribers * args.changes
                while True:
                    if await received() >= expected:
                        break
                    await asyncio.sleep(0.005)
            cpu_s = time.process_time() - cpu_before_s
            watching.cancel()
            clients.kill()
            await clients.wait()
        await database.dispose()
    lags_ms.sort()
    print(
        f"{args.subscribers} subscribers, {args.rounds} rounds of {args.changes} changes: "
        f"{cpu_s / expected * 1e6:.1f} us of server CPU per message ({expected} messages); "
        f"event loop lag p50 {lags_ms[len(lags_ms) // 2]:.1f} ms, "
        f"p99 {lags_ms[int(len(lags_ms) * 0.99)]:.1f} ms"
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--subscribers", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=40)
    parser.add_argument("--changes", type=int, default=10)
    asyncio.run(measure(parser.parse_args()))


if __name__ == "__main__":
    main()
