"""What the queue needs from the database: admission under per-workflow concurrency limits,
and the executions a sweeper must hand (again) to the queue.

The database is the truth; the queue only carries execution ids. Anything the queue lost
(Redis flushed or down, a process killed between commit and enqueue) is found here again.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import func
from sqlalchemy import select as sa_select
from sqlmodel import col, or_, select, update

from engine.states import ExecutionStatus
from storage.db import Database, run_core
from storage.executions import concurrency_limit_of
from storage.models import Execution, Workflow
from storage.types import utcnow

_QUEUED = ExecutionStatus.QUEUED.value
_RUNNING = ExecutionStatus.RUNNING.value
_WAITING = ExecutionStatus.WAITING.value


@dataclass(frozen=True, slots=True)
class Due:
    """An execution to hand to the queue: its id, the lease generation a job must expect,
    and, for a waiting one, when to run it."""

    execution_id: str
    generation: int
    run_at: datetime | None = None
    # Claimable for a while already: a job for it that some process took and never claimed
    # with (it died in between) must not keep it from running.
    overdue: bool = False
    # RUNNING with an expired lease: the generation of the job its dead holder ran, which
    # arq keeps at the head of its queue (in progress, for its whole timeout) unless removed.
    dead_job_generation: int | None = None


async def admit(database: Database, workflow_id: str) -> list[Due]:
    """Give free slots of the workflow's `maxConcurrentExecutions` to its oldest QUEUED
    executions that wait for one (FIFO); returns those to enqueue now.

    Executions that hold a slot: RUNNING, WAITING, and QUEUED ones already admitted. A
    per-workflow lock makes concurrent admissions (two workers finishing at once) add up.
    """
    async with database.transaction() as session:
        await database.lock(session, f"admit:{workflow_id}")
        settings = (
            await session.exec(select(Workflow.settings).where(col(Workflow.id) == workflow_id))
        ).first()
        if settings is None:
            return []
        limit = concurrency_limit_of(settings)
        waiting_for_slot = (
            select(Execution.id, Execution.lease_generation)
            .where(
                Execution.workflow_id == workflow_id,
                Execution.status == _QUEUED,
                col(Execution.admitted_at).is_(None),
            )
            .order_by(col(Execution.created_at), col(Execution.id))
        )
        if limit is not None:
            active = (
                await session.exec(
                    select(func.count())
                    .select_from(Execution)
                    .where(
                        Execution.workflow_id == workflow_id,
                        or_(
                            col(Execution.status).in_([_RUNNING, _WAITING]),
                            (col(Execution.status) == _QUEUED)
                            & col(Execution.admitted_at).is_not(None),
                        ),
                    )
                )
            ).one()
            free = limit - int(active)
            if free <= 0:
                return []
            waiting_for_slot = waiting_for_slot.limit(free)
        rows = (await session.exec(waiting_for_slot)).all()
        if not rows:
            return []
        await session.exec(
            update(Execution)
            .where(col(Execution.id).in_([row[0] for row in rows]))
            .values(admitted_at=utcnow())
        )
    return [Due(row[0], row[1]) for row in rows]


async def workflows_waiting_for_slots(database: Database) -> list[str]:
    """Workflows with QUEUED executions that were never admitted."""
    async with database.session() as session:
        rows = await session.exec(
            select(Execution.workflow_id)
            .where(Execution.status == _QUEUED, col(Execution.admitted_at).is_(None))
            .distinct()
        )
        return list(rows.all())


async def due(database: Database, queued_grace_s: float, limit: int = 1000) -> list[Due]:
    """Executions the queue must hold and may have lost: admitted QUEUED ones older than
    `queued_grace_s` (a fresh one is being enqueued by whoever created it), RUNNING ones
    whose lease expired (their process died or hangs), WAITING ones (with their resume
    time: a deferred job runs them then)."""
    now = utcnow()
    overdue_before = now - timedelta(seconds=queued_grace_s)
    table = Execution.__table__  # type: ignore[attr-defined]
    query = (
        sa_select(
            table.c.id,
            table.c.lease_generation,
            table.c.status,
            table.c.resume_at,
            table.c.lease_expires_at,
        )
        .where(
            or_(
                (table.c.status == _QUEUED)
                & table.c.admitted_at.is_not(None)
                & (table.c.admitted_at <= overdue_before),
                (table.c.status == _RUNNING)
                & (table.c.lease_expires_at.is_(None) | (table.c.lease_expires_at <= now)),
                (table.c.status == _WAITING) & table.c.resume_at.is_not(None),
            )
        )
        .order_by(table.c.created_at)
        .limit(limit)
    )
    async with database.session() as session:
        rows = await run_core(session, query)
        found: list[Due] = []
        for execution_id, generation, status, resume_at, expires in rows.all():
            if status == _QUEUED:
                overdue = True  # admitted longer than the grace period ago
            elif status == _RUNNING:
                overdue = expires is None or expires <= overdue_before
            else:
                overdue = resume_at is not None and resume_at <= overdue_before
            run_at = resume_at if status == _WAITING else None
            dead = generation - 1 if status == _RUNNING and generation > 0 else None
            found.append(Due(execution_id, generation, run_at, overdue, dead))
        return found
