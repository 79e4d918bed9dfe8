"""Hostile workflows against an embedded `loom serve`: does the API keep answering?

    .venv/bin/python bench/hostile.py [--only NAMES] [--rate-hz 50] [--code DIR]

One `loom serve` process in embedded mode (SQLite, a fresh data directory). `/healthz` is
sent open-loop every 1/`--rate-hz` s from this process (a request does not wait for the
one before it), and its latency recorded; first for `--idle-s` seconds with nothing running
(the floor), then while each hostile workflow runs, one after the other, until it ends. For
each: how it ended (status, error type), how long it took, `/healthz` p50 / p99 / max while
it ran, and the server's RSS before and at its peak (`/proc`).

The cases: the four attacks of issue 13 (`equality`, `round`, `repeat`, `template`) once
each, then `attacks`, the four ten times each back to back; `items` and `budget`, a
`split_out` into many items and a `set` node whose expression stays within the default
limits, `budget` spending nearly the whole budget on every item on the work that costs the
most time per step; `concurrent`, three `budget` runs at once; `cancel`, the `budget`
workflow on ten times the items, `cancelExecution` sent after 1 s: how long the mutation took
to answer and how long until the execution was CANCELLED.

`--code DIR` runs the server from another checkout of Loom (a copy of main's code, to
measure before and after a change in the same session).
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.distributed import percentile
from tests.distributed.cluster import free_port

TOKEN = "loom_bench_hostile_token_0123456789abcdef"
ITEMS = 2_000
BUDGET_ITEMS = 300


def _set(value: str) -> dict[str, Any]:
    return {
        "id": "set",
        "name": "Set",
        "type": "set",
        "parameters": {"fields": [{"name": "value", "value": value}]},
    }


def _workflow(*nodes: dict[str, Any]) -> dict[str, Any]:
    trigger = {"id": "start", "name": "Start", "type": "manual_trigger"}
    chain = [trigger, *nodes]
    edges = [{"source": a["id"], "target": b["id"]} for a, b in itertools.pairwise(chain)]
    return {"nodes": chain, "edges": edges}


# Per item: a comparison of two lists of 100,000 small numbers (about 1 ms), and an
# expression that uses nearly all of the default budget (95,000 of 100,000 steps) on the
# costliest kind of work per step (encoding 6,200 small objects: 5 to 15 ms here).
COMPARE = "{{ [[$json.n] * 20000] * 5 == [[$json.n] * 20000] * 5 }}"
BUDGET = "{{ len(json([{'a': $json.n, 'b': [1, 2]}] * 6200)) }}"


def _per_item(items: int, expression: str = COMPARE) -> tuple[dict[str, Any], dict[str, Any]]:
    """Many items, each costing milliseconds of expression work within the limits."""
    split = {
        "id": "split",
        "name": "Split",
        "type": "split_out",
        "parameters": {"field": "rows"},
    }
    return _workflow(split, _set(expression)), {"rows": [{"n": index} for index in range(items)]}


ATTACKS = {
    "equality": "{{ ([[0]*100000]*100000 == [[0]*100000]*100000) }}",
    "round": "{{ round(5, -10000000) }}",
    "repeat": "{{ ['x'*1000000]*200 }}",
    "template": "{{ 'x'*1000000 }}" * 1000,
}
CASES: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {
    **{name: (_workflow(_set(value)), {}) for name, value in ATTACKS.items()},
    "items": _per_item(ITEMS),
    "budget": _per_item(BUDGET_ITEMS, BUDGET),
}


class Server:
    def __init__(self, code: Path | None) -> None:
        self.directory = Path(tempfile.mkdtemp(prefix="loom-bench-hostile-"))
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        environment = {k: v for k, v in os.environ.items() if not k.startswith("LOOM_")}
        environment.update(
            LOOM_DATA_DIR=str(self.directory),
            LOOM_PORT=str(self.port),
            LOOM_ADMIN_TOKEN=TOKEN,
            LOOM_LOG_LEVEL="warning",
        )
        if code is not None:
            environment["PYTHONPATH"] = str(code)
        self.log = open(self.directory / "server.log", "w+")  # noqa: SIM115
        self.process = subprocess.Popen(
            [sys.executable, "-c", "from server.cli import main; main()", "serve"],
            env=environment,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            cwd=self.directory,
        )

    def rss_mb(self) -> float:
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        return 0.0

    def output(self) -> str:
        self.log.flush()
        return (self.directory / "server.log").read_text()

    def stop(self) -> None:
        self.process.send_signal(signal.SIGINT)
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


class Client:
    def __init__(self, session: aiohttp.ClientSession, base: str) -> None:
        self.session = session
        self.base = base

    async def gql(self, query: str, variables: dict[str, Any] | None = None) -> dict[str, Any]:
        async with self.session.post(
            f"{self.base}/graphql",
            json={"query": query, "variables": variables or {}},
            headers={"Authorization": f"Bearer {TOKEN}"},
        ) as response:
            body = await response.json()
        if body.get("errors"):
            raise RuntimeError(body["errors"])
        data: dict[str, Any] = body["data"]
        return data

    async def create(self, name: str, workflow: dict[str, Any]) -> str:
        data = await self.gql(
            "mutation($input: WorkflowInput!) { createWorkflow(input: $input) {"
            " __typename ... on Workflow { id } ... on ValidationError { message } } }",
            {"input": {"name": name, **workflow}},
        )
        if data["createWorkflow"]["__typename"] != "Workflow":
            raise RuntimeError(data)
        return str(data["createWorkflow"]["id"])

    async def execute(self, workflow_id: str, input: dict[str, Any]) -> str:
        data = await self.gql(
            "mutation($id: ID!, $input: JSON) { executeWorkflow(id: $id, input: $input) {"
            " __typename ... on Execution { id } } }",
            {"id": workflow_id, "input": input},
        )
        return str(data["executeWorkflow"]["id"])

    async def finished(self, execution_id: str) -> dict[str, Any]:
        while True:
            data = await self.gql(
                "query($id: ID!) { execution(id: $id) { status error { type message } } }",
                {"id": execution_id},
            )
            execution: dict[str, Any] = data["execution"]
            if execution["status"] in ("SUCCEEDED", "FAILED", "CANCELLED"):
                return execution
            await asyncio.sleep(0.05)


class Sampler:
    """`/healthz` sent open-loop at a fixed rate; latencies (s) by send time."""

    def __init__(self, session: aiohttp.ClientSession, base: str, rate_hz: float) -> None:
        self.session = session
        self.url = f"{base}/healthz"
        self.period_s = 1 / rate_hz
        self.samples: list[tuple[float, float]] = []
        self.pending: set[asyncio.Task[None]] = set()
        self.task: asyncio.Task[None] | None = None

    async def one(self) -> None:
        sent = time.monotonic()
        async with self.session.get(self.url) as response:
            await response.read()
        self.samples.append((sent, time.monotonic() - sent))

    async def run(self) -> None:
        next_at = time.monotonic()
        while True:
            task = asyncio.create_task(self.one())
            self.pending.add(task)
            task.add_done_callback(self.pending.discard)
            next_at += self.period_s
            await asyncio.sleep(max(0.0, next_at - time.monotonic()))

    def between(self, start: float, end: float) -> list[float]:
        return [latency for sent, latency in self.samples if start <= sent <= end]

    async def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
        await asyncio.gather(*self.pending, return_exceptions=True)


def latency_summary(latencies: list[float]) -> str:
    if not latencies:
        return "no samples"
    return (
        f"p50 {statistics.median(latencies) * 1000:.1f} ms, "
        f"p99 {percentile(latencies, 0.99) * 1000:.1f} ms, "
        f"max {max(latencies) * 1000:.1f} ms ({len(latencies)} requests)"
    )


async def watch_rss(server: Server, peak: list[float], stop: asyncio.Event) -> None:
    while not stop.is_set():
        peak[0] = max(peak[0], server.rss_mb())
        await asyncio.sleep(0.05)


async def run_case(
    client: Client, sampler: Sampler, server: Server, name: str, workflow_id: str, input: Any
) -> None:
    peak = [server.rss_mb()]
    before = peak[0]
    stop = asyncio.Event()
    watcher = asyncio.create_task(watch_rss(server, peak, stop))
    started = time.monotonic()
    execution_id = await client.execute(workflow_id, input)
    execution = await client.finished(execution_id)
    ended = time.monotonic()
    stop.set()
    await watcher
    error = execution["error"]["type"] if execution["error"] else ""
    print(
        f"  {name:9s} {execution['status']} {error} in {ended - started:.2f} s; "
        f"/healthz {latency_summary(sampler.between(started, ended))}; "
        f"RSS {before:.0f} -> peak {peak[0]:.0f} MB"
    )


async def run_concurrent(
    client: Client, sampler: Sampler, workflow_id: str, executions: int
) -> None:
    """`executions` runs of the `budget` workflow at once."""
    _, input = _per_item(BUDGET_ITEMS, BUDGET)
    started = time.monotonic()
    ids = [await client.execute(workflow_id, input) for _ in range(executions)]
    for execution_id in ids:
        await client.finished(execution_id)
    ended = time.monotonic()
    print(
        f"  {executions} x budget at once in {ended - started:.2f} s; "
        f"/healthz {latency_summary(sampler.between(started, ended))}"
    )


async def run_attacks(
    client: Client, sampler: Sampler, workflows: dict[str, str], times: int
) -> None:
    """The four attacks of the issue, each `times` times, one after the other."""
    started = time.monotonic()
    ends: dict[str, int] = {}
    for name in ATTACKS:
        for _ in range(times):
            execution = await client.finished(await client.execute(workflows[name], {}))
            outcome = execution["error"]["type"] if execution["error"] else execution["status"]
            ends[outcome] = ends.get(outcome, 0) + 1
    ended = time.monotonic()
    print(
        f"  attacks   {times} x {len(ATTACKS)} runs ({ends}) in {ended - started:.2f} s; "
        f"/healthz {latency_summary(sampler.between(started, ended))}"
    )


async def run_cancel(client: Client, sampler: Sampler, workflow_id: str, items: int) -> None:
    _, input = _per_item(items, BUDGET)
    started = time.monotonic()
    execution_id = await client.execute(workflow_id, input)
    await asyncio.sleep(1.0)
    sent = time.monotonic()
    await client.gql(
        "mutation($id: ID!) { cancelExecution(id: $id) { __typename } }", {"id": execution_id}
    )
    answered = time.monotonic()
    execution = await client.finished(execution_id)
    ended = time.monotonic()
    print(
        f"  cancel    {execution['status']}: cancelExecution answered in "
        f"{(answered - sent) * 1000:.0f} ms, execution ended {(ended - sent) * 1000:.0f} ms "
        f"after it was sent; /healthz {latency_summary(sampler.between(started, ended))}"
    )


async def main_async(args: argparse.Namespace, server: Server) -> None:
    connector = aiohttp.TCPConnector(limit=0)
    timeout = aiohttp.ClientTimeout(total=600)
    try:
        async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
            await until_ready(session, server)
            client = Client(session, server.base)
            sampler = Sampler(session, server.base, args.rate_hz)
            workflows = {name: await client.create(name, CASES[name][0]) for name in CASES}
            # A harmless run first: the server's first execution pays for what is loaded
            # and cached once (plans, validators), which is no hostile workflow's doing.
            warm_up = await client.create("warm-up", _workflow(_set("{{ $json.n }}")))
            await client.finished(await client.execute(warm_up, {"n": 1}))
            sampler.task = asyncio.create_task(sampler.run())
            idle_start = time.monotonic()
            await asyncio.sleep(args.idle_s)
            print(f"hostile: embedded loom serve, /healthz every {1000 / args.rate_hz:.0f} ms")
            idle = sampler.between(idle_start, time.monotonic())
            print(f"  idle      /healthz {latency_summary(idle)}")
            every = [*CASES, "attacks", "concurrent", "cancel"]
            names = args.only.split(",") if args.only else every
            for name in names:
                if name == "attacks":
                    await run_attacks(client, sampler, workflows, 10)
                    continue
                if name == "concurrent":
                    await run_concurrent(client, sampler, workflows["budget"], 3)
                    continue
                if name == "cancel":
                    await run_cancel(client, sampler, workflows["budget"], BUDGET_ITEMS * 10)
                    continue
                input = CASES[name][1]
                await run_case(client, sampler, server, name, workflows[name], input)
            await sampler.stop()
    finally:
        server.stop()


async def until_ready(session: aiohttp.ClientSession, server: Server) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise RuntimeError(f"loom serve exited:\n{server.output()}")
        try:
            async with session.get(f"{server.base}/readyz") as response:
                if response.status == 200:
                    return
        except aiohttp.ClientError:
            pass
        await asyncio.sleep(0.1)
    raise RuntimeError("loom serve did not become ready")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--only",
        help="comma-separated cases: " + ", ".join([*CASES, "attacks", "concurrent", "cancel"]),
    )
    parser.add_argument("--rate-hz", type=float, default=50.0)
    parser.add_argument("--idle-s", type=float, default=3.0)
    parser.add_argument("--code", help="run the server from this checkout of Loom")
    args = parser.parse_args()
    server = Server(Path(args.code).resolve() if args.code else None)
    asyncio.run(main_async(args, server))
    stalls = [line for line in server.output().splitlines() if "stalled" in line]
    print(f"  server log: {len(stalls)} stall warnings")
    for line in stalls[:5]:
        print(f"    {line[:200]}")


if __name__ == "__main__":
    main()
