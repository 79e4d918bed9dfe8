"""Execution queries and mutations: run, inspect, list, cancel, retry.

Over 400 lines, but one cohesive thing: the execution operations of the schema.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import orjson
import strawberry
from sqlmodel.ext.asyncio.session import AsyncSession
from strawberry.scalars import JSON

from engine import partial, pins
from engine.graph import Graph
from engine.lifecycle import ExecutionLifecycle
from engine.outputs import not_json_reason
from engine.plan import PlanError, prepare_plan
from engine.ports import StartConflict, StartedBy, StartRequest
from engine.validation import Problem
from resolvers import mapping
from resolvers.context import Context
from resolvers.pagination import decode_cursor, encode_cursor, page_info, page_size
from resolvers.permissions import refusal, scope
from resolvers.workflows import validation_error
from resolvers.workspace_types import node_types_for_graph
from schema import execution_types as xtypes
from schema import results
from storage import errors, executions, payload_store, reuse, workflows
from storage.audit import AuditAction
from storage.models import Execution, Workflow, WorkflowVersion
from storage.types import storable

logger = logging.getLogger("loom.executions")

Info = strawberry.Info[Context, None]

MAX_IDEMPOTENCY_KEY = 255


def _not_found(kind: str, identifier: str) -> results.NotFoundError:
    return results.NotFoundError(
        message=f"{kind} {identifier!r} not found", id=strawberry.ID(identifier)
    )


def _started_by(info: Info, action: AuditAction) -> StartedBy:
    viewer = info.context.viewer()
    return StartedBy(user_id=viewer.user_id, token_id=viewer.token_id, action=action.value)


def _problem(code: str, message: str, field: str) -> Problem:
    return Problem(code=code, message=message, field=field)


def _disabled_problems(nodes: list[dict[str, Any]], workspace_id: str, info: Info) -> list[Problem]:
    """NODE_TYPE_DISABLED for every node whose type is disabled in the workspace: no new
    execution starts while one is (those running finish)."""
    return info.context.services.node_type_policy().problems(nodes, workspace_id)


async def _runnable_problems(
    info: Info, workflow: Workflow, session: AsyncSession | None = None, only: str | None = None
) -> list[Problem]:
    """Every reason the graph cannot run (structure, parameters, expressions, node types
    disabled); with `only`, a node id, every reason that node cannot run on its own
    (`executeNode`: the other nodes may have problems still)."""
    nodes = workflow.nodes
    if only is not None:
        nodes = [node for node in nodes if node.get("id") == only]
    disabled = _disabled_problems(nodes, workflow.workspace_id, info)
    if disabled:
        return disabled
    try:
        graph = Graph.from_json(workflow.nodes, workflow.edges)
        node_types = await node_types_for_graph(info, workflow.workspace_id, graph, session)
        limits = info.context.services.graph_limits
        await prepare_plan("check", graph, node_types, limits, only=only)
    except PlanError as exc:
        return exc.problems
    return []


def _start_node_problems(graph: Graph, start_node_id: str) -> list[Problem]:
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


def _destination_problems(
    info: Info, graph: Graph, destination_id: str, start_node_id: str | None
) -> list[Problem]:
    """Why the workflow cannot run to the node: it does not exist, or no trigger (or the
    chosen start node) is upstream of it."""
    destination = graph.node(destination_id)
    if destination is None:
        return [
            _problem(
                "INVALID_DESTINATION_NODE",
                f"the workflow has no node with id {destination_id!r}",
                "destinationNodeId",
            )
        ]
    needed = partial.ancestors(graph, destination_id) | {destination_id}
    if start_node_id is not None:
        start = start_node_id
    else:
        # The node the run starts from, chosen as the executor chooses it
        # (`_Run._start_node`): a manual trigger, else a trigger, else a node without inputs.
        targets = {edge.target for edge in graph.edges}
        roots = [node for node in graph.nodes if node.id not in targets]
        registry = info.context.services.registry
        triggers = [
            node
            for node in roots
            if (node_type := registry.get(node.type, node.type_version)) is not None
            and node_type.is_trigger
        ]
        manual = [node for node in triggers if node.type == "manual_trigger"]
        candidates = manual or triggers or roots
        start = candidates[0].id if candidates else ""
    ok = start in needed
    if ok:
        return []
    return [
        _problem(
            "DESTINATION_NOT_DOWNSTREAM",
            f"node {destination.name!r} is not downstream of "
            + ("the start node" if start_node_id is not None else "a trigger")
            + ": nothing would run into it",
            "destinationNodeId",
        )
    ]


def _chosen_node_problems(
    info: Info,
    graph: Graph,
    start_node_id: str | None,
    destination_node_id: str | None,
    problems: list[Problem],
) -> list[Problem]:
    """`problems` (those of the graph), then why the run cannot start from the node chosen
    (`startNodeId`), then, only when nothing else is wrong, why it cannot run to the node
    chosen (`destinationNodeId`)."""
    if start_node_id is not None:
        problems = problems + _start_node_problems(graph, start_node_id)
    if destination_node_id is not None and not problems:
        problems = problems + _destination_problems(info, graph, destination_node_id, start_node_id)
    return problems


async def _reuse_source(
    session: AsyncSession,
    workflow_id: str,
    reuse_from: str | None,
    workspace_ids: Sequence[str],
) -> str | None:
    """The execution whose outputs a run to a node may reuse: `reuseFrom`, which must be a
    finished execution of this workflow that the caller can see, or the latest manual one."""
    if reuse_from is None:
        latest = await reuse.latest_reusable(session, workflow_id, workspace_ids)
        return None if latest is None else latest.id
    earlier = await reuse.reuse_candidate(session, reuse_from, workspace_ids)
    if earlier is None:
        raise _Refused(_not_found("execution", reuse_from))
    earlier_workflow, earlier_finished = earlier
    if earlier_workflow != workflow_id:
        raise _Refused(
            validation_error(
                [
                    _problem(
                        "REUSE_FROM_OTHER_WORKFLOW",
                        f"execution {reuse_from!r} is of another workflow: only an "
                        "execution of this workflow can be reused",
                        "reuseFrom",
                    )
                ]
            )
        )
    if not earlier_finished:
        # As the default: a run still going has not produced (and stored) what it will.
        raise _Refused(
            validation_error(
                [
                    _problem(
                        "REUSE_FROM_UNFINISHED",
                        f"execution {reuse_from!r} has not finished: only a finished "
                        "execution's outputs can be reused",
                        "reuseFrom",
                    )
                ]
            )
        )
    return reuse_from


async def _snapshot(
    session: AsyncSession, workflow: Workflow, user_id: str | None
) -> WorkflowVersion:
    """The snapshot of the draft as read; a draft changed since (another caller's edit
    committed in between) refuses the run rather than run a version it was not checked at."""
    try:
        return await workflows.ensure_snapshot(session, workflow, user_id)
    except errors.VersionConflictError as exc:
        raise _Refused(
            validation_error([_problem("DRAFT_CHANGED", f"{exc}: try again", "id")])
        ) from exc


class _Refused(Exception):
    """Why a start's `prepare` creates nothing: the answer to give instead."""

    def __init__(self, answer: results.ExecutionResult) -> None:
        super().__init__()
        self.answer = answer


def _lifecycle(info: Info) -> ExecutionLifecycle:
    lifecycle = info.context.services.lifecycle
    if lifecycle is None:
        raise RuntimeError("no execution lifecycle configured: executions cannot run here")
    return lifecycle


async def execute_workflow(
    info: Info,
    id: strawberry.ID,
    input: JSON | None = None,
    idempotency_key: str | None = None,
    start_node_id: strawberry.ID | None = None,
    destination_node_id: strawberry.ID | None = None,
    reuse_from: strawberry.ID | None = None,
) -> results.ExecutionResult:
    viewer = info.context.viewer()
    problems: list[Problem] = []
    if reuse_from is not None and destination_node_id is None:
        problems.append(
            _problem(
                "REUSE_WITHOUT_DESTINATION",
                "reuseFrom is for a run to a node: give destinationNodeId too",
                "reuseFrom",
            )
        )
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
    async with info.context.database.session() as session:
        head = await workflows.get_workflow_head(session, workflow_id, viewer.workspace_ids)
    if head is None:
        return _not_found("workflow", workflow_id)
    if (forbidden := refusal(info, head.workspace_id)) is not None:
        return forbidden

    async def prepare() -> StartRequest:
        assert head is not None
        services = info.context.services
        revision = (head.id, head.version)
        snapshot = services.snapshots.get(revision)
        reused: str | None = None
        runnable = services.runnable_drafts.get(revision)
        whole = start_node_id is None and destination_node_id is None
        start = None if start_node_id is None else str(start_node_id)
        destination = None if destination_node_id is None else str(destination_node_id)
        graph = None if whole else services.draft_graphs.get(revision)
        if runnable is not None and snapshot is not None and (whole or graph is not None):
            # Checked and snapshotted before at this revision: the node types against the
            # policies now, and (from or to a chosen node) the nodes chosen.
            nodes = [{"id": node_id, "type": type_name} for node_id, type_name in runnable]
            problems = _disabled_problems(nodes, head.workspace_id, info)
            if graph is not None:
                problems = _chosen_node_problems(info, graph, start, destination, problems)
            if problems:
                raise _Refused(validation_error(problems))
            if destination is not None:
                async with info.context.database.session() as session:
                    reused = await _reuse_source(
                        session,
                        head.id,
                        None if reuse_from is None else str(reuse_from),
                        viewer.workspace_ids,
                    )
        else:
            # Not run before at this revision: check and snapshot the whole draft.
            async with info.context.database.transaction() as session:
                workflow = await workflows.get_workflow(
                    session, workflow_id, viewer.workspace_ids, pins=False
                )
                if workflow is None:
                    raise _Refused(_not_found("workflow", workflow_id))
                graph = Graph.from_json(workflow.nodes, workflow.edges)
                problems = _chosen_node_problems(
                    info,
                    graph,
                    start,
                    destination,
                    await _runnable_problems(info, workflow, session),
                )
                if problems:
                    raise _Refused(validation_error(problems))
                if destination is not None:
                    reused = await _reuse_source(
                        session,
                        workflow.id,
                        None if reuse_from is None else str(reuse_from),
                        viewer.workspace_ids,
                    )
                version = await _snapshot(session, workflow, viewer.user_id)
                snapshot = (version.id, version.version)
            # Remembered only once committed: a concurrent request must not use a snapshot
            # that may still be rolled back.
            running = tuple(
                (str(node["id"]), str(node["type"]))
                for node in workflow.nodes
                if not node.get("disabled")
            )
            revision = (workflow.id, workflow.version)
            services.runnable_drafts.put(revision, running)
            services.snapshots.put(revision, snapshot)
            if not whole:
                services.draft_graphs.put(revision, graph)
        return StartRequest(
            workspace_id=head.workspace_id,
            workflow_id=head.id,
            workflow_settings=head.settings,
            version_id=snapshot[0],
            version=snapshot[1],
            mode="manual",
            input=input if isinstance(input, dict) else {},
            created_by=viewer.user_id,
            idempotency_key=idempotency_key,
            start_node_id=start,
            destination_node_id=destination,
            reuse_from=reused,
            started_by=_started_by(info, AuditAction.EXECUTION_RUN),
        )

    try:
        started = await _lifecycle(info).start(
            prepare,
            idempotency_key=None if idempotency_key is None else (workflow_id, idempotency_key),
        )
    except _Refused as refused:
        return refused.answer
    except StartConflict:
        # Deleted, or moved to another workspace, since it was read; or the execution whose
        # outputs it reuses, pruned meanwhile.
        if reuse_from is not None:
            return results.NotFoundError(
                message=f"workflow {str(workflow_id)!r} or execution {str(reuse_from)!r} "
                "not found (deleted since the run was prepared)",
                id=strawberry.ID(str(reuse_from)),
            )
        return _not_found("workflow", workflow_id)
    assert isinstance(started.execution, Execution)
    return mapping.execution(started.execution)


async def execute_node(
    info: Info, workflow_id: strawberry.ID, node_id: strawberry.ID, items: JSON
) -> results.ExecutionResult:
    viewer = info.context.viewer()
    problems = pins.item_problems(items)
    if problems:
        return validation_error(problems)

    async def prepare() -> StartRequest:
        async with info.context.database.transaction() as session:
            workflow = await workflows.get_workflow(
                session, str(workflow_id), viewer.workspace_ids, pins=False
            )
            if workflow is None:
                raise _Refused(_not_found("workflow", str(workflow_id)))
            if (forbidden := refusal(info, workflow.workspace_id)) is not None:
                raise _Refused(forbidden)
            tested = next((n for n in workflow.nodes if n.get("id") == str(node_id)), None)
            if tested is None:
                raise _Refused(validation_error([pins.node_missing(str(node_id))]))
            node_types = await node_types_for_graph(
                info, workflow.workspace_id, Graph.from_json(workflow.nodes, []), session
            )
            tested_type = node_types.get(str(tested.get("type")), tested.get("typeVersion"))
            if tested_type is not None and len(tested_type.inputs) > 1:
                # The items go to the node's one input; which of several would be a guess.
                raise _Refused(
                    validation_error(
                        [
                            Problem(
                                "NODE_HAS_SEVERAL_INPUTS",
                                f"node {str(node_id)!r} has {len(tested_type.inputs)} inputs "
                                f"({', '.join(port.name for port in tested_type.inputs)}): "
                                "executeNode gives items to a node with one; run the workflow "
                                "to it instead (executeWorkflow with destinationNodeId)",
                                str(node_id),
                                "nodeId",
                            )
                        ]
                    )
                )
            problems = await _runnable_problems(info, workflow, session, only=str(node_id))
            if problems:
                raise _Refused(validation_error(problems))
            version = await _snapshot(session, workflow, viewer.user_id)
        return StartRequest(
            workspace_id=workflow.workspace_id,
            workflow_id=workflow.id,
            workflow_settings=workflow.settings,
            version_id=version.id,
            version=version.version,
            mode="manual",
            input={"items": items},
            created_by=viewer.user_id,
            destination_node_id=str(node_id),
            node_only=True,
            started_by=_started_by(info, AuditAction.EXECUTION_RUN),
        )

    try:
        started = await _lifecycle(info).start(prepare)
    except _Refused as refused:
        return refused.answer
    except StartConflict:  # deleted, or moved to another workspace, since it was read
        return _not_found("workflow", workflow_id)
    assert isinstance(started.execution, Execution)
    return mapping.execution(started.execution)


async def execution(info: Info, id: strawberry.ID) -> xtypes.Execution | None:
    async with info.context.database.session() as session:
        row = await executions.get_execution(session, str(id), scope(info))
    return None if row is None else mapping.execution(row)


async def executions_page(
    info: Info,
    workflow_id: strawberry.ID | None = None,
    status: xtypes.ExecutionStatus | None = None,
    first: int | None = None,
    after: str | None = None,
) -> xtypes.ExecutionConnection:
    limit = page_size(first, info.context.services.max_page_size)
    key = decode_cursor(after) if after is not None else None
    async with info.context.database.session() as session:
        rows = await executions.list_executions(
            session,
            scope(info),
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
    if (forbidden := refusal(info, row.workspace_id)) is not None:
        return forbidden
    # The transaction that takes the cancel records it (storage/cancellation.py), only when
    # it changed the execution: an ended one, or a second concurrent cancel, records nothing.
    by = _started_by(info, AuditAction.EXECUTION_CANCEL)
    cancelled = await _lifecycle(info).cancel(row, by)
    if cancelled is None:
        return _not_found("execution", execution_id)  # pruned since it was read
    assert isinstance(cancelled, Execution)
    return mapping.execution(cancelled)


async def retry_execution(
    info: Info,
    id: strawberry.ID,
    from_failed_node: bool = True,
    use_latest_version: bool = False,
) -> results.ExecutionResult:
    viewer = info.context.viewer()
    execution_id = str(id)

    async def prepare() -> StartRequest:
        async with info.context.database.transaction() as session:
            original = await executions.get_execution(session, execution_id, viewer.workspace_ids)
            if original is None:
                raise _Refused(_not_found("execution", execution_id))
            if (forbidden := refusal(info, original.workspace_id)) is not None:
                raise _Refused(forbidden)
            if original.status not in ("SUCCEEDED", "FAILED", "CANCELLED"):
                raise _Refused(
                    validation_error(
                        [
                            _problem(
                                "EXECUTION_NOT_FINISHED",
                                f"execution {execution_id!r} is {original.status}; retry it once "
                                "it has finished",
                                "id",
                            )
                        ]
                    )
                )
            if original.node_only or original.destination_node_id is not None:
                # Retrying it as a whole run would run what the user chose not to (the
                # nodes past the destination, the side branches, the pinned nodes).
                what = "executeNode" if original.node_only else "a run to a node"
                raise _Refused(
                    validation_error(
                        [
                            _problem(
                                "PARTIAL_RUN_NOT_RETRYABLE",
                                f"execution {execution_id!r} was {what}: run it again the "
                                "same way instead of retrying it",
                                "id",
                            )
                        ]
                    )
                )
            if original.saved_data is not None:
                # Its input and outputs were not kept (its workflow's saveData settings).
                raise _Refused(
                    validation_error(
                        [
                            _problem(
                                "EXECUTION_DATA_NOT_KEPT",
                                f"execution {execution_id!r} kept only a {original.saved_data} "
                                "of its data (its workflow's settings): there is no input or "
                                "output to retry it with; run the workflow again instead",
                                "id",
                            )
                        ]
                    )
                )
            # A retry is not a manual run of the draft: it reads neither draft's nor version's
            # pins (the run's load reads the snapshot's, should it be manual).
            workflow = await workflows.get_without_pins(session, Workflow, original.workflow_id)
            if workflow is None:
                raise _Refused(_not_found("workflow", original.workflow_id))
            snapshot: WorkflowVersion | None
            if use_latest_version:
                problems = await _runnable_problems(info, workflow, session)
                if problems:
                    raise _Refused(validation_error(problems))
                snapshot = await _snapshot(session, workflow, viewer.user_id)
            else:
                snapshot = await workflows.get_without_pins(
                    session, WorkflowVersion, original.workflow_version_id
                )
                if snapshot is None:
                    raise _Refused(_not_found("workflow version", original.workflow_version_id))
                disabled = _disabled_problems(snapshot.nodes, workflow.workspace_id, info)
                if disabled:
                    raise _Refused(validation_error(disabled))
            return StartRequest(
                workspace_id=workflow.workspace_id,
                workflow_id=workflow.id,
                workflow_settings=workflow.settings,
                version_id=snapshot.id,
                version=snapshot.version,
                mode="retry",
                input=await payload_store.execution_input(session, original),
                created_by=viewer.user_id,
                start_node_id=original.start_node_id,
                retry_of=original.id,
                reuse_outputs=from_failed_node,
                started_by=_started_by(info, AuditAction.EXECUTION_RETRY),
            )

    try:
        started = await _lifecycle(info).start(prepare)
    except _Refused as refused:
        return refused.answer
    except StartConflict:
        # A foreign key of the new execution failed: the pruner deleted its source (or the
        # workflow was deleted) between the read above and the write.
        async with info.context.database.session() as session:
            source = await executions.get_execution(session, execution_id, viewer.workspace_ids)
        if source is None:
            return _not_found("execution", execution_id)
        return _not_found("workflow", source.workflow_id)
    assert isinstance(started.execution, Execution)
    return mapping.execution(started.execution)
