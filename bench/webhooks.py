"""Webhook benchmark: requests per second and p99 of four workflow shapes, embedded mode,
against a floor measured in the same run.

    .venv/bin/python bench/webhooks.py [--seconds 10] [--runs 3] [--connections 10,50]
        [--only abcd] [--code DIR]

One `loom serve` (SQLite, no Redis, every execution recorded as by default) and `wrk` (Debian
package `wrk`) in its own process, on loopback. The floor is a plain Starlette route in the
same kind of uvicorn process that parses the same JSON body and answers a small JSON object
(bench/floor_app.py). Each figure is the median of `--runs` windows of `--seconds`; the
ratio is to the floor's median at the same number of connections. The server's CPU per
request comes from /proc over the windows.

The shapes (issue 14):
(a) a webhook that answers at once (202);
(b) webhook -> a `set` node with 6 expressions -> Respond to Webhook;
(c) webhook -> 10 `set` nodes -> IF -> `set` -> answered with the last node's items;
(d) webhook -> 3 HTTP Requests in parallel to a local API -> merged -> Respond to Webhook.

`--code DIR` runs the server from another checkout of Loom (for before-figures: check out the
commit before a change into a folder and run both).
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import aiohttp
from aiohttp import web

from bench.soak import cpu_s, rss_mb
from tests.distributed.cluster import free_port

TOKEN = "bench-webhooks-admin-token-0123456789"
BODY = '{"price": 4, "qty": 5, "name": "order", "id": 17, "tags": ["a", "b"]}'
# At 10 connections: (ratio to the floor at least, p99 at most in ms).
TARGETS = {"a": (0.06, 25.0), "b": (0.036, 40.0), "c": (0.021, 60.0), "d": (0.018, 60.0)}
ROOT = Path(__file__).resolve().parent.parent


def _set(node_id: str, fields: list[tuple[str, str]]) -> dict[str, Any]:
    return {
        "id": node_id,
        "name": node_id.upper(),
        "type": "set",
        "parameters": {"fields": [{"name": name, "value": value} for name, value in fields]},
    }


def _hook(path: str, mode: str) -> dict[str, Any]:
    return {
        "id": "hook",
        "name": "Hook",
        "type": "webhook",
        "parameters": {"path": path, "responseMode": mode},
    }


def _chain(nodes: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{"source": a["id"], "target": b["id"]} for a, b in itertools.pairwise(nodes)]


def shapes(api: str) -> dict[str, tuple[str, dict[str, Any]]]:
    """Path letter -> (label, workflow)."""
    answer = {"id": "answer", "name": "Answer", "type": "respond_to_webhook", "parameters": {}}
    b_nodes = [
        _hook("b", "respond_node"),
        _set(
            "s1",
            [
                ("total", "{{ $json.body.price * $json.body.qty }}"),
                ("label", "{{ $json.body.name.toUpperCase() }}"),
                ("big", "{{ $json.body.price * $json.body.qty > 10 }}"),
                ("first", "{{ $json.body.tags[0] }}"),
                ("count", "{{ $json.body.tags.length }}"),
                ("id", "{{ $json.body.id + 1 }}"),
            ],
        ),
        answer,
    ]
    c_sets = [_set(f"s{i}", [(f"f{i}", f"{{{{ $json.body.qty + {i} }}}}")]) for i in range(10)]
    c_if = {
        "id": "check",
        "name": "Check",
        "type": "if",
        "parameters": {"conditions": [{"left": "{{ $json.f9 }}", "operator": "gt", "right": 3}]},
    }
    c_last = _set("last", [("done", "yes")])
    c_edges = [
        *_chain([_hook("c", "last_node"), *c_sets, c_if]),
        {"source": "check", "sourceOutput": "true", "target": "last"},
    ]
    calls = [
        {
            "id": f"call{i}",
            "name": f"Call {i}",
            "type": "http_request",
            "parameters": {"url": f"{api}/price/{i}", "retry": {"maxAttempts": 1}},
        }
        for i in range(3)
    ]
    merges = [
        {"id": f"merge{i}", "name": f"Merge {i}", "type": "merge", "parameters": {}}
        for i in range(2)
    ]
    d_edges = [
        *({"source": "hook", "target": call["id"]} for call in calls),
        {"source": "call0", "target": "merge0", "targetInput": "input1"},
        {"source": "call1", "target": "merge0", "targetInput": "input2"},
        {"source": "merge0", "target": "merge1", "targetInput": "input1"},
        {"source": "call2", "target": "merge1", "targetInput": "input2"},
        {"source": "merge1", "target": "answer"},
    ]
    return {
        "a": ("(a) webhook answers at once", {"nodes": [_hook("a", "immediately")], "edges": []}),
        "b": (
            "(b) webhook -> set, 6 expressions -> respond",
            {"nodes": b_nodes, "edges": _chain(b_nodes)},
        ),
        "c": (
            "(c) webhook -> 10 set -> IF -> set -> last node",
            {"nodes": [_hook("c", "last_node"), *c_sets, c_if, c_last], "edges": c_edges},
        ),
        "d": (
            "(d) webhook -> 3 HTTP in parallel -> merge -> respond",
            {"nodes": [_hook("d", "respond_node"), *calls, *merges, answer], "edges": d_edges},
        ),
    }


class Process:
    """A server process (Loom or the floor) with its CPU time from /proc."""

    def __init__(self, args: list[str], env: dict[str, str], cwd: Path) -> None:
        self.log_path = cwd / "server.log"
        log = self.log_path.open("wb")
        self.popen = subprocess.Popen(args, env=env, cwd=cwd, stdout=log, stderr=subprocess.STDOUT)
        log.close()

    def cpu_s(self) -> float:
        return cpu_s(self.popen.pid)

    def rss_mb(self) -> float:
        return rss_mb(self.popen.pid)

    async def until_ready(self, url: str) -> None:
        deadline = time.monotonic() + 60
        async with aiohttp.ClientSession() as http:
            while time.monotonic() < deadline:
                if self.popen.poll() is not None:
                    raise RuntimeError(f"server exited:\n{self.log_path.read_text()[-3000:]}")
                try:
                    async with http.get(url) as response:
                        if response.status in (200, 405):
                            return
                except aiohttp.ClientError:
                    pass
                await asyncio.sleep(0.05)
        raise RuntimeError("server not ready")

    def stop(self) -> None:
        self.popen.send_signal(signal.SIGINT)
        try:
            self.popen.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            self.popen.wait()


def _environment(code: Path | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LOOM_")}
    if code is not None:
        env["PYTHONPATH"] = str(code)
    return env


def start_loom(workdir: Path, port: int, code: Path | None) -> Process:
    env = _environment(code)
    env.update(
        LOOM_DATA_DIR=str(workdir),
        LOOM_PORT=str(port),
        LOOM_ADMIN_TOKEN=TOKEN,
        LOOM_LOG_LEVEL="warning",
        LOOM_HTTP_ALLOWED_NETWORKS="127.0.0.1/32",
    )
    args = [sys.executable, "-c", "from server.cli import main; main()", "serve"]
    return Process(args, env, workdir)


def start_floor(workdir: Path, port: int) -> Process:
    args = [sys.executable, "-m", "uvicorn", "bench.floor_app:app", "--port", str(port)]
    env = _environment(None)
    env["PYTHONPATH"] = str(ROOT)
    return Process([*args, "--log-level", "warning"], env, workdir)


_UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0}


def parse_wrk(output: str) -> tuple[float, float, int, int]:
    """(requests/s, p99 ms, requests, non-2xx/3xx responses) from `wrk --latency`."""
    found = re.search(r"Requests/sec:\s+([\d.]+)", output)
    if found is None:
        raise RuntimeError(f"wrk said:\n{output}")
    rate = float(found.group(1))
    p99 = re.search(r"^\s+99%\s+([\d.]+)(us|ms|s)\s*$", output, re.MULTILINE)
    requests = int(re.search(r"(\d+) requests in", output).group(1))  # type: ignore[union-attr]
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    errors = re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output
    )
    failures = int(bad.group(1)) if bad else 0
    if errors:
        failures += sum(int(group) for group in errors.groups())
    latency = float(p99.group(1)) * _UNITS[p99.group(2)] if p99 else float("nan")
    return rate, latency, requests, failures


async def wrk(url: str, connections: int, seconds: float, script: Path) -> str:
    process = await asyncio.create_subprocess_exec(
        "wrk",
        "-t2",
        f"-c{connections}",
        f"-d{round(seconds)}s",
        "--latency",
        "-s",
        str(script),
        url,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    output, _ = await process.communicate()
    return output.decode()


class Figure:
    def __init__(self) -> None:
        self.rates: list[float] = []
        self.p99s: list[float] = []
        self.cpu_ms: list[float] = []
        self.failures = 0

    async def measure(
        self, server: Process, url: str, connections: int, seconds: float, script: Path
    ) -> None:
        cpu = server.cpu_s()
        rate, p99, requests, failures = parse_wrk(await wrk(url, connections, seconds, script))
        self.cpu_ms.append((server.cpu_s() - cpu) * 1000 / max(requests, 1))
        self.rates.append(rate)
        self.p99s.append(p99)
        self.failures += failures

    @property
    def rate(self) -> float:
        return statistics.median(self.rates)

    @property
    def p99(self) -> float:
        return statistics.median(self.p99s)

    def describe(self) -> str:
        windows = ", ".join(f"{rate:.0f}" for rate in self.rates)
        failed = f", {self.failures} FAILED" if self.failures else ""
        return (
            f"{self.rate:,.0f} req/s (windows {windows}), p99 {self.p99:.1f} ms, "
            f"CPU {statistics.median(self.cpu_ms):.2f} ms/request{failed}"
        )


async def mock_api() -> tuple[web.AppRunner, str]:
    async def price(request: web.Request) -> web.Response:
        return web.json_response({"price": 4, "call": request.match_info["n"]})

    app = web.Application()
    app.router.add_get("/price/{n}", price)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    return runner, f"http://127.0.0.1:{port}"


async def activate(base: str, workflow: dict[str, Any], name: str) -> None:
    headers = {"Authorization": f"Bearer {TOKEN}"}
    async with aiohttp.ClientSession(headers=headers) as http:

        async def gql(query: str, variables: dict[str, Any]) -> dict[str, Any]:
            async with http.post(
                f"{base}/graphql", json={"query": query, "variables": variables}
            ) as response:
                body = await response.json()
            if body.get("errors"):
                raise RuntimeError(body["errors"])
            data: dict[str, Any] = body["data"]
            return data

        created = await gql(
            "mutation($input: WorkflowInput!) { createWorkflow(input: $input) {"
            " __typename ... on Workflow { id } ... on ValidationError { message problems"
            " { nodeId message } } } }",
            {"input": {"name": name, **workflow}},
        )
        if created["createWorkflow"]["__typename"] != "Workflow":
            raise RuntimeError(created)
        workflow_id = created["createWorkflow"]["id"]
        for mutation in (
            "mutation($id: ID!) { publishWorkflow(id: $id, expectedVersion: 1) { __typename } }",
            "mutation($id: ID!) { setWorkflowActive(id: $id, active: true) { __typename } }",
        ):
            data = await gql(mutation, {"id": workflow_id})
            if next(iter(data.values()))["__typename"] != "Workflow":
                raise RuntimeError(data)


async def check_answer(url: str) -> None:
    async with (
        aiohttp.ClientSession() as http,
        http.post(url, data=BODY, headers={"Content-Type": "application/json"}) as response,
    ):
        text = await response.text()
        if response.status not in (200, 202):
            raise RuntimeError(f"{url} answered {response.status}: {text[:500]}")


def options() -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--connections", default="10,50")
    parser.add_argument("--only", default="abcd", help="shapes to run, e.g. bd")
    parser.add_argument("--code", help="run Loom from this checkout (before-figures)")
    args = parser.parse_args()
    args.code = Path(args.code).resolve() if args.code else None
    return args


async def main(args: argparse.Namespace) -> None:
    levels = [int(level) for level in args.connections.split(",")]
    code = args.code
    print(
        f"webhooks: embedded loom serve ({code or ROOT}), SQLite, wrk -t2 on loopback, "
        f"{args.runs} windows of {args.seconds:.0f} s, shared machine ({os.cpu_count()} CPUs)"
    )
    mock, api = await mock_api()
    workdir = Path(tempfile.mkdtemp(prefix="loom-bench-webhooks-"))
    script = workdir / "post.lua"
    script.write_text(
        'wrk.method = "POST"\n'
        f"wrk.body = '{BODY}'\n"
        'wrk.headers["Content-Type"] = "application/json"\n'
    )
    floor_port, loom_port = free_port(), free_port()
    floor = start_floor(workdir, floor_port)
    loom = start_loom(workdir, loom_port, code)
    failed = False
    try:
        floor_url = f"http://127.0.0.1:{floor_port}/floor"
        base = f"http://127.0.0.1:{loom_port}"
        await floor.until_ready(floor_url)
        await loom.until_ready(f"{base}/readyz")
        floors: dict[int, Figure] = {}
        for level in levels:
            await wrk(floor_url, level, 1, script)  # warm-up
            floors[level] = Figure()
            for _ in range(args.runs):
                await floors[level].measure(floor, floor_url, level, args.seconds, script)
            print(f"floor (Starlette route), c={level}: {floors[level].describe()}")
        for letter, (label, workflow) in shapes(api).items():
            if letter not in args.only:
                continue
            await activate(base, workflow, label)
            url = f"{base}/webhook/{letter}"
            await check_answer(url)
            for level in levels:
                await wrk(url, level, 1, script)  # warm-up
                figure = Figure()
                for _ in range(args.runs):
                    await figure.measure(loom, url, level, args.seconds, script)
                ratio = figure.rate / floors[level].rate
                verdict = ""
                if level == 10 and letter in TARGETS:
                    want_ratio, want_p99 = TARGETS[letter]
                    met = ratio >= want_ratio and figure.p99 <= want_p99 and not figure.failures
                    failed |= not met
                    verdict = (
                        f"; target >= {want_ratio}x and p99 <= {want_p99:.0f} ms: "
                        f"{'met' if met else 'MISSED'}"
                    )
                print(f"{label}, c={level}: {figure.describe()}, {ratio:.4f}x the floor{verdict}")
        print(f"loom serve RSS after the run: {loom.rss_mb():.0f} MB")
    finally:
        loom.stop()
        floor.stop()
        await mock.cleanup()
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    asyncio.run(main(options()))
