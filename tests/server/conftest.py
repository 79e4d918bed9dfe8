from __future__ import annotations

import pytest
from redis.asyncio import Redis

from tests.conftest import REDIS_URL, services_required


@pytest.fixture
async def redis_url() -> str:
    """The test Redis; unreachable means skip, or fail in CI."""
    client = Redis.from_url(REDIS_URL, socket_connect_timeout=2)
    try:
        await client.ping()
    except Exception as exc:
        message = f"Redis at {REDIS_URL} unreachable ({exc})"
        if services_required():
            pytest.fail(message + "; CI requires it")
        pytest.skip(message)
    finally:
        await client.aclose()
    return REDIS_URL
