"""One writer: the events of a creation, a claim (with the attempts it closes as interrupted)
and a cancellation are committed and published by the group-commit writer, exactly as
stored, and only once committed; nothing needs a wake-up to be read."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

import pytest

from engine.events import Event, EventType, NodeRunState, Record
from engine.lifecycle import ExecutionLifecycle
from engine.ports import StartConflict, StartRequest
from engine.states import NodeRunStatus
from storage import executions
from storage.db import Database
from storage.execution_source import DatabaseExecutionSource
from storage.lifecycle_store import DatabaseExecutionStore
from storage.models import Execution, Workflow
from storage.recorder import GroupCommitWriter
from tests.storage.conftest import StoredWorkflow
from tests.storage.test_lifecycle_starts import Submissions, _request


def _key(event: Event) -> tuple[str, int, str, str | None]:
    return (event.execution_id, event.sequence, event.type.value, event.status)


async def _stored(database: Database, execution_id: str) -> list[tuple[str, int, str, str | None]]:
    async with database.session() as session:
        rows = await executions.events(session, execution_id)
    return [(row.execution_id, row.sequence, row.type, row.status) for row in rows]


class Published:
    """A writer's listener: every event it publishes, in order."""

    def __init__(self, writer: GroupCommitWriter) -> None:
        self.events: list[Event] = []
        writer.on_commit(self)

    def __call__(self, events: Sequence[Event]) -> None:
        self.events.extend(events)

    def of(self, execution_id: str) -> list[tuple[str, int, str, str | None]]:
        return [_key(event) for event in self.events if event.execution_id == execution_id]


async def test_a_creation_a_claim_and_a_cancellation_are_published_by_the_writer(
    database: Database, stored_workflow: StoredWorkflow
) -> None:
    workflow, _ = await stored_workflow()
    writer = GroupCommitWriter(database)
    published = Published(writer)
    lifecycle = ExecutionLifecycle(DatabaseExecutionStore(database, writer), Submissions())
    source = DatabaseExecutionSource(database, writer)

    async def prepare_request() -> StartRequest:
        return await _request(database, workflow)

    try:
        claimed = (await lifecycle.start(prepare_request)).execution_id
        assert published.of(claimed) == [(claimed, 1, "EXECUTION_QUEUED", "QUEUED")]
        loaded = await source.load(claimed)
        assert loaded is not None and await source.claim(loaded)
        # A second claim of what it loaded before loses, and publishes nothing.
        stale = await source.load(claimed)
        assert stale is not None
        stale.generation -= 1
        assert not await source.claim(stale)

        cancelled = (await lifecycle.start(prepare_request)).execution_id
        state = await lifecycle.cancel(await _state(database, cancelled))
        assert state.status == "CANCELLED"
    finally:
        await writer.stop()
    for execution_id in (claimed, cancelled):
        assert published.of(execution_id) == await _stored(database, execution_id)
    assert [row[2] for row in published.of(claimed)] == ["EXECUTION_QUEUED", "EXECUTION_STARTED"]
    assert [row[2] for row in published.of(cancelled)] == [
        "EXECUTION_QUEUED",
        "EXECUTION_FINISHED",
    ]


async def _state(database: Database, execution_id: str) -> Execution:
    async with database.session() as session:
        return await executions.reload(session, execution_id)


async def test_a_resumed_claim_publishes_the_attempts_it_closes(
    database: Database, stored_workflow: StoredWorkflow
) -> None:
    """A process took the execution over from one that died while a node ran: the attempt
    left RUNNING ends FAILED (WORKER_LOST) and the execution RESUMED, both published."""
    workflow, _ = await stored_workflow()
    writer = GroupCommitWriter(database)
    published = Published(writer)
    store = DatabaseExecutionStore(database, writer)
    (execution,) = await store.create([await _request(database, workflow)], [True])
    dead = DatabaseExecutionSource(database, writer, owner="dead", lease_s=0.0)
    heir = DatabaseExecutionSource(database, writer, owner="heir")
    try:
        loaded = await dead.load(execution.id)
        assert loaded is not None and await dead.claim(loaded)
        now = datetime.now(UTC)
        run = NodeRunState(
            "run-1", "start", "Start", 1, NodeRunStatus.RUNNING, started_at=now, input_items=1
        )
        started = Event(
            execution.id,
            loaded.next_sequence,
            EventType.NODE_STARTED,
            now,
            node_id="start",
            node_name="Start",
            attempt=1,
            status="RUNNING",
        )
        writer.emit(Record(started, node_run=run))
        await writer.flush()
        # The dead process's lease ran out (lease_s=0): the heir takes the execution over.
        resumed = await heir.load(execution.id)
        assert resumed is not None and resumed.resumed
        assert await heir.claim(resumed)
    finally:
        await writer.stop()
    expected = [
        (execution.id, 1, "EXECUTION_QUEUED", "QUEUED"),
        (execution.id, 2, "EXECUTION_STARTED", "RUNNING"),
        (execution.id, 3, "NODE_STARTED", "RUNNING"),
        (execution.id, 4, "NODE_FAILED", "FAILED"),
        (execution.id, 5, "EXECUTION_RESUMED", "RUNNING"),
    ]
    assert published.of(execution.id) == expected
    assert await _stored(database, execution.id) == expected
    closed = [event for event in published.events if event.type is EventType.NODE_FAILED]
    assert closed[0].error is not None and closed[0].error.type == "WORKER_LOST"
    assert resumed.next_sequence == 6


async def test_a_creation_refused_publishes_nothing(
    database: Database, stored_workflow: StoredWorkflow
) -> None:
    workflow, _ = await stored_workflow()
    writer = GroupCommitWriter(database)
    published = Published(writer)
    store = DatabaseExecutionStore(database, writer)
    request = await _request(database, workflow)
    async with database.transaction() as session:
        await session.delete(await session.get(Workflow, workflow.id))
    with pytest.raises(StartConflict):
        await store.create([request], [True])
    assert published.events == []
