"""New executions stored by the group-commit writer (embedded mode's one-write start): in
the writer's round, published once committed, and a creation the database refuses is
refused to its caller alone, whatever else its round carried."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from sqlalchemy.exc import IntegrityError
from sqlmodel import select

from engine.events import Event
from engine.ports import StartedBy, StartRequest
from storage import workflows
from storage.db import Database
from storage.execution_source import DatabaseExecutionSource
from storage.models import AuditEvent, Execution, ExecutionEventRow
from storage.recorder import GroupCommitWriter
from storage.starts import EmbeddedStarts
from tests.storage.conftest import StoredWorkflow


@dataclass(frozen=True)
class Version:
    """A `RunnableVersion` as a webhook route gives it."""

    workflow_id: str
    workspace_id: str
    workflow_version_id: str
    workflow_version: int
    workflow_name: str = "wf"
    nodes: list[dict[str, Any]] = field(default_factory=list)
    edges: list[dict[str, Any]] = field(default_factory=list)
    version_settings: dict[str, Any] = field(default_factory=dict)


async def _version(database: Database, stored_workflow: StoredWorkflow) -> Version:
    workflow, _ = await stored_workflow()
    async with database.transaction() as session:
        snapshot = await workflows.ensure_snapshot(session, workflow, workflow.created_by)
    return Version(workflow.id, workflow.workspace_id, snapshot.id, snapshot.version)


async def test_a_refused_creation_fails_alone(
    database: Database, stored_workflow: StoredWorkflow
) -> None:
    writer = GroupCommitWriter(database)
    published: list[Event] = []

    def listen(events: Sequence[Event]) -> None:
        published.extend(events)

    writer.on_commit(listen)
    # Nothing runs what the writer stores here: the submitter is never asked.
    starts = EmbeddedStarts(DatabaseExecutionSource(database, writer), None, writer)  # type: ignore[arg-type]
    version = await _version(database, stored_workflow)
    good = starts.prepare(version, mode="webhook", input={"n": 1}, idempotency_key="k")
    twin = starts.prepare(version, mode="webhook", input={"n": 2}, idempotency_key="k")
    other = starts.prepare(version, mode="webhook", input={"n": 3})
    # In one round: the second use of the key is refused; the others are stored.
    results = await asyncio.gather(
        writer.create(good.new),
        writer.create(twin.new),
        writer.create(other.new),
        return_exceptions=True,
    )
    assert results[0] is None and results[2] is None
    assert isinstance(results[1], IntegrityError)
    stored = {good.loaded.execution_id, other.loaded.execution_id}
    async with database.session() as session:
        rows = (await session.exec(select(Execution.id, Execution.status))).all()
        events = (
            await session.exec(
                select(ExecutionEventRow.execution_id, ExecutionEventRow.sequence).order_by(
                    ExecutionEventRow.execution_id, ExecutionEventRow.sequence
                )
            )
        ).all()
    assert {row[0] for row in rows} == stored
    assert {row[1] for row in rows} == {"RUNNING"}
    assert sorted(events) == sorted((e, s) for e in stored for s in (1, 2))
    # Only what was committed went live, each execution's events in order.
    assert sorted((e.execution_id, e.sequence) for e in published) == sorted(events)
    await writer.stop()


async def test_a_creation_is_stored_with_the_records_of_its_round(
    database: Database, stored_workflow: StoredWorkflow
) -> None:
    """Several starts at once cost one transaction (a round), not one each."""
    writer = GroupCommitWriter(database)
    starts = EmbeddedStarts(DatabaseExecutionSource(database, writer), None, writer)  # type: ignore[arg-type]
    version = await _version(database, stored_workflow)
    await writer.start()
    rounds = writer.rounds
    news = [starts.prepare(version, mode="webhook", input={"n": n}) for n in range(5)]
    await asyncio.gather(*(writer.create(started.new) for started in news))
    assert writer.rounds - rounds == 1
    await writer.stop()


async def test_a_busy_writer_gathers_starts_that_come_a_few_loop_turns_apart(
    database: Database, stored_workflow: StoredWorkflow
) -> None:
    """Under load, requests reach the writer on different turns of the event loop (each
    parsed as its bytes arrive); a busy writer lets the loop turn a few times before its
    round, so they share it instead of paying a transaction each."""
    writer = GroupCommitWriter(database)
    starts = EmbeddedStarts(DatabaseExecutionSource(database, writer), None, writer)  # type: ignore[arg-type]
    version = await _version(database, stored_workflow)
    await writer.start()

    async def request(n: int) -> None:
        for _ in range(n % 4):  # what the request does before it starts its run
            await asyncio.sleep(0)
        await writer.create(starts.prepare(version, mode="webhook", input={"n": n}).new)

    await asyncio.gather(*(request(n) for n in range(8)))  # the writer is busy now
    rounds = writer.rounds
    for _ in range(10):
        await asyncio.gather(*(request(n) for n in range(8)))
    # One round per burst of 8 starts spread over 4 turns (without gathering: 4 per burst).
    assert writer.rounds - rounds <= 15
    await writer.stop()


class HeldRuns:
    """A submitter whose runs last until the test lets them end."""

    def __init__(self) -> None:
        self.end = asyncio.Event()
        self.started: list[str] = []

    def start(self, loaded: Any, handover: Any = None) -> asyncio.Task[None]:
        self.started.append(loaded.execution_id)
        return asyncio.create_task(self.end.wait())  # type: ignore[arg-type]


async def test_starts_wait_while_too_many_runs_go_on(
    database: Database, stored_workflow: StoredWorkflow
) -> None:
    writer = GroupCommitWriter(database)
    runs = HeldRuns()
    starts = EmbeddedStarts(DatabaseExecutionSource(database, writer), runs, writer, max_running=1)  # type: ignore[arg-type]
    version = await _version(database, stored_workflow)
    first = starts.prepare(version, mode="webhook", input={})
    second = starts.prepare(version, mode="webhook", input={})
    await starts.start(first)
    waiting = asyncio.create_task(starts.start(second))
    await asyncio.sleep(0.2)
    # Not refused, not stored: it waits for the first run to end.
    assert not waiting.done()
    assert runs.started == [first.loaded.execution_id]
    runs.end.set()
    await asyncio.wait_for(waiting, 5)
    assert runs.started == [first.loaded.execution_id, second.loaded.execution_id]
    await writer.stop()


async def test_a_one_write_start_by_an_api_caller_is_recorded_with_it(
    database: Database, stored_workflow: StoredWorkflow
) -> None:
    """The one-write path records `started_by` as the general path does, in its write; a
    start refused (its key used already) leaves no record."""
    writer = GroupCommitWriter(database)
    starts = EmbeddedStarts(DatabaseExecutionSource(database, writer), None, writer)  # type: ignore[arg-type]
    version = await _version(database, stored_workflow)
    by = StartedBy(user_id="someone", token_id="their-token", action="execution.run")
    request = StartRequest(
        workspace_id=version.workspace_id,
        workflow_id=version.workflow_id,
        workflow_settings={},
        version_id=version.workflow_version_id,
        version=version.workflow_version,
        mode="manual",
        input={},
        idempotency_key="once",
        started_by=by,
    )
    first = starts.prepare_start(request, version)
    twin = starts.prepare_start(request, version)
    results = await asyncio.gather(
        writer.create(first.new), writer.create(twin.new), return_exceptions=True
    )
    assert results[0] is None and isinstance(results[1], IntegrityError)
    async with database.session() as session:
        rows = (await session.exec(select(AuditEvent))).all()
    assert [
        (row.action, row.actor_id, row.token_id, row.target_id, row.workspace_id, row.details)
        for row in rows
    ] == [
        (
            "execution.run",
            "someone",
            "their-token",
            first.execution_id,
            version.workspace_id,
            {"workflow_id": version.workflow_id, "version": version.workflow_version},
        )
    ]
    # Without `started_by` (a webhook's start) nothing is recorded.
    plain = starts.prepare_start(replace(request, started_by=None, idempotency_key=None), version)
    await writer.create(plain.new)
    async with database.session() as session:
        assert len((await session.exec(select(AuditEvent))).all()) == 1
    await writer.stop()


async def test_stop_returns_when_a_start_arrives_during_the_gathering_turns(
    database: Database, stored_workflow: StoredWorkflow
) -> None:
    # A busy writer lets the loop turn before its round; a start taken in those turns after
    # stop() began is stored, and stop() still returns (it waited forever before).
    writer = GroupCommitWriter(database)
    starts = EmbeddedStarts(DatabaseExecutionSource(database, writer), None, writer)  # type: ignore[arg-type]
    version = await _version(database, stored_workflow)
    await writer.start()
    await writer.create(starts.prepare(version, mode="webhook", input={}).new)  # busy now

    async def late() -> None:
        for _ in range(3):
            await asyncio.sleep(0)
        await writer.create(starts.prepare(version, mode="webhook", input={}).new)

    late_start = asyncio.create_task(late())
    stopping = asyncio.create_task(writer.stop())
    await asyncio.wait_for(late_start, 5)
    await asyncio.wait_for(stopping, 5)
    async with database.session() as session:
        assert len((await session.exec(select(Execution))).all()) == 2
