"""The execution lifecycle's storage (`engine.ports.ExecutionStore`) on the database."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime

from sqlalchemy.exc import IntegrityError

from engine.node_type_policy import EMPTY
from engine.ports import Resumable, StartConflict, StartedBy, StartRequest
from storage import cancellation, executions, queueing, schedules, subworkflows
from storage.db import Database
from storage.models import Execution
from storage.node_type_policies import NodeTypePolicies
from storage.queueing import Due
from storage.recorder import GroupCommitWriter


class DatabaseExecutionStore:
    """Each operation is one transaction (or one read) of its own."""

    def __init__(
        self,
        database: Database,
        writer: GroupCommitWriter,
        policies: NodeTypePolicies | None = None,
    ) -> None:
        self.database = database
        # Creations and cancellations are written (and their events published) by the
        # process's writer.
        self.writer = writer
        # Node types disabled where a scheduled workflow lives: its ticks pass without an
        # execution.
        self.policies = policies

    async def find_started(self, workflow_id: str, idempotency_key: str) -> Execution | None:
        async with self.database.session() as session:
            return await executions.find_by_idempotency_key(session, workflow_id, idempotency_key)

    async def create(
        self, requests: Sequence[StartRequest], admitted: Sequence[bool]
    ) -> list[Execution]:
        try:
            # A worker that lost a calling execution's lease creates no executions for it.
            parents = [request.parent.execution_id for request in requests if request.parent]
            async with self.writer.transaction(fenced=parents) as commit:
                created = [
                    await executions.create_started(commit, request, admit_now)
                    for request, admit_now in zip(requests, admitted, strict=True)
                ]
            return created
        except IntegrityError as exc:
            raise StartConflict(str(exc.orig)) from exc

    async def fire_schedules(
        self, now: datetime, admission: Callable[[StartRequest], bool]
    ) -> list[Execution]:
        policy = EMPTY if self.policies is None else self.policies.current
        return await schedules.fire_due(
            self.database, self.writer, now, admission=admission, policy=policy
        )

    async def admit(self, workflow_id: str) -> list[Due]:
        return await queueing.admit(self.database, workflow_id)

    async def workflows_waiting_for_slots(self) -> list[str]:
        return await queueing.workflows_waiting_for_slots(self.database)

    async def lost(self, queued_grace_s: float) -> list[Due]:
        return await queueing.due(self.database, queued_grace_s)

    async def wake_caller(self, parent_id: str, run_id: str) -> int | None:
        return await subworkflows.wake_caller(self.database, parent_id, run_id)

    async def request_cancel(self, execution_id: str, by: StartedBy | None = None) -> bool:
        async with self.database.transaction() as session:
            return await cancellation.request_cancel(session, execution_id, by)

    async def cancel_unheld(self, execution_id: str, by: StartedBy | None = None) -> bool:
        return await cancellation.cancel_unheld(self.writer, execution_id, by)

    async def waited_descendants(self, execution_id: str) -> Sequence[Execution]:
        async with self.database.session() as session:
            return await executions.waited_descendants(session, execution_id)

    async def state(self, execution_id: str) -> Execution | None:
        async with self.database.session() as session:
            return await executions.reload_or_none(session, execution_id)

    async def resumable(self) -> Resumable:
        async with self.database.transaction() as session:
            await executions.expire_leases(session)
            interrupted = await executions.active_executions(session)
            waiting = await executions.waiting_executions(session)
        return Resumable(interrupted, waiting)
