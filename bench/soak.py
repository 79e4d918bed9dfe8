"""Soak: live watchers must not starve the API.

    .venv/bin/python bench/soak.py [--subscribers 200] [--rate 100] [--seconds 60]
        [--warmup-s 10] [--workers 2] [--redis-db 14] [--client-processes 2]

Everything on this machine, as in production but on loopback: a fresh PostgreSQL database
(`test` server), Redis (`--redis-db`, flushed), one `loom serve`, `--workers` `loom worker`
processes (concurrency 20). `--subscribers` websocket clients (aiohttp, graphql-transport-ws,
in `--client-processes` processes of their own so that they do not share the submitting
process's event loop) subscribe to `executionUpdates(workflowId)` of a 5-node workflow.
Then `executeWorkflow` at a steady `--rate` per second (open loop: each request leaves on
time whatever the previous ones do): `--warmup-s` first, then `--seconds` measured.

Checks (exit code 1 when one fails): every submission accepted; submit p99 at most 250 ms;
every execution succeeded and every subscriber saw it finish; no websocket error; no error
in the API's and workers' logs; the RSS of the API and of each worker at the end within 20%
of the RSS after the warm-up. It also prints submit p50, the delivery lag (an execution's
`finishedAt` to its final update reaching a client), messages per execution and
subscriber, and the CPU each process used per execution and per status change (compare a
run with `--subscribers 0` for what the subscribers cost).

The run stops by itself: the load lasts `--warmup-s` + `--seconds`, and every wait has a
deadline (executions finishing and reaching the subscribers: `--drain-s` each time).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import aiohttp
import orjson

TARGET_SUBMIT_P99_MS = 250.0
TARGET_RSS_GROWTH = 0.20
TERMINAL = frozenset(("SUCCEEDED", "FAILED", "CANCELLED"))
UPDATES = (
    "subscription($workflowId: ID) { executionUpdates(workflowId: $workflowId) "
    "{ id status finishedAt } }"
)
EXECUTE = (
    "mutation($id: ID!, $input: JSON) { executeWorkflow(id: $id, input: $input) {"
    " __typename ... on Execution { id } } }"
)
TICKS_PER_S = os.sysconf("SC_CLK_TCK")


def percentile(values: list[float], share: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))]


# The subscriber processes


@dataclass
class Watcher:
    """One websocket subscriber: what it saw finish, and anything that went wrong."""

    finished: set[str] = field(default_factory=set)
    messages: int = 0
    errors: list[str] = field(default_factory=list)
    lags_ms: list[float] = field(default_factory=list)
    subscribed: bool = False


async def watch(url: str, token: str, workflow_id: str, watcher: Watcher) -> None:
    init = {"type": "connection_init", "payload": {"Authorization": f"Bearer {token}"}}
    subscribe = {
        "id": "1",
        "type": "subscribe",
        "payload": {"query": UPDATES, "variables": {"workflowId": workflow_id}},
    }
    try:
        async with (
            aiohttp.ClientSession() as http,
            http.ws_connect(url, protocols=["graphql-transport-ws"], compress=0) as ws,
        ):
            await ws.send_str(orjson.dumps(init).decode())
            ack = orjson.loads((await ws.receive()).data)
            if ack.get("type") != "connection_ack":
                watcher.errors.append(f"not acknowledged: {ack}")
                return
            await ws.send_str(orjson.dumps(subscribe).decode())
            watcher.subscribed = True
            async for raw in ws:
                if raw.type != aiohttp.WSMsgType.TEXT:
                    watcher.errors.append(f"websocket {raw.type.name}: {raw.data!r}"[:300])
                    return
                arrived = time.time()
                message = orjson.loads(raw.data)
                kind = message.get("type")
                if kind == "ping":
                    await ws.send_str('{"type":"pong"}')
                    continue
                if kind != "next" or message["payload"].get("errors"):
                    watcher.errors.append(json.dumps(message)[:500])
                    if kind != "next":
                        return
                    continue
                watcher.messages += 1
                update = message["payload"]["data"]["executionUpdates"]
                if update["status"] in TERMINAL:
                    watcher.finished.add(update["id"])
                    if update["finishedAt"]:
                        done = datetime.fromisoformat(update["finishedAt"]).timestamp()
                        watcher.lags_ms.append((arrived - done) * 1000)
            watcher.errors.append(f"websocket closed (code {ws.close_code})")
    except asyncio.CancelledError:
        raise
    except Exception as exc:
        watcher.errors.append(f"{type(exc).__name__}: {exc}"[:500])


async def until(condition: Callable[[], bool], within_s: float) -> None:
    """Poll `condition` until it holds or `within_s` passed."""
    deadline = time.monotonic() + within_s
    while not condition():
        if time.monotonic() > deadline:
            return
        await asyncio.sleep(0.05)


async def subscriber_process(args: argparse.Namespace) -> None:
    """Runs `--subscribers` watchers; reads commands on stdin, answers on stdout."""
    watchers = [Watcher() for _ in range(args.subscribers)]
    tasks = [
        asyncio.create_task(watch(args.url, args.token, args.workflow_id, watcher))
        for watcher in watchers
    ]
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=2**26)  # a command carries every execution id
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)

    def answer(message: dict[str, Any]) -> None:
        sys.stdout.write(json.dumps(message) + "\n")
        sys.stdout.flush()

    while line := await reader.readline():
        command = json.loads(line)
        if command["do"] == "seen":
            # Wait (up to a deadline) until every watcher saw these executions finish.
            expected: set[str] = set(command["ids"])

            def all_seen(expected: set[str] = expected) -> bool:
                return all(expected <= w.finished or w.errors for w in watchers)

            await until(all_seen, command["within_s"])
            missing = [len(expected - watcher.finished) for watcher in watchers]
            answer(
                {
                    "missing": missing,
                    "subscribed": sum(watcher.subscribed for watcher in watchers),
                    "errors": [error for watcher in watchers for error in watcher.errors][:20],
                    "error_count": sum(len(watcher.errors) for watcher in watchers),
                    "messages": sum(watcher.messages for watcher in watchers),
                    "lags_ms": [lag for watcher in watchers for lag in watcher.lags_ms][
                        -command.get("lags", 0) :
                    ]
                    if command.get("lags")
                    else [],
                }
            )
        elif command["do"] == "subscribed":
            await until(
                lambda: all(w.subscribed or w.errors for w in watchers), command["within_s"]
            )
            answer({"subscribed": sum(watcher.subscribed for watcher in watchers)})
        elif command["do"] == "stop":
            break
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


class Subscribers:
    """A subscriber process, driven from the coordinator."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process

    @classmethod
    async def start(cls, url: str, token: str, workflow_id: str, count: int) -> Subscribers:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            __file__,
            "--subscriber-process",
            "--url",
            url,
            "--token",
            token,
            "--workflow-id",
            workflow_id,
            "--subscribers",
            str(count),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            limit=2**26,  # an answer carries up to `lags` delivery lags
        )
        return cls(process)

    async def ask(self, command: dict[str, Any]) -> dict[str, Any]:
        assert self.process.stdin is not None and self.process.stdout is not None
        self.process.stdin.write((json.dumps(command) + "\n").encode())
        await self.process.stdin.drain()
        answer: dict[str, Any] = json.loads(await self.process.stdout.readline())
        return answer

    async def stop(self) -> None:
        assert self.process.stdin is not None
        if self.process.returncode is not None:
            return
        try:
            self.process.stdin.write(b'{"do": "stop"}\n')
            await self.process.stdin.drain()
            await asyncio.wait_for(self.process.wait(), 20)
        except (TimeoutError, ConnectionError):
            with contextlib.suppress(ProcessLookupError):
                self.process.kill()
            await self.process.wait()


async def seen_by_all(
    groups: list[Subscribers], ids: list[str], within_s: float, lags: int = 0
) -> dict[str, Any]:
    answers = await asyncio.gather(
        *(
            group.ask({"do": "seen", "ids": ids, "within_s": within_s, "lags": lags})
            for group in groups
        )
    )
    return {
        "missing": [count for answer in answers for count in answer["missing"]],
        "subscribed": sum(answer["subscribed"] for answer in answers),
        "errors": [error for answer in answers for error in answer["errors"]],
        "error_count": sum(answer["error_count"] for answer in answers),
        "messages": sum(answer["messages"] for answer in answers),
        "lags_ms": [lag for answer in answers for lag in answer["lags_ms"]],
    }


# The coordinator


async def until_subscribed(
    cluster: Any, http: aiohttp.ClientSession, url: str, workflow_id: str, groups: list[Subscribers]
) -> dict[str, Any]:
    """Once every watcher has sent its subscription, probe executions until one is seen by
    all (a subscription starts to count on the server a moment after it is sent)."""
    await asyncio.gather(*(group.ask({"do": "subscribed", "within_s": 60}) for group in groups))
    for _ in range(20):
        probe = await steady_load(http, url, workflow_id, 1, 1)
        await cluster.wait_for(probe.ids, set(TERMINAL), within_s=60)
        seen = await seen_by_all(groups, probe.ids, 5)
        if not any(seen["missing"]):
            return seen
    raise RuntimeError(f"subscribers not ready: {seen}")


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for {pid}")


def cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS_PER_S


def machine_busy_s() -> float:
    """CPU seconds the whole machine spent busy (all users), from /proc/stat."""
    values = [int(value) for value in Path("/proc/stat").read_text().split("\n")[0].split()[1:]]
    idle = values[3] + values[4]
    return (sum(values[:8]) - idle) / TICKS_PER_S


@dataclass
class Load:
    """What the steady submitter saw."""

    ids: list[str] = field(default_factory=list)
    latencies_ms: list[float] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)


async def steady_load(
    http: aiohttp.ClientSession, url: str, workflow_id: str, rate: float, seconds: float
) -> Load:
    """`executeWorkflow` at `rate` per second for `seconds`, open loop."""
    load = Load()
    body = orjson.dumps(
        {"query": EXECUTE, "variables": {"id": workflow_id, "input": {"price": 4, "qty": 5}}}
    )

    async def one() -> None:
        sent = time.perf_counter()
        try:
            async with http.post(url, data=body) as response:
                raw = await response.read()
            answer = orjson.loads(raw)
            result = (answer.get("data") or {}).get("executeWorkflow") or {}
            if response.status != 200 or answer.get("errors") or "id" not in result:
                load.failures.append(f"HTTP {response.status}: {raw[:300]!r}")
                return
            load.ids.append(result["id"])
        except Exception as exc:
            load.failures.append(f"{type(exc).__name__}: {exc}"[:300])
            return
        finally:
            load.latencies_ms.append((time.perf_counter() - sent) * 1000)

    started = time.perf_counter()
    requests: list[asyncio.Task[None]] = []
    for index in range(round(rate * seconds)):
        delay = started + index / rate - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        requests.append(asyncio.create_task(one()))
    await asyncio.gather(*requests)
    return load


async def soak(args: argparse.Namespace) -> bool:
    # The cluster helper flushes the test Redis database: make that ours.
    redis_url = f"redis://127.0.0.1:6379/{args.redis_db}"
    os.environ["LOOM_TEST_REDIS_URL"] = redis_url
    from bench.distributed import FIVE_NODES
    from tests.distributed.cluster import ADMIN_TOKEN, create_cluster, destroy_cluster

    with tempfile.TemporaryDirectory() as workdir:
        cluster = await create_cluster(
            Path(workdir),
            LOOM_REDIS_URL=redis_url,
            LOOM_LEASE_SECONDS="30",
            LOOM_SWEEP_INTERVAL_S="5",
            LOOM_LOG_LEVEL="warning",
        )
        groups: list[Subscribers] = []
        try:
            await cluster.start_api()
            for _ in range(args.workers):
                await cluster.start_worker(concurrency=20)
            assert cluster.api is not None
            pids = {"api": cluster.api.pid} | {
                f"worker {i + 1}": worker.pid for i, worker in enumerate(cluster.workers)
            }
            workflow_id = await cluster.create_workflow(*FIVE_NODES)
            ws_url = cluster.base.replace("http://", "ws://") + "/graphql"
            per_process = -(-args.subscribers // args.client_processes)
            remaining = args.subscribers
            while remaining > 0:
                count = min(per_process, remaining)
                groups.append(await Subscribers.start(ws_url, ADMIN_TOKEN, workflow_id, count))
                remaining -= count
            headers = {"Authorization": f"Bearer {ADMIN_TOKEN}", "Content-Type": "application/json"}
            # Idle connections are let go before the server closes them (uvicorn: after 5 s), so
            # that a request never meets a connection closing under it.
            connector = aiohttp.TCPConnector(limit=512, keepalive_timeout=3)
            async with aiohttp.ClientSession(connector=connector, headers=headers) as http:
                url = f"{cluster.base}/graphql"
                ready = await until_subscribed(cluster, http, url, workflow_id, groups)
                print(
                    f"soak: {ready['subscribed']} subscribers on executionUpdates(workflowId), "
                    f"{args.workers} workers, executeWorkflow at {args.rate:.0f}/s: "
                    f"{args.warmup_s:.0f} s warm-up, {args.seconds:.0f} s measured"
                )
                warm = await steady_load(http, url, workflow_id, args.rate, args.warmup_s)
                await drained(cluster, warm.ids, args.drain_s)
                rss_warm = {name: rss_mb(pid) for name, pid in pids.items()}
                cpu_before = {name: cpu_s(pid) for name, pid in pids.items()}
                clients_before = sum(cpu_s(g.process.pid) for g in groups) + cpu_s(os.getpid())
                busy_before, wall_before = machine_busy_s(), time.monotonic()
                messages_before = (await seen_by_all(groups, [], 0))["messages"]
                main = await steady_load(http, url, workflow_id, args.rate, args.seconds)
                drain_started = time.monotonic()
                all_finished = await drained(cluster, main.ids, args.drain_s)
                everything = warm.ids + main.ids
                left_s = max(5.0, args.drain_s - (time.monotonic() - drain_started))
                seen = await seen_by_all(groups, everything, left_s, lags=20_000)
                wall = time.monotonic() - wall_before
                busy = machine_busy_s() - busy_before
                cpu = {name: cpu_s(pid) - cpu_before[name] for name, pid in pids.items()}
                clients = (
                    sum(cpu_s(g.process.pid) for g in groups) + cpu_s(os.getpid()) - clients_before
                )
                rss_end = {name: rss_mb(pid) for name, pid in pids.items()}
            statuses = await cluster.statuses(main.ids)
            changes = await status_changes(cluster, main.ids)
            problems = logged_problems([cluster.api, *cluster.workers])
        finally:
            try:
                for group in groups:
                    await group.stop()
            finally:
                await destroy_cluster(cluster)
    return report(
        args,
        Outcome(
            warm=warm,
            main=main,
            all_finished=all_finished,
            seen=seen,
            statuses=statuses,
            changes=changes,
            rss_warm=rss_warm,
            rss_end=rss_end,
            cpu=cpu,
            clients_cpu_s=clients,
            busy_s=busy,
            wall_s=wall,
            messages_before=messages_before,
            problems=problems,
        ),
    )


async def drained(cluster: Any, ids: list[str], within_s: float) -> bool:
    """Whether every execution finished within `within_s`."""
    try:
        await cluster.wait_for(ids, set(TERMINAL), within_s=within_s)
    except AssertionError:
        return False
    return True


def logged_problems(processes: list[Any]) -> list[str]:
    """Errors in the processes' logs (they log warnings and worse), each with the exception
    that ends its traceback, if any."""
    problems = []
    for process in processes:
        lines = process.output().splitlines()
        for index, line in enumerate(lines):
            if not line.startswith(("ERROR", "CRITICAL")):
                continue
            rest = lines[index + 1 :]
            cause = ""
            if rest and rest[0].startswith("Traceback"):
                cause = next((text for text in rest[1:] if text and not text[0].isspace()), "")
            problems.append(f"{process.name}: {line} [{cause}]")
    return problems


async def status_changes(cluster: Any, ids: list[str]) -> int:
    ((count,),) = await cluster.sql(
        "SELECT count(*) FROM execution_events WHERE execution_id = ANY(:ids) AND type IN "
        "('EXECUTION_QUEUED', 'EXECUTION_STARTED', 'EXECUTION_WAITING', 'EXECUTION_RESUMED', "
        "'EXECUTION_FINISHED')",
        ids=ids,
    )
    return int(count)


@dataclass
class Outcome:
    """What a soak measured."""

    warm: Load
    main: Load
    all_finished: bool
    seen: dict[str, Any]
    statuses: dict[str, str]
    changes: int
    rss_warm: dict[str, float]
    rss_end: dict[str, float]
    cpu: dict[str, float]
    clients_cpu_s: float
    busy_s: float
    wall_s: float
    messages_before: int
    problems: list[str]


def report(args: argparse.Namespace, outcome: Outcome) -> bool:
    """Print the checks and figures; True when every target is met."""
    ok = True

    def check(met: bool, line: str) -> None:
        nonlocal ok
        ok = ok and met
        print(f"  [{'met' if met else 'MISSED'}] {line}")

    warm, main, seen = outcome.warm, outcome.main, outcome.seen
    expected = round(args.rate * args.seconds)
    failures = warm.failures + main.failures
    check(
        not failures and len(main.ids) == expected,
        f"submissions accepted: {len(main.ids)} of {expected} measured, "
        f"{len(warm.ids)} of {round(args.rate * args.warmup_s)} in the warm-up"
        + (f"; first failures: {failures[:3]}" if failures else ""),
    )
    p50, p99 = percentile(main.latencies_ms, 0.5), percentile(main.latencies_ms, 0.99)
    check(
        p99 <= TARGET_SUBMIT_P99_MS,
        f"submit p50 {p50:.0f} ms, p99 {p99:.0f} ms, max {max(main.latencies_ms):.0f} ms "
        f"(target p99 <= {TARGET_SUBMIT_P99_MS:.0f} ms)",
    )
    not_succeeded = sum(1 for status in outcome.statuses.values() if status != "SUCCEEDED")
    check(
        outcome.all_finished and not_succeeded == 0,
        f"every execution SUCCEEDED within {args.drain_s:.0f} s of the last submission "
        f"({not_succeeded} did not)",
    )
    missing = seen["missing"]
    short = sum(1 for count in missing if count)
    check(
        short == 0 and seen["subscribed"] == args.subscribers,
        f"every subscriber saw every execution finish: {len(missing) - short} of "
        f"{args.subscribers} did ({sum(missing)} finishes missed in all)",
    )
    check(
        seen["error_count"] == 0,
        f"websocket errors: {seen['error_count']}"
        + (f"; first: {seen['errors'][:3]}" if seen["errors"] else ""),
    )
    check(
        not outcome.problems,
        f"errors in the API and worker logs: {len(outcome.problems)}"
        + (f"; first: {outcome.problems[:3]}" if outcome.problems else ""),
    )
    for name, before in outcome.rss_warm.items():
        after = outcome.rss_end[name]
        check(
            after / before - 1 <= TARGET_RSS_GROWTH,
            f"{name} RSS {before:.0f} MB after the warm-up, {after:.0f} MB at the end "
            f"({after / before - 1:+.0%}; target within {TARGET_RSS_GROWTH:.0%})",
        )
    lags = seen["lags_ms"]
    messages = seen["messages"] - outcome.messages_before
    executions = max(1, len(main.ids))
    print(
        f"  delivery lag, finishedAt -> final update at a client: p50 "
        f"{percentile(lags, 0.5):.0f} ms, p99 {percentile(lags, 0.99):.0f} ms; "
        f"{messages} messages to subscribers in the measured window "
        f"({messages / max(1, executions * args.subscribers):.2f} per execution and subscriber)"
    )
    wall_s = outcome.wall_s
    for name, used_s in outcome.cpu.items():
        print(
            f"  CPU {name}: {used_s:.1f} s over {wall_s:.0f} s ({used_s / wall_s:.0%} of a core); "
            f"{used_s / executions * 1000:.2f} ms per execution, "
            f"{used_s / max(1, outcome.changes) * 1000:.2f} ms per status change"
        )
    others_s = outcome.busy_s - outcome.clients_cpu_s - sum(outcome.cpu.values())
    print(
        f"  machine: {outcome.busy_s / wall_s:.2f} of {os.cpu_count()} cores busy; the load "
        f"clients {outcome.clients_cpu_s / wall_s:.2f}; PostgreSQL, Redis and anything else "
        f"on the machine {others_s / wall_s:.2f}"
    )
    print("soak: " + ("every target met" if ok else "a target MISSED"))
    return ok


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--subscribers", type=int, default=200)
    parser.add_argument("--rate", type=float, default=100.0)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--warmup-s", type=float, default=10.0)
    parser.add_argument("--drain-s", type=float, default=60.0)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--redis-db", type=int, default=14)
    parser.add_argument("--client-processes", type=int, default=2)
    # Internal: a subscriber process.
    parser.add_argument("--subscriber-process", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    parser.add_argument("--token", help=argparse.SUPPRESS)
    parser.add_argument("--workflow-id", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.subscriber_process:
        asyncio.run(subscriber_process(args))
        return
    sys.exit(0 if asyncio.run(soak(args)) else 1)


if __name__ == "__main__":
    main()
