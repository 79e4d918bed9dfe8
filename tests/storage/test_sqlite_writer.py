"""SQLite: the transactions of a process take turns (one writer), and a transaction nested
in the same task does not wait for itself. The same tests run on PostgreSQL, where they
must simply complete."""

from __future__ import annotations

import asyncio
import sqlite3

from sqlalchemy import text

from storage.db import Database
from tests.polling import until


async def test_transactions_of_one_process_take_turns_on_sqlite(database: Database) -> None:
    inside = 0
    most = 0

    async def write(index: int) -> None:
        nonlocal inside, most
        async with database.transaction() as session:
            inside += 1
            most = max(most, inside)
            await session.exec(text("UPDATE lock_anchor SET touched = touched + 1"))  # type: ignore[call-overload]
            await asyncio.sleep(0.001)  # inside the transaction, the others could enter now
            inside -= 1

    async with asyncio.timeout(10):
        await asyncio.gather(*(write(index) for index in range(20)))
    # SQLite: one at a time. PostgreSQL has many writers; these rows are not shared.
    assert most == 1 if database.is_sqlite else most >= 1


async def test_a_nested_transaction_in_the_same_task_goes_on(database: Database) -> None:
    async with asyncio.timeout(5), database.transaction(), database.transaction() as inner:
        assert (await inner.exec(text("SELECT 1"))).one()[0] == 1  # type: ignore[call-overload]


async def test_a_writer_of_another_process_is_waited_for_with_the_loop_running(
    database: Database,
) -> None:
    """Another process holds SQLite's write lock for a while: a write of this one waits for
    it (SQLite calls are made inline, so waiting must not stop the event loop)."""
    if not database.is_sqlite:
        return  # PostgreSQL writers wait in the server, never in this process
    path = database.url.database
    assert path is not None
    other = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    other.execute("BEGIN IMMEDIATE")
    other.execute("UPDATE lock_anchor SET touched = touched + 1")
    ticks = 0

    async def tick() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await asyncio.sleep(0.01)

    async def release_once_the_loop_ran() -> None:
        # The loop only runs once the write below waits (SQLite calls are inline): ticks
        # counted here are counted while it waits.
        await until(lambda: ticks >= 10, within_s=4)
        other.execute("COMMIT")

    ticker = asyncio.create_task(tick())
    releaser = asyncio.create_task(release_once_the_loop_ran())
    try:
        async with asyncio.timeout(5), database.transaction() as session:
            await session.exec(text("UPDATE lock_anchor SET touched = touched + 1"))  # type: ignore[call-overload]
    finally:
        ticker.cancel()
        await releaser
        other.close()
    assert ticks >= 10  # the loop ran while the write waited


async def test_checkpoints_run_on_a_thread_of_their_own(tmp_path) -> None:
    """The write-ahead log is copied into the database file by the `Checkpointer` thread,
    below the threshold at which a commit on the event loop would do it."""
    path = tmp_path / "loom.db"
    database = Database(f"sqlite+aiosqlite:///{path}")
    try:
        async with database.transaction() as session:
            threshold = (await session.exec(text("PRAGMA wal_autocheckpoint"))).one()[0]  # type: ignore[call-overload]
            await session.exec(text("CREATE TABLE filler (data BLOB)"))  # type: ignore[call-overload]
        before = path.stat().st_size
        # About 500 pages of 4 KiB: half the threshold.
        async with database.transaction() as session:
            for _ in range(50):
                await session.exec(
                    text("INSERT INTO filler VALUES (randomblob(40000))")  # type: ignore[call-overload]
                )
        assert threshold == 1000
        await until(lambda: path.stat().st_size > before + 1_500_000, within_s=5)
    finally:
        await database.dispose()
    assert database._checkpointer is None  # stopped with the database
