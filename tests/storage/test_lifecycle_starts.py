"""Starts through the execution lifecycle on the database (engine/lifecycle.py over
storage/lifecycle_store.py): one execution per idempotency key whatever the concurrency, a
start refused stores nothing, and admission queues past a concurrency limit except for
sub-workflow calls."""

from __future__ import annotations

import asyncio
from datetime import datetime

import pytest
from sqlmodel import select

from engine.lifecycle import ExecutionLifecycle
from engine.ports import ParentLink, StartConflict, StartRequest
from storage import workflows
from storage.db import Database
from storage.lifecycle_store import DatabaseExecutionStore
from storage.models import Execution, Workflow
from storage.recorder import GroupCommitWriter
from tests.storage.conftest import StoredWorkflow


class Submissions:
    """A submitter that only notes what it is asked to run."""

    def __init__(self) -> None:
        self.submitted: list[str] = []

    async def submit(
        self, execution_id: str, generation: int = 0, run_at: datetime | None = None
    ) -> None:
        self.submitted.append(execution_id)

    async def cancel(self, execution_id: str) -> bool:
        return False


async def _request(
    database: Database, workflow: Workflow, key: str | None = None, **fields: object
) -> StartRequest:
    async with database.transaction() as session:
        snapshot = await workflows.ensure_snapshot(session, workflow, workflow.created_by)
    return StartRequest(
        workspace_id=workflow.workspace_id,
        workflow_id=workflow.id,
        workflow_settings=dict(workflow.settings or {}),
        version_id=snapshot.id,
        version=snapshot.version,
        mode="manual",
        input={},
        idempotency_key=key,
        **fields,  # type: ignore[arg-type]
    )


async def _stored(database: Database) -> list[Execution]:
    async with database.session() as session:
        return list((await session.exec(select(Execution))).all())


async def test_concurrent_starts_with_one_key_make_one_execution(
    database: Database, stored_workflow: StoredWorkflow
) -> None:
    workflow, _ = await stored_workflow()
    request = await _request(database, workflow, key="same")
    runs = Submissions()
    lifecycle = ExecutionLifecycle(
        DatabaseExecutionStore(database, GroupCommitWriter(database)), runs
    )

    async def prepare() -> StartRequest:
        return request

    results = await asyncio.gather(
        *(lifecycle.start(prepare, idempotency_key=(workflow.id, "same")) for _ in range(5))
    )
    assert len({result.execution_id for result in results}) == 1
    assert sum(result.created for result in results) == 1
    assert [row.id for row in await _stored(database)] == [results[0].execution_id]
    assert runs.submitted == [results[0].execution_id]

    # Later, the same key answers with that execution without asking `prepare`.
    async def refuse() -> StartRequest:
        raise AssertionError("prepare asked for a key used already")

    again = await lifecycle.start(refuse, idempotency_key=(workflow.id, "same"))
    assert (again.execution_id, again.created) == (results[0].execution_id, False)


async def test_a_start_of_a_workflow_gone_is_refused_and_stores_nothing(
    database: Database, stored_workflow: StoredWorkflow
) -> None:
    workflow, _ = await stored_workflow()
    request = await _request(database, workflow, key="k")
    async with database.transaction() as session:
        await session.delete(await session.get(Workflow, workflow.id))
    runs = Submissions()
    lifecycle = ExecutionLifecycle(
        DatabaseExecutionStore(database, GroupCommitWriter(database)), runs
    )

    async def prepare() -> StartRequest:
        return request

    with pytest.raises(StartConflict):
        await lifecycle.start(prepare, idempotency_key=(workflow.id, "k"))
    with pytest.raises(StartConflict):
        await lifecycle.start(prepare)
    assert await _stored(database) == []
    assert runs.submitted == []


async def test_a_refusal_of_prepare_is_passed_on_and_stores_nothing(
    database: Database, stored_workflow: StoredWorkflow
) -> None:
    workflow, _ = await stored_workflow()
    lifecycle = ExecutionLifecycle(
        DatabaseExecutionStore(database, GroupCommitWriter(database)), Submissions()
    )

    class Refused(Exception):
        pass

    async def prepare() -> StartRequest:
        raise Refused

    with pytest.raises(Refused):
        await lifecycle.start(prepare, idempotency_key=(workflow.id, "k"))
    assert await _stored(database) == []


async def test_admission_queues_past_the_limit_but_not_a_sub_workflow_call(
    database: Database, stored_workflow: StoredWorkflow
) -> None:
    workflow, _ = await stored_workflow()
    async with database.transaction() as session:
        row = await session.get(Workflow, workflow.id)
        assert row is not None
        row.settings = {"maxConcurrentExecutions": 1}
        session.add(row)
        workflow = row
    request = await _request(database, workflow)
    runs = Submissions()
    lifecycle = ExecutionLifecycle(
        DatabaseExecutionStore(database, GroupCommitWriter(database)), runs
    )

    async def prepare() -> StartRequest:
        return request

    first = await lifecycle.start(prepare)
    second = await lifecycle.start(prepare)
    # Created waiting for a slot, each; the first takes the free one.
    admitted = {row.id: row.admitted_at is not None for row in await _stored(database)}
    assert admitted == {first.execution_id: True, second.execution_id: False}
    # A call holds no slot to wait for: a caller of its own workflow would wait forever.
    call = ParentLink(first.execution_id, "call", "run-1", 0, waits=True, depth=1)
    (called,) = await lifecycle.start_calls([await _request(database, workflow, parent=call)])
    assert called.admitted_at is not None
    assert runs.submitted == [first.execution_id, called.id]
