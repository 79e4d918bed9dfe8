"""The engine's `ExecutionSource` on the database: an execution loaded, claimed under a lease
(and, when resumed, what its earlier runs did read and its interrupted attempts closed), and
released."""

from __future__ import annotations

from datetime import datetime, timedelta

import orjson
from sqlalchemy import Table, and_, bindparam, case, func, null, or_
from sqlmodel import col, select, update
from sqlmodel.ext.asyncio.session import AsyncSession

from engine import metrics
from engine.events import ErrorInfo, Event, EventType
from engine.nodes.base import PortItems
from engine.runner import LoadedExecution
from engine.states import ExecutionStatus, NodeRunStatus
from storage import payloads, reuse
from storage.cancellation import cancel_unheld
from storage.db import Database, run_core
from storage.errors import NotFoundError
from storage.executions import _EXECUTIONS, next_sequence
from storage.models import (
    Execution,
    ExecutionPayload,
    NodeRun,
    Workflow,
    WorkflowVersion,
)
from storage.payload_store import succeeded_outputs
from storage.recorder import GroupCommitWriter, WriterTransaction
from storage.types import utcnow


async def _resume_state(session: AsyncSession, loaded: LoadedExecution) -> None:
    """What the earlier runs of a resumed execution did, read once the claim holds its row:
    a previous holder whose lease ran out can no longer add to it (the writer's fence waits
    for the row and then refuses)."""
    execution_id = loaded.execution_id
    loaded.next_sequence = await next_sequence(session, execution_id)
    loaded.reuse.update(await succeeded_outputs(session, execution_id))
    attempts = await session.exec(
        select(NodeRun.node_id, func.max(NodeRun.attempt))
        .where(NodeRun.execution_id == execution_id)
        .group_by(col(NodeRun.node_id))
    )
    loaded.attempts_used = {node_id: int(attempt) for node_id, attempt in attempts}


async def _close_interrupted_runs(
    session: AsyncSession, loaded: LoadedExecution, now: datetime
) -> list[Event]:
    """Record attempts left RUNNING or PENDING by a process that died (but not those parked
    by a durable wait, which go on) as FAILED with WORKER_LOST (they do not count against
    the node's retries), one event each from `loaded.next_sequence`; returns the events."""
    if not loaded.resumed:
        return []
    sequence = loaded.next_sequence
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
    events: list[Event] = []
    for run in (await session.exec(query)).all():
        error = ErrorInfo("WORKER_LOST", WORKER_LOST_MESSAGE.format(name=run.node_name))
        run.status = NodeRunStatus.FAILED.value
        run.error = error.to_json()
        run.finished_at = now
        session.add(run)
        duration = (now - run.started_at).total_seconds() * 1000 if run.started_at else None
        events.append(
            Event(
                loaded.execution_id,
                sequence + len(events),
                EventType.NODE_FAILED,
                now,
                node_id=run.node_id,
                node_name=run.node_name,
                attempt=run.attempt,
                status=NodeRunStatus.FAILED.value,
                duration_ms=duration,
                input_items=run.input_items,
                error=error,
            )
        )
    await session.flush()
    return events


WORKER_LOST_MESSAGE = (
    "node {name!r} was interrupted: the process running it stopped or lost its lease; "
    "it runs again as a new attempt"
)

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
        _EXECUTIONS.c.traceparent,
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
            _EXECUTION_PAYLOADS.c.kind == payloads.INPUT,
        ),
    )
    .where(_EXECUTIONS.c.id == bindparam("execution_id"))
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
        writer: GroupCommitWriter,
        owner: str = "embedded",
        lease_s: float = 30.0,
    ) -> None:
        self.database = database
        self.owner = owner
        self.lease_s = lease_s
        # The process's writer: claims and cancellations are written (and their events
        # published) by it, and it fences the records of each claim by its generation.
        self.writer = writer
        # What runs to a node computed of the executions they reuse (storage/reuse.py).
        self.reuse_caches = reuse.ReuseCaches()

    async def claim(self, loaded: LoadedExecution) -> bool:
        async with self.writer.transaction() as commit:
            claimed = await self._claim_in(commit, loaded)
        if claimed:
            self._claimed(loaded)
        return claimed

    def _claimed(self, loaded: LoadedExecution) -> None:
        # A RUNNING execution whose holder never gave it up: its lease had run out. One
        # released by a process that stopped cleanly (`release(resume_now=True)`, no owner)
        # is a handover, not an expiry.
        if loaded.status is ExecutionStatus.RUNNING and loaded.lease_held:
            metrics.lease_expired()
        self.writer.fence(loaded.execution_id, loaded.generation)

    async def load_and_claim(self, execution_id: str, generation: int) -> LoadedExecution | None:
        """`load` and `claim` in one transaction, for a job that knows the generation it
        claims: one round of the database less on the way to the first node."""
        async with self.writer.transaction() as commit:
            loaded = await self._load_in(commit.session, execution_id)
            if loaded is None or loaded.status.is_terminal or loaded.generation != generation:
                return None
            if not await self._claim_in(commit, loaded):
                return None
        self._claimed(loaded)
        return loaded

    async def _claim_in(self, commit: WriterTransaction, loaded: LoadedExecution) -> bool:
        """Claim the loaded execution: its events (EXECUTION_STARTED, or for a resumed one
        the attempts it closes as interrupted and EXECUTION_RESUMED) are stored and announced
        in `commit`. False if another process holds it or claimed it since it was loaded."""
        session = commit.session
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
            return False
        loaded.generation += 1
        if loaded.resumed:
            await _resume_state(session, loaded)
        events = await _close_interrupted_runs(session, loaded, now)
        events.append(
            Event(
                loaded.execution_id,
                loaded.next_sequence + len(events),
                EventType.EXECUTION_RESUMED if loaded.resumed else EventType.EXECUTION_STARTED,
                now,
                status=ExecutionStatus.RUNNING.value,
            )
        )
        await commit.add_events(events)
        loaded.next_sequence = events[-1].sequence + 1
        return True

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

    async def cancel_unheld(self, execution_id: str) -> bool:
        return await cancel_unheld(self.writer, execution_id)

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
        retried: dict[str, PortItems] = {}  # a retry's outputs of the run it retries
        if row.retry_of is not None and row.reuse_outputs:
            retried = await succeeded_outputs(session, row.retry_of)
        reused = reuse.Reused()
        if row.reuse_from is not None and row.destination_node_id is not None:
            reused = await reuse.still_valid_outputs(
                session,
                reuse.RunToNode(
                    row.id,
                    row.workflow_version_id,
                    row.nodes,
                    row.edges,
                    dict(row.pinned_data or {}),
                    execution_input_value,
                    row.destination_node_id,
                    row.start_node_id,
                ),
                row.reuse_from,
                self.reuse_caches,
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
            reuse=retried,
            # Only manual executions use pins: triggers, retries and sub-workflow calls run
            # every node.
            pinned=dict(row.pinned_data or {})
            if row.mode == "manual" and not row.node_only
            else {},
            destination_node_id=row.destination_node_id,
            node_only=bool(row.node_only),
            reused=reused.outputs,
            reused_runs=reused.runs,
            attempts_used=attempts_used,
            resumed=resumed,
            parent_execution_id=row.parent_execution_id,
            parent_run_id=row.parent_run_id,
            parent_waits=bool(row.parent_waits),
            depth=row.call_depth or 0,
            traceparent=row.traceparent,
        )
