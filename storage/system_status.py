"""What an operator sees of the whole system (`systemStatus`, the sampled metrics): the
processes alive by their heartbeats, the executions queued, running and waiting, and the
size of the database.

Every API and worker process runs a `Heartbeats` task: it writes the process's row every
`interval_s` and removes the rows of processes not seen for `forget_s` (they died without
removing their own). A process is shown alive while its row is younger than
`ALIVE_INTERVALS` intervals, so one missed write (a busy database) does not flap it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import delete, func, select, text, update
from sqlalchemy.exc import DBAPIError
from sqlmodel import col
from sqlmodel.ext.asyncio.session import AsyncSession

from engine.states import ExecutionStatus
from storage.db import Database, run_core
from storage.models import VERSION_LENGTH, Execution, ProcessHeartbeat
from storage.types import utcnow

logger = logging.getLogger("loom.status")

ALIVE_INTERVALS = 3
# Processes not alive listed at most (the newest); a crash-looping deployment can leave a
# day's worth of them (`LOOM_HEARTBEAT_FORGET_S`), the rest are only counted.
MAX_DEAD_LISTED = 50
# PostgreSQL's size query reads the catalog and takes a lock on every table: one held
# exclusively (a migration, a VACUUM FULL) must not hang the status.
SIZE_TIMEOUT_S = 2.0
_COUNTED = (
    ExecutionStatus.QUEUED.value,
    ExecutionStatus.RUNNING.value,
    ExecutionStatus.WAITING.value,
)


_EXECUTIONS = Execution.__table__  # type: ignore[attr-defined]
COUNTS_BY_STATUS = (
    select(_EXECUTIONS.c.status, func.count())
    .where(_EXECUTIONS.c.status.in_(_COUNTED))
    .group_by(_EXECUTIONS.c.status)
)
OLDEST_QUEUED = select(func.min(_EXECUTIONS.c.created_at)).where(
    _EXECUTIONS.c.status == ExecutionStatus.QUEUED.value
)


@dataclass(frozen=True, slots=True)
class ExecutionCounts:
    """Executions not ended, by status; when the oldest QUEUED one was created."""

    queued: int
    running: int
    waiting: int
    oldest_queued_at: datetime | None


@dataclass(frozen=True, slots=True)
class ProcessesSeen:
    """The processes listed, and how many dead ones were left out (`MAX_DEAD_LISTED`)."""

    listed: list[ProcessSeen]
    dead_not_listed: int


@dataclass(frozen=True, slots=True)
class ProcessSeen:
    """A process's last heartbeat, and whether it is recent enough to count as alive."""

    id: str
    role: str
    version: str
    host: str
    pid: int
    started_at: datetime
    last_seen_at: datetime
    alive: bool


async def execution_counts(session: AsyncSession) -> ExecutionCounts:
    """Two queries on the (status, created_at) index: the counts by status, and the oldest
    QUEUED (one index entry); neither reads an execution's row, nor the ended ones."""
    rows = await run_core(session, COUNTS_BY_STATUS)
    found: dict[str, int] = {row[0]: row[1] for row in rows.all()}
    oldest: Any = (await run_core(session, OLDEST_QUEUED)).scalar()
    if isinstance(oldest, str):  # SQLite hands an aggregate back untyped
        oldest = datetime.fromisoformat(oldest)
    if oldest is not None and oldest.tzinfo is None:
        oldest = oldest.replace(tzinfo=utcnow().tzinfo)
    return ExecutionCounts(
        queued=found.get(ExecutionStatus.QUEUED.value, 0),
        running=found.get(ExecutionStatus.RUNNING.value, 0),
        waiting=found.get(ExecutionStatus.WAITING.value, 0),
        oldest_queued_at=oldest,
    )


async def database_size_bytes(database: Database, session: AsyncSession) -> int | None:
    """SQLite: the file's pages (free ones included) and its write-ahead log; PostgreSQL:
    the tables of Loom's schema with their indexes and TOAST (other schemas of the database
    are not Loom's), or None if that is not read within `SIZE_TIMEOUT_S`."""
    if database.is_sqlite:
        page_count = (await run_core(session, text("PRAGMA page_count"))).scalar_one()
        page_size = (await run_core(session, text("PRAGMA page_size"))).scalar_one()
        # Pages not checkpointed yet are in the write-ahead log, a file of its own.
        wal = 0
        name = database.url.database
        if name and name != ":memory:":
            with contextlib.suppress(OSError):
                wal = await asyncio.to_thread(os.path.getsize, f"{name}-wal")
        return int(page_count) * int(page_size) + wal
    # In a transaction of its own: the timeout (SET LOCAL) ends with it, and so does the
    # aborted state a timeout leaves; the caller's session goes on.
    async with database.engine.connect() as connection:
        timeout_ms = int(SIZE_TIMEOUT_S * 1000)
        await connection.exec_driver_sql(f"SET LOCAL statement_timeout = {timeout_ms}")
        try:
            size = await connection.execute(_PG_SIZE)
        except DBAPIError as exc:
            if "statement timeout" not in str(exc.orig):
                raise
            logger.warning("the database's size was not read within %g s", SIZE_TIMEOUT_S)
            return None
        return int(size.scalar_one())


_PG_SIZE = text(
    "SELECT coalesce(sum(pg_total_relation_size(c.oid)), 0) FROM pg_class c "
    "JOIN pg_namespace n ON n.oid = c.relnamespace "
    "WHERE n.nspname = current_schema() AND c.relkind IN ('r', 'm')"
)


async def database_now(database: Database, session: AsyncSession) -> datetime:
    """The time by the database's clock, the one every process shares (PostgreSQL); a
    SQLite database is used from one machine, whose clock this is."""
    if database.is_sqlite:
        return utcnow()
    value = (await run_core(session, text("SELECT statement_timestamp()"))).scalar_one()
    assert isinstance(value, datetime)
    return value.astimezone(UTC)


async def processes(database: Database, session: AsyncSession) -> ProcessesSeen:
    """Every process alive, API processes first, then by start; then the `MAX_DEAD_LISTED`
    dead ones last seen most recently, newest first (the others counted). Alive: its row
    was written within `ALIVE_INTERVALS` of its own interval, by the database's clock."""
    now = await database_now(database, session)
    # All rows: their number is bounded by `forget_s`, each is small, and whether one is
    # alive depends on its own interval.
    rows = await session.exec(
        select(ProcessHeartbeat).order_by(
            col(ProcessHeartbeat.role), col(ProcessHeartbeat.started_at)
        )  # type: ignore[call-overload]
    )
    seen = [
        ProcessSeen(
            id=row.id,
            role=row.role,
            version=row.version,
            host=row.host,
            pid=row.pid,
            started_at=row.started_at,
            last_seen_at=row.last_seen_at,
            alive=row.last_seen_at >= now - timedelta(seconds=row.interval_s * ALIVE_INTERVALS),
        )
        for (row,) in rows.all()
    ]
    alive = [process for process in seen if process.alive]
    dead = sorted(
        (process for process in seen if not process.alive),
        key=lambda process: process.last_seen_at,
        reverse=True,
    )
    return ProcessesSeen(alive + dead[:MAX_DEAD_LISTED], max(0, len(dead) - MAX_DEAD_LISTED))


class Heartbeats:
    """Writes this process's heartbeat row every `interval_s` (see the module docstring)."""

    def __init__(
        self, database: Database, role: str, version: str, interval_s: float, forget_s: float
    ) -> None:
        self.database = database
        self.id = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.role = role
        self.version = version
        self.interval_s = interval_s
        self.forget_s = forget_s
        self.beats = 0

    async def beat(self) -> None:
        """Write this process's row; remove those of processes gone for `forget_s`. Both by
        the database's clock (hosts' clocks may differ)."""
        async with self.database.transaction() as session:
            now = await database_now(self.database, session)
            written = await session.exec(
                update(ProcessHeartbeat)
                .where(col(ProcessHeartbeat.id) == self.id)
                .values(last_seen_at=now, interval_s=self.interval_s)
            )
            if written.rowcount == 0:
                session.add(
                    ProcessHeartbeat(
                        id=self.id,
                        role=self.role,
                        version=self.version[:VERSION_LENGTH],
                        host=socket.gethostname()[:255],
                        pid=os.getpid(),
                        started_at=now,
                        last_seen_at=now,
                        interval_s=self.interval_s,
                    )
                )
            await session.exec(
                delete(ProcessHeartbeat).where(
                    col(ProcessHeartbeat.last_seen_at) < now - timedelta(seconds=self.forget_s)
                )
            )
        self.beats += 1

    async def run(self) -> None:
        """Beat every `interval_s` (the first after one interval) until cancelled; then
        remove this process's row (it stopped cleanly)."""
        try:
            while True:
                await asyncio.sleep(self.interval_s)
                await self.try_beat()
        finally:
            # Not for longer than a beat: a stop must not hang on a database that is away
            # (the row is then forgotten by the others after `forget_s`).
            with contextlib.suppress(Exception):
                async with asyncio.timeout(self.interval_s):
                    await self._remove()

    async def try_beat(self) -> bool:
        """`beat` within one interval, a failure or a timeout logged (the database may be
        away for a while, or not answer at all)."""
        try:
            async with asyncio.timeout(self.interval_s):
                await self.beat()
        except Exception:
            logger.warning("writing this process's heartbeat failed", exc_info=True)
            return False
        return True

    async def _remove(self) -> None:
        async with self.database.transaction() as session:
            await session.exec(delete(ProcessHeartbeat).where(col(ProcessHeartbeat.id) == self.id))
