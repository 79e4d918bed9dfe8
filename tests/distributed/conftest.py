"""Distributed mode with real processes: needs PostgreSQL and Redis (CI requires both)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from redis.asyncio import Redis

from tests.conftest import REDIS_URL, _postgres_reachable, services_required
from tests.distributed.cluster import Cluster, create_cluster, destroy_cluster


async def _require_services() -> None:
    problems = []
    if (problem := await _postgres_reachable()) is not None:
        problems.append(f"PostgreSQL unreachable ({problem})")
    client = Redis.from_url(REDIS_URL, socket_connect_timeout=2)
    try:
        await client.ping()
    except Exception as exc:
        problems.append(f"Redis unreachable ({exc})")
    finally:
        await client.aclose()
    if problems:
        message = "; ".join(problems)
        if services_required():
            pytest.fail(message + "; CI requires them")
        pytest.skip(message)


@pytest.fixture
async def cluster(tmp_path: Path) -> AsyncIterator[Cluster]:
    """A fresh database, the API process started; tests start their workers."""
    await _require_services()
    created = await create_cluster(tmp_path)
    try:
        await created.start_api()
        yield created
    finally:
        await destroy_cluster(created)
