"""The API's export and import of workflows: resolvers around
`storage.workflow_documents` (which `loom export` and `loom import` use too)."""

from __future__ import annotations

from typing import cast

import strawberry
from strawberry.scalars import JSON

from resolvers import mapping
from resolvers.context import Context
from resolvers.permissions import scope, target_workspace
from resolvers.workflows import validation_error
from resolvers.workspace_types import workspace_node_types
from schema import results, types
from storage.errors import NotFoundError
from storage.workflow_documents import export_document_of, import_document

Info = strawberry.Info[Context, None]


# Resolvers


async def export_workflow(
    info: Info, id: strawberry.ID, version: int | None = None
) -> results.ExportWorkflowResult:
    try:
        document, exported = await export_document_of(
            info.context.database, str(id), version, scope(info)
        )
    except NotFoundError as exc:
        return results.NotFoundError(message=str(exc), id=id)
    return types.WorkflowDocument(workflow_id=id, version=exported, document=cast(JSON, document))


async def import_workflow(
    info: Info, document: JSON, workspace_id: strawberry.ID | None = None
) -> results.ImportWorkflowResult:
    target = target_workspace(info, workspace_id)
    if not isinstance(target, str):
        return target
    services = info.context.services
    imported = await import_document(
        info.context.database,
        # The workspace's declarative types are known types there.
        await workspace_node_types(info, target),
        services.graph_limits,
        document,
        workspace_id=target,
        created_by=info.context.viewer().user_id,
        actor=info.context.viewer(),
    )
    if isinstance(imported, list):
        return validation_error(imported)
    return mapping.workflow(imported, info.context.services.node_type_policy())
