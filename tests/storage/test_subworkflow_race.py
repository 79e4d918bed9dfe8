"""Sub-workflow calls are started once: two starts of one attempt's call (a guard, the unique
index), a process that lost the caller's lease (fenced), a new attempt replacing one closed
WORKER_LOST (adopts its executions)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Sequence

import pytest
from sqlmodel import col, select, update

from engine.lifecycle import ExecutionLifecycle
from engine.nodes.base import SubworkflowCall
from engine.nodes.subworkflow import TRIGGER
from engine.ports import CreatedExecution, LeaseLost, ParentLink, StartRequest
from engine.states import NodeRunStatus
from storage import accounts, executions, workflows
from storage.db import Database
from storage.lifecycle_store import DatabaseExecutionStore
from storage.models import Execution, NodeRun, Workflow
from storage.recorder import GroupCommitWriter
from storage.subworkflows import DatabaseWorkflowCaller
from tests.storage.test_lifecycle_starts import Submissions, _request


async def _workflows(database: Database) -> tuple[Workflow, Execution]:
    """A workflow that can be called, and an execution of it that calls it."""
    async with database.transaction() as session:
        user = await accounts.create_user(session, f"owner-{uuid.uuid4().hex[:8]}")
        called = Workflow(
            workspace_id=user.personal_workspace_id,
            name="called",
            created_by=user.id,
            nodes=[{"id": "t", "name": "T", "type": TRIGGER, "parameters": {}}],
            edges=[],
        )
        await workflows.create_workflow(session, called)
        snapshot = await workflows.ensure_snapshot(session, called, user.id)
        parent = await executions.create_execution(
            session, workflow=called, snapshot=snapshot, mode="manual", input={}, created_by=None
        )
    return called, parent


async def test_two_runs_of_one_call_start_its_executions_once(database: Database) -> None:
    called, parent = await _workflows(database)
    lifecycle = ExecutionLifecycle(
        DatabaseExecutionStore(database, GroupCommitWriter(database)), Submissions()
    )
    # Both runs have looked for the call's executions (none yet) before either starts them.
    both_looked = asyncio.Barrier(2)

    async def start_calls(requests: Sequence[StartRequest]) -> Sequence[CreatedExecution]:
        await both_looked.wait()
        return await lifecycle.start_calls(requests)

    caller = DatabaseWorkflowCaller(
        database, max_depth=5, start_calls=start_calls, writer=GroupCommitWriter(database)
    )
    call = SubworkflowCall(
        workspace_id=called.workspace_id,
        workflow_id=called.id,
        use_draft=True,
        batches=[[{"n": 1}], [{"n": 2}]],
        wait=True,
        parent_execution_id=parent.id,
        parent_node_id="call",
        parent_run_id=str(uuid.uuid4()),
        depth=1,
    )
    first, second = await asyncio.gather(caller.start(call), caller.start(call))
    async with database.session() as session:
        children = (
            await session.exec(
                select(Execution)
                .where(col(Execution.parent_run_id) == call.parent_run_id)
                .order_by(col(Execution.parent_batch))
            )
        ).all()
    assert [child.parent_batch for child in children] == [0, 1]
    assert first == second == [child.id for child in children]
    # Run again later (the attempt resumed), it finds them too.
    assert await caller.start(call) == first


async def test_a_worker_that_lost_the_callers_lease_starts_no_executions(
    database: Database,
) -> None:
    called, parent = await _workflows(database)
    writer = GroupCommitWriter(database)
    lifecycle = ExecutionLifecycle(DatabaseExecutionStore(database, writer), Submissions())
    caller = DatabaseWorkflowCaller(
        database, max_depth=5, start_calls=lifecycle.start_calls, writer=writer
    )
    call = SubworkflowCall(
        workspace_id=called.workspace_id,
        workflow_id=called.id,
        use_draft=True,
        batches=[[{"n": 1}]],
        wait=True,
        parent_execution_id=parent.id,
        parent_node_id="call",
        parent_run_id=str(uuid.uuid4()),
        depth=1,
    )
    # This process held the caller's lease at its generation; another has taken it over.
    writer.fence(parent.id, parent.lease_generation)
    async with database.transaction() as session:
        await session.exec(
            update(Execution)
            .where(col(Execution.id) == parent.id)
            .values(lease_generation=parent.lease_generation + 1)
        )
    with pytest.raises(LeaseLost):
        await caller.start(call)
    async with database.session() as session:
        children = (
            await session.exec(
                select(Execution.id).where(col(Execution.parent_execution_id) == parent.id)
            )
        ).all()
    assert children == []
    # While it holds the lease, it starts them.
    writer.fence(parent.id, parent.lease_generation + 1)
    assert len(await caller.start(call)) == 1


async def _attempt(database: Database, parent: Execution, error_type: str) -> str:
    """An attempt of the calling node, closed FAILED with `error_type`."""
    run = NodeRun(
        execution_id=parent.id,
        node_id="call",
        node_name="Call",
        status=NodeRunStatus.FAILED.value,
        error={"type": error_type, "message": "", "details": {}},
    )
    async with database.transaction() as session:
        session.add(run)
    return run.id


@pytest.mark.parametrize("lost", [True, False])
async def test_an_attempt_replacing_a_lost_one_adopts_its_executions(
    database: Database, lost: bool
) -> None:
    called, parent = await _workflows(database)
    lifecycle = ExecutionLifecycle(
        DatabaseExecutionStore(database, GroupCommitWriter(database)), Submissions()
    )
    caller = DatabaseWorkflowCaller(
        database, max_depth=5, start_calls=lifecycle.start_calls, writer=GroupCommitWriter(database)
    )

    def call(run_id: str) -> SubworkflowCall:
        return SubworkflowCall(
            workspace_id=called.workspace_id,
            workflow_id=called.id,
            use_draft=True,
            batches=[[{"n": 1}], [{"n": 2}]],
            wait=True,
            parent_execution_id=parent.id,
            parent_node_id="call",
            parent_run_id=run_id,
            depth=1,
        )

    # The first attempt started the call's executions, then its process lost the lease.
    first_run = await _attempt(database, parent, "WORKER_LOST" if lost else "NODE_FAILED")
    started = await caller.start(call(first_run))
    second_run = str(uuid.uuid4())
    again = await caller.start(call(second_run))
    async with database.session() as session:
        linked = (
            await session.exec(
                select(Execution.id)
                .where(col(Execution.parent_run_id) == second_run)
                .order_by(col(Execution.parent_batch))
            )
        ).all()
    assert list(linked) == again
    if lost:  # the same executions, now the new attempt's: the call runs once
        assert again == started
    else:  # a retry after a failure calls again
        assert set(again).isdisjoint(started)


async def test_the_store_creates_no_call_executions_for_a_lost_caller(database: Database) -> None:
    called, parent = await _workflows(database)
    writer = GroupCommitWriter(database)
    lifecycle = ExecutionLifecycle(DatabaseExecutionStore(database, writer), Submissions())
    link = ParentLink(
        execution_id=parent.id,
        node_id="call",
        run_id=str(uuid.uuid4()),
        batch=0,
        waits=True,
        depth=1,
    )
    request = await _request(database, called, parent=link)
    writer.fence(parent.id, parent.lease_generation - 1)  # a generation it no longer has
    with pytest.raises(LeaseLost):
        await lifecycle.start_calls([request])
    async with database.session() as session:
        children = (
            await session.exec(
                select(Execution.id).where(col(Execution.parent_execution_id) == parent.id)
            )
        ).all()
    assert children == []
