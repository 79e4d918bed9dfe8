"""Execution records: created, and read for the API and the execution lifecycle (with their node
runs and events). What else concerns executions lives beside it: the engine's claim, load and
resume adapter (storage/execution_source.py), payloads (storage/payload_store.py and their
encoding, storage/payloads.py), cancellation (storage/cancellation.py), what a run to a node
reuses (storage/reuse.py).

Over 400 lines, but one cohesive thing: the execution rows, created and read.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol

from sqlalchemy import Table, bindparam, func, or_
from sqlalchemy.exc import IntegrityError
from sqlmodel import col, select, update
from sqlmodel.ext.asyncio.session import AsyncSession
from sqlmodel.sql.expression import SelectOfScalar

from engine import tracing
from engine.events import Event, EventType
from engine.executor import ENGINE_VERSION
from engine.ports import ParentLink, StartRequest
from engine.states import ExecutionStatus
from storage import audit, payloads
from storage.db import run_core
from storage.driver_sql import insert_rows
from storage.event_rows import insert_events
from storage.models import (
    Execution,
    ExecutionEventRow,
    NodeRun,
    Workflow,
)
from storage.paging import newest_first
from storage.payload_store import store_execution_payload
from storage.types import storable, utcnow

if TYPE_CHECKING:
    from storage.recorder import WriterTransaction


class WorkflowRef(Protocol):
    """What an execution needs of its workflow (a `Workflow` row or a `WorkflowHead`)."""

    @property
    def id(self) -> str: ...

    @property
    def workspace_id(self) -> str: ...

    @property
    def settings(self) -> dict[str, Any]: ...


class SnapshotRef(Protocol):
    @property
    def id(self) -> str: ...

    @property
    def version(self) -> int: ...


@dataclass(frozen=True, slots=True)
class Snapshot:
    """A snapshot by id and version number, when its row is not loaded."""

    id: str
    version: int


async def create_execution(
    session: AsyncSession,
    *,
    workflow: WorkflowRef,
    snapshot: SnapshotRef,
    mode: str,
    input: Any,
    created_by: str | None,
    idempotency_key: str | None = None,
    start_node_id: str | None = None,
    retry_of: str | None = None,
    reuse_outputs: bool = False,
    parent: ParentLink | None = None,
    admit_now: bool | None = None,
    destination_node_id: str | None = None,
    node_only: bool = False,
    reuse_from: str | None = None,
    announce: Callable[[Sequence[Event]], None] | None = None,
) -> Execution:
    """Insert a QUEUED execution and its first event (EXECUTION_QUEUED, sequence 1), which
    `announce` (a writer's transaction's) is given to publish once committed.

    `admit_now`: whether it may run at once or waits for a slot of its workflow's
    `maxConcurrentExecutions`, as the execution lifecycle decided (`ExecutionLifecycle.
    admission`); None (tests, benchmarks) decides the same way here."""
    if admit_now is None:
        admit_now = parent is not None or not concurrency_limit(workflow)
    execution = Execution(
        workspace_id=workflow.workspace_id,
        workflow_id=workflow.id,
        workflow_version_id=snapshot.id,
        workflow_version=snapshot.version,
        status=ExecutionStatus.QUEUED.value,
        mode=mode,
        idempotency_key=idempotency_key,
        start_node_id=start_node_id,
        retry_of=retry_of,
        reuse_outputs=reuse_outputs,
        destination_node_id=destination_node_id,
        node_only=node_only,
        reuse_from=reuse_from,
        created_by=created_by,
        engine_version=ENGINE_VERSION,
        traceparent=tracing.current_traceparent(),
        # Without a concurrency limit it may run at once; otherwise `queueing.admit` gives it
        # a slot when one is free.
        admitted_at=utcnow() if admit_now else None,
    )
    if parent is not None:
        execution.parent_execution_id = parent.execution_id
        execution.parent_node_id = parent.node_id
        execution.parent_run_id = parent.run_id
        execution.parent_batch = parent.batch
        execution.parent_waits = parent.waits
        execution.call_depth = parent.depth
    # Core inserts: the ORM's unit of work costs more than the statements themselves here.
    row = {column.name: getattr(execution, column.name) for column in _EXECUTIONS.c}
    await lock_workflows(session, [row])
    await INSERT_EXECUTION.run(session, [row])
    await store_execution_payload(session, execution.id, payloads.INPUT, input)
    events = [queued_event(execution)]
    await insert_events(session, events)
    if announce is not None:
        announce(events)
    return execution


def queued_event(execution: Execution) -> Event:
    """A new execution's first event (sequence 1), as `create_execution` stores it: what
    whoever commits the creation announces."""
    return Event(
        execution.id,
        1,
        EventType.EXECUTION_QUEUED,
        execution.created_at,
        status=ExecutionStatus.QUEUED.value,
    )


@dataclass(frozen=True, slots=True)
class _StartedWorkflow:
    """A start's workflow as `create_execution` takes it (a `WorkflowRef`)."""

    id: str
    workspace_id: str
    settings: dict[str, Any]


async def create_started(
    transaction: WriterTransaction, request: StartRequest, admit_now: bool | None = None
) -> Execution:
    """Insert the QUEUED execution a start of the execution lifecycle describes, and its
    first event, published once the writer's `transaction` commits (`admit_now` as for
    `create_execution`)."""
    execution = await create_execution(
        transaction.session,
        announce=transaction.announce,
        workflow=_StartedWorkflow(
            request.workflow_id, request.workspace_id, request.workflow_settings
        ),
        snapshot=Snapshot(request.version_id, request.version),
        mode=request.mode,
        input=request.input,
        created_by=request.created_by,
        idempotency_key=request.idempotency_key,
        start_node_id=request.start_node_id,
        retry_of=request.retry_of,
        reuse_outputs=request.reuse_outputs,
        parent=request.parent,
        admit_now=admit_now,
        destination_node_id=request.destination_node_id,
        node_only=request.node_only,
        reuse_from=request.reuse_from,
    )
    if request.started_by is not None:
        await audit.record(
            transaction.session,
            actor=request.started_by,
            action=audit.AuditAction(request.started_by.action),
            workspace_id=request.workspace_id,
            target_kind="execution",
            target_id=execution.id,
            details=start_details(request),
        )
    return execution


def start_details(request: StartRequest) -> dict[str, Any]:
    """What the audit log says of a start: the workflow and version, and what was retried
    or which node it ran to."""
    details: dict[str, Any] = {"workflow_id": request.workflow_id, "version": request.version}
    if request.retry_of is not None:
        details["retry_of"] = request.retry_of
    if request.destination_node_id is not None:
        details["node_id"] = request.destination_node_id
        details["node_only"] = request.node_only
    return details


def concurrency_limit(workflow: WorkflowRef) -> int | None:
    """The workflow's `maxConcurrentExecutions`, if it sets one."""
    return concurrency_limit_of(workflow.settings)


def concurrency_limit_of(settings: Mapping[str, Any] | None) -> int | None:
    """`maxConcurrentExecutions` in a workflow's settings, if they set one."""
    limit = (settings or {}).get("maxConcurrentExecutions")
    return int(limit) if isinstance(limit, int) and limit > 0 else None


async def find_by_idempotency_key(
    session: AsyncSession, workflow_id: str, key: str
) -> Execution | None:
    query = select(Execution).where(
        Execution.workflow_id == workflow_id, Execution.idempotency_key == key
    )
    return (await session.exec(query)).first()


async def get_execution(
    session: AsyncSession, execution_id: str, workspace_ids: Sequence[str]
) -> Execution | None:
    """The execution if the caller may see it; None for an id no execution can have (a NUL
    character, which PostgreSQL refuses to compare, or longer than an id)."""
    if not storable(execution_id) or len(execution_id) > 36:
        return None
    query = select(Execution).where(
        Execution.id == execution_id, col(Execution.workspace_id).in_(workspace_ids)
    )
    return (await session.exec(query)).first()


async def executions_with_ids(
    session: AsyncSession, execution_ids: Collection[str]
) -> Sequence[Execution]:
    """The executions with these ids, whatever their workspace (a reader serving many
    viewers filters them per viewer)."""
    query = (
        select(Execution)
        .where(col(Execution.id).in_(execution_ids))
        .order_by(col(Execution.created_at), col(Execution.id))
        .execution_options(populate_existing=True)
    )
    rows: Sequence[Execution] = (await session.exec(query)).all()
    return rows


async def children_by_parent(
    session: AsyncSession, parent_ids: Sequence[str]
) -> dict[str, list[Execution]]:
    """The sub-workflow executions each execution started, oldest first (a DataLoader)."""
    query = (
        select(Execution)
        .where(col(Execution.parent_execution_id).in_(parent_ids))
        .order_by(col(Execution.created_at), col(Execution.parent_batch))
    )
    grouped: dict[str, list[Execution]] = {parent_id: [] for parent_id in parent_ids}
    for row in await session.exec(query):
        if row.parent_execution_id is not None:
            grouped[row.parent_execution_id].append(row)
    return grouped


async def waited_descendants(session: AsyncSession, execution_id: str) -> list[Execution]:
    """The unfinished sub-workflow executions that the execution waits for, and theirs, and
    so on (parents before children)."""
    found: list[Execution] = []
    parents = [execution_id]
    while parents:
        query = select(Execution).where(
            col(Execution.parent_execution_id).in_(parents),
            col(Execution.parent_waits).is_(True),
            col(Execution.status).in_(UNFINISHED),
        )
        children = list((await session.exec(query)).all())
        found.extend(children)
        parents = [child.id for child in children]
    return found


UNFINISHED = (
    ExecutionStatus.QUEUED.value,
    ExecutionStatus.RUNNING.value,
    ExecutionStatus.WAITING.value,
)


async def unfinished_executions(
    session: AsyncSession,
    workspace_ids: Sequence[str],
    workflow_id: str | None = None,
    limit: int = 500,
) -> Sequence[Execution]:
    """The newest executions of the workspaces (and the workflow) that have not ended."""
    terminal = [status.value for status in ExecutionStatus if status.is_terminal]
    query = select(Execution).where(
        col(Execution.workspace_id).in_(workspace_ids), col(Execution.status).not_in(terminal)
    )
    if workflow_id is not None:
        query = query.where(Execution.workflow_id == workflow_id)
    query = query.order_by(col(Execution.created_at).desc()).limit(limit)
    rows: Sequence[Execution] = (await session.exec(query)).all()
    return rows


async def ended_since(
    session: AsyncSession,
    workspace_ids: Sequence[str],
    workflow_id: str | None,
    since: datetime,
    limit: int = 500,
) -> Sequence[Execution]:
    """The newest executions of the workspaces (and the workflow) created since `since` that
    have ended: what a watcher that lost changes may never have been shown."""
    terminal = [status.value for status in ExecutionStatus if status.is_terminal]
    query = select(Execution).where(
        col(Execution.workspace_id).in_(workspace_ids),
        col(Execution.created_at) >= since,
        col(Execution.status).in_(terminal),
    )
    if workflow_id is not None:
        query = query.where(Execution.workflow_id == workflow_id)
    query = query.order_by(col(Execution.created_at).desc()).limit(limit)
    rows: Sequence[Execution] = (await session.exec(query)).all()
    return rows


async def is_finished(session: AsyncSession, execution_id: str) -> bool:
    """Whether the execution ended (or no longer exists)."""
    status = (
        await session.exec(select(Execution.status).where(Execution.id == execution_id))
    ).first()
    return status is None or ExecutionStatus(status).is_terminal


def _reload(execution_id: str) -> SelectOfScalar[Execution]:
    return (
        select(Execution)
        .where(Execution.id == execution_id)
        .execution_options(populate_existing=True)
    )


async def reload(session: AsyncSession, execution_id: str) -> Execution:
    return (await session.exec(_reload(execution_id))).one()


async def reload_or_none(session: AsyncSession, execution_id: str) -> Execution | None:
    """The execution as stored now; None if it is not (any more: the pruner deleted it)."""
    return (await session.exec(_reload(execution_id))).first()


async def outcome(session: AsyncSession, execution_id: str) -> tuple[str, Any, Any] | None:
    """Status, error and (for executions recorded before migration 0003) output: what a
    caller waiting for the end reads, in one statement built once. None if the execution is
    no longer stored (the pruner deleted it)."""
    row = (await run_core(session, _OUTCOME, {"execution_id": execution_id})).first()
    return None if row is None else (row[0], row[1], row[2])


async def list_executions(
    session: AsyncSession,
    workspace_ids: Sequence[str],
    *,
    workflow_id: str | None,
    status: str | None,
    limit: int,
    after: tuple[datetime, str] | None,
) -> Sequence[Execution]:
    """Newest first, keyset-paginated on (created_at, id)."""
    query = select(Execution).where(col(Execution.workspace_id).in_(workspace_ids))
    if workflow_id is not None:
        query = query.where(Execution.workflow_id == workflow_id)
    if status is not None:
        query = query.where(Execution.status == status)
    query = newest_first(query, col(Execution.created_at), col(Execution.id), after, limit)
    rows: Sequence[Execution] = (await session.exec(query)).all()
    return rows


async def node_runs(
    session: AsyncSession, execution_ids: Sequence[str]
) -> dict[str, list[NodeRun]]:
    """Node runs of several executions, in the order they started."""
    query = (
        select(NodeRun)
        .where(col(NodeRun.execution_id).in_(execution_ids))
        .order_by(col(NodeRun.created_at), col(NodeRun.attempt))
    )
    grouped: dict[str, list[NodeRun]] = {execution_id: [] for execution_id in execution_ids}
    for run in await session.exec(query):
        grouped[run.execution_id].append(run)
    return grouped


async def events(
    session: AsyncSession, execution_id: str, after_sequence: int = 0, limit: int = 1000
) -> Sequence[ExecutionEventRow]:
    query = (
        select(ExecutionEventRow)
        .where(
            ExecutionEventRow.execution_id == execution_id,
            col(ExecutionEventRow.sequence) > after_sequence,
        )
        .order_by(col(ExecutionEventRow.sequence))
        .limit(limit)
    )
    rows: Sequence[ExecutionEventRow] = (await session.exec(query)).all()
    return rows


async def next_sequence(session: AsyncSession, execution_id: str) -> int:
    query = select(func.max(ExecutionEventRow.sequence)).where(
        ExecutionEventRow.execution_id == execution_id
    )
    last = (await session.exec(query)).one()
    return int(last or 0) + 1


_EXECUTIONS: Table = Execution.__table__  # type: ignore[attr-defined]
# Built once: building SQLAlchemy statements costs more than running them on the hot path.
_OUTCOME = select(_EXECUTIONS.c.status, _EXECUTIONS.c.error, _EXECUTIONS.c.output).where(
    _EXECUTIONS.c.id == bindparam("execution_id")
)
INSERT_EXECUTION = insert_rows(_EXECUTIONS)
# PostgreSQL: the workflows of new executions, read FOR SHARE so that a move of one
# (`storage.moves`, which holds its row FOR UPDATE from before its checks to its commit)
# and the creation of one of its executions take turns.
_WORKFLOW_WORKSPACES = (
    select(Workflow.id, Workflow.workspace_id)
    .where(col(Workflow.id).in_(bindparam("ids", expanding=True)))
    .order_by(col(Workflow.id))
    .with_for_update(read=True)
)


class WorkflowMoved(IntegrityError):
    """A new execution's workflow is no longer in the workspace it was started in (moved,
    or deleted, since it was read): nothing is created. An IntegrityError, as a deleted
    workflow's foreign key is, so that starts answer it alike (`StartConflict`)."""

    def __init__(self, workflow_id: str) -> None:
        reason = f"workflow {workflow_id!r} moved to another workspace or was deleted"
        super().__init__(reason, None, Exception(reason))


async def lock_workflows(session: AsyncSession, rows: Sequence[Mapping[str, Any]]) -> None:
    """Before new execution rows are inserted (PostgreSQL): hold their workflows FOR SHARE
    and check that each is still in the execution's workspace (`WorkflowMoved`). A start
    racing a move either commits first (and the move, waiting for it, sees the run and is
    refused) or waits for the move and creates nothing in the workspace the workflow left.
    SQLite has one writer: a move and a start never interleave there."""
    if session.get_bind().dialect.name == "sqlite":
        return
    wanted = {(row["workflow_id"], row["workspace_id"]) for row in rows}
    found = await run_core(
        session, _WORKFLOW_WORKSPACES, {"ids": sorted({workflow for workflow, _ in wanted})}
    )
    where = dict(found.all())
    for workflow_id, workspace_id in sorted(wanted):
        if where.get(workflow_id) != workspace_id:
            raise WorkflowMoved(workflow_id)


async def expire_leases(session: AsyncSession) -> None:
    """Embedded mode at start: no other process runs anything, so every lease is stale."""
    await session.exec(
        update(Execution)
        .where(col(Execution.lease_owner).is_not(None))
        .values(lease_owner=None, lease_expires_at=None)
    )


async def waiting_executions(
    session: AsyncSession,
) -> list[tuple[str, int, datetime | None]]:
    """WAITING executions (durable waits): id, lease generation, when due."""
    query = (
        select(Execution.id, Execution.lease_generation, Execution.resume_at)
        .where(Execution.status == ExecutionStatus.WAITING.value)
        .order_by(col(Execution.resume_at))
    )
    return [(row[0], row[1], row[2]) for row in (await session.exec(query)).all()]


async def active_executions(session: AsyncSession) -> list[str]:
    """Executions that were running, or queued with a slot (embedded mode resumes them on
    start; queued ones still waiting for a slot are admitted as slots free)."""
    query = (
        select(Execution.id)
        .where(
            or_(
                col(Execution.status) == ExecutionStatus.RUNNING.value,
                (col(Execution.status) == ExecutionStatus.QUEUED.value)
                & col(Execution.admitted_at).is_not(None),
            )
        )
        .order_by(col(Execution.created_at))
    )
    return list((await session.exec(query)).all())
