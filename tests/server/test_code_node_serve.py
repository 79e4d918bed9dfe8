"""A real `loom serve` stays responsive while a Code node spins, and cancelExecution stops
the script at once (its sandbox process stops burning CPU)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.server.test_serve_process import _free_port, _start, _stop, _wait_ready

TOKEN = "loom_test_admin_token_for_code_node_0123456789"
WORKFLOW = """
mutation($input: WorkflowInput!) { createWorkflow(input: $input) { ... on Workflow { id } } }
"""
EXECUTE = "mutation($id: ID!) { executeWorkflow(id: $id) { ... on Execution { id } } }"
CANCEL = "mutation($id: ID!) { cancelExecution(id: $id) { ... on Execution { status } } }"
STATUS = """
query($id: ID!) { execution(id: $id) { status nodeRuns { nodeName status error { type } } } }
"""


def gql(client: httpx.Client, query: str, **variables: Any) -> dict[str, Any]:
    response = client.post("/graphql", json={"query": query, "variables": variables})
    body = response.json()
    assert "errors" not in body, body
    return dict(body["data"])


def spinning_workflow(client: httpx.Client, timeout_s: float | None) -> str:
    spin: dict[str, Any] = {
        "id": "spin",
        "name": "Spin",
        "type": "code",
        "parameters": {"code": "while (true) {}"},
    }
    if timeout_s is not None:
        spin["timeoutSeconds"] = timeout_s
    nodes = [{"id": "start", "name": "Start", "type": "manual_trigger"}, spin]
    data = gql(
        client,
        WORKFLOW,
        input={"name": "spin", "nodes": nodes, "edges": [{"source": "start", "target": "spin"}]},
    )
    return str(data["createWorkflow"]["id"])


def until_running(client: httpx.Client, execution_id: str) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        runs = gql(client, STATUS, id=execution_id)["execution"]["nodeRuns"]
        if any(run["nodeName"] == "Spin" and run["status"] == "RUNNING" for run in runs):
            return
        time.sleep(0.02)
    raise AssertionError("the Code node never started")


def sandbox_hosts(serve_pid: int) -> dict[int, float]:
    """The serve process's sandbox hosts (children running engine.code.host): CPU seconds
    by pid."""
    hosts = {}
    for task in Path(f"/proc/{serve_pid}/task").iterdir():
        for child in (task / "children").read_text().split():
            try:
                if b"engine.code.host" not in Path(f"/proc/{child}/cmdline").read_bytes():
                    continue
                fields = Path(f"/proc/{child}/stat").read_text().rsplit(")", 1)[1].split()
            except FileNotFoundError:
                continue  # it just ended
            hosts[int(child)] = (int(fields[11]) + int(fields[12])) / 100  # utime + stime
    return hosts


def until_idle(serve_pid: int) -> None:
    """Until the sandbox hosts use no CPU: none is starting or running anything."""
    deadline = time.monotonic() + 20
    before = sandbox_hosts(serve_pid)
    while time.monotonic() < deadline:
        time.sleep(0.2)
        now = sandbox_hosts(serve_pid)
        if now and now == before:
            return
        before = now
    raise AssertionError(f"the sandbox hosts never settled: {before}")


def spinning_host(serve_pid: int) -> int:
    """The host whose CPU time grows: the one running the loop."""
    deadline = time.monotonic() + 10
    before = sandbox_hosts(serve_pid)
    while time.monotonic() < deadline:
        time.sleep(0.1)
        now = sandbox_hosts(serve_pid)
        grown = [pid for pid, cpu_s in now.items() if cpu_s - before.get(pid, cpu_s) >= 0.05]
        if grown:
            return grown[0]
        before = now
    raise AssertionError("no sandbox host is running the script")


@pytest.mark.timeout(120)
def test_the_api_answers_while_code_spins_and_a_cancel_stops_it(tmp_path: Path) -> None:
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    # Access logs off: nobody reads the pipe they would fill while /healthz is hammered.
    process = _start(
        tmp_path, port, LOOM_ADMIN_TOKEN=TOKEN, LOOM_CODE_TIMEOUT_S="60", LOOM_LOG_LEVEL="warning"
    )
    try:
        _wait_ready(base, process)
        headers = {"Authorization": f"Bearer {TOKEN}"}
        with httpx.Client(base_url=base, headers=headers, timeout=10) as client:
            # Spins until its node's timeout, 4 s: /healthz answers quickly all along.
            workflow_id = spinning_workflow(client, timeout_s=4)
            execution_id = gql(client, EXECUTE, id=workflow_id)["executeWorkflow"]["id"]
            until_running(client, execution_id)
            latencies_ms = []
            spinning_until = time.monotonic() + 2.5
            while time.monotonic() < spinning_until:
                started = time.perf_counter()
                assert client.get("/healthz").status_code == 200
                latencies_ms.append((time.perf_counter() - started) * 1000)
            latencies_ms.sort()
            p99 = latencies_ms[int(len(latencies_ms) * 0.99) - 1]
            assert len(latencies_ms) >= 50
            assert p99 < 50, f"p50 {latencies_ms[len(latencies_ms) // 2]:.1f} ms, p99 {p99:.1f} ms"
            deadline = time.monotonic() + 20
            while gql(client, STATUS, id=execution_id)["execution"]["status"] == "RUNNING":
                assert time.monotonic() < deadline
                time.sleep(0.05)
            execution = gql(client, STATUS, id=execution_id)["execution"]
            assert execution["status"] == "FAILED"
            spin = next(run for run in execution["nodeRuns"] if run["nodeName"] == "Spin")
            assert spin["error"]["type"] == "CODE_TIMEOUT"

            # Spins for up to 60 s: cancelExecution stops it at once.
            until_idle(process.pid)  # the host that timed out has been replaced
            workflow_id = spinning_workflow(client, timeout_s=None)
            execution_id = gql(client, EXECUTE, id=workflow_id)["executeWorkflow"]["id"]
            until_running(client, execution_id)
            spinning = spinning_host(process.pid)
            started = time.perf_counter()
            status = gql(client, CANCEL, id=execution_id)["cancelExecution"]["status"]
            cancel_ms = (time.perf_counter() - started) * 1000
            assert status == "CANCELLED"
            assert cancel_ms < 250, f"cancelExecution took {cancel_ms:.0f} ms"
            # The process that ran the script is gone (killed, and reaped).
            while spinning in sandbox_hosts(process.pid):
                assert time.perf_counter() - started < 0.25
                time.sleep(0.005)

    finally:
        _stop(process)
