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
from sqlmodel import col
from sqlmodel.ext.asyncio.session import AsyncSession

from engine.states import ExecutionStatus
from storage.db import Database, run_core
from storage.models import VERSION_LENGTH, Execution, ProcessHeartbeat
from storage.types import utcnow

logger = logging.getLogger("loom.status")

ALIVE_INTERVALS = 3
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


async def database_size_bytes(database: Database, session: AsyncSession) -> int:
    """SQLite: the file's pages (free ones included) and its write-ahead log; PostgreSQL:
    the tables of Loom's schema with their indexes and TOAST (other schemas of the database
    are not Loom's)."""
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
    size = await run_core(
        session,
        text(
            "SELECT coalesce(sum(pg_total_relation_size(c.oid)), 0) FROM pg_class c "
            "JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = current_schema() AND c.relkind IN ('r', 'm')"
        ),
    )
    return int(size.scalar_one())


async def database_now(database: Database, session: AsyncSession) -> datetime:
    """The time by the database's clock, the one every process shares (PostgreSQL); a
    SQLite database is used from one machine, whose clock this is."""
    if database.is_sqlite:
        return utcnow()
    value = (await run_core(session, text("SELECT statement_timestamp()"))).scalar_one()
    assert isinstance(value, datetime)
    return value.astimezone(UTC)


async def processes(database: Database, session: AsyncSession) -> list[ProcessSeen]:
    """Every process with a heartbeat row, API processes first, then by start. Alive: its
    row was written within `ALIVE_INTERVALS` of its own interval, by the database's clock."""
    now = await database_now(database, session)
    rows = await session.exec(
        select(ProcessHeartbeat).order_by(
            col(ProcessHeartbeat.role), col(ProcessHeartbeat.started_at)
        )  # type: ignore[call-overload]
    )
    return [
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
