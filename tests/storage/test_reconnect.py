"""Pooled PostgreSQL connections broken under the pool (a database restart, a proxy that
dropped them): without a pre-ping only the statement that meets one fails, and the pool
reconnects for the next; with it, nothing fails."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from storage.db import Database
from tests.conftest import PG_URL, require_postgres


async def _backend_pid(database: Database) -> int:
    async with database.engine.connect() as connection:
        return int((await connection.execute(text("SELECT pg_backend_pid()"))).scalar_one())


async def _kill(pid: int) -> None:
    admin = Database(PG_URL)
    try:
        async with admin.engine.connect() as connection:
            await connection.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
    finally:
        await admin.dispose()


@pytest.fixture
async def pooled(request: pytest.FixtureRequest) -> AsyncIterator[Database]:
    await require_postgres()
    database = Database(PG_URL, pre_ping=request.param)
    yield database
    await database.dispose()


@pytest.mark.parametrize("pooled", [False], indirect=True)
@pytest.mark.postgres
async def test_without_pre_ping_one_statement_fails_then_the_pool_reconnects(
    pooled: Database,
) -> None:
    await _kill(await _backend_pid(pooled))
    with pytest.raises(DBAPIError) as failure:
        await _backend_pid(pooled)
    assert failure.value.connection_invalidated
    # The failure invalidated the pool: the next statement runs on a new connection.
    assert await _backend_pid(pooled) > 0


@pytest.mark.parametrize("pooled", [True], indirect=True)
@pytest.mark.postgres
async def test_with_pre_ping_nothing_fails(pooled: Database) -> None:
    await _kill(await _backend_pid(pooled))
    assert await _backend_pid(pooled) > 0
