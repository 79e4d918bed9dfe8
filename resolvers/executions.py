"""Execution queries and mutations: run, inspect, list, cancel, retry."""

from __future__ import annotations

import asyncio
import logging
import time

import orjson
import strawberry
from sqlalchemy.exc import IntegrityError
from sqlmodel.ext.asyncio.session import AsyncSession
from strawberry.scalars import JSON

from engine.bus import EventPublisher
from engine.events import Event, EventType
from engine.graph import Graph
from engine.outputs import not_json_reason
from engine.plan import PlanError, prepare_plan
from engine.states import ExecutionStatus
from engine.submitter import Submitter
from engine.validation import Problem
from resolvers import mapping
from resolvers.context import Context, Services
from resolvers.node_types import node_types_for_graph
from resolvers.pagination import decode_cursor, encode_cursor, page_info, page_size
from resolvers.workflows import validation_error
from schema import execution_types as xtypes
from schema import results
from storage import executions, queueing, subworkflows, workflows
from storage.db import Database
from storage.models import Execution, Workflow, WorkflowVersion
from storage.types import storable

logger = logging.getLogger("loom.executions")

Info = strawberry.Info[Context, None]

MAX_IDEMPOTENCY_KEY = 255


def _not_found(kind: str, identifier: str) -> results.NotFoundError:
    return results.NotFoundError(
        message=f"{kind} {identifier!r} not found", id=strawberry.ID(identifier)
    )


def _problem(code: str, message: str, field: str) -> Problem:
    return Problem(code=code, message=message, field=field)


async def _runnable_problems(
    info: Info, workflow: Workflow, session: AsyncSession | None = None
) -> list[Problem]:
    """Every reason the graph cannot run (structure, parameters, expressions); compiles
    the plan, which the cache keeps for the runner when the snapshot id is known."""
    try:
        graph = Graph.from_json(workflow.nodes, workflow.edges)
        node_types = await node_types_for_graph(info, workflow.workspace_id, graph, session)
        await prepare_plan("check", graph, node_types, info.context.services.graph_limits)
    except PlanError as exc:
        return exc.problems
    return []


def _start_node_problems(workflow: Workflow, start_node_id: str) -> list[Problem]:
    graph = Graph.from_json(workflow.nodes, workflow.edges)
    start = graph.node(start_node_id)
    has_inputs = any(edge.target == start_node_id for edge in graph.edges)
    if start is None or has_inputs:
        return [
            _problem(
                "INVALID_START_NODE",
                f"node {start_node_id!r} does not exist or has inputs",
                "startNodeId",
            )
        ]
    return []


# How long cancelExecution waits for the process running the execution to record it.
CANCEL_WAIT_S = 2.0


async def _submit(info: Info, execution: Execution) -> None:
    await submit(info.context.services, execution)


async def submit(services: Services, execution: Execution) -> None:
    if services.submitter is None:
        raise RuntimeError("no submitter configured: executions cannot run in this process")
    await submit_to(services.database, services.submitter, services.publisher, execution)


async def submit_to(
    database: Database,
    submitter: Submitter,
    publisher: EventPublisher | None,
    execution: Execution,
) -> None:
    """Hand the committed execution to the submitter, or, when its workflow limits concurrent
    executions, whatever the limit admits now (FIFO). If the queue cannot be reached the
    execution stays QUEUED in the database and the sweeper enqueues it later. `publisher`
    is given the new execution's committed first event (for `executionUpdates`, and for
    whoever already follows it)."""
    if publisher is not None:
        queued = Event(
            execution.id,
            1,
            EventType.EXECUTION_QUEUED,
            execution.created_at,
            status=ExecutionStatus.QUEUED.value,
        )
        publisher.publish([queued])
    try:
        if execution.admitted_at is not None:
            await submitter.submit(execution.id, execution.lease_generation)
            return
        for due in await queueing.admit(database, execution.workflow_id):
            await submitter.submit(due.execution_id, due.generation)
    except (ConnectionError, OSError):  # QueueUnavailable is a ConnectionError
        logger.exception("execution %s: queue unreachable; the sweeper enqueues it", execution.id)


async def wake_caller(
    database: Database, submitter: Submitter, parent_id: str, run_id: str
) -> None:
    """Resume the execution whose attempt `run_id` waits for sub-workflow executions, if
    they have all ended."""
    try:
        generation = await subworkflows.wake_caller(database, parent_id, run_id)
        if generation is not None:
            await submitter.submit(parent_id, generation)
    except (ConnectionError, OSError):  # QueueUnavailable is a ConnectionError
        logger.exception("execution %s: queue unreachable; it resumes at its next check", parent_id)


async def execute_workflow(
    info: Info,
    id: strawberry.ID,
    input: JSON | None = None,
    idempotency_key: str | None = None,
    start_node_id: strawberry.ID | None = None,
) -> results.ExecutionResult:
    viewer = info.context.viewer()
    problems: list[Problem] = []
    if input is not None and not isinstance(input, dict):
        problems.append(_problem("INVALID_INPUT", "input must be a JSON object", "input"))
    elif input is not None:
        try:
            orjson.dumps(input)  # as the payload store will encode it
        except TypeError as exc:
            problems.append(
                _problem("INVALID_INPUT", f"input holds {not_json_reason(exc)}", "input")
            )
    if idempotency_key is not None and (
        not idempotency_key.strip()
        or len(idempotency_key) > MAX_IDEMPOTENCY_KEY
        or not storable(idempotency_key)
    ):
        problems.append(
            _problem(
                "INVALID_IDEMPOTENCY_KEY",
                f"idempotencyKey must be 1 to {MAX_IDEMPOTENCY_KEY} printable characters",
                "idempotencyKey",
            )
        )
    if problems:
        return validation_error(problems)
    workflow_id = str(id)
    learned: tuple[tuple[str, int], tuple[str, int]] | None = None
    try:
        async with info.context.database.transaction() as session:
            head = await workflows.get_workflow_head(session, workflow_id, viewer.workspace_ids)
            if head is None:
                return _not_found("workflow", workflow_id)
            if idempotency_key is not None:
                existing = await executions.find_by_idempotency_key(
                    session, workflow_id, idempotency_key
                )
                if existing is not None:
                    return mapping.execution(existing)
            services = info.context.services
            revision = (head.id, head.version)
            snapshot = services.snapshots.get(revision)
            if (
                start_node_id is not None
                or snapshot is None
                or not services.runnable_drafts.get(revision)
            ):
                # Not run before at this revision (or from a chosen node): check and
                # snapshot the whole draft.
                workflow = await workflows.get_workflow(session, workflow_id, viewer.workspace_ids)
                if workflow is None:
                    return _not_found("workflow", workflow_id)
                problems = await _runnable_problems(info, workflow, session)
                if start_node_id is not None:
                    problems += _start_node_problems(workflow, str(start_node_id))
                if problems:
                    return validation_error(problems)
                version = await workflows.ensure_snapshot(session, workflow, viewer.user_id)
                snapshot = (version.id, version.version)
                # Remembered only once committed (below): a concurrent request must not use
                # a snapshot this transaction may still roll back.
                learned = ((workflow.id, workflow.version), snapshot)
            execution = await executions.create_execution(
                session,
                workflow=head,
                snapshot=executions.Snapshot(*snapshot),
                mode="manual",
                input=input if input is not None else {},
                created_by=viewer.user_id,
                idempotency_key=idempotency_key,
                start_node_id=None if start_node_id is None else str(start_node_id),
            )
    except IntegrityError:
        # The same idempotency key, committed by a concurrent request: return that one.
        async with info.context.database.session() as session:
            existing = await executions.find_by_idempotency_key(
                session, workflow_id, idempotency_key or ""
            )
        if existing is None:
            raise
        return mapping.execution(existing)
    if learned is not None:
        revision, snapshot = learned
        info.context.services.runnable_drafts.put(revision, True)
        info.context.services.snapshots.put(revision, snapshot)
    await _submit(info, execution)
    return mapping.execution(execution)


async def execution(info: Info, id: strawberry.ID) -> xtypes.Execution | None:
    viewer = info.context.viewer()
    async with info.context.database.session() as session:
        row = await executions.get_execution(session, str(id), viewer.workspace_ids)
    return None if row is None else mapping.execution(row)


async def executions_page(
    info: Info,
    workflow_id: strawberry.ID | None = None,
    status: xtypes.ExecutionStatus | None = None,
    first: int | None = None,
    after: str | None = None,
) -> xtypes.ExecutionConnection:
    viewer = info.context.viewer()
    limit = page_size(first, info.context.services.max_page_size)
    key = decode_cursor(after) if after is not None else None
    async with info.context.database.session() as session:
        rows = await executions.list_executions(
            session,
            viewer.workspace_ids,
            workflow_id=None if workflow_id is None else str(workflow_id),
            status=None if status is None else status.name,
            limit=limit + 1,
            after=key,
        )
    page = rows[:limit]
    edges = [
        xtypes.ExecutionConnectionEdge(
            cursor=encode_cursor(row.created_at, row.id), node=mapping.execution(row)
        )
        for row in page
    ]
    return xtypes.ExecutionConnection(
        edges=edges,
        page_info=page_info(len(rows), limit, [edge.cursor for edge in edges], key),
    )


async def cancel_execution(info: Info, id: strawberry.ID) -> results.ExecutionResult:
    viewer = info.context.viewer()
    execution_id = str(id)
    async with info.context.database.session() as session:
        row = await executions.get_execution(session, execution_id, viewer.workspace_ids)
        if row is None:
            return _not_found("execution", execution_id)
    await _cancel(info, row)
    # The sub-workflow executions it waits for end with it (Temporal's default parent close
    # policy); those started without waiting go on.
    async with info.context.database.session() as session:
        descendants = await executions.waited_descendants(session, execution_id)
    for child in descendants:
        await _cancel(info, child)
    # Another process (a worker) records the cancellation: give it a moment to land.
    deadline = time.monotonic() + CANCEL_WAIT_S
    while True:
        async with info.context.database.session() as session:
            row = await executions.reload(session, execution_id)
        if row.status not in ("RUNNING", "WAITING") or time.monotonic() >= deadline:
            break
        await asyncio.sleep(0.02)
    if row.status == "CANCELLED":
        await _admit_next(info, row.workflow_id)
    return mapping.execution(row)


async def _cancel(info: Info, row: Execution) -> None:
    execution_id = row.id
    if row.status in ("RUNNING", "WAITING"):
        async with info.context.database.transaction() as session:
            await executions.request_cancel(session, execution_id)
    # The process running it records the cancellation (it owns the event sequence); one
    # never claimed is cancelled here, conditionally, so a concurrent claim cannot also win.
    submitter = info.context.services.submitter
    if submitter is not None and await submitter.cancel(execution_id):
        return
    async with info.context.database.transaction() as session:
        cancelled = await executions.cancel_queued(session, execution_id)
    if not cancelled:
        return
    publisher = info.context.services.publisher
    if publisher is not None:
        publisher.wake([execution_id])
    if submitter is not None and row.parent_waits and row.parent_execution_id and row.parent_run_id:
        # Nothing ran it, so nothing else tells its caller that it ended.
        await wake_caller(
            info.context.database, submitter, row.parent_execution_id, row.parent_run_id
        )


async def _admit_next(info: Info, workflow_id: str) -> None:
    """A cancelled execution may have held a slot of `maxConcurrentExecutions`."""
    submitter = info.context.services.submitter
    if submitter is None:
        return
    try:
        for due in await queueing.admit(info.context.database, workflow_id):
            await submitter.submit(due.execution_id, due.generation)
    except (ConnectionError, OSError):  # QueueUnavailable is a ConnectionError
        logger.exception("workflow %s: queue unreachable; the sweeper admits", workflow_id)


async def retry_execution(
    info: Info,
    id: strawberry.ID,
    from_failed_node: bool = True,
    use_latest_version: bool = False,
) -> results.ExecutionResult:
    viewer = info.context.viewer()
    execution_id = str(id)
    async with info.context.database.transaction() as session:
        original = await executions.get_execution(session, execution_id, viewer.workspace_ids)
        if original is None:
            return _not_found("execution", execution_id)
        if original.status not in ("SUCCEEDED", "FAILED", "CANCELLED"):
            return validation_error(
                [
                    _problem(
                        "EXECUTION_NOT_FINISHED",
                        f"execution {execution_id!r} is {original.status}; retry it once it "
                        "has finished",
                        "id",
                    )
                ]
            )
        workflow = await session.get(Workflow, original.workflow_id)
        if workflow is None:
            return _not_found("workflow", original.workflow_id)
        if use_latest_version:
            problems = await _runnable_problems(info, workflow, session)
            if problems:
                return validation_error(problems)
            snapshot = await workflows.ensure_snapshot(session, workflow, viewer.user_id)
        else:
            pinned = await session.get(WorkflowVersion, original.workflow_version_id)
            if pinned is None:
                return _not_found("workflow version", original.workflow_version_id)
            snapshot = pinned
        execution = await executions.create_execution(
            session,
            workflow=workflow,
            snapshot=snapshot,
            mode="retry",
            input=await executions.execution_input(session, original),
            created_by=viewer.user_id,
            start_node_id=original.start_node_id,
            retry_of=original.id,
            reuse_outputs=from_failed_node,
        )
    await _submit(info, execution)
    return mapping.execution(execution)
