"""Cancelling an execution that no process holds (QUEUED, or WAITING after a durable wait),
and asking the process that holds one to cancel it."""

from __future__ import annotations

from typing import TYPE_CHECKING

from sqlmodel import col, select, update
from sqlmodel.ext.asyncio.session import AsyncSession

from engine.events import ErrorInfo, Event, EventType
from engine.ports import StartedBy
from engine.states import ExecutionStatus, NodeRunStatus
from storage import audit
from storage.event_rows import insert_events
from storage.executions import next_sequence
from storage.models import (
    Execution,
    NodeRun,
)
from storage.types import utcnow

if TYPE_CHECKING:
    from storage.recorder import GroupCommitWriter


async def cancel_unheld(
    writer: GroupCommitWriter, execution_id: str, by: StartedBy | None = None
) -> bool:
    """Cancel an execution no process holds (see `cancel_unheld_in`) in a transaction of
    the process's writer, which publishes its events once committed; False if it is
    neither QUEUED nor WAITING."""
    async with writer.transaction() as transaction:
        events = await cancel_unheld_in(transaction.session, execution_id, by)
        transaction.announce(events)
    return bool(events)


async def _audited(session: AsyncSession, row: Execution, by: StartedBy, status: str) -> None:
    """The audit record of `by` cancelling the execution, in the transaction that took the
    cancel; `status` is the one the cancel found."""
    await audit.record(
        session,
        actor=by,
        action=audit.AuditAction(by.action),
        workspace_id=row.workspace_id,
        target_kind="execution",
        target_id=row.id,
        details={"workflow_id": row.workflow_id, "status": status},
    )


async def cancel_unheld_in(
    session: AsyncSession, execution_id: str, by: StartedBy | None = None
) -> list[Event]:
    """Cancel an execution no process holds: QUEUED (never started) or WAITING (parked by a
    durable wait; its parked attempts end CANCELLED). Returns the events stored (for whoever
    commits the transaction to announce); none if it is in neither state.

    The update is conditional on the status, so a concurrent claim cannot also win; the
    claim is conditional on it too, and finds the execution CANCELLED. `by`, an API caller's
    cancel, is recorded in the audit log here when this cancelled it and no earlier request
    to cancel it (`request_cancel`, which recorded it) was taken.
    """
    now = utcnow()
    row = await session.get(Execution, execution_id)
    if row is None or row.status not in (
        ExecutionStatus.QUEUED.value,
        ExecutionStatus.WAITING.value,
    ):
        return []
    was_waiting = row.status == ExecutionStatus.WAITING.value
    found = row.status
    requested_before = row.cancel_requested_at is not None
    error = ErrorInfo(
        "CANCELLED",
        "the execution was cancelled" if was_waiting else "cancelled before it started",
    )
    result = await session.exec(
        update(Execution)
        .where(col(Execution.id) == execution_id, col(Execution.status) == row.status)
        .values(
            status=ExecutionStatus.CANCELLED.value,
            finished_at=now,
            cancel_requested_at=now,
            error=error.to_json(),
            lease_owner=None,
            lease_expires_at=None,
            resume_at=None,
        )
    )
    if result.rowcount == 0:
        return []
    if by is not None and not requested_before:
        await _audited(session, row, by, found)
    sequence = await next_sequence(session, execution_id)
    events: list[Event] = []
    if was_waiting:
        parked = await session.exec(
            select(NodeRun).where(
                NodeRun.execution_id == execution_id,
                col(NodeRun.status) == NodeRunStatus.RUNNING.value,
            )
        )
        for run in parked.all():
            run.status = NodeRunStatus.CANCELLED.value
            run.finished_at = now
            session.add(run)
            events.append(
                Event(
                    execution_id,
                    sequence + len(events),
                    EventType.NODE_CANCELLED,
                    now,
                    node_id=run.node_id,
                    node_name=run.node_name,
                    attempt=run.attempt,
                    status=NodeRunStatus.CANCELLED.value,
                )
            )
        await session.flush()
    events.append(
        Event(
            execution_id,
            sequence + len(events),
            EventType.EXECUTION_FINISHED,
            now,
            status=ExecutionStatus.CANCELLED.value,
            error=error,
        )
    )
    await insert_events(session, events)
    return events


async def request_cancel(
    session: AsyncSession, execution_id: str, by: StartedBy | None = None
) -> bool:
    """Ask the process holding a RUNNING or WAITING execution to cancel it; False when it
    is in neither state or was asked already (then this changes nothing). The update is
    conditional: of two concurrent requests one changes the row. `by`, an API caller's
    cancel, is recorded in the audit log in this transaction when it changed the row."""
    result = await session.exec(
        update(Execution)
        .where(
            col(Execution.id) == execution_id,
            col(Execution.status).in_(_HELD),
            col(Execution.cancel_requested_at).is_(None),
        )
        .values(cancel_requested_at=utcnow())
    )
    if result.rowcount == 0:
        return False
    if by is not None:
        row = await session.get(Execution, execution_id)
        if row is not None:  # the update just found it
            await _audited(session, row, by, row.status)
    return True


_HELD = (ExecutionStatus.RUNNING.value, ExecutionStatus.WAITING.value)
