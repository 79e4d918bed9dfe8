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
