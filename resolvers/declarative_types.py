"""A workspace's declarative node types: create, update (a new version each time), delete,
and the node types a workspace sees, which every check of one of its workflows uses."""

from __future__ import annotations

from typing import Annotated, Any

import strawberry
from sqlmodel.ext.asyncio.session import AsyncSession

from engine.declarative import definition_problems
from engine.validation import Problem
from resolvers import mapping
from resolvers.context import Context
from resolvers.permissions import refusal
from resolvers.workflows import validation_error
from resolvers.workspace_types import workspace_node_types
from schema import inputs, results, types
from storage import audit, node_type_definitions
from storage.audit import AuditAction
from storage.errors import DuplicateNameError, NotFoundError
from storage.node_type_definitions import ConcurrentChangeError, NodeTypeInUseError

Info = strawberry.Info[Context, None]

WorkspaceArgument = Annotated[
    strawberry.ID | None,
    strawberry.argument(description="The workspace; your personal workspace when omitted."),
]


def _workspace(info: Info, workspace_id: strawberry.ID | None) -> str | None:
    """The workspace meant, or None when it is not one of the viewer's."""
    viewer = info.context.viewer()
    wanted = viewer.personal_workspace_id if workspace_id is None else str(workspace_id)
    return wanted if wanted in viewer.workspace_ids else None


def _workspace_not_found(workspace_id: strawberry.ID | None) -> results.NotFoundError:
    return results.NotFoundError(
        message=f"workspace {workspace_id!r} not found", id=strawberry.ID(str(workspace_id))
    )


def _type_not_found(name: str) -> results.NotFoundError:
    return results.NotFoundError(
        message=f"node type {name!r} not found in this workspace", id=strawberry.ID(name)
    )


def _definition(input: inputs.DeclarativeNodeTypeInput) -> dict[str, Any]:
    """The input as the stored definition: the fields given, by their GraphQL names."""
    given = {
        "displayName": input.display_name,
        "description": input.description,
        "parametersSchema": input.parameters_schema,
        "credentialKinds": input.credential_kinds,
        "catalog": input.catalog,
        "requestTemplate": input.request_template,
        "responseMapping": input.response_mapping,
        "pagination": input.pagination,
    }
    return {key: value for key, value in given.items() if value is not None}


async def _mapped(info: Info, workspace_id: str, name: str) -> types.NodeType:
    """The type's latest version as `nodeType(name, workspaceId)` shows it."""
    view = await workspace_node_types(info, workspace_id)
    descriptor = view.get(name)
    assert descriptor is not None  # stored just now, in this workspace
    return mapping.node_type(descriptor, view)


async def _audited(
    info: Info,
    session: AsyncSession,
    action: AuditAction,
    workspace_id: str,
    name: str,
    **details: Any,
) -> None:
    await audit.record(
        session,
        actor=info.context.viewer(),
        action=action,
        workspace_id=workspace_id,
        target_kind="node_type",
        target_id=name,
        details=details,
    )


async def create_node_type(
    info: Info,
    name: Annotated[str, strawberry.argument(description="`ws.` and a snake_case name.")],
    input: inputs.DeclarativeNodeTypeInput,
    workspace_id: WorkspaceArgument = None,
) -> results.NodeTypeResult:
    return await _save(info, name, input, workspace_id, new=True)


async def update_node_type(
    info: Info,
    name: Annotated[str, strawberry.argument(description="The type to change.")],
    input: inputs.DeclarativeNodeTypeInput,
    workspace_id: WorkspaceArgument = None,
) -> results.NodeTypeResult:
    return await _save(info, name, input, workspace_id, new=False)


async def _save(
    info: Info,
    name: str,
    input: inputs.DeclarativeNodeTypeInput,
    workspace_id: strawberry.ID | None,
    *,
    new: bool,
) -> results.NodeTypeResult:
    """Store a new type (`new`: its name is checked too) or a new version of one."""
    workspace = _workspace(info, workspace_id)
    if workspace is None:
        return _workspace_not_found(workspace_id)
    if (forbidden := refusal(info, workspace)) is not None:
        return forbidden
    definition = _definition(input)
    problems = definition_problems(
        name if new else None, definition, info.context.services.registry.has_name
    )
    if problems:
        return validation_error(problems)
    write = node_type_definitions.create_type if new else node_type_definitions.update_type
    try:
        async with info.context.database.transaction() as session:
            row = await write(session, workspace, name, definition, info.context.viewer().user_id)
            action = AuditAction.NODE_TYPE_CREATE if new else AuditAction.NODE_TYPE_UPDATE
            await _audited(info, session, action, workspace, name, version=row.version)
    except DuplicateNameError:
        return validation_error(
            [
                Problem(
                    "DUPLICATE_NAME",
                    f"this workspace has a node type named {name!r} already (update it)",
                    None,
                    "name",
                )
            ]
        )
    except NotFoundError:
        return _type_not_found(name)
    except ConcurrentChangeError as exc:
        return validation_error([Problem("CONCURRENT_CHANGE", str(exc), None, "name")])
    return await _mapped(info, workspace, name)


async def delete_node_type(
    info: Info,
    name: Annotated[str, strawberry.argument(description="The type to delete.")],
    workspace_id: WorkspaceArgument = None,
) -> results.DeleteResult:
    workspace = _workspace(info, workspace_id)
    if workspace is None:
        return _workspace_not_found(workspace_id)
    if (forbidden := refusal(info, workspace)) is not None:
        return forbidden
    try:
        async with info.context.database.transaction() as session:
            await node_type_definitions.delete_type(session, workspace, name)
            await _audited(info, session, AuditAction.NODE_TYPE_DELETE, workspace, name)
    except NotFoundError:
        return _type_not_found(name)
    except NodeTypeInUseError as exc:
        return results.InUseError(
            message=str(exc),
            workflows=[
                types.WorkflowReference(id=strawberry.ID(workflow_id), name=workflow_name)
                for workflow_id, workflow_name in exc.workflows
            ],
        )
    return results.Deleted(id=strawberry.ID(name))
