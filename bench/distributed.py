"""Distributed-mode benchmark: pick-up latency, a 40-step chain, executions per second.

    .venv/bin/python bench/distributed.py [--runs 5] [--latency-samples 200] [--seconds 10]
        [--throughput-runs 3] [--metrics] [--tracing]

Everything on this machine, as in production but on loopback: a fresh PostgreSQL database
(`test` server), Redis (db 14, or LOOM_TEST_REDIS_URL; flushed), one `loom serve` API
process in distributed mode and `loom worker` processes with the production defaults (poll
delay 5 ms, lease 30 s).

1. Pick-up latency: from the `executeWorkflow` response arriving at the client to the first
   node's recorded start (taken in the worker; same machine, same clock), one execution at a
   time, p50 and p99. Floor, in the same run: a bare arq job with the same poll delay, from
   `enqueue_job` returning to the job starting.
2. A 40-node chain whose nodes each wait 10 ms, submitted through the API and run by one
   worker, every node run recorded: from sending `executeWorkflow` to the execution's
   recorded finish, median of `--runs`; overhead per step above the 400 ms of waiting.
3. Executions per second of a 5-node workflow (trigger, set, if, two noops) submitted
   through the API by 32 concurrent clients for `--seconds`, with 1 and with 2 workers
   (concurrency 20 each): completed executions divided by the time from the first request
   to the last recorded finish; the median of `--throughput-runs` windows on the same
   processes (each window starts once the previous one has drained).
With `--metrics` and/or `--tracing`, only 3. with 2 workers, off and on in turn
(`--throughput-runs` pairs, alternating which goes first), each window on fresh processes.
Metrics on: the API serves `/metrics` with a token and each worker on a port of its own, all
scraped every second (Prometheus' default is every 15 s). Tracing on: `LOOM_TRACING=otlp`,
every process exporting to an OTLP/HTTP receiver in this process (tests/otlp_receiver.py).
Printed: the median rate of each, the median of the rounds' paired on/off ratios (the
verdict: at most 5% slower), and the CPU time the API and worker processes spent per
execution (`/proc`), which the machine's other load moves less.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import os
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import aiohttp
import orjson
from arq.connections import RedisSettings, create_pool

from tests.distributed.cluster import Cluster, create_cluster, destroy_cluster, free_port

# The bench's own Redis database when given (runs side by side must not mix their queues),
# else the tests' (several people benchmark on one Redis), else db 14.
REDIS_URL = os.environ.get(
    "LOOM_BENCH_REDIS_URL", os.environ.get("LOOM_TEST_REDIS_URL", "redis://127.0.0.1:6379/14")
)
TARGET_PICKUP_P50_MS = 10.0
TARGET_CHAIN_S = 0.6
TARGET_STEP_MS = 5.0
TARGET_THROUGHPUT = 150.0
METRICS_TOKEN = "bench-metrics-token"

FIVE_NODES = (
    [
        {"id": "start", "name": "Start", "type": "manual_trigger"},
        {
            "id": "set",
            "name": "Price",
            "type": "set",
            "parameters": {"fields": [{"name": "total", "value": "{{ $json.price * $json.qty }}"}]},
        },
        {
            "id": "if",
            "name": "Big",
            "type": "if",
            "parameters": {
                "conditions": [{"left": "{{ $json.total }}", "operator": "gt", "right": 10}]
            },
        },
        {"id": "big", "name": "Big order", "type": "noop"},
        {"id": "small", "name": "Small order", "type": "noop"},
    ],
    [
        {"source": "start", "target": "set"},
        {"source": "set", "target": "if"},
        {"source": "if", "target": "big", "sourceOutput": "true"},
        {"source": "if", "target": "small", "sourceOutput": "false"},
    ],
)


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))]


async def first_node_start(cluster: Cluster, execution_id: str) -> datetime:
    while True:
        (row,) = await cluster.sql(
            "SELECT min(started_at) FROM node_runs WHERE execution_id = :id", id=execution_id
        )
        if row[0] is not None:
            started: datetime = row[0]
            return started
        await asyncio.sleep(0.005)


async def finished_at(cluster: Cluster, execution_id: str) -> datetime:
    while True:
        (row,) = await cluster.sql(
            "SELECT status, finished_at FROM executions WHERE id = :id", id=execution_id
        )
        if row[0] in ("SUCCEEDED", "FAILED", "CANCELLED"):
            assert row[0] == "SUCCEEDED", row
            done: datetime = row[1]
            return done
        await asyncio.sleep(0.01)


async def pickup_latency(cluster: Cluster, samples: int) -> list[float]:
    workflow_id = await cluster.create_workflow(
        [{"id": "start", "name": "Start", "type": "manual_trigger"}], []
    )
    latencies = []
    for _ in range(samples):
        execution_id = await cluster.execute(workflow_id)
        answered = datetime.now(UTC)
        started = await first_node_start(cluster, execution_id)
        latencies.append((started - answered).total_seconds() * 1000)
        await asyncio.sleep(0.02)
    return latencies


FLOOR_WORKER = """
import asyncio, sys, time
from arq import Worker
from arq.connections import RedisSettings
async def job(ctx, sent):
    await ctx["redis"].rpush("bench:floor", repr(time.time() - sent))
worker = Worker(functions=[job], redis_settings=RedisSettings.from_dsn(sys.argv[1]),
                queue_name="bench:floor-queue", poll_delay=float(sys.argv[2]), keep_result=0,
                handle_signals=True)
worker.run()
"""


async def arq_floor(samples: int, poll_delay_s: float) -> list[float]:
    """A bare arq job's pick-up latency with the same poll delay."""
    worker = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        FLOOR_WORKER,
        REDIS_URL,
        str(poll_delay_s),
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    redis = await create_pool(RedisSettings.from_dsn(REDIS_URL))
    try:
        await redis.delete("bench:floor")
        await asyncio.sleep(2)  # the worker starts
        for _ in range(samples):
            await redis.enqueue_job("job", time.time(), _queue_name="bench:floor-queue")
            await asyncio.sleep(0.02)
        for _ in range(1200):  # polling Redis, up to a minute
            if await redis.llen("bench:floor") >= samples:
                break
            await asyncio.sleep(0.05)
        values = await redis.lrange("bench:floor", 0, -1)
        return [float(value) * 1000 for value in values]
    finally:
        worker.terminate()
        await worker.wait()
        await redis.aclose()


async def chain_of_waits(cluster: Cluster, runs: int) -> list[float]:
    """The trigger, then 40 `wait` nodes of 10 ms in a row."""
    nodes = [{"id": "start", "name": "Start", "type": "manual_trigger"}] + [
        {
            "id": f"w{i}",
            "name": f"Wait {i}",
            "type": "wait",
            "parameters": {"amount": 0.01, "unit": "seconds"},
        }
        for i in range(1, 41)
    ]
    ids = [node["id"] for node in nodes]
    edges = [{"source": a, "target": b} for a, b in itertools.pairwise(ids)]
    workflow_id = await cluster.create_workflow(nodes, edges)
    totals = []
    for _ in range(runs + 1):  # the first run warms the plan cache and connections
        sent = datetime.now(UTC)
        execution_id = await cluster.execute(workflow_id)
        done = await finished_at(cluster, execution_id)
        totals.append((done - sent).total_seconds())
        ((count,),) = await cluster.sql(
            "SELECT count(*) FROM node_runs WHERE execution_id = :id AND status = 'SUCCEEDED'",
            id=execution_id,
        )
        assert count == 41, count
    return totals[1:]


async def throughput(cluster: Cluster, seconds: float, clients: int = 32) -> dict[str, Any]:
    workflow_id = await cluster.create_workflow(*FIVE_NODES)
    ids: list[str] = []
    started = time.monotonic()
    end = started + seconds
    body = {
        "query": "mutation($id: ID!, $input: JSON) { executeWorkflow(id: $id, input: $input) {"
        " ... on Execution { id } } }",
        "variables": {"id": workflow_id, "input": {"price": 4, "qty": 5}},
    }
    payload = orjson.dumps(body)
    headers = {
        "Authorization": f"Bearer {cluster_token()}",
        "Content-Type": "application/json",
    }

    async def client(http: aiohttp.ClientSession) -> None:
        while time.monotonic() < end:
            async with http.post(f"{cluster.base}/graphql", data=payload) as response:
                body = await response.read()
            answer = orjson.loads(body)
            if not answer.get("data") or answer.get("errors"):
                raise RuntimeError(f"executeWorkflow failed: {body[:500]!r}")
            ids.append(answer["data"]["executeWorkflow"]["id"])

    # aiohttp: a lighter client than httpx, so that the load generator takes less of the
    # two cores it shares with the API, the workers and the databases.
    connector = aiohttp.TCPConnector(limit=clients)
    async with aiohttp.ClientSession(connector=connector, headers=headers) as http:
        await asyncio.gather(*(client(http) for _ in range(clients)))
    submitted_s = time.monotonic() - started
    await cluster.wait_for(ids, {"SUCCEEDED"}, within_s=300)
    ((first, last),) = await cluster.sql(
        "SELECT min(created_at), max(finished_at) FROM executions WHERE id = ANY(:ids)", ids=ids
    )
    span = (last - first).total_seconds()
    return {
        "executions": len(ids),
        "per_s": len(ids) / span,
        "submitted_per_s": len(ids) / submitted_s,
        "span_s": span,
    }


def cluster_token() -> str:
    from tests.distributed.cluster import ADMIN_TOKEN

    return ADMIN_TOKEN


async def with_cluster(
    workers: int,
    concurrency: int,
    job: Any,
    metrics_ports: list[int] | None = None,
    **env: str,
) -> Any:
    """`job(cluster)` on fresh processes; with `metrics_ports` (one per worker), metrics on;
    `env`: more settings for every process."""
    metrics = {} if metrics_ports is None else {"LOOM_METRICS_TOKEN": METRICS_TOKEN}
    with tempfile.TemporaryDirectory() as workdir:
        cluster = await create_cluster(
            Path(workdir),
            LOOM_REDIS_URL=REDIS_URL,
            LOOM_LEASE_SECONDS="30",
            LOOM_SWEEP_INTERVAL_S="5",
            LOOM_LOG_LEVEL="warning",
            **metrics,
            **env,
        )
        try:
            await cluster.start_api()
            for index in range(workers):
                port = (
                    {}
                    if metrics_ports is None
                    else {"LOOM_METRICS_PORT": str(metrics_ports[index])}
                )
                await cluster.start_worker(concurrency=concurrency, **port)
            return await job(cluster)
        except Exception:
            # Keep what the processes logged: the directory goes away with the cluster.
            for process in [cluster.api, *cluster.workers]:
                if process is not None and "Traceback" in process.output():
                    output = process.output()
                    start = output.index("Traceback")
                    print(f"--- {process.name} log ---\n{output[max(0, start - 500) :]}")
            raise
        finally:
            await destroy_cluster(cluster)


async def off_and_on(seconds: float, rounds: int, *, metrics: bool, tracing: bool) -> None:
    """Section 3 with 2 workers, with metrics and/or tracing off and on, each window on fresh
    processes, `rounds` pairs in alternating order (off-on, on-off, ...) so that the
    machine's drift falls on both alike; the paired ratio of each round is reported with
    the medians (see the docstring)."""
    from tests.otlp_receiver import OtlpReceiver

    receiver = OtlpReceiver() if tracing else None
    rates: dict[bool, list[float]] = {False: [], True: []}
    cpu_ms: dict[bool, list[float]] = {False: [], True: []}
    try:
        for round_ in range(rounds):
            for on in (False, True) if round_ % 2 == 0 else (True, False):
                ports = [free_port(), free_port()] if on and metrics else None
                env = (
                    {"LOOM_TRACING": "otlp", "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint}
                    if on and receiver is not None
                    else {}
                )

                async def window(
                    cluster: Cluster, ports: list[int] | None = ports
                ) -> dict[str, Any]:
                    urls = [f"{cluster.base}/metrics"] + [
                        f"http://127.0.0.1:{port}/metrics" for port in ports or []
                    ]
                    scraping = asyncio.create_task(scrape_every_second(urls if ports else []))
                    pids = [process.pid for process in [cluster.api, *cluster.workers] if process]
                    cpu_s = process_cpu_s(pids)
                    try:
                        result = await throughput(cluster, seconds)
                    finally:
                        scraping.cancel()
                    spent = process_cpu_s(pids) - cpu_s
                    result["cpu_ms"] = spent / result["executions"] * 1000
                    return result

                result = await with_cluster(2, 20, window, ports, **env)
                rates[on].append(result["per_s"])
                cpu_ms[on].append(result["cpu_ms"])
    finally:
        if receiver is not None:
            receiver.close()
    what = " and ".join(name for name, used in (("metrics", metrics), ("tracing", tracing)) if used)
    off_rate, on_rate = statistics.median(rates[False]), statistics.median(rates[True])
    paired = statistics.median(b / a for a, b in zip(rates[False], rates[True], strict=True))
    cpu_off, cpu_on = statistics.median(cpu_ms[False]), statistics.median(cpu_ms[True])
    spans = "" if receiver is None else f"; {len(receiver.spans)} spans received"
    print(
        f"5-node workflow, 2 workers, {what} off {off_rate:.1f}/s "
        f"({', '.join(f'{r:.1f}' for r in rates[False])}), on {on_rate:.1f}/s "
        f"({', '.join(f'{r:.1f}' for r in rates[True])}): medians "
        f"{(on_rate / off_rate - 1) * 100:+.1f}%, "
        f"median of the {rounds} paired ratios {(paired - 1) * 100:+.1f}%; target at most 5% "
        f"slower: {'met' if paired >= 0.95 else 'MISSED'}\n"
        f"    CPU of the API and the workers per execution: off {cpu_off:.2f} ms "
        f"({', '.join(f'{c:.2f}' for c in cpu_ms[False])}), on {cpu_on:.2f} ms "
        f"({', '.join(f'{c:.2f}' for c in cpu_ms[True])}): {(cpu_on / cpu_off - 1) * 100:+.1f}%"
        f"{spans}"
    )


def process_cpu_s(pids: list[int]) -> float:
    """User and system CPU time of the processes so far (Linux `/proc`)."""
    ticks = 0
    for pid in pids:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        ticks += int(fields[11]) + int(fields[12])  # utime, stime
    return ticks / os.sysconf("SC_CLK_TCK")


async def scrape_every_second(urls: list[str]) -> None:
    headers = {"Authorization": f"Bearer {METRICS_TOKEN}"}
    async with aiohttp.ClientSession(headers=headers) as http:
        while urls:
            for url in urls:
                async with http.get(url) as response:
                    assert response.status == 200, await response.text()
                    await response.read()
            await asyncio.sleep(1)


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--latency-samples", type=int, default=200)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--throughput-runs", type=int, default=3)
    parser.add_argument("--tracing", action="store_true", help="only 3., tracing off vs on")
    parser.add_argument("--metrics", action="store_true", help="only 3., metrics off vs on")
    args = parser.parse_args()
    print("distributed: PostgreSQL and Redis on loopback, 2 CPUs, shared machine")
    if args.metrics or args.tracing:
        await off_and_on(
            args.seconds, args.throughput_runs, metrics=args.metrics, tracing=args.tracing
        )
        return

    async def latency_and_chain(cluster: Cluster) -> tuple[list[float], list[float]]:
        return (
            await pickup_latency(cluster, args.latency_samples),
            await chain_of_waits(cluster, args.runs),
        )

    latencies, chain = await with_cluster(1, 10, latency_and_chain)
    floor = await arq_floor(args.latency_samples, 0.005)
    p50, p99 = percentile(latencies, 0.5), percentile(latencies, 0.99)
    f50, f99 = percentile(floor, 0.5), percentile(floor, 0.99)
    verdict = "met" if p50 <= TARGET_PICKUP_P50_MS else "MISSED"
    print(
        f"1. pick-up latency, response -> first node started: p50 {p50:.1f} ms, p99 {p99:.1f} ms "
        f"({args.latency_samples} samples; target p50 <= {TARGET_PICKUP_P50_MS:.0f} ms: "
        f"{verdict})\n   floor, bare arq job at poll_delay 5 ms: p50 {f50:.1f} ms, "
        f"p99 {f99:.1f} ms; ratio p50 {p50 / f50:.2f}x"
    )
    total = statistics.median(chain)
    step_ms = (total - 0.4) / 40 * 1000
    verdict = "met" if total <= TARGET_CHAIN_S and step_ms <= TARGET_STEP_MS else "MISSED"
    print(
        f"2. 40 x wait 10 ms chain through the API and a worker: {total * 1000:.0f} ms "
        f"(runs {', '.join(f'{t * 1000:.0f}' for t in chain)}), {step_ms:.2f} ms per step "
        f"above the 400 ms floor ({total / 0.4:.2f}x); target <= 600 ms and 5 ms/step: {verdict}"
    )

    async def windows(cluster: Cluster) -> list[dict[str, Any]]:
        return [await throughput(cluster, args.seconds) for _ in range(args.throughput_runs)]

    for workers in (1, 2):
        results = await with_cluster(workers, 20, windows)
        rates = [result["per_s"] for result in results]
        per_s = statistics.median(rates)
        verdict = ""
        if workers == 2:
            verdict = "; target >= 150/s: " + ("met" if per_s >= TARGET_THROUGHPUT else "MISSED")
        print(
            f"3. 5-node workflow, {workers} worker(s): {per_s:.1f} executions/s, median of "
            f"{len(rates)} windows of {args.seconds:.0f} s ({', '.join(f'{r:.1f}' for r in rates)};"
            f" {sum(r['executions'] for r in results)} executions; API accepted "
            f"{statistics.median(r['submitted_per_s'] for r in results):.1f}/s){verdict}"
        )


if __name__ == "__main__":
    asyncio.run(main())
