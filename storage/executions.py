"""Executions, their node runs, events and payloads."""

from __future__ import annotations

from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Protocol

import orjson
from sqlalchemy import Table, and_, bindparam, case, delete, func, insert, null, or_
from sqlmodel import col, select, update
from sqlmodel.ext.asyncio.session import AsyncSession

from engine import metrics, partial
from engine.bus import EventPublisher
from engine.events import Event, EventType
from engine.executor import ENGINE_VERSION
from engine.graph import Graph
from engine.nodes.base import Item, PortItems
from engine.outputs import serialize_outputs
from engine.ports import ParentLink, StartRequest
from engine.runner import LoadedExecution
from engine.states import ExecutionStatus, NodeRunStatus
from storage import payloads
from storage.db import Database, run_core
from storage.errors import NotFoundError
from storage.models import (
    Execution,
    ExecutionEventRow,
    ExecutionPayload,
    NodeRun,
    NodeRunPayload,
    Workflow,
    WorkflowVersion,
)
from storage.paging import newest_first

if TYPE_CHECKING:
    from storage.recorder import GroupCommitWriter
from storage.types import storable, utcnow


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
) -> Execution:
    """Insert a QUEUED execution and its first event (EXECUTION_QUEUED, sequence 1).

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
    await run_core(
        session,
        INSERT_EXECUTION,
        [{column.name: getattr(execution, column.name) for column in _EXECUTIONS.c}],
    )
    await store_execution_payload(session, execution.id, INPUT, input)
    await run_core(
        session,
        _INSERT_RUN_EVENT,
        {
            "execution_id": execution.id,
            "sequence": 1,
            "type": "EXECUTION_QUEUED",
            "at": execution.created_at,
            "status": ExecutionStatus.QUEUED.value,
        },
    )
    return execution


@dataclass(frozen=True, slots=True)
class _StartedWorkflow:
    """A start's workflow as `create_execution` takes it (a `WorkflowRef`)."""

    id: str
    workspace_id: str
    settings: dict[str, Any]


async def create_started(
    session: AsyncSession, request: StartRequest, admit_now: bool | None = None
) -> Execution:
    """Insert the QUEUED execution a start of the execution lifecycle describes, and its
    first event (`admit_now` as for `create_execution`)."""
    return await create_execution(
        session,
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


INPUT = "input"
OUTPUT = "output"


def concurrency_limit(workflow: WorkflowRef) -> int | None:
    """The workflow's `maxConcurrentExecutions`, if it sets one."""
    limit = (workflow.settings or {}).get("maxConcurrentExecutions")
    return int(limit) if isinstance(limit, int) and limit > 0 else None


def encode_payload(value: Any) -> tuple[bytes, int]:
    """A JSON value compressed for storage, and its size before compression."""
    raw = orjson.dumps(value)
    return payloads.compress(raw), len(raw)


def encode_output(port: str, items: list[Item]) -> tuple[bytes, int]:
    """An execution output stored by value (`payloads.CHUNKED`, as the items of its port),
    and its size as JSON."""
    encoded = serialize_outputs({port: items})
    return payloads.pack(encoded), encoded.raw_bytes


async def store_execution_payload(
    session: AsyncSession,
    execution_id: str,
    kind: str,
    value: Any,
    encoded: tuple[bytes, int] | None = None,
    encoding: str = payloads.ENCODING,
    *,
    replace: bool = False,
) -> None:
    """Store an execution's input or output, or a reference to it (`encoded` and
    `encoding` say how it was encoded, when it already was); `replace` one stored before."""
    data, raw_bytes = encoded if encoded is not None else encode_payload(value)
    if replace:
        await session.exec(
            delete(ExecutionPayload).where(
                col(ExecutionPayload.execution_id) == execution_id,
                col(ExecutionPayload.kind) == kind,
            )
        )
    await run_core(
        session,
        _INSERT_EXECUTION_PAYLOAD,
        {
            "execution_id": execution_id,
            "kind": kind,
            "encoding": encoding,
            "raw_bytes": raw_bytes,
            "data": data,
        },
    )


async def insert_execution_payloads(session: AsyncSession, rows: list[dict[str, Any]]) -> None:
    """Store encoded inputs or outputs of several executions at once (`execution_id`,
    `kind`, `encoding`, `raw_bytes`, `data` each)."""
    await run_core(session, _INSERT_EXECUTION_PAYLOAD, rows)


async def execution_payloads(
    session: AsyncSession, execution_ids: Collection[str], kind: str
) -> dict[str, Any]:
    """Inputs (or outputs) of several executions, by execution id; absent ones left out."""
    query = select(ExecutionPayload).where(
        col(ExecutionPayload.execution_id).in_(execution_ids), ExecutionPayload.kind == kind
    )
    found: dict[str, Any] = {}
    references: dict[str, tuple[str, str]] = {}
    for row in await session.exec(query):
        if row.encoding == payloads.RUN_REFERENCE:
            reference = orjson.loads(row.data)
            references[row.execution_id] = (reference["nodeRunId"], reference["port"])
        elif row.encoding == payloads.CHUNKED:  # an output by value: its one port's items
            found[row.execution_id] = next(iter(payloads.decode_chunked(row.data).values()))
        else:
            found[row.execution_id] = payloads.decode(row.data, row.encoding)
    if references:
        runs = await payloads_by_run(session, [run_id for run_id, _ in references.values()])
        for execution_id, (run_id, port) in references.items():
            found[execution_id] = runs.get(run_id, {}).get(port)
    return found


def output_reference(node_run_id: str, port: str) -> bytes:
    """An execution output that is the items of a node run's port, stored by reference."""
    return orjson.dumps({"nodeRunId": node_run_id, "port": port})


async def execution_input(session: AsyncSession, row: Execution) -> Any:
    found = await execution_payloads(session, [row.id], INPUT)
    return found.get(row.id, row.input)


async def _decode_run_payloads(
    session: AsyncSession, rows: Iterable[tuple[str, str, str, bytes]]
) -> dict[str, PortItems]:
    """Node run outputs from (key, execution id, encoding, data) rows, references resolved."""
    decoded: dict[str, PortItems] = {}
    inputs_wanted: dict[str, tuple[str, str]] = {}
    for key, execution_id, encoding, data in rows:
        if encoding == payloads.INPUT_REFERENCE:
            inputs_wanted[key] = (execution_id, data.decode())
        else:
            decoded[key] = payloads.decode(data, encoding)
    if inputs_wanted:
        ids = {execution_id for execution_id, _ in inputs_wanted.values()}
        inputs = await execution_payloads(session, ids, INPUT)
        for key, (execution_id, port) in inputs_wanted.items():
            decoded[key] = {port: [inputs.get(execution_id, {})]}
    return decoded


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


async def reload(session: AsyncSession, execution_id: str) -> Execution:
    query = (
        select(Execution)
        .where(Execution.id == execution_id)
        .execution_options(populate_existing=True)
    )
    return (await session.exec(query)).one()


async def outcome(session: AsyncSession, execution_id: str) -> tuple[str, Any, Any]:
    """Status, error and (for executions recorded before migration 0003) output: what a
    caller waiting for the end reads, in one statement built once."""
    row = (await run_core(session, _OUTCOME, {"execution_id": execution_id})).one()
    return row[0], row[1], row[2]


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


async def payload(session: AsyncSession, node_run_id: str) -> PortItems | None:
    """The full output of a node run, if it produced one."""
    return (await payloads_by_run(session, [node_run_id])).get(node_run_id)


async def succeeded_outputs(
    session: AsyncSession, execution_id: str, node_ids: Collection[str] | None = None
) -> dict[str, PortItems]:
    """Outputs of every node that SUCCEEDED in the execution (of those of `node_ids`, when
    given), by node id."""
    query = (
        select(
            NodeRun.node_id,
            NodeRunPayload.execution_id,
            NodeRunPayload.encoding,
            NodeRunPayload.data,
        )
        .join(NodeRunPayload, col(NodeRunPayload.node_run_id) == col(NodeRun.id))
        .where(
            NodeRun.execution_id == execution_id,
            NodeRun.status == NodeRunStatus.SUCCEEDED.value,
        )
    )
    if node_ids is not None:
        query = query.where(col(NodeRun.node_id).in_(list(node_ids)))
    return await _decode_run_payloads(
        session, ((a, b, c, d) for a, b, c, d in await session.exec(query))
    )


async def cancel_queued(session: AsyncSession, execution_id: str) -> bool:
    """Cancel an execution no process holds: QUEUED (never started) or WAITING (parked by a
    durable wait; its parked attempts end CANCELLED). False if it is in neither state.

    The update is conditional on the status, so a concurrent claim cannot also win; the
    claim is conditional on it too, and finds the execution CANCELLED.
    """
    now = utcnow()
    row = await session.get(Execution, execution_id)
    if row is None or row.status not in (
        ExecutionStatus.QUEUED.value,
        ExecutionStatus.WAITING.value,
    ):
        return False
    was_waiting = row.status == ExecutionStatus.WAITING.value
    error: dict[str, Any] = {
        "type": "CANCELLED",
        "message": "the execution was cancelled" if was_waiting else "cancelled before it started",
        "details": {},
    }
    result = await session.exec(
        update(Execution)
        .where(col(Execution.id) == execution_id, col(Execution.status) == row.status)
        .values(
            status=ExecutionStatus.CANCELLED.value,
            finished_at=now,
            cancel_requested_at=now,
            error=error,
            lease_owner=None,
            lease_expires_at=None,
            resume_at=None,
        )
    )
    if result.rowcount == 0:
        return False
    sequence = await _next_sequence(session, execution_id)
    events: list[dict[str, Any]] = []
    if was_waiting:
        parked = await session.exec(
            select(NodeRun).where(
                NodeRun.execution_id == execution_id,
                col(NodeRun.status) == NodeRunStatus.RUNNING.value,
            )
        )
        for run in parked.all():
            run.status = NodeRunStatus.CANCELLED.value
            run.finished_at = now
            session.add(run)
            events.append(
                {
                    "execution_id": execution_id,
                    "sequence": sequence + len(events),
                    "type": "NODE_CANCELLED",
                    "at": now,
                    "node_id": run.node_id,
                    "node_name": run.node_name,
                    "attempt": run.attempt,
                    "status": NodeRunStatus.CANCELLED.value,
                    "error": None,
                }
            )
        await session.flush()
    events.append(
        {
            "execution_id": execution_id,
            "sequence": sequence + len(events),
            "type": "EXECUTION_FINISHED",
            "at": now,
            "node_id": None,
            "node_name": None,
            "attempt": None,
            "status": ExecutionStatus.CANCELLED.value,
            "error": error,
        }
    )
    await session.exec(insert(ExecutionEventRow), params=events)
    return True


async def request_cancel(session: AsyncSession, execution_id: str) -> None:
    await session.exec(
        update(Execution)
        .where(col(Execution.id) == execution_id)
        .values(cancel_requested_at=utcnow())
    )


async def _resume_state(session: AsyncSession, loaded: LoadedExecution) -> None:
    """What the earlier runs of a resumed execution did, read once the claim holds its row:
    a previous holder whose lease ran out can no longer add to it (the writer's fence waits
    for the row and then refuses)."""
    execution_id = loaded.execution_id
    loaded.next_sequence = await _next_sequence(session, execution_id)
    loaded.reuse.update(await succeeded_outputs(session, execution_id))
    attempts = await session.exec(
        select(NodeRun.node_id, func.max(NodeRun.attempt))
        .where(NodeRun.execution_id == execution_id)
        .group_by(col(NodeRun.node_id))
    )
    loaded.attempts_used = {node_id: int(attempt) for node_id, attempt in attempts}


async def _close_interrupted_runs(
    session: AsyncSession, loaded: LoadedExecution, now: datetime
) -> int:
    """Record attempts left RUNNING or PENDING by a process that died (but not those parked
    by a durable wait, which go on) as FAILED with WORKER_LOST (they do not count against
    the node's retries), one event each from `loaded.next_sequence`; return the next free
    sequence."""
    sequence = loaded.next_sequence
    if not loaded.resumed:
        return sequence
    parked_runs = [entry["runId"] for entry in loaded.parked.values()]
    query = (
        select(NodeRun)
        .where(
            NodeRun.execution_id == loaded.execution_id,
            col(NodeRun.status).in_([NodeRunStatus.RUNNING.value, NodeRunStatus.PENDING.value]),
            col(NodeRun.id).not_in(parked_runs),
        )
        .order_by(col(NodeRun.created_at), col(NodeRun.id))
    )
    for run in (await session.exec(query)).all():
        error = {
            "type": "WORKER_LOST",
            "message": WORKER_LOST_MESSAGE.format(name=run.node_name),
            "details": {},
        }
        run.status = NodeRunStatus.FAILED.value
        run.error = error
        run.finished_at = now
        session.add(run)
        duration = (now - run.started_at).total_seconds() * 1000 if run.started_at else None
        await session.exec(
            insert(ExecutionEventRow),
            params=[
                {
                    "execution_id": loaded.execution_id,
                    "sequence": sequence,
                    "type": "NODE_FAILED",
                    "at": now,
                    "node_id": run.node_id,
                    "node_name": run.node_name,
                    "attempt": run.attempt,
                    "status": NodeRunStatus.FAILED.value,
                    "duration_ms": duration,
                    "input_items": run.input_items,
                    "error": error,
                }
            ],
        )
        sequence += 1
    await session.flush()
    return sequence


async def _next_sequence(session: AsyncSession, execution_id: str) -> int:
    query = select(func.max(ExecutionEventRow.sequence)).where(
        ExecutionEventRow.execution_id == execution_id
    )
    last = (await session.exec(query)).one()
    return int(last or 0) + 1


WORKER_LOST_MESSAGE = (
    "node {name!r} was interrupted: the process running it stopped or lost its lease; "
    "it runs again as a new attempt"
)


_EXECUTIONS: Table = Execution.__table__  # type: ignore[attr-defined]
# Built once: building SQLAlchemy statements costs more than running them on the hot path.
_CLAIM = (
    update(_EXECUTIONS)
    .where(
        _EXECUTIONS.c.id == bindparam("execution_id"),
        _EXECUTIONS.c.lease_generation == bindparam("generation"),
        or_(
            _EXECUTIONS.c.status == ExecutionStatus.QUEUED.value,
            and_(
                _EXECUTIONS.c.status == ExecutionStatus.RUNNING.value,
                or_(
                    _EXECUTIONS.c.lease_expires_at.is_(None),
                    _EXECUTIONS.c.lease_expires_at <= bindparam("now"),
                ),
            ),
            and_(
                _EXECUTIONS.c.status == ExecutionStatus.WAITING.value,
                _EXECUTIONS.c.resume_at <= bindparam("now"),
            ),
        ),
    )
    .values(
        status=ExecutionStatus.RUNNING.value,
        started_at=func.coalesce(_EXECUTIONS.c.started_at, bindparam("now")),
        lease_generation=_EXECUTIONS.c.lease_generation + 1,
        lease_owner=bindparam("owner"),
        lease_expires_at=bindparam("expires"),
        resume_at=None,
    )
)
_OUTCOME = select(_EXECUTIONS.c.status, _EXECUTIONS.c.error, _EXECUTIONS.c.output).where(
    _EXECUTIONS.c.id == bindparam("execution_id")
)
_VERSIONS: Table = WorkflowVersion.__table__  # type: ignore[attr-defined]
_WORKFLOWS: Table = Workflow.__table__  # type: ignore[attr-defined]
_EXECUTION_PAYLOADS: Table = ExecutionPayload.__table__  # type: ignore[attr-defined]
# What every run needs, in one query: the execution, its snapshot, the workflow's name and
# the input. What only a resumed or retried run needs is read after it.
_LOAD = (
    select(  # type: ignore[call-overload]
        _EXECUTIONS.c.id,
        _EXECUTIONS.c.workspace_id,
        _EXECUTIONS.c.workflow_id,
        _EXECUTIONS.c.workflow_version_id,
        _EXECUTIONS.c.status,
        _EXECUTIONS.c.mode,
        _EXECUTIONS.c.input,
        _EXECUTIONS.c.start_node_id,
        _EXECUTIONS.c.retry_of,
        _EXECUTIONS.c.reuse_outputs,
        _EXECUTIONS.c.destination_node_id,
        _EXECUTIONS.c.node_only,
        _EXECUTIONS.c.reuse_from,
        _EXECUTIONS.c.lease_generation,
        _EXECUTIONS.c.lease_owner,
        _EXECUTIONS.c.cancel_requested_at,
        _EXECUTIONS.c.parked,
        _EXECUTIONS.c.parent_execution_id,
        _EXECUTIONS.c.parent_run_id,
        _EXECUTIONS.c.parent_waits,
        _EXECUTIONS.c.call_depth,
        _VERSIONS.c.version,
        _VERSIONS.c.nodes,
        _VERSIONS.c.edges,
        _VERSIONS.c.settings,
        # Only manual runs use pins: the others do not read (and decode) them.
        case((_EXECUTIONS.c.mode == "manual", _VERSIONS.c.pinned_data), else_=null()).label(
            "pinned_data"
        ),
        _WORKFLOWS.c.name.label("workflow_name"),
        _EXECUTION_PAYLOADS.c.encoding.label("input_encoding"),
        _EXECUTION_PAYLOADS.c.data.label("input_data"),
        _EXECUTION_PAYLOADS.c.raw_bytes.label("input_raw_bytes"),
    )
    .select_from(_EXECUTIONS)
    .join(_VERSIONS, _VERSIONS.c.id == _EXECUTIONS.c.workflow_version_id)
    .join(_WORKFLOWS, _WORKFLOWS.c.id == _EXECUTIONS.c.workflow_id)
    .outerjoin(
        _EXECUTION_PAYLOADS,
        and_(
            _EXECUTION_PAYLOADS.c.execution_id == _EXECUTIONS.c.id,
            _EXECUTION_PAYLOADS.c.kind == INPUT,
        ),
    )
    .where(_EXECUTIONS.c.id == bindparam("execution_id"))
)
_INSERT_EXECUTION_PAYLOAD = insert(_EXECUTION_PAYLOADS).values(
    {name: bindparam(name) for name in ("execution_id", "kind", "encoding", "raw_bytes", "data")}
)
INSERT_EXECUTION = insert(_EXECUTIONS)
_INSERT_RUN_EVENT = insert(ExecutionEventRow.__table__).values(  # type: ignore[attr-defined]
    {name: bindparam(name) for name in ("execution_id", "sequence", "type", "at", "status")}
)


class DatabaseExecutionSource:
    """`engine.runner.ExecutionSource` on the database, with leases.

    A claim is a compare-and-set on the execution's lease generation: it succeeds for an
    execution that is QUEUED, RUNNING with an expired lease, or WAITING past its resume
    time, and only if nobody claimed it since it was loaded. It increments the generation
    and takes the lease for `owner` until `lease_s` from now (heartbeats renew it).
    """

    def __init__(
        self,
        database: Database,
        owner: str = "embedded",
        lease_s: float = 30.0,
        writer: GroupCommitWriter | None = None,
        publisher: EventPublisher | None = None,
    ) -> None:
        self.database = database
        self.owner = owner
        self.lease_s = lease_s
        # Fenced by the generation claimed: records of a lease lost are refused.
        self.writer = writer
        # Told about the events a claim or a cancellation commits here (not via the writer).
        self.publisher = publisher

    async def claim(self, loaded: LoadedExecution) -> bool:
        async with self.database.transaction() as session:
            claimed_at = await self._claim_in(session, loaded)
            if claimed_at is None:
                return False
        self._claimed(loaded, claimed_at)
        return True

    def _claimed(self, loaded: LoadedExecution, at: datetime) -> None:
        # A RUNNING execution whose holder never gave it up: its lease had run out. One
        # released by a process that stopped cleanly (`release(resume_now=True)`, no owner)
        # is a handover, not an expiry.
        if loaded.status is ExecutionStatus.RUNNING and loaded.lease_held:
            metrics.lease_expired()
        if self.publisher is not None:
            if loaded.resumed:  # it may also have closed interrupted runs: read them
                self.publisher.wake([loaded.execution_id])
            else:  # its one event, EXECUTION_STARTED, goes out as such
                started = Event(
                    loaded.execution_id,
                    loaded.next_sequence - 1,
                    EventType.EXECUTION_STARTED,
                    at,
                    status=ExecutionStatus.RUNNING.value,
                )
                self.publisher.publish([started])
        if self.writer is not None:
            self.writer.fence(loaded.execution_id, loaded.generation)

    def _committed(self, execution_id: str) -> None:
        if self.publisher is not None:
            self.publisher.wake([execution_id])

    async def load_and_claim(self, execution_id: str, generation: int) -> LoadedExecution | None:
        """`load` and `claim` in one transaction, for a job that knows the generation it
        claims: one round of the database less on the way to the first node."""
        async with self.database.transaction() as session:
            loaded = await self._load_in(session, execution_id)
            if loaded is None or loaded.status.is_terminal or loaded.generation != generation:
                return None
            claimed_at = await self._claim_in(session, loaded)
            if claimed_at is None:
                return None
        self._claimed(loaded, claimed_at)
        return loaded

    async def _claim_in(self, session: AsyncSession, loaded: LoadedExecution) -> datetime | None:
        """Claim the loaded execution; when it was claimed, or None if it was not."""
        now = utcnow()
        result = await run_core(
            session,
            _CLAIM,
            {
                "execution_id": loaded.execution_id,
                "generation": loaded.generation,
                "now": now,
                "owner": self.owner,
                "expires": now + timedelta(seconds=self.lease_s),
            },
        )
        if result.rowcount == 0:
            return None
        loaded.generation += 1
        if loaded.resumed:
            await _resume_state(session, loaded)
        sequence = await _close_interrupted_runs(session, loaded, now)
        await run_core(
            session,
            _INSERT_RUN_EVENT,
            {
                "execution_id": loaded.execution_id,
                "sequence": sequence,
                "type": "EXECUTION_RESUMED" if loaded.resumed else "EXECUTION_STARTED",
                "at": now,
                "status": ExecutionStatus.RUNNING.value,
            },
        )
        loaded.next_sequence = sequence + 1
        return now

    async def release(self, loaded: LoadedExecution, *, resume_now: bool = False) -> None:
        """Give the lease up (the execution finished, waits, or this process stops); with
        `resume_now` another process may claim the execution at once."""
        async with self.database.transaction() as session:
            await session.exec(
                update(Execution)
                .where(
                    col(Execution.id) == loaded.execution_id,
                    col(Execution.lease_generation) == loaded.generation,
                )
                .values(lease_owner=None, lease_expires_at=utcnow() if resume_now else None)
            )

    async def cancel_queued(self, execution_id: str) -> bool:
        async with self.database.transaction() as session:
            cancelled = await cancel_queued(session, execution_id)
        if cancelled:
            self._committed(execution_id)
        return cancelled

    async def load(self, execution_id: str) -> LoadedExecution | None:
        async with self.database.session() as session:
            return await self._load_in(session, execution_id)

    async def _load_in(self, session: AsyncSession, execution_id: str) -> LoadedExecution | None:
        found = (await run_core(session, _LOAD, {"execution_id": execution_id})).first()
        if found is None:
            row = await session.get(Execution, execution_id)
            if row is None:
                return None
            raise NotFoundError("workflow version", row.workflow_version_id)
        row = found
        input_bytes: int | None = row.input_raw_bytes
        if row.input_data is not None:
            execution_input_value = orjson.loads(
                payloads.decompress(row.input_data, row.input_encoding)
            )
        else:
            execution_input_value = row.input  # recorded before migration 0003
        resumed = row.status != ExecutionStatus.QUEUED.value
        reuse: dict[str, PortItems] = {}
        if row.retry_of is not None and row.reuse_outputs:
            reuse = await succeeded_outputs(session, row.retry_of)
        reused: dict[str, PortItems] = {}
        if row.reuse_from is not None and row.destination_node_id is not None:
            reused = await _still_valid_outputs(
                session,
                row.reuse_from,
                Graph.from_json(row.nodes, row.edges),
                dict(row.pinned_data or {}),
                execution_input_value,
                row.destination_node_id,
                row.start_node_id,
            )
        # A queued execution has exactly one event so far: EXECUTION_QUEUED. What a resumed
        # one did so far is read by the claim, after it holds the row (`_resume_state`).
        next_sequence = 2
        attempts_used: dict[str, int] = {}
        return LoadedExecution(
            execution_id=row.id,
            workspace_id=row.workspace_id,
            workflow_id=row.workflow_id,
            workflow_name=row.workflow_name,
            version_id=row.workflow_version_id,
            version=row.version,
            nodes=row.nodes,
            edges=row.edges,
            settings=row.settings,
            status=ExecutionStatus(row.status),
            mode=row.mode,
            input=execution_input_value if isinstance(execution_input_value, dict) else {},
            input_bytes=input_bytes,
            generation=row.lease_generation,
            lease_held=row.lease_owner is not None,
            cancel_requested=row.cancel_requested_at is not None,
            parked=dict(row.parked or {}) if row.status == ExecutionStatus.WAITING.value else {},
            start_node_id=row.start_node_id,
            next_sequence=next_sequence,
            reuse=reuse,
            # Only manual executions use pins: triggers, retries and sub-workflow calls run
            # every node.
            pinned=dict(row.pinned_data or {})
            if row.mode == "manual" and not row.node_only
            else {},
            destination_node_id=row.destination_node_id,
            node_only=bool(row.node_only),
            reused=reused,
            attempts_used=attempts_used,
            resumed=resumed,
            parent_execution_id=row.parent_execution_id,
            parent_run_id=row.parent_run_id,
            parent_waits=bool(row.parent_waits),
            depth=row.call_depth or 0,
        )


_FINISHED_STATUSES = (
    ExecutionStatus.SUCCEEDED.value,
    ExecutionStatus.FAILED.value,
    ExecutionStatus.CANCELLED.value,
)


async def latest_reusable(
    session: AsyncSession, workflow_id: str, workspace_ids: Sequence[str]
) -> Execution | None:
    """The workflow's newest manual execution that ran from its trigger (not `executeNode`,
    whose node ran on items given to it): what a run to a node reuses by default."""
    query = (
        select(Execution)
        .where(
            Execution.workflow_id == workflow_id,
            Execution.mode == "manual",
            col(Execution.node_only).is_(False),
            col(Execution.workspace_id).in_(workspace_ids),
            # A run still going has not produced what it will (a second click on "run to
            # here" must not reuse the first, still queued).
            col(Execution.status).in_(_FINISHED_STATUSES),
        )
        .order_by(col(Execution.created_at).desc(), col(Execution.id).desc())
        .limit(1)
    )
    return (await session.exec(query)).first()


async def _still_valid_outputs(
    session: AsyncSession,
    earlier_id: str,
    graph: Graph,
    pinned: dict[str, Any],
    input_value: Any,
    destination_node_id: str,
    start_node_id: str | None,
) -> dict[str, PortItems]:
    """The outputs of the earlier execution that a run to `destination_node_id` can reuse:
    of the destination's ancestors unchanged since (engine/partial.py) that succeeded then.
    Nothing when the earlier run started from another node: the input entered the graph
    elsewhere, and the other roots did not run."""
    query = (
        select(
            Execution.mode,
            WorkflowVersion.nodes,
            WorkflowVersion.edges,
            WorkflowVersion.pinned_data,
        )
        .join(WorkflowVersion, col(WorkflowVersion.id) == col(Execution.workflow_version_id))
        .where(Execution.id == earlier_id)
    )
    found = (await session.exec(query)).first()
    earlier = await session.get(Execution, earlier_id)
    if (
        found is None
        or earlier is None
        or earlier.node_only
        or earlier.start_node_id != start_node_id
    ):
        # Deleted since, a node run on given items, or started elsewhere: nothing to reuse.
        return {}
    mode, nodes, edges, earlier_pins = found
    then = partial.node_hashes(
        Graph.from_json(list(nodes), list(edges)),
        dict(earlier_pins or {}) if mode == "manual" else {},
        await execution_input(session, earlier),
    )
    now = partial.node_hashes(graph, pinned, input_value)
    keep = partial.ancestors(graph, destination_node_id)
    unchanged = {node_id for node_id in keep if now.get(node_id) == then.get(node_id)}
    # Only the outputs that may be reused are read (and decoded).
    succeeded = await succeeded_outputs(session, earlier_id, unchanged) if unchanged else {}
    return {node_id: succeeded[node_id] for node_id in partial.reusable(now, then, succeeded, keep)}


async def payloads_by_run(
    session: AsyncSession, node_run_ids: Sequence[str]
) -> dict[str, PortItems]:
    """Full outputs of several node runs at once (for a DataLoader)."""
    query = select(
        NodeRunPayload.node_run_id,
        NodeRunPayload.execution_id,
        NodeRunPayload.encoding,
        NodeRunPayload.data,
    ).where(col(NodeRunPayload.node_run_id).in_(node_run_ids))
    return await _decode_run_payloads(
        session, ((a, b, c, d) for a, b, c, d in await session.exec(query))
    )


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
