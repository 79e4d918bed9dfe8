"""Pruning (issue 17, "Retention"): by age and by count, server-wide and per workflow,
failed executions kept longer; never an unfinished execution nor one an unfinished one
needs; in batches, recorded, one process at a time; SQLite gets its space back."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import func, select, text
from sqlmodel import SQLModel

from storage import retention
from storage.db import Database
from storage.retention import _LOCK_KEY, _LOCK_NAME, PruneRecord, RetentionPolicy, last_prune, prune
from storage.types import utcnow
from tests.storage.execution_rows import (
    PER_EXECUTION,
    insert_executions,
    make_workflow,
)

TABLES = tuple(PER_EXECUTION)


async def counts(database: Database) -> dict[str, int]:
    async with database.engine.connect() as connection:
        return {
            name: (
                await connection.execute(
                    select(func.count()).select_from(SQLModel.metadata.tables[name])
                )
            ).scalar_one()
            for name in TABLES
        }


async def statuses(database: Database, ids: list[str]) -> set[str]:
    table = SQLModel.metadata.tables["executions"]
    async with database.engine.connect() as connection:
        query = select(table.c.id).where(table.c.id.in_(ids))
        return set((await connection.execute(query)).scalars())


def times(count: int) -> dict[str, int]:
    return {name: per * count for name, per in PER_EXECUTION.items()}


@pytest.mark.timeout(600)  # 20,000 executions inserted, then pruned, on a shared machine
async def test_twenty_thousand_executions_are_pruned_to_a_thousand(database: Database) -> None:
    owner = await make_workflow(database)
    # The oldest of all: still running, and one queued.
    unfinished = await insert_executions(
        database, owner, 1, status="RUNNING", step=timedelta(days=30)
    )
    unfinished += await insert_executions(
        database, owner, 1, status="QUEUED", step=timedelta(days=29)
    )
    ended = await insert_executions(database, owner, 20_000)
    assert await counts(database) == times(20_002)
    heard: list[dict[str, int]] = []
    retention.PRUNED_LISTENERS.append(heard.append)
    try:
        # Batches of 2,000, not the default 50, to keep the test's time down on a shared
        # machine: the batching itself is the same (several batches here too).
        record = await prune(database, RetentionPolicy(max_count=1000, batch_size=2000))
    finally:
        retention.PRUNED_LISTENERS.remove(heard.append)
    assert record is not None
    deleted = times(20_000 - 1000)  # the two unfinished are older, and kept
    assert record.executions_deleted == deleted["executions"]
    assert record.rows_deleted == deleted
    assert heard == [deleted]
    assert await counts(database) == times(1002)
    assert await statuses(database, unfinished) == set(unfinished)
    assert await statuses(database, ended[-1000:]) == set(ended[-1000:])
    async with database.session() as session:
        assert await last_prune(session) == record
    assert record.started_at <= record.finished_at


async def test_nothing_to_prune_is_recorded_too(database: Database) -> None:
    async with database.session() as session:
        assert await last_prune(session) is None
    record = await prune(database, RetentionPolicy(max_age_hours=1))
    assert record is not None and record.executions_deleted == 0
    assert record.rows_deleted == dict.fromkeys(TABLES, 0)
    async with database.session() as session:
        assert await last_prune(session) == record


async def test_by_age_and_never_what_an_unfinished_execution_needs(database: Database) -> None:
    owner = await make_workflow(database)
    old = utcnow() - timedelta(days=3)
    (retried, reused, waited_for, free_child, plain) = await insert_executions(
        database, owner, 5, oldest=old
    )
    # A retry still running, a run to a node reusing outputs, a caller still waiting.
    await insert_executions(database, owner, 1, status="RUNNING", retry_of=retried)
    await insert_executions(database, owner, 1, status="QUEUED", reuse_from=reused)
    (caller,) = await insert_executions(database, owner, 1, status="WAITING", oldest=old)
    await _set_parent(database, waited_for, caller, waits=True)
    await _set_parent(database, free_child, caller, waits=False)
    young = await insert_executions(database, owner, 3)
    record = await prune(database, RetentionPolicy(max_age_hours=24))
    assert record is not None and record.executions_deleted == 2
    left = await statuses(database, [retried, reused, waited_for, free_child, plain, *young])
    assert left == {retried, reused, waited_for, *young}


async def _set_parent(database: Database, child: str, parent: str, *, waits: bool) -> None:
    async with database.transaction() as session:
        await session.exec(  # type: ignore[call-overload]
            text(
                "UPDATE executions SET parent_execution_id = :parent, parent_waits = :waits "
                "WHERE id = :child"
            ).bindparams(parent=parent, waits=waits, child=child)
        )


async def test_workflow_settings_and_failed_executions_kept_longer(database: Database) -> None:
    few = await make_workflow(database, {"executionsMaxCount": 2})
    lasting = await make_workflow(database, {"executionsMaxAgeHours": 24 * 365})
    usual = await make_workflow(database)
    week_ago = utcnow() - timedelta(days=7)
    few_ids = await insert_executions(database, few, 5)
    lasting_ids = await insert_executions(database, lasting, 2, oldest=week_ago)
    usual_ids = await insert_executions(database, usual, 2, oldest=week_ago)
    failed_ids = await insert_executions(database, usual, 2, oldest=week_ago, status="FAILED")
    policy = RetentionPolicy(max_age_hours=48, failed_max_age_hours=24 * 30)
    record = await prune(database, policy)
    assert record is not None
    kept = await statuses(database, few_ids + lasting_ids + usual_ids + failed_ids)
    assert kept == {*few_ids[-2:], *lasting_ids, *failed_ids}


async def test_a_dry_run_deletes_nothing_and_says_what_it_would(database: Database) -> None:
    owner = await make_workflow(database)
    await insert_executions(database, owner, 30)
    before = await counts(database)
    record = await prune(database, RetentionPolicy(max_count=10), dry_run=True)
    assert record is not None and record.rows_deleted == times(20)
    assert await counts(database) == before
    async with database.session() as session:
        assert await last_prune(session) is None


async def test_one_process_prunes_at_a_time(database: Database) -> None:
    owner = await make_workflow(database)
    await insert_executions(database, owner, 5)
    policy = RetentionPolicy(max_count=1)
    if database.is_sqlite:
        # One process: a second prune of the same file while one runs does nothing.
        first, second = await asyncio.gather(prune(database, policy), prune(database, policy))
        assert sorted([first is None, second is None]) == [False, True]
        return
    lock = text(f"SELECT pg_try_advisory_lock({_LOCK_KEY})").bindparams(name=_LOCK_NAME)
    unlock = text(f"SELECT pg_advisory_unlock({_LOCK_KEY})").bindparams(name=_LOCK_NAME)
    async with database.engine.connect() as holder:
        assert await holder.scalar(lock)
        assert await prune(database, policy) is None  # another process prunes
        await holder.execute(unlock)
        await holder.commit()
    # A process of another installation, in another schema of the same database, holds its
    # own lock: this one prunes all the same.
    public = Database(database.url.render_as_string(hide_password=False))
    try:
        async with public.engine.connect() as other:
            assert await other.scalar(lock)
            done = await prune(database, policy)
            await other.execute(unlock)
            await other.commit()
    finally:
        await public.dispose()
    assert done is not None and done.executions_deleted == 4


async def test_sqlite_gives_the_space_back(tmp_path: Any) -> None:
    # SQLite only (a file of its own): PostgreSQL's autovacuum reuses the space instead.
    path = tmp_path / "space.db"
    own = Database(f"sqlite+aiosqlite:///{path}")
    try:
        from storage.migrate import upgrade

        await upgrade(own)
        owner = await make_workflow(own)
        await insert_executions(own, owner, 3000)
        async with own.engine.connect() as connection:
            await connection.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
        full = path.stat().st_size
        record = await prune(own, RetentionPolicy(max_count=100))
        assert record is not None and record.executions_deleted == 2900
        async with own.engine.connect() as connection:
            assert (await connection.exec_driver_sql("PRAGMA freelist_count")).scalar_one() == 0
            await connection.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
        assert path.stat().st_size < full / 3, (full, path.stat().st_size)
    finally:
        await own.dispose()


def test_a_prune_record_is_frozen() -> None:
    record = PruneRecord(utcnow(), utcnow(), 0, {})
    with pytest.raises(AttributeError):
        record.executions_deleted = 1  # type: ignore[misc]


async def test_a_retry_created_after_the_selection_keeps_its_source(database: Database) -> None:
    owner = await make_workflow(database)
    (source,) = await insert_executions(database, owner, 1, oldest=utcnow() - timedelta(days=3))
    # Selected for pruning; then a retry of it is created before the batch is deleted.
    await insert_executions(database, owner, 1, status="QUEUED", retry_of=source)
    tally = retention._Tally()
    sqlite_file = retention._sqlite_file(database)
    if sqlite_file is not None:
        file = retention._SqliteFile(database, sqlite_file)
        try:
            await file.delete([source], tally)
        finally:
            await file.close()
        assert sum(tally.rows.values()) == 0
    else:
        async with database.transaction() as session:
            await retention._delete_batch(session, [source], tally)
        assert sum(tally.rows.values()) == 0
    assert await statuses(database, [source]) == {source}
    retry_of = SQLModel.metadata.tables["executions"].c.retry_of
    async with database.engine.connect() as connection:
        assert (await connection.execute(select(retry_of).where(retry_of.is_not(None)))).all()


async def test_a_whole_float_count_works_and_a_bad_setting_stops_only_its_workflow(
    database: Database,
) -> None:
    # Stored settings that JSON Schema let through (5.0) or that predate the check ("x").
    floating = await make_workflow(database, {"executionsMaxCount": 2.0})
    broken = await make_workflow(database, {"executionsMaxAgeHours": "x"})
    usual = await make_workflow(database)
    week_ago = utcnow() - timedelta(days=7)
    floating_ids = await insert_executions(database, floating, 4)
    broken_ids = await insert_executions(database, broken, 2, oldest=week_ago)
    usual_ids = await insert_executions(database, usual, 2, oldest=week_ago)
    record = await prune(database, RetentionPolicy(max_age_hours=48))
    assert record is not None and record.executions_deleted == 4
    kept = await statuses(database, floating_ids + broken_ids + usual_ids)
    assert kept == {*floating_ids[-2:], *broken_ids}


async def test_the_count_covers_ended_runs_of_workflows_without_settings_of_their_own(
    database: Database,
) -> None:
    usual = await make_workflow(database)
    own = await make_workflow(database, {"executionsMaxAgeHours": 24 * 365})
    day_ago = utcnow() - timedelta(days=1)
    usual_ids = await insert_executions(database, usual, 2, oldest=day_ago)
    # Newer: another workflow's runs (its own settings) and queued runs of this one.
    own_ids = await insert_executions(database, own, 3)
    queued = await insert_executions(database, usual, 3, status="QUEUED")
    record = await prune(database, RetentionPolicy(max_count=2))
    assert record is not None and record.executions_deleted == 0
    assert await statuses(database, usual_ids + own_ids + queued) == {
        *usual_ids,
        *own_ids,
        *queued,
    }


async def test_cancelled_executions_are_kept_as_long_as_failed_ones(database: Database) -> None:
    owner = await make_workflow(database)
    week_ago = utcnow() - timedelta(days=7)
    cancelled = await insert_executions(database, owner, 2, oldest=week_ago, status="CANCELLED")
    done = await insert_executions(database, owner, 2, oldest=week_ago)
    policy = RetentionPolicy(max_age_hours=48, failed_max_age_hours=24 * 30)
    record = await prune(database, policy)
    assert record is not None and record.executions_deleted == 2
    assert await statuses(database, cancelled + done) == set(cancelled)


async def test_schedule_ticks_older_than_a_day_are_pruned(database: Database) -> None:
    owner = await make_workflow(database)
    ticks = SQLModel.metadata.tables["schedule_ticks"]
    now = utcnow()
    instants = [now - timedelta(days=3), now - timedelta(hours=2)]
    async with database.transaction() as session:
        connection = await session.connection()
        await connection.execute(
            ticks.insert(),
            [
                {"workflow_id": owner.workflow_id, "node_id": "cron", "scheduled_at": at}
                for at in instants
            ],
        )
    assert await prune(database, RetentionPolicy()) is not None
    async with database.engine.connect() as connection:
        left = (await connection.execute(select(ticks.c.scheduled_at))).scalars().all()
    assert [at.replace(microsecond=0) for at in left] == [instants[1].replace(microsecond=0)]


async def test_sqlite_deletes_in_short_transactions_each_in_the_process_turn_to_write(
    database: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    if retention._sqlite_file(database) is None:
        pytest.skip("SQLite files: PostgreSQL's writers do not take turns")
    owner = await make_workflow(database)
    await insert_executions(database, owner, 25, oldest=utcnow() - timedelta(days=3))
    take_turn = database.write_turn
    left_after_turn: list[int] = []

    @contextlib.asynccontextmanager
    async def observed() -> AsyncIterator[None]:
        async with take_turn():
            yield
        left_after_turn.append((await counts(database))["executions"])

    monkeypatch.setattr(database, "write_turn", observed)
    record = await prune(database, RetentionPolicy(max_age_hours=1, batch_size=50))
    assert record is not None and record.executions_deleted == 25
    # Ten executions per transaction, each in a turn that the process's writers queue for.
    assert left_after_turn[:3] == [15, 5, 0]


async def test_expired_webhook_idempotency_keys_only_are_pruned_in_batches(
    database: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    keys = SQLModel.metadata.tables["webhook_idempotency_keys"]
    now = utcnow()
    ages = {f"old-{n}": timedelta(hours=30 + n) for n in range(5)}
    ages |= {"young": timedelta(hours=23), "new": timedelta(0)}
    async with database.transaction() as session:
        connection = await session.connection()
        await connection.execute(
            keys.insert(),
            [
                {
                    "workflow_id": "w1",
                    "key": key,
                    "execution_id": f"e-{key}",
                    "created_at": now - age,
                    "status_code": 200,
                    "headers": {"content-type": "application/json"},
                    "body": b"[]",
                }
                for key, age in ages.items()
            ],
        )
    dry = await prune(database, RetentionPolicy(), dry_run=True)
    assert dry is not None and dry.rows_deleted["webhook_idempotency_keys"] == 5
    turns = 0
    take_turn = database.write_turn

    @contextlib.asynccontextmanager
    async def counted() -> AsyncIterator[None]:
        nonlocal turns
        async with take_turn():
            turns += 1
            yield

    monkeypatch.setattr(database, "write_turn", counted)
    # The frequent prune leaves keys alone; a full one deletes the expired, 2 a batch.
    discarded = await prune(database, RetentionPolicy(), only_discarded=True)
    assert discarded is not None and "webhook_idempotency_keys" not in discarded.rows_deleted
    record = await prune(database, RetentionPolicy(batch_size=2))
    assert record is not None and record.rows_deleted["webhook_idempotency_keys"] == 5
    async with database.engine.connect() as connection:
        left = set((await connection.execute(select(keys.c.key))).scalars())
    assert left == {"young", "new"}
    if retention._sqlite_file(database) is not None:
        assert turns >= 3  # SQLite: each batch's delete in the process's turn to write
    # A shorter TTL (LOOM_IDEMPOTENCY_KEY_TTL_HOURS) expires the younger key too.
    record = await prune(database, RetentionPolicy(idempotency_key_ttl_hours=1))
    assert record is not None and record.rows_deleted["webhook_idempotency_keys"] == 1
    async with database.engine.connect() as connection:
        left = set((await connection.execute(select(keys.c.key))).scalars())
    assert left == {"new"}
