"""Liveness and readiness."""

from __future__ import annotations

import httpx
import pytest

from server.app import create_app
from server.running import DistributedModeError
from server.settings import Settings
from storage.db import Database
from tests.conftest import REDIS_URL


async def _get(app, path):
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://loom.test") as client:
        return await client.get(path)


async def test_healthz(http):
    response = await http.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


async def test_readyz_checks_the_database(http):
    response = await http.get("/readyz")
    assert response.status_code == 200
    assert response.json() == {"status": "ready", "checks": {"database": "ok"}}


async def test_health_needs_no_token_and_reveals_nothing(http):
    for path in ("/healthz", "/readyz"):
        response = await http.get(path)
        assert response.status_code == 200
        assert "postgres" not in response.text and "sqlite" not in response.text


async def test_readyz_is_503_when_the_database_is_unreachable(registry, caplog):
    unreachable = Database("postgresql+asyncpg://postgres@127.0.0.1:1/nothing")
    try:
        app = create_app(Settings(_env_file=None), database=unreachable, registry=registry)
        response = await _get(app, "/readyz")
        health = await _get(app, "/healthz")
    finally:
        await unreachable.dispose()
    assert response.status_code == 503
    assert response.json() == {"status": "unavailable", "checks": {"database": "unreachable"}}
    assert health.status_code == 200  # the process itself is fine
    assert "database unreachable" in caplog.text


@pytest.mark.redis
async def test_readyz_checks_redis_when_configured(database, registry):
    settings = Settings(_env_file=None, redis_url=REDIS_URL, secret_key="shared")
    response = await _get(create_app(settings, database=database, registry=registry), "/readyz")
    assert response.status_code == 200, response.text
    assert response.json()["checks"] == {"database": "ok", "redis": "ok"}


async def test_readyz_is_503_when_redis_is_unreachable(database, registry):
    settings = Settings(_env_file=None, redis_url="redis://127.0.0.1:1/0", secret_key="shared")
    response = await _get(create_app(settings, database=database, registry=registry), "/readyz")
    assert response.status_code == 503
    assert response.json()["checks"] == {"database": "ok", "redis": "unreachable"}


def test_distributed_mode_refuses_to_start_without_a_secret_key(database, registry):
    settings = Settings(_env_file=None, redis_url=REDIS_URL)
    with pytest.raises(DistributedModeError, match="LOOM_SECRET_KEY"):
        create_app(settings, database=database, registry=registry)


async def test_unknown_paths_and_methods(http):
    assert (await http.get("/nope")).status_code == 404
    assert (await http.put("/graphql", content=b"{}")).status_code == 405
