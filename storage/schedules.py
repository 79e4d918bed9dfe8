"""Schedule triggers: registered when a workflow is activated, fired by any process.

Every process that schedules (embedded `loom serve`, each `loom worker`) calls `fire_due`
about once a second. A tick runs exactly once however many do: firing inserts the row
(workflow, node, instant) of `schedule_ticks`, whose primary key lets only one process
succeed, in the same transaction as the execution it creates and the schedule's next time.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete
from sqlalchemy.exc import IntegrityError
from sqlmodel import col, select, update
from sqlmodel.ext.asyncio.session import AsyncSession

from engine.node_type_policy import EMPTY, PolicySnapshot
from engine.ports import StartRequest
from engine.schedule import Schedule, ScheduleError, cron_problem
from storage import executions, webhooks, workflows
from storage.db import Database
from storage.errors import StorageError
from storage.models import Execution, ScheduleRow, ScheduleTick, Workflow, WorkflowVersion
from storage.recorder import GroupCommitWriter, WriterTransaction

logger = logging.getLogger("loom.schedules")

SCHEDULE = "schedule"
# A tick later than this is "missed" (the processes were down): the schedule's `missed`
# policy says whether it runs once now or is skipped.
MISSED_AFTER = timedelta(seconds=60)


class InvalidScheduleError(StorageError):
    """A schedule trigger of the version being activated cannot run."""

    def __init__(self, node_id: str, error: ScheduleError) -> None:
        super().__init__(str(error))
        self.node_id = node_id
        self.problems = error.problems  # (parameter, message), every one


async def register(
    session: AsyncSession, workflow: Workflow, version: WorkflowVersion, now: datetime
) -> None:
    """Schedule the schedule triggers of `version` (replacing the workflow's earlier ones),
    each first firing at its next time after `now`."""
    await unregister(session, workflow.id)
    for node in version.nodes:
        if node.get("type") != SCHEDULE or node.get("disabled"):
            continue
        try:
            schedule = Schedule.from_parameters(dict(node.get("parameters") or {}))
        except ScheduleError as exc:
            raise InvalidScheduleError(node["id"], exc) from exc
        session.add(
            ScheduleRow(
                workflow_id=workflow.id,
                node_id=node["id"],
                workflow_version_id=version.id,
                workflow_version=version.version,
                spec=schedule.to_json(),
                next_at=schedule.next_after(now),
            )
        )
    await session.flush()


async def unregister(session: AsyncSession, workflow_id: str) -> None:
    await session.exec(delete(ScheduleRow).where(col(ScheduleRow.workflow_id) == workflow_id))


async def fire_due(
    database: Database,
    writer: GroupCommitWriter,
    now: datetime,
    limit: int = 100,
    admission: Callable[[StartRequest], bool] | None = None,
    policy: PolicySnapshot = EMPTY,
) -> list[Execution]:
    """Fire the schedules due at `now`; returns the executions created (to be submitted).
    `admission` (the execution lifecycle's) says of each whether it runs at once or waits
    for a slot of `maxConcurrentExecutions`; None decides as `create_execution` does. A tick
    of a workflow using a node type `policy` disables passes without an execution: the
    schedule fires again once the type is enabled. `writer` (the process's) writes each
    tick's execution and publishes its first event."""
    async with database.session() as session:
        due = (
            await session.exec(
                select(ScheduleRow)
                .where(col(ScheduleRow.next_at) <= now)
                .order_by(col(ScheduleRow.next_at))
                .limit(limit)
            )
        ).all()
    created = []
    for row in due:
        try:
            async with writer.transaction() as commit:
                execution = await _fire(
                    commit,
                    row.workflow_id,
                    row.node_id,
                    row.next_at,
                    now,
                    admission,
                    policy,
                )
        except IntegrityError:
            continue  # another process fired this tick
        if execution is not None:
            created.append(execution)
    return created


async def _fire(
    transaction: WriterTransaction,
    workflow_id: str,
    node_id: str,
    seen_at: datetime,
    now: datetime,
    admission: Callable[[StartRequest], bool] | None,
    policy: PolicySnapshot,
) -> Execution | None:
    session = transaction.session
    row = await session.get(ScheduleRow, (workflow_id, node_id))
    if row is None or row.next_at != seen_at:
        return None  # deactivated, or fired by another process meanwhile
    schedule = Schedule.from_json(row.spec)
    problem = None if schedule.cron is None else cron_problem(schedule.cron)
    if problem is not None:
        # Registered by an older Loom that took six fields (seconds: it fired every second)
        # or seven. The workflow is deactivated, as activation would refuse it now, so that
        # it does not show as active while its schedule never fires.
        logger.warning(
            "workflow %s deactivated: its schedule (node %s) cannot run: cron %s; fix it and "
            "activate the workflow again",
            workflow_id,
            node_id,
            problem,
        )
        await unregister(session, workflow_id)
        await webhooks.unregister(session, workflow_id)
        await session.exec(
            update(Workflow).where(col(Workflow.id) == workflow_id).values(active=False)
        )
        return None
    instant = row.next_at
    if now - instant > MISSED_AFTER:
        if schedule.missed == "skip":
            row.next_at = schedule.next_after(now)
            session.add(row)
            return None
        instant = schedule.latest_at_or_before(now, instant)
    tick = ScheduleTick(workflow_id=workflow_id, node_id=node_id, scheduled_at=instant)
    session.add(tick)
    await session.flush()  # IntegrityError: this tick has fired elsewhere
    # A tick a little late (the process was busy) is followed by the next one on time; after
    # a missed stretch (`run_once`), `instant` is the latest one, so the next is after now.
    row.next_at = schedule.next_after(instant)
    session.add(row)
    # Neither the draft's pins nor the version's: a scheduled run does not use them.
    workflow = await workflows.get_without_pins(session, Workflow, workflow_id)
    if workflow is None or not workflow.active:
        return None
    if policy.affects(workflow.workspace_id):
        version = await workflows.get_without_pins(
            session, WorkflowVersion, row.workflow_version_id
        )
        disabled = policy.problems(version.nodes if version else [], workflow.workspace_id)
        if disabled:
            logger.warning(
                "workflow %s: schedule tick %s passed without an execution: node %s: %s",
                workflow_id,
                instant.isoformat(),
                disabled[0].node_id,
                disabled[0].message,
            )
            return None
    item: dict[str, Any] = {"scheduledAt": instant.isoformat(), "timezone": schedule.timezone}
    request = StartRequest(
        workspace_id=workflow.workspace_id,
        workflow_id=workflow.id,
        workflow_settings=workflow.settings,
        version_id=row.workflow_version_id,
        version=row.workflow_version,
        mode="schedule",
        input=item,
        start_node_id=node_id,
    )
    admit_now = None if admission is None else admission(request)
    execution = await executions.create_started(transaction, request, admit_now)
    tick.execution_id = execution.id
    session.add(tick)
    return execution
