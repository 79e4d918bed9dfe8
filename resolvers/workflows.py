"""Workflow queries and mutations: read, list, change the draft, publish, activate.

Over 400 lines, but one cohesive thing: the workflow operations of the schema.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, cast

import strawberry
from sqlmodel.ext.asyncio.session import AsyncSession
from strawberry.scalars import JSON

from engine import editing, pins
from engine.graph import Graph
from engine.node_types import NodeTypeLookup, ParameterMigrationError
from engine.validation import Problem, Severity, check_graph
from engine.workflow_fields import MAX_WORKFLOW_NAME, Collected, check_text
from resolvers import mapping
from resolvers.context import Context
from resolvers.graph_input import (
    WorkflowFields,
    edge_from_input,
    node_from_input,
    workflow_from_input,
)
from resolvers.pagination import decode_cursor, encode_cursor, page_info, page_size
from resolvers.permissions import refusal, scope, target_workspace
from resolvers.workspace_types import node_types_for_graph
from schema import inputs, results, types
from storage import audit, errors, schedules, webhooks, workflows, workspaces
from storage.audit import AuditAction
from storage.models import Workflow
from storage.types import utcnow
from storage.workflow_checks import checked_graph, reference_problems
from storage.workflows import WorkflowHead

Info = strawberry.Info[Context, None]


def validation_error(problems: Sequence[Problem]) -> results.ValidationError:
    first = problems[0].message if problems else "invalid input"
    more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
    return results.ValidationError(
        message=f"{first}{more}",
        problems=[mapping.problem(problem.to_json()) for problem in problems],
    )


def _not_found(workflow_id: str) -> results.NotFoundError:
    return results.NotFoundError(
        message=f"workflow {workflow_id!r} not found", id=strawberry.ID(workflow_id)
    )


def _conflict(exc: errors.VersionConflictError) -> results.VersionConflictError:
    return results.VersionConflictError(
        message=str(exc),
        expected_version=exc.expected_version,
        current_version=exc.current_version,
    )


async def _audited(
    info: Info,
    session: AsyncSession,
    action: AuditAction,
    row: Workflow | WorkflowHead,
    **details: Any,
) -> None:
    """Record the caller's `action` on the workflow `row` in the change's transaction."""
    await audit.record(
        session,
        actor=info.context.viewer(),
        action=action,
        workspace_id=row.workspace_id,
        target_kind="workflow",
        target_id=row.id,
        details=details,
    )


async def _audited_update(info: Info, session: AsyncSession, row: Workflow) -> None:
    """A change of the draft: its new version, and the operation that made it."""
    await _audited(
        info,
        session,
        AuditAction.WORKFLOW_UPDATE,
        row,
        version=row.version,
        operation=info.field_name,
    )


async def _mapped(info: Info, row: Workflow) -> types.Workflow:
    """The draft as the API shows it, with the node types disabled now."""
    return mapping.workflow(row, info.context.services.node_type_policy())


async def _checked_graph(
    info: Info,
    graph: Graph,
    collected: Collected,
    workspace_id: str,
    previous: Graph | None = None,
    session: AsyncSession | None = None,
) -> tuple[Graph, dict[str, list[dict[str, object]]], list[Problem]]:
    """`checked_graph` with this server's limits and the node types the workspace sees."""
    node_types = await node_types_for_graph(info, workspace_id, graph, session)
    limits = info.context.services.graph_limits
    return await checked_graph(node_types, limits, graph, collected, previous)


# Queries


async def workflow(info: Info, id: strawberry.ID) -> types.Workflow | None:
    async with info.context.database.session() as session:
        row = await workflows.get_workflow(session, str(id), scope(info))
    return None if row is None else await _mapped(info, row)


async def workflows_page(
    info: Info,
    first: int | None = None,
    after: str | None = None,
    filter: inputs.WorkflowFilter | None = None,
) -> types.WorkflowConnection:
    limit = page_size(first, info.context.services.max_page_size)
    key = decode_cursor(after) if after is not None else None
    where = workflows.WorkflowFilter(
        name_contains=filter.name_contains if filter else None,
        tag=filter.tag if filter else None,
        active=filter.active if filter else None,
    )
    wants_total = any(
        getattr(selection, "name", None) == "totalCount"
        for selected in info.selected_fields
        for selection in selected.selections
    )
    async with info.context.database.session() as session:
        rows = await workflows.list_workflows(
            session, scope(info), where=where, limit=limit + 1, after=key
        )
        total = (
            await workflows.count_workflows(session, scope(info), where=where)
            if wants_total
            else None
        )
    page = rows[:limit]
    policy = info.context.services.node_type_policy()
    edges = [
        types.WorkflowConnectionEdge(
            cursor=encode_cursor(row.created_at, row.id), node=mapping.workflow(row, policy)
        )
        for row in page
    ]
    return types.WorkflowConnection(
        edges=edges,
        page_info=page_info(len(rows), limit, [edge.cursor for edge in edges], key),
        total_count_value=total,
    )


async def workflow_version(
    info: Info, id: strawberry.ID, version: int
) -> types.WorkflowVersion | None:
    async with info.context.database.session() as session:
        row = await workflows.get_version(session, str(id), version, scope(info))
    return None if row is None else mapping.workflow_version(row)


# Mutations on whole workflows


async def create_workflow(
    info: Info, input: inputs.WorkflowInput, workspace_id: strawberry.ID | None = None
) -> results.WorkflowResult:
    target = target_workspace(info, workspace_id)
    if not isinstance(target, str):
        return target
    collected = Collected()
    fields = workflow_from_input(input, collected)
    graph, node_issues, refusing = await _checked_graph(info, fields.graph, collected, target)
    if refusing:
        return validation_error(refusing)
    async with info.context.database.session() as session:
        refusing = await reference_problems(session, graph, target)
    if refusing:
        return validation_error(refusing)
    row = Workflow(
        workspace_id=target,
        name=fields.name,
        description=fields.description,
        tags=fields.tags,
        nodes=graph.nodes_to_json(),
        edges=graph.edges_to_json(),
        node_issues=node_issues,
        settings=fields.settings,
        created_by=info.context.viewer().user_id,
    )
    async with info.context.database.transaction() as session:
        await workflows.create_workflow(session, row)
        await _audited(info, session, AuditAction.WORKFLOW_CREATE, row, name=row.name)
    return await _mapped(info, row)


async def update_workflow(
    info: Info, id: strawberry.ID, input: inputs.WorkflowInput, expected_version: int
) -> results.WorkflowResult:
    viewer = info.context.viewer()
    collected = Collected()
    fields: WorkflowFields = workflow_from_input(input, collected)
    async with info.context.database.transaction() as session:
        current = await workflows.get_workflow(session, str(id), viewer.workspace_ids)
        if current is None:
            return _not_found(str(id))
        if (forbidden := refusal(info, current.workspace_id)) is not None:
            return forbidden
        if current.version != expected_version:
            return _conflict(
                errors.VersionConflictError(str(id), expected_version, current.version)
            )
        # A node renamed in this update keeps the expressions that refer to it working.
        previous = Graph.from_json(current.nodes, current.edges)
        graph = editing.carry_renames(previous, fields.graph)
        graph, node_issues, refusing = await _checked_graph(
            info, graph, collected, current.workspace_id, previous, session
        )
        refusing = refusing or await reference_problems(session, graph, current.workspace_id)
        if refusing:
            return validation_error(refusing)
        change = workflows.DraftChange(
            name=fields.name,
            description=fields.description,
            tags=fields.tags,
            nodes=graph.nodes_to_json(),
            edges=graph.edges_to_json(),
            node_issues=node_issues,
            settings=fields.settings,
            pinned_data=pins.kept(current.pinned_data, (node.id for node in graph.nodes)),
        )
        try:
            row = await workflows.update_draft(
                session, str(id), viewer.workspace_ids, expected_version, change
            )
        except errors.VersionConflictError as exc:
            return _conflict(exc)
        except errors.NotFoundError:  # deleted concurrently
            return _not_found(str(id))
        await _audited_update(info, session, row)
    # Webhook routes carry the workflow's settings (its concurrency limit).
    info.context.services.webhook_routes.clear()
    return await _mapped(info, row)


async def delete_workflow(info: Info, id: strawberry.ID) -> results.DeleteResult:
    viewer = info.context.viewer()
    try:
        async with info.context.database.transaction() as session:
            head = await workflows.get_workflow_head(session, str(id), viewer.workspace_ids)
            if head is None:
                return _not_found(str(id))
            if (forbidden := refusal(info, head.workspace_id)) is not None:
                return forbidden
            await workflows.delete_workflow(session, str(id), viewer.workspace_ids)
            await _audited(info, session, AuditAction.WORKFLOW_DELETE, head, version=head.version)
    except errors.NotFoundError:
        return _not_found(str(id))
    info.context.services.webhook_routes.clear()  # its routes went with it
    return results.Deleted(id=id)


async def duplicate_workflow(
    info: Info, id: strawberry.ID, name: str | None = None
) -> results.WorkflowResult:
    viewer = info.context.viewer()
    async with info.context.database.transaction() as session:
        source = await workflows.get_workflow(session, str(id), viewer.workspace_ids)
        if source is None:
            return _not_found(str(id))
        if (forbidden := refusal(info, source.workspace_id)) is not None:
            return forbidden
        collected = Collected()
        new_name = name if name is not None else f"{source.name} (copy)"[:255]
        check_text(collected, new_name, "name", max_length=MAX_WORKFLOW_NAME, required=True)
        if collected.problems:
            return validation_error(collected.problems)
        row = Workflow(
            workspace_id=source.workspace_id,
            name=new_name.strip(),
            description=source.description,
            tags=list(source.tags),
            nodes=source.nodes,
            edges=source.edges,
            node_issues=source.node_issues,
            settings=source.settings,
            pinned_data=source.pinned_data,
            created_by=viewer.user_id,
        )
        await workflows.create_workflow(session, row)
        await _audited(
            info, session, AuditAction.WORKFLOW_CREATE, row, name=row.name, copy_of=source.id
        )
    return await _mapped(info, row)


# Single-step graph edits


async def _edit_graph(
    info: Info,
    workflow_id: str,
    expected_version: int,
    edit: Callable[[Graph, NodeTypeLookup], Graph],
    collected: Collected,
) -> results.WorkflowResult:
    viewer = info.context.viewer()
    async with info.context.database.transaction() as session:
        current = await workflows.get_workflow(session, workflow_id, viewer.workspace_ids)
        if current is None:
            return _not_found(workflow_id)
        if (forbidden := refusal(info, current.workspace_id)) is not None:
            return forbidden
        if current.version != expected_version:
            return _conflict(
                errors.VersionConflictError(workflow_id, expected_version, current.version)
            )
        previous = Graph.from_json(current.nodes, current.edges)
        node_types = await node_types_for_graph(info, current.workspace_id, previous, session)
        try:
            graph = edit(previous, node_types)
        except editing.EditError as exc:
            collected.add(exc.code, exc.message, exc.field, exc.node_id)
            return validation_error(collected.problems)
        except ParameterMigrationError as exc:  # an upgrade that cannot carry them over
            for path, message in exc.problems:
                field = f"parameters.{path}" if path else "parameters"
                collected.add("MIGRATION_FAILED", message, field, exc.node_id)
            return validation_error(collected.problems)
        graph, node_issues, refusing = await _checked_graph(
            info, graph, collected, current.workspace_id, previous, session
        )
        refusing = refusing or await reference_problems(session, graph, current.workspace_id)
        if refusing:
            return validation_error(refusing)
        change = workflows.DraftChange(
            nodes=graph.nodes_to_json(),
            edges=graph.edges_to_json(),
            node_issues=node_issues,
            pinned_data=pins.kept(current.pinned_data, (node.id for node in graph.nodes)),
        )
        try:
            row = await workflows.update_draft(
                session, workflow_id, viewer.workspace_ids, expected_version, change
            )
        except errors.VersionConflictError as exc:
            return _conflict(exc)
        except errors.NotFoundError:  # deleted concurrently
            return _not_found(workflow_id)
        await _audited_update(info, session, row)
    return await _mapped(info, row)


async def add_node(
    info: Info, workflow_id: strawberry.ID, node: inputs.NodeInput, expected_version: int
) -> results.WorkflowResult:
    collected = Collected()
    new_node = node_from_input(node, collected, "node")
    return await _edit_graph(
        info,
        str(workflow_id),
        expected_version,
        lambda graph, _: editing.add_node(graph, new_node),
        collected,
    )


async def update_node(
    info: Info,
    workflow_id: strawberry.ID,
    node_id: strawberry.ID,
    node: inputs.NodeInput,
    expected_version: int,
) -> results.WorkflowResult:
    collected = Collected()
    new_node = node_from_input(node, collected, "node")
    return await _edit_graph(
        info,
        str(workflow_id),
        expected_version,
        lambda graph, _: editing.update_node(graph, str(node_id), new_node),
        collected,
    )


async def upgrade_node(
    info: Info,
    workflow_id: strawberry.ID,
    node_id: strawberry.ID,
    to_version: int,
    expected_version: int,
) -> results.WorkflowResult:
    return await _edit_graph(
        info,
        str(workflow_id),
        expected_version,
        lambda graph, node_types: editing.upgrade_node(graph, str(node_id), to_version, node_types),
        Collected(),
    )


async def remove_node(
    info: Info, workflow_id: strawberry.ID, node_id: strawberry.ID, expected_version: int
) -> results.WorkflowResult:
    return await _edit_graph(
        info,
        str(workflow_id),
        expected_version,
        lambda graph, _: editing.remove_node(graph, str(node_id)),
        Collected(),
    )


async def add_edge(
    info: Info, workflow_id: strawberry.ID, edge: inputs.EdgeInput, expected_version: int
) -> results.WorkflowResult:
    new_edge = edge_from_input(edge)
    return await _edit_graph(
        info,
        str(workflow_id),
        expected_version,
        lambda graph, _: editing.add_edge(graph, new_edge),
        Collected(),
    )


async def remove_edge(
    info: Info, workflow_id: strawberry.ID, edge: inputs.EdgeInput, expected_version: int
) -> results.WorkflowResult:
    old_edge = edge_from_input(edge)
    return await _edit_graph(
        info,
        str(workflow_id),
        expected_version,
        lambda graph, _: editing.remove_edge(graph, old_edge),
        Collected(),
    )


# Pinned data


async def _change_pins(
    info: Info,
    workflow_id: str,
    node_id: str,
    expected_version: int,
    change: Callable[[pins.Pins], list[Problem]],
) -> results.WorkflowResult:
    """Apply `change` to a copy of the draft's pins (it returns why it cannot) and save them
    as a draft change at `expected_version`."""
    viewer = info.context.viewer()
    async with info.context.database.transaction() as session:
        current = await workflows.get_workflow(session, workflow_id, viewer.workspace_ids)
        if current is None:
            return _not_found(workflow_id)
        if (forbidden := refusal(info, current.workspace_id)) is not None:
            return forbidden
        if current.version != expected_version:
            return _conflict(
                errors.VersionConflictError(workflow_id, expected_version, current.version)
            )
        if not any(node.get("id") == node_id for node in current.nodes):
            return validation_error([pins.node_missing(node_id)])
        pinned = dict(current.pinned_data)
        refusing = change(pinned)
        if refusing:
            return validation_error(refusing)
        try:
            row = await workflows.update_draft(
                session,
                workflow_id,
                viewer.workspace_ids,
                expected_version,
                workflows.DraftChange(pinned_data=pinned),
            )
        except errors.VersionConflictError as exc:
            return _conflict(exc)
        except errors.NotFoundError:  # deleted concurrently
            return _not_found(workflow_id)
        await _audited_update(info, session, row)
    return await _mapped(info, row)


async def pin_node_data(
    info: Info,
    workflow_id: strawberry.ID,
    node_id: strawberry.ID,
    items: JSON,
    expected_version: int,
) -> results.WorkflowResult:
    limits = info.context.services.graph_limits
    problems = pins.item_problems(items, node_id=str(node_id))
    if problems:
        return validation_error(problems)

    def pin(pinned: pins.Pins) -> list[Problem]:
        pinned[str(node_id)] = cast(list[dict[str, Any]], items)  # checked above
        return pins.size_problems(pinned, limits, str(node_id))

    return await _change_pins(info, str(workflow_id), str(node_id), expected_version, pin)


async def unpin_node_data(
    info: Info, workflow_id: strawberry.ID, node_id: strawberry.ID, expected_version: int
) -> results.WorkflowResult:
    def unpin(pinned: pins.Pins) -> list[Problem]:
        if pinned.pop(str(node_id), None) is None:
            return [
                Problem(
                    "NOT_PINNED",
                    f"node {str(node_id)!r} has no pinned data",
                    str(node_id),
                    "nodeId",
                )
            ]
        return []

    return await _change_pins(info, str(workflow_id), str(node_id), expected_version, unpin)


# Publishing and activation


async def publish_workflow(
    info: Info, id: strawberry.ID, expected_version: int
) -> results.WorkflowResult:
    viewer = info.context.viewer()
    try:
        async with info.context.database.transaction() as session:
            current = await workflows.get_workflow(session, str(id), viewer.workspace_ids)
            if current is None:
                return _not_found(str(id))
            if (forbidden := refusal(info, current.workspace_id)) is not None:
                return forbidden
            if current.version != expected_version:
                return _conflict(
                    errors.VersionConflictError(str(id), expected_version, current.version)
                )
            # Validate again: an installed plugin may have changed since the draft was saved.
            graph = Graph.from_json(current.nodes, current.edges)
            node_types = await node_types_for_graph(info, current.workspace_id, graph, session)
            report = await check_graph(graph, node_types, info.context.services.graph_limits)
            blocking = list(report.blocking_problems())
            policy = info.context.services.node_type_policy()
            blocking += policy.problems(current.nodes, current.workspace_id)
            if blocking:
                return validation_error(blocking)
            try:
                row, changed = await workflows.publish(
                    session, str(id), viewer.workspace_ids, expected_version, viewer.user_id
                )
            except errors.VersionConflictError as exc:
                return _conflict(exc)
            except errors.NotFoundError:  # deleted concurrently
                return _not_found(str(id))
            if changed:  # publishing the published version again changes and records nothing
                if row.active:
                    await _route_triggers(session, row)
                await _audited(
                    info, session, AuditAction.WORKFLOW_PUBLISH, row, version=row.published_version
                )
    except webhooks.PathTakenError as exc:  # rolled back: not published
        return _path_taken(exc)
    except schedules.InvalidScheduleError as exc:
        return _invalid_schedule(exc)
    info.context.services.webhook_routes.clear()
    return await _mapped(info, row)


async def set_workflow_active(
    info: Info, id: strawberry.ID, active: bool
) -> results.WorkflowResult:
    viewer = info.context.viewer()
    try:
        async with info.context.database.transaction() as session:
            current = await workflows.get_workflow(session, str(id), viewer.workspace_ids)
            if current is None:
                return _not_found(str(id))
            if (forbidden := refusal(info, current.workspace_id)) is not None:
                return forbidden
            if active:
                # deleteWorkspace checks for active workflows under this lock: an activation
                # committed between its check and its delete would be cascaded away.
                await info.context.database.lock(
                    session, workspaces.lock_name(current.workspace_id)
                )
            if active and current.published_version is None:
                return validation_error(
                    [
                        Problem(
                            code="NOT_PUBLISHED",
                            message="publish the workflow before activating it: "
                            "triggers run the published version",
                            field="active",
                            severity=Severity.STRUCTURAL,
                        )
                    ]
                )
            if active and (disabled := await _published_disabled(info, session, current)):
                return validation_error(disabled)
            try:
                row, changed = await workflows.set_active(
                    session, str(id), viewer.workspace_ids, active
                )
            except errors.NotFoundError:  # deleted concurrently
                return _not_found(str(id))
            if changed:  # switching to the state it has changes and records nothing
                await _route_triggers(session, row)
                switched = (
                    AuditAction.WORKFLOW_ACTIVATE if active else AuditAction.WORKFLOW_DEACTIVATE
                )
                await _audited(info, session, switched, row, version=row.published_version)
    except webhooks.PathTakenError as exc:  # rolled back: nothing changed
        return _path_taken(exc)
    except schedules.InvalidScheduleError as exc:
        return _invalid_schedule(exc)
    info.context.services.webhook_routes.clear()
    return await _mapped(info, row)


async def _published_disabled(
    info: Info, session: AsyncSession, workflow: Workflow
) -> list[Problem]:
    """NODE_TYPE_DISABLED for the published version's nodes whose type is disabled: it
    cannot be activated (its triggers would start executions that are refused)."""
    policy = info.context.services.node_type_policy()
    if not policy.affects(workflow.workspace_id) or workflow.published_version is None:
        return []
    version = await workflows.get_version(
        session, workflow.id, workflow.published_version, [workflow.workspace_id], pins=False
    )
    return [] if version is None else policy.problems(version.nodes, workflow.workspace_id)


async def _route_triggers(session: AsyncSession, workflow: Workflow) -> None:
    """The webhook routes and schedules of an active workflow follow its published version."""
    if not workflow.active or workflow.published_version is None:
        await webhooks.unregister(session, workflow.id)
        await schedules.unregister(session, workflow.id)
        return
    version = await workflows.get_version(
        session, workflow.id, workflow.published_version, [workflow.workspace_id], pins=False
    )
    if version is not None:
        await webhooks.register(session, workflow, version)
        await schedules.register(session, workflow, version, utcnow())


def _invalid_schedule(exc: schedules.InvalidScheduleError) -> results.ValidationError:
    return validation_error(
        [
            Problem(
                code="INVALID_SCHEDULE",
                message=message,
                node_id=exc.node_id,
                field=f"parameters.{parameter}",
                severity=Severity.STRUCTURAL,
            )
            for parameter, message in exc.problems
        ]
    )


def _path_taken(exc: webhooks.PathTakenError) -> results.ValidationError:
    problem = Problem(
        code="WEBHOOK_PATH_TAKEN",
        message=str(exc),
        node_id=exc.node_id,
        field="parameters.path",
        severity=Severity.STRUCTURAL,
    )
    return validation_error([problem])
