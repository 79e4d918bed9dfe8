"""/readyz when the database is unreachable (Redis cases: tests/api/test_health.py)."""

from __future__ import annotations

import httpx

from server.app import create_app
from server.settings import Settings
from storage.db import Database


async def _get(app, path: str) -> httpx.Response:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://loom.test") as client:
        return await client.get(path)


async def test_readyz_fails_when_the_database_is_unreachable() -> None:
    database = Database("postgresql+asyncpg://nobody@127.0.0.1:1/none")
    app = create_app(Settings(_env_file=None), database=database)
    try:
        response = await _get(app, "/readyz")
    finally:
        await database.dispose()
    assert response.status_code == 503
    assert response.json()["checks"] == {"database": "unreachable"}
    assert (await _get(app, "/healthz")).status_code == 200
