"""The execution lifecycle's storage (`engine.ports.ExecutionStore`) on the database."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy.exc import IntegrityError

from engine.ports import Resumable, StartConflict, StartRequest
from storage import executions, queueing, subworkflows
from storage.db import Database
from storage.models import Execution
from storage.queueing import Due


@dataclass(frozen=True, slots=True)
class _Workflow:
    """A start's workflow as `executions.create_execution` takes it (a `WorkflowRef`)."""

    id: str
    workspace_id: str
    settings: dict[str, Any]


class DatabaseExecutionStore:
    """Each operation is one transaction (or one read) of its own."""

    def __init__(self, database: Database) -> None:
        self.database = database

    async def find_started(self, workflow_id: str, idempotency_key: str) -> Execution | None:
        async with self.database.session() as session:
            return await executions.find_by_idempotency_key(session, workflow_id, idempotency_key)

    async def create(self, request: StartRequest) -> Execution:
        try:
            async with self.database.transaction() as session:
                return await executions.create_execution(
                    session,
                    workflow=_Workflow(
                        request.workflow_id, request.workspace_id, request.workflow_settings
                    ),
                    snapshot=executions.Snapshot(request.version_id, request.version),
                    mode=request.mode,
                    input=request.input,
                    created_by=request.created_by,
                    idempotency_key=request.idempotency_key,
                    start_node_id=request.start_node_id,
                    retry_of=request.retry_of,
                    reuse_outputs=request.reuse_outputs,
                )
        except IntegrityError as exc:
            raise StartConflict(str(exc.orig)) from exc

    async def admit(self, workflow_id: str) -> list[Due]:
        return await queueing.admit(self.database, workflow_id)

    async def workflows_waiting_for_slots(self) -> list[str]:
        return await queueing.workflows_waiting_for_slots(self.database)

    async def lost(self, queued_grace_s: float) -> list[Due]:
        return await queueing.due(self.database, queued_grace_s)

    async def wake_caller(self, parent_id: str, run_id: str) -> int | None:
        return await subworkflows.wake_caller(self.database, parent_id, run_id)

    async def request_cancel(self, execution_id: str) -> None:
        async with self.database.transaction() as session:
            await executions.request_cancel(session, execution_id)

    async def cancel_unheld(self, execution_id: str) -> bool:
        async with self.database.transaction() as session:
            return await executions.cancel_queued(session, execution_id)

    async def waited_descendants(self, execution_id: str) -> Sequence[Execution]:
        async with self.database.session() as session:
            return await executions.waited_descendants(session, execution_id)

    async def state(self, execution_id: str) -> Execution:
        async with self.database.session() as session:
            return await executions.reload(session, execution_id)

    async def resumable(self) -> Resumable:
        async with self.database.transaction() as session:
            await executions.expire_leases(session)
            interrupted = await executions.active_executions(session)
            waiting = await executions.waiting_executions(session)
        return Resumable(interrupted, waiting)
