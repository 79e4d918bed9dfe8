"""The group-commit writer hands its listeners only what it committed: not the records of
an execution whose lease moved on (fenced out), so a stale run's events never go live."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

from sqlmodel import col, update

from engine.events import Event, EventType, Record
from storage import executions, workflows
from storage.db import Database
from storage.models import Execution
from storage.recorder import GroupCommitWriter
from tests.storage.conftest import StoredWorkflow


async def _execution(database: Database, stored_workflow: StoredWorkflow) -> str:
    workflow, _ = await stored_workflow()
    async with database.transaction() as session:
        snapshot = await workflows.ensure_snapshot(session, workflow, workflow.created_by)
        execution = await executions.create_execution(
            session,
            workflow=workflow,
            snapshot=snapshot,
            mode="manual",
            input={},
            created_by=workflow.created_by,
        )
    return execution.id


def _started(execution_id: str, sequence: int) -> Record:
    return Record(Event(execution_id, sequence, EventType.NODE_STARTED, datetime.now(UTC)))


async def test_listeners_get_committed_events_only(
    database: Database, stored_workflow: StoredWorkflow
) -> None:
    current = await _execution(database, stored_workflow)
    stale = await _execution(database, stored_workflow)
    writer = GroupCommitWriter(database)
    published: list[Event] = []

    def listen(events: Sequence[Event]) -> None:
        published.extend(events)

    writer.on_commit(listen)
    writer.fence(current, 0)
    writer.fence(stale, 0)
    # Another process claimed `stale` since this one did.
    async with database.transaction() as session:
        await session.exec(
            update(Execution).where(col(Execution.id) == stale).values(lease_generation=1)
        )
    try:
        writer.emit(_started(current, 2))
        writer.emit(_started(stale, 2))
        await writer.flush()
    finally:
        await writer.stop()
    assert [(event.execution_id, event.sequence) for event in published] == [(current, 2)]
    async with database.session() as session:
        stored = await executions.events(session, stale)
    assert [row.sequence for row in stored] == [1], "only EXECUTION_QUEUED, nothing stale"
