"""A user's cancel that reaches a run while its claim is committing: the claim goes on, and
the run records the cancellation (the execution does not stay RUNNING with nobody on it)."""

from __future__ import annotations

import asyncio

from engine.lifecycle import ExecutionLifecycle
from engine.node_types import load_registry
from engine.ports import StartRequest
from engine.runner import ExecutionRunner, LoadedExecution
from storage import executions
from storage.db import Database
from storage.execution_source import DatabaseExecutionSource
from storage.lifecycle_store import DatabaseExecutionStore
from storage.recorder import GroupCommitWriter
from tests.storage.conftest import StoredWorkflow
from tests.storage.test_lifecycle_starts import Submissions, _request


class SlowClaims(DatabaseExecutionSource):
    """Claims as stored, then waits (a COMMIT that has landed but not answered yet)."""

    def __init__(self, database: Database, writer: GroupCommitWriter) -> None:
        super().__init__(database, writer)
        self.committed = asyncio.Event()
        self.answer = asyncio.Event()

    async def claim(self, loaded: LoadedExecution) -> bool:
        claimed = await super().claim(loaded)
        self.committed.set()
        await self.answer.wait()
        return claimed


async def test_a_cancel_during_the_claim_is_recorded(
    database: Database, stored_workflow: StoredWorkflow
) -> None:
    workflow, _ = await stored_workflow()
    writer = GroupCommitWriter(database)
    await writer.start()
    lifecycle = ExecutionLifecycle(DatabaseExecutionStore(database, writer), Submissions())
    source = SlowClaims(database, writer)
    runner = ExecutionRunner(source, writer, load_registry())

    async def prepare() -> StartRequest:
        return await _request(database, workflow)

    try:
        execution_id = (await lifecycle.start(prepare)).execution_id
        run = asyncio.create_task(runner.run(execution_id))
        await source.committed.wait()
        run.cancel()  # InProcessSubmitter.cancel, for cancelExecution
        await asyncio.sleep(0)
        source.answer.set()
        outcome = await run
        assert outcome is not None and outcome.status.value == "CANCELLED"
    finally:
        await writer.stop()
    async with database.session() as session:
        assert (await executions.reload(session, execution_id)).status == "CANCELLED"
