"""`systemStatus`: processes by their heartbeats, executions not ended, the database's size;
admins only (the refusal for others is in tests/api/test_isolation.py)."""

from __future__ import annotations

import asyncio
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text

from server.settings import Settings
from storage import retention, system_status
from storage.db import Database, run_core
from storage.models import ProcessHeartbeat
from storage.system_status import (
    COUNTS_BY_STATUS,
    OLDEST_QUEUED,
    Heartbeats,
    database_size_bytes,
)
from storage.types import utcnow
from tests.api.test_durable_wait import until
from tests.api.test_executions import create, execute
from tests.conftest import MakeCaller
from tests.factories import edge, node
from tests.polling import until as until_true

STATUS = """{ systemStatus { __typename
  ... on SystemStatus {
    processes { id role version host pid startedAt lastHeartbeatAt alive }
    queueDepth oldestQueuedAgeSeconds runningCount waitingCount databaseSizeBytes
    deadProcessesNotListed
    lastPrune { startedAt finishedAt executionsDeleted rowsDeleted { table rows } }
  }
  ... on ForbiddenError { message } } }"""


@pytest.fixture
def settings() -> Settings:
    # Every wait parks its execution (WAITING); heartbeats every 10 s.
    return Settings(  # type: ignore[call-arg]
        _env_file=None, token_cache_s=0.0, durable_wait_s=0.0, heartbeat_s=10.0
    )


async def status_of(caller: Any) -> dict[str, Any]:
    result = (await caller.gql(STATUS))["systemStatus"]
    assert result["__typename"] == "SystemStatus", result
    return dict(result)


async def test_an_admin_sees_processes_by_their_heartbeats(
    app, make_caller: MakeCaller, database: Database
) -> None:
    admin = await make_caller(admin=True)
    assert (await status_of(admin))["processes"] == []
    this = Heartbeats(database, "api", "1.2.3", interval_s=10.0, forget_s=3600.0)
    await this.beat()
    async with database.transaction() as session:
        for name, age_s in (("silent", 31.0), ("gone", 3601.0)):
            seen = utcnow() - timedelta(seconds=age_s)
            session.add(
                ProcessHeartbeat(
                    id=f"host:1:{name}",
                    role="worker",
                    version="1.2.2",
                    host="host",
                    pid=1,
                    started_at=seen,
                    last_seen_at=seen,
                    interval_s=10.0,
                )
            )
    status = await status_of(admin)
    alive = {process["id"]: process["alive"] for process in status["processes"]}
    assert alive == {this.id: True, "host:1:silent": False, "host:1:gone": False}
    first = status["processes"][0]
    assert (first["role"], first["version"], first["id"]) == ("api", "1.2.3", this.id)
    assert status["lastPrune"] is None
    assert status["databaseSizeBytes"] > 0

    await this.beat()  # removes the rows older than `forget_s`
    ids = [process["id"] for process in (await status_of(admin))["processes"]]
    assert ids == [this.id, "host:1:silent"]
    await this._remove()  # as a clean stop does
    assert [p["id"] for p in (await status_of(admin))["processes"]] == ["host:1:silent"]


async def test_a_database_over_two_gibibytes_is_told_exactly(
    make_caller: MakeCaller, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GraphQL's Int stops at 2^31 - 1: a real database passes that size (the size query
    # itself is tested above; here only what the API does with its answer).
    size = 5 * 2**31 + 7

    async def big(*_: Any) -> int:
        return size

    monkeypatch.setattr(system_status, "database_size_bytes", big)
    admin = await make_caller(admin=True)
    assert (await status_of(admin))["databaseSizeBytes"] == size


async def test_the_app_writes_its_heartbeat_while_it_serves(
    database: Database, settings: Settings, registry: Any, make_caller: MakeCaller
) -> None:
    from server.app import create_app
    from tests.live import serve

    admin = await make_caller(admin=True)
    app = create_app(settings, database=database, registry=registry)
    async with serve(app):

        async def listed() -> list[dict[str, Any]]:
            return list((await status_of(admin))["processes"])

        (process,) = await until_true(listed, what="the app's heartbeat")  # once it started
        assert process["role"] == "api" and process["alive"] is True
    assert (await status_of(admin))["processes"] == []  # it stopped cleanly


async def test_counts_the_executions_queued_and_waiting(app, make_caller: MakeCaller) -> None:
    admin = await make_caller(admin=True)
    before = await status_of(admin)
    assert (before["queueDepth"], before["waitingCount"], before["runningCount"]) == (0, 0, 0)
    assert before["oldestQueuedAgeSeconds"] is None
    workflow_id = await create(
        admin,
        [
            node("start", "Start", "manual_trigger"),
            node("wait", "Wait", "wait", parameters={"amount": 60, "unit": "seconds"}),
        ],
        [edge("start", "wait")],
        settings={"maxConcurrentExecutions": 1},
    )
    first = await execute(admin, workflow_id)
    await until(admin, first["id"], {"WAITING"})
    second = await execute(admin, workflow_id)
    assert second["status"] == "QUEUED"

    async def counted() -> dict[str, Any] | None:
        status = await status_of(admin)
        return status if (status["queueDepth"], status["waitingCount"]) == (1, 1) else None

    status = await until_true(counted, what="one queued and one waiting")
    assert status["runningCount"] == 0
    assert status["oldestQueuedAgeSeconds"] >= 0


async def test_the_sampled_counts_read_the_status_index_only(database: Database) -> None:
    async with database.session() as session:
        for query in (COUNTS_BY_STATUS, OLDEST_QUEUED):
            compiled = str(
                query.compile(dialect=session.bind.dialect, compile_kwargs={"literal_binds": True})
            )
            if database.is_sqlite:
                plan = " ".join(
                    str(row[-1])
                    for row in await run_core(session, text(f"EXPLAIN QUERY PLAN {compiled}"))
                )
                assert "COVERING INDEX ix_executions_status_created" in plan, plan
            else:  # a small table is scanned whatever the indexes: ask for the index
                for scan in ("seqscan", "bitmapscan"):
                    await run_core(session, text(f"SET LOCAL enable_{scan} = off"))
                plan = " ".join(
                    str(row[0]) for row in await run_core(session, text(f"EXPLAIN {compiled}"))
                )
                assert "Index Only Scan using ix_executions_status_created" in plan, plan


async def test_each_process_is_alive_by_its_own_heartbeat_interval(
    app, make_caller: MakeCaller, database: Database
) -> None:
    admin = await make_caller(admin=True)
    async with database.transaction() as session:
        # Both last wrote 100 s ago: alive within 3 of their own intervals.
        for name, interval_s in (("slow", 60.0), ("fast", 10.0)):
            seen = utcnow() - timedelta(seconds=100)
            session.add(
                ProcessHeartbeat(
                    id=f"host:1:{name}",
                    role="worker",
                    version="1.2.3",
                    host="host",
                    pid=1,
                    started_at=seen,
                    last_seen_at=seen,
                    interval_s=interval_s,
                )
            )
    alive = {p["id"]: p["alive"] for p in (await status_of(admin))["processes"]}
    assert alive == {"host:1:slow": True, "host:1:fast": False}


async def test_a_long_version_is_kept_up_to_its_column(database: Database) -> None:
    version = "1.2.3.dev45+g" + "0123456789abcdef" * 4  # a PEP 440 local version, 77 chars
    this = Heartbeats(database, "worker", version, interval_s=10.0, forget_s=3600.0)
    await this.beat()
    async with database.session() as session:
        row = await session.get(ProcessHeartbeat, this.id)
    assert row is not None and row.version == version[:64] and row.interval_s == 10.0


async def test_heartbeats_neither_hang_nor_fail_while_the_database_does_not_answer() -> None:
    accepted: list[asyncio.StreamWriter] = []

    async def silent(_: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        accepted.append(writer)  # accepts the connection, never answers

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    database = Database(f"postgresql+asyncpg://loom@127.0.0.1:{port}/test")
    try:
        this = Heartbeats(database, "worker", "1.2.3", interval_s=0.5, forget_s=3600.0)
        started = time.monotonic()
        assert await this.try_beat() is False
        running = asyncio.create_task(this.run())
        await asyncio.sleep(0)  # it runs its loop
        running.cancel()
        await asyncio.gather(running, return_exceptions=True)  # a stop: its removal gives up
        assert time.monotonic() - started < 10
    finally:
        for writer in accepted:
            writer.close()
        server.close()
        await database.dispose()


async def test_the_last_prune_is_shown(app, make_caller: MakeCaller, database: Database) -> None:
    admin = await make_caller(admin=True)
    assert (await status_of(admin))["lastPrune"] is None
    record = await retention.prune(database, retention.RetentionPolicy(max_age_hours=1))
    assert record is not None
    shown = (await status_of(admin))["lastPrune"]
    assert shown["executionsDeleted"] == record.executions_deleted == 0
    assert {row["table"] for row in shown["rowsDeleted"]} == set(record.rows_deleted)
    assert shown["finishedAt"] is not None


async def test_the_sqlite_size_includes_the_write_ahead_log(database: Database) -> None:
    if not database.is_sqlite or not database.url.database:
        pytest.skip("SQLite files only")
    async with database.session() as session:
        size = await database_size_bytes(database, session)
        pages = (await run_core(session, text("PRAGMA page_count"))).scalar_one() * (
            await run_core(session, text("PRAGMA page_size"))
        ).scalar_one()
    wal = Path(f"{database.url.database}-wal")
    wal_size = await asyncio.to_thread(lambda: wal.stat().st_size if wal.exists() else 0)
    assert size == pages + wal_size


async def test_at_most_fifty_dead_processes_are_listed_newest_first(
    app, make_caller: MakeCaller, database: Database
) -> None:
    admin = await make_caller(admin=True)
    this = Heartbeats(database, "api", "1.2.3", interval_s=10.0, forget_s=3600.0)
    await this.beat()
    now = utcnow()
    async with database.transaction() as session:
        for age in range(55):  # a crash-looping worker: one dead process a minute
            seen = now - timedelta(minutes=age + 1)
            session.add(
                ProcessHeartbeat(
                    id=f"host:{age}:dead",
                    role="worker",
                    version="1.2.3",
                    host="host",
                    pid=age,
                    started_at=seen,
                    last_seen_at=seen,
                    interval_s=10.0,
                )
            )
    status = await status_of(admin)
    ids = [process["id"] for process in status["processes"]]
    assert ids == [this.id] + [f"host:{age}:dead" for age in range(50)]
    assert status["deadProcessesNotListed"] == 5


async def test_a_size_query_that_hangs_leaves_the_size_unknown_not_the_status(
    app, make_caller: MakeCaller, database: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    if database.is_sqlite:
        pytest.skip("PostgreSQL: its size query takes a lock on every table")
    admin = await make_caller(admin=True)
    monkeypatch.setattr(system_status, "SIZE_TIMEOUT_S", 0.3)
    async with database.engine.connect() as holder:
        # A migration holding a table: the size query waits for its lock.
        await holder.exec_driver_sql("LOCK TABLE credentials IN ACCESS EXCLUSIVE MODE")
        started = time.monotonic()
        status = await asyncio.wait_for(status_of(admin), 10)
        assert time.monotonic() - started < 5
        await holder.rollback()
    assert status["databaseSizeBytes"] is None
    assert status["queueDepth"] == 0 and status["lastPrune"] is None
    assert (await status_of(admin))["databaseSizeBytes"] > 0
