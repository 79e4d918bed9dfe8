"""Sub-workflow calls on the database: starting the called executions, reading how they
ended, and waking the caller when the last of them ends (see engine/nodes/subworkflow.py)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from sqlalchemy import exists
from sqlalchemy import select as sa_select
from sqlmodel import col, select, update
from sqlmodel.ext.asyncio.session import AsyncSession

from engine.graph import Graph
from engine.node_type_policy import EMPTY, NODE_TYPE_DISABLED
from engine.nodes.base import CallRefused, ChildResult, SubworkflowCall
from engine.nodes.growth import too_large
from engine.nodes.subworkflow import SUBWORKFLOW_MODE, TRIGGER
from engine.ports import CreatedExecution, ParentLink, StartConflict, StartRequest
from engine.states import ExecutionStatus, NodeRunStatus
from storage import output_reads, payload_store, payloads, workflows
from storage.db import Database
from storage.errors import VersionConflictError
from storage.executions import UNFINISHED
from storage.models import Execution, NodeRun, Workflow, WorkflowVersion
from storage.node_type_policies import NodeTypePolicies
from storage.recorder import GroupCommitWriter
from storage.types import utcnow

# Starts the executions of a call (`ExecutionLifecycle.start_calls`).
StartCalls = Callable[[Sequence[StartRequest]], Awaitable[Sequence[CreatedExecution]]]


class DatabaseWorkflowCaller:
    """`engine.nodes.base.WorkflowCaller`: the called workflow's version read from the
    database, its executions started by the execution lifecycle (`start_calls`)."""

    def __init__(
        self,
        database: Database,
        max_depth: int,
        start_calls: StartCalls,
        writer: GroupCommitWriter,
        policies: NodeTypePolicies | None = None,
    ) -> None:
        self.database = database
        self.max_depth = max_depth
        self.start_calls = start_calls
        # The process's writer: a process that lost the caller's lease adopts nothing.
        self.writer = writer
        # Node types disabled where the called workflow lives refuse the call.
        self.policies = policies

    async def start(self, call: SubworkflowCall) -> list[str]:
        if call.depth > self.max_depth:
            raise CallRefused(
                "SUBWORKFLOW_DEPTH_EXCEEDED",
                f"sub-workflow calls are nested more than {self.max_depth} deep "
                "(LOOM_MAX_SUBWORKFLOW_DEPTH); is a workflow calling itself without end?",
            )
        made = await self._started(call.parent_run_id)
        if made:  # this attempt started them already (it is being run again)
            return made
        adopted = await self._adopt(call)
        if adopted:
            return adopted
        async with self.database.transaction() as session:
            workflow = await workflows.get_workflow(
                session, call.workflow_id, [call.workspace_id], pins=False
            )
            if workflow is None:
                raise CallRefused(
                    "UNKNOWN_WORKFLOW", f"workflow {call.workflow_id!r} not found in this workspace"
                )
            if call.use_draft:
                try:
                    snapshot = await workflows.ensure_snapshot(session, workflow, None)
                except VersionConflictError as exc:
                    raise CallRefused("DRAFT_CHANGED", f"{exc}: try again") from exc
            else:
                if workflow.published_version is None:
                    raise CallRefused(
                        "WORKFLOW_NOT_PUBLISHED",
                        f"workflow {workflow.name!r} has no published version; publish it or "
                        "call its draft (source: draft)",
                    )
                snapshot = await _published(session, workflow)
            policy = EMPTY if self.policies is None else self.policies.current
            disabled = policy.problems(snapshot.nodes, workflow.workspace_id)
            if disabled:
                raise CallRefused(
                    NODE_TYPE_DISABLED,
                    f"workflow {workflow.name!r} cannot start: node {disabled[0].node_id!r}: "
                    f"{disabled[0].message}",
                )
            trigger = _trigger_node(snapshot.nodes, snapshot.edges)
            if trigger is None:
                raise CallRefused(
                    "NO_SUBWORKFLOW_TRIGGER",
                    f"workflow {workflow.name!r} has no 'When Called by Another Workflow' "
                    "trigger to start from",
                )
        requests = [
            StartRequest(
                workspace_id=workflow.workspace_id,
                workflow_id=workflow.id,
                workflow_settings=workflow.settings,
                version_id=snapshot.id,
                version=snapshot.version,
                mode=SUBWORKFLOW_MODE,
                input={"items": list(items)},
                start_node_id=trigger,
                parent=ParentLink(
                    execution_id=call.parent_execution_id,
                    node_id=call.parent_node_id,
                    run_id=call.parent_run_id,
                    batch=batch,
                    waits=call.wait,
                    depth=call.depth,
                ),
            )
            for batch, items in enumerate(call.batches)
        ]
        try:
            started = await self.start_calls(requests)
        except StartConflict as exc:
            # Another start of this very attempt's call got there first (a guard: the engine
            # runs an attempt once; a takeover runs a new attempt, which adopts): one
            # execution per call and batch (`uq_executions_parent_call`), theirs answer.
            made = await self._started(call.parent_run_id)
            if made:
                return made
            # Or the called workflow was deleted meanwhile.
            raise CallRefused(
                "UNKNOWN_WORKFLOW", f"workflow {call.workflow_id!r} not found in this workspace"
            ) from exc
        return [execution.id for execution in started]

    async def _adopt(self, call: SubworkflowCall) -> list[str]:
        """The executions started by the attempt this one replaces, made this attempt's.

        When a process loses its lease after its attempt of the node started the call's
        executions, the process taking over closes that attempt as WORKER_LOST and runs the
        node again, with the same input: the executions the lost attempt started (finished
        or not) are this one's, so each call runs once. Only from the node's latest attempt
        before this one, when it was lost that way and started as many executions as this
        call has batches."""
        async with self.writer.transaction(fenced=[call.parent_execution_id]) as transaction:
            session = transaction.session
            previous = (
                await session.exec(
                    select(NodeRun.id, NodeRun.status, NodeRun.error)
                    .where(
                        col(NodeRun.execution_id) == call.parent_execution_id,
                        col(NodeRun.node_id) == call.parent_node_id,
                        col(NodeRun.id) != call.parent_run_id,
                    )
                    .order_by(col(NodeRun.created_at).desc(), col(NodeRun.id).desc())
                    .limit(1)
                )
            ).first()
            if previous is None:
                return []
            run_id, status, error = previous
            if status != NodeRunStatus.FAILED.value or (error or {}).get("type") != "WORKER_LOST":
                return []
            children = (
                await session.exec(
                    select(Execution.id)
                    .where(col(Execution.parent_run_id) == run_id)
                    .order_by(col(Execution.parent_batch))
                )
            ).all()
            if len(children) != len(call.batches):
                return []
            moved = await session.exec(
                update(Execution)
                .where(col(Execution.parent_run_id) == run_id)
                .values(parent_run_id=call.parent_run_id)
            )
            if moved.rowcount == len(children):
                return list(children)
        # Another run of this attempt adopted them meanwhile (none moved here).
        return await self._started(call.parent_run_id)

    async def _started(self, parent_run_id: str) -> list[str]:
        """The executions the attempt `parent_run_id` started, by batch."""
        async with self.database.session() as session:
            made = await session.exec(
                select(Execution.id)
                .where(col(Execution.parent_run_id) == parent_run_id)
                .order_by(col(Execution.parent_batch))
            )
            return list(made.all())

    async def results(
        self, parent_run_id: str, max_bytes: int | None = None
    ) -> list[ChildResult] | None:
        async with self.database.session() as session:
            rows = (
                await session.exec(
                    select(Execution.id, Execution.status, Execution.error)
                    .where(col(Execution.parent_run_id) == parent_run_id)
                    .order_by(col(Execution.parent_batch))
                )
            ).all()
            if any(status in UNFINISHED for _, status, _ in rows):
                return None
        succeeded = [row[0] for row in rows if row[1] == ExecutionStatus.SUCCEEDED.value]
        # One connection at a time: the sizes are read, then (under the limit) the outputs.
        if max_bytes is not None:
            await _refuse_past(self.database, succeeded, max_bytes)
        async with self.database.session() as session:
            outputs = await payload_store.execution_payloads(session, succeeded, payloads.OUTPUT)
        return [
            ChildResult(
                execution_id=execution_id,
                status=status,
                output=_items(outputs.get(execution_id)),
                error=dict(error) if error else None,
            )
            for execution_id, status, error in rows
        ]


async def _refuse_past(database: Database, execution_ids: list[str], max_bytes: int) -> None:
    """NODE_OUTPUT_TOO_LARGE, before any is decoded, when the outputs of these executions
    together (the calling node's output) are larger than `max_bytes` as JSON."""
    stored = await output_reads.execution_outputs(database, execution_ids)
    # The node's items as one list: `[` and `]`, each call's items without their brackets,
    # and a comma between calls that gave any (`{"main":` and `}` left out: a lower bound).
    total = 2
    calls_with_items = 0
    for execution_id in execution_ids:
        output = stored.get(execution_id)
        if output is None:
            continue
        inner = output.items_bytes() - 2
        if inner > 0:
            total += inner + (calls_with_items > 0)
            calls_with_items += 1
        if total > max_bytes:
            raise too_large(total, max_bytes, "main", f"items of called execution {execution_id}")


async def _published(session: AsyncSession, workflow: Workflow) -> WorkflowVersion:
    assert workflow.published_version is not None
    version = await workflows.get_version(
        session, workflow.id, workflow.published_version, [workflow.workspace_id], pins=False
    )
    if version is None:
        raise CallRefused(
            "WORKFLOW_NOT_PUBLISHED", f"workflow {workflow.name!r} lost its published version"
        )
    return version


def _trigger_node(nodes: list[dict[str, Any]], edges: list[dict[str, Any]]) -> str | None:
    graph = Graph.from_json(nodes, edges)
    for node in graph.nodes:
        if node.type == TRIGGER and not node.disabled:
            return node.id
    return None


def _items(output: Any) -> list[dict[str, Any]]:
    if not isinstance(output, list):
        return []
    return [item for item in output if isinstance(item, dict)]


async def wake_caller(database: Database, parent_id: str, run_id: str) -> int | None:
    """Make the WAITING caller claimable now, if every execution its attempt `run_id`
    started has ended; its lease generation then (None: not waiting, or calls still run).
    Whoever finds it so submits it, even when another did already: submitting twice is
    harmless, and the other may have found its run still in progress and done nothing."""
    now = utcnow()
    children = Execution.__table__.alias("children")  # type: ignore[attr-defined]
    unfinished = exists(
        sa_select(children.c.id).where(
            children.c.parent_run_id == run_id, children.c.status.in_(UNFINISHED)
        )
    )
    async with database.transaction() as session:
        result = await session.exec(
            update(Execution)
            .where(
                col(Execution.id) == parent_id,
                col(Execution.status) == ExecutionStatus.WAITING.value,
                ~unfinished,
            )
            .values(resume_at=now)
        )
        if result.rowcount == 0:
            return None
        generation = await session.exec(
            select(Execution.lease_generation).where(col(Execution.id) == parent_id)
        )
        return generation.one()
