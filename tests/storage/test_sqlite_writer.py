"""SQLite: the transactions of a process take turns (one writer), and a transaction nested
in the same task does not wait for itself. The same tests run on PostgreSQL, where they
must simply complete."""

from __future__ import annotations

import asyncio

from sqlalchemy import text

from storage.db import Database


async def test_transactions_of_one_process_take_turns_on_sqlite(database: Database) -> None:
    inside = 0
    most = 0

    async def write(index: int) -> None:
        nonlocal inside, most
        async with database.transaction() as session:
            inside += 1
            most = max(most, inside)
            await session.exec(text("UPDATE lock_anchor SET touched = touched + 1"))  # type: ignore[call-overload]
            await asyncio.sleep(0.001)
            inside -= 1

    async with asyncio.timeout(10):
        await asyncio.gather(*(write(index) for index in range(20)))
    # SQLite: one at a time. PostgreSQL has many writers; these rows are not shared.
    assert most == 1 if database.is_sqlite else most >= 1


async def test_a_nested_transaction_in_the_same_task_goes_on(database: Database) -> None:
    async with asyncio.timeout(5), database.transaction(), database.transaction() as inner:
        assert (await inner.exec(text("SELECT 1"))).one()[0] == 1  # type: ignore[call-overload]
