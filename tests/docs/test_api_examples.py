"""Every example of docs/api.md runs, in order, on a fresh `loom serve`, and answers what the
page shows (the conventions are in tests/docs/doc_examples.py and at the top of the page)."""

from __future__ import annotations

import asyncio
import secrets
import signal
import sys
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from aiohttp import web
from sqlalchemy import text

from storage.db import Database
from tests.conftest import PG_URL, require_postgres
from tests.distributed.cluster import free_port
from tests.docs.doc_examples import read_page
from tests.docs.runner import Runner, base_env

API_DOC = Path(__file__).resolve().parents[2] / "docs" / "api.md"
LOOM = Path(sys.executable).parent / "loom"
# What the page says, and what the test puts in its place.
DOCUMENTED_HOST = "127.0.0.1:8000"
TOKEN_PLACEHOLDER = "loom_..."
# The public API the HTTP Request examples call; a local stand-in answers for it.
PUBLIC_API = "https://jsonplaceholder.typicode.com"
READY_WITHIN_S = 60.0


async def _stand_in_for_public_api() -> web.AppRunner:
    """Answers the requests the page sends to PUBLIC_API as that API does."""

    async def create_post(request: web.Request) -> web.Response:
        return web.json_response({**await request.json(), "id": 101}, status=201)

    async def todo(request: web.Request) -> web.Response:
        if request.match_info["id"] != "1":
            return web.json_response({}, status=404)
        return web.json_response(
            {"userId": 1, "id": 1, "title": "delectus aut autem", "completed": False}
        )

    app = web.Application()
    app.router.add_post("/posts", create_post)
    app.router.add_get("/todos/{id}", todo)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    return runner


def _address(runner: web.AppRunner) -> str:
    host, port = runner.addresses[0][:2]
    return f"http://{host}:{port}"


@dataclass(frozen=True)
class Loom:
    base: str
    token: str
    public_api: str


@pytest.fixture
async def database_url(backend: str) -> AsyncIterator[str | None]:
    """None for SQLite in the data directory (as `make run`), or a fresh PostgreSQL database."""
    if backend == "sqlite":
        yield None
        return
    await require_postgres()
    name = f"loom_docs_{uuid.uuid4().hex[:10]}"
    await _on_postgres(f'CREATE DATABASE "{name}"')
    yield PG_URL.rsplit("/", 1)[0] + f"/{name}"
    await _on_postgres(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


async def _on_postgres(statement: str) -> None:
    admin = Database(PG_URL)
    async with admin.engine.connect() as connection:
        connection = await connection.execution_options(isolation_level="AUTOCOMMIT")
        await connection.execute(text(statement))
    await admin.dispose()


@pytest.fixture
async def loom(tmp_path: Path, database_url: str | None) -> AsyncIterator[Loom]:
    """A fresh `loom serve` on a free port, allowed to reach the stand-in on loopback."""
    stand_in = await _stand_in_for_public_api()
    token = f"loom_{secrets.token_hex(16)}"
    port = free_port()
    env = {
        **base_env(),
        "LOOM_DATA_DIR": str(tmp_path),
        "LOOM_PORT": str(port),
        "LOOM_ADMIN_TOKEN": token,
        # JSON: the form every version of the setting accepts.
        "LOOM_HTTP_ALLOWED_NETWORKS": '["127.0.0.0/8"]',
        **({"LOOM_DATABASE_URL": database_url} if database_url else {}),
    }
    log = tmp_path / "serve.log"
    with log.open("wb") as handle:
        process = await asyncio.create_subprocess_exec(
            str(LOOM), "serve", env=env, cwd=tmp_path, stdout=handle, stderr=handle
        )
    base = f"http://127.0.0.1:{port}"
    try:
        await _until_ready(base, process, log)
        yield Loom(base, token, _address(stand_in))
    finally:
        if process.returncode is None:
            process.send_signal(signal.SIGINT)
            try:
                await asyncio.wait_for(process.wait(), 20)
            except TimeoutError:
                process.kill()
                await process.wait()
        await stand_in.cleanup()


async def _until_ready(base: str, process: asyncio.subprocess.Process, log: Path) -> None:
    deadline = time.monotonic() + READY_WITHIN_S
    async with httpx.AsyncClient() as client:
        while time.monotonic() < deadline:
            if process.returncode is not None:
                raise AssertionError(f"loom serve exited:\n{_text(log)}")
            try:
                if (await client.get(f"{base}/readyz", timeout=1)).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            await asyncio.sleep(0.1)
    raise AssertionError(f"loom serve not ready:\n{_text(log)}")


def _text(log: Path) -> str:
    return log.read_text(errors="replace")


@pytest.mark.timeout(300)
async def test_every_example_of_the_api_doc_runs_in_order(loom: Loom, tmp_path: Path) -> None:
    page = read_page(API_DOC)
    source = API_DOC.read_text(encoding="utf-8")
    rewrites = {
        DOCUMENTED_HOST: loom.base.removeprefix("http://"),
        TOKEN_PLACEHOLDER: loom.token,
        PUBLIC_API: loom.public_api,
    }
    for documented in rewrites:
        assert documented in source, f"the page no longer uses {documented}: update the test"
    runner = Runner(f"{loom.base}/graphql", loom.token, rewrites, base_env())
    for step in page.steps:
        try:
            await runner.run(step)
        except AssertionError as exc:
            log = _text(tmp_path / "serve.log")
            raise AssertionError(
                f"docs/api.md: {exc}\n--- server log (end) ---\n{log[-4000:]}"
            ) from exc
    kinds = {step.kind for step in page.steps}
    assert kinds == {"graphql", "sh", "python"}, kinds
