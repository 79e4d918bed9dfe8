"""`loom serve` as a real process: the README's first command, end to end."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

LOOM = Path(sys.executable).parent / "loom"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _start(data_dir: Path, port: int, **env: str) -> subprocess.Popen[str]:
    environment = {
        **{k: v for k, v in os.environ.items() if not k.startswith("LOOM_")},
        "LOOM_DATA_DIR": str(data_dir),
        "LOOM_PORT": str(port),
        **env,
    }
    return subprocess.Popen(
        [str(LOOM), "serve"],
        env=environment,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        cwd=data_dir,
    )


def _wait_ready(base: str, process: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(
                f"loom serve exited: {process.stdout.read() if process.stdout else ''}"
            )
        try:
            if httpx.get(f"{base}/readyz", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise AssertionError("loom serve did not become ready")


def _stop(process: subprocess.Popen[str]) -> str:
    process.send_signal(signal.SIGINT)
    try:
        output, _ = process.communicate(timeout=15)
    except subprocess.TimeoutExpired:
        process.kill()
        output, _ = process.communicate()
    return output


@pytest.mark.timeout(90)
def test_serve_prints_graphiql_and_a_working_admin_token_once(tmp_path: Path) -> None:
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    process = _start(tmp_path, port)
    try:
        _wait_ready(base, process)
        page = httpx.get(f"{base}/graphql", headers={"Accept": "text/html"})
        assert page.status_code == 200 and "graphiql" in page.text.lower()
    finally:
        output = _stop(process)
    assert f"http://127.0.0.1:{port}/graphql" in output
    assert f"database: sqlite:///{(tmp_path / 'loom.db').resolve()}" in output
    assert "Authorization: Bearer" in output
    match = re.search(r"Admin token \(shown once, keep it\): (loom_\S+)", output)
    assert match, output
    token = match.group(1)
    assert (tmp_path / "loom.db").exists()

    # Second start on the same data: the token still works and no new one is printed.
    process = _start(tmp_path, port)
    try:
        _wait_ready(base, process)
        response = httpx.post(
            f"{base}/graphql",
            json={"query": "{ viewer { name role } }"},
            headers={"Authorization": f"Bearer {token}"},
        )
        assert response.json() == {"data": {"viewer": {"name": "admin", "role": "admin"}}}
        unauthenticated = httpx.post(f"{base}/graphql", json={"query": "{ viewer { name } }"})
        assert unauthenticated.status_code == 401
    finally:
        output = _stop(process)
    assert "Admin token" not in output


@pytest.mark.timeout(90)
def test_admin_token_from_environment_is_upserted(tmp_path: Path) -> None:
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    token = "loom_test_admin_token_from_env_0123456789"
    process = _start(tmp_path, port, LOOM_ADMIN_TOKEN=token)
    try:
        _wait_ready(base, process)
        response = httpx.post(
            f"{base}/graphql",
            json={"query": "{ viewer { name role } }"},
            headers={"Authorization": f"Bearer {token}"},
        )
        assert response.json() == {"data": {"viewer": {"name": "admin", "role": "admin"}}}
    finally:
        output = _stop(process)
    assert "Admin token" not in output
    assert token not in output


WORKFLOW = {
    "name": "Slow",
    "nodes": [
        {"id": "start", "name": "Start", "type": "manual_trigger"},
        {
            "id": "mark",
            "name": "Mark",
            "type": "set",
            "parameters": {"fields": [{"name": "marked", "value": True}]},
        },
        {
            "id": "wait",
            "name": "Wait",
            "type": "wait",
            "parameters": {"amount": 2, "unit": "seconds"},
        },
        {"id": "done", "name": "Done", "type": "noop"},
    ],
    "edges": [
        {"source": "start", "target": "mark"},
        {"source": "mark", "target": "wait"},
        {"source": "wait", "target": "done"},
    ],
}


def _gql(base: str, token: str, query: str, variables: dict | None = None) -> dict:
    response = httpx.post(
        f"{base}/graphql",
        json={"query": query, "variables": variables or {}},
        headers={"Authorization": f"Bearer {token}"},
        timeout=10,
    )
    body = response.json()
    assert "errors" not in body, body
    return dict(body["data"])


@pytest.mark.timeout(120)
def test_an_execution_interrupted_by_a_stop_resumes_on_the_next_start(tmp_path: Path) -> None:
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    token = "loom_resume_test_token_0123456789abcdef"
    process = _start(tmp_path, port, LOOM_ADMIN_TOKEN=token)
    try:
        _wait_ready(base, process)
        created = _gql(
            base,
            token,
            "mutation($i: WorkflowInput!) { createWorkflow(input: $i) { ... on Workflow { id } } }",
            {"i": WORKFLOW},
        )
        workflow_id = created["createWorkflow"]["id"]
        started = _gql(
            base,
            token,
            "mutation($id: ID!) { executeWorkflow(id: $id) { ... on Execution { id } } }",
            {"id": workflow_id},
        )
        execution_id = started["executeWorkflow"]["id"]
        query = """query($id: ID!) { execution(id: $id) { status output
                     nodeRuns { nodeId status attempt error { type } } } }"""
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            runs = _gql(base, token, query, {"id": execution_id})["execution"]["nodeRuns"]
            if any(r["nodeId"] == "wait" and r["status"] == "RUNNING" for r in runs):
                break
            time.sleep(0.05)
    finally:
        _stop(process)

    process = _start(tmp_path, port, LOOM_ADMIN_TOKEN=token)
    try:
        _wait_ready(base, process)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            execution = _gql(base, token, query, {"id": execution_id})["execution"]
            if execution["status"] not in ("QUEUED", "RUNNING"):
                break
            time.sleep(0.1)
    finally:
        _stop(process)
    assert execution["status"] == "SUCCEEDED", execution
    runs = [(r["nodeId"], r["status"], r["attempt"]) for r in execution["nodeRuns"]]
    # The nodes that succeeded before the stop were not run again; the interrupted one was,
    # as a second attempt, after a first one recorded as WORKER_LOST.
    assert runs.count(("mark", "SUCCEEDED", 1)) == 1
    assert ("wait", "FAILED", 1) in runs and ("wait", "SUCCEEDED", 2) in runs
    lost = next(r for r in execution["nodeRuns"] if r["nodeId"] == "wait" and r["attempt"] == 1)
    assert lost["error"]["type"] == "WORKER_LOST"
    assert execution["output"] == [{"marked": True}]
