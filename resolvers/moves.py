"""`moveWorkflow`: a workflow, with its history, to another workspace of the caller's.

The caller needs `Action.EDIT` (resolvers/permissions.py) in both workspaces: the move
takes the workflow out of one and creates it in the other. Both workspaces' locks are
taken, in the order of their ids so that two moves in opposite directions cannot wait for
each other; under them the roles are read again as stored (a member removed meanwhile
moves nothing) and every problem of the move is found at once (storage/moves.py). A
refused move stores nothing.
"""

from __future__ import annotations

import strawberry

from engine.validation import Problem
from resolvers import mapping
from resolvers.context import Context
from resolvers.permissions import refusal, refusal_for, stored_role, target_workspace
from resolvers.workflows import validation_error
from schema import results
from storage import audit, moves, workflows, workspaces
from storage.audit import AuditAction

Info = strawberry.Info[Context, None]


def _not_found(workflow_id: str) -> results.NotFoundError:
    return results.NotFoundError(
        message=f"workflow {workflow_id!r} not found", id=strawberry.ID(workflow_id)
    )


async def move_workflow(
    info: Info, id: strawberry.ID, workspace_id: strawberry.ID
) -> results.WorkflowResult:
    viewer = info.context.viewer()
    identifier = str(id)
    async with info.context.database.transaction() as session:
        current = await workflows.get_workflow(session, identifier, viewer.workspace_ids)
        if current is None:
            return _not_found(identifier)
        source = current.workspace_id
        if (forbidden := refusal(info, source)) is not None:
            return forbidden
        target = target_workspace(info, str(workspace_id))
        if not isinstance(target, str):
            return target
        if target == source:
            message = "the workflow is in this workspace already"
            return validation_error([Problem("SAME_WORKSPACE", message, None, "workspaceId")])
        for locked in sorted((source, target)):
            await info.context.database.lock(session, workspaces.lock_name(locked))
        for workspace in (source, target):
            role = await stored_role(info, session, workspace)
            if (forbidden := refusal_for(info, role)) is not None:
                return forbidden
        # Read again under the locks: a move that held them first may have taken it away.
        # Its row stays locked until the commit: starts and saves of it wait or lose.
        await moves.hold(session, identifier)
        current = await workflows.get_workflow(session, identifier, [source], pins=False)
        if current is None:
            return _not_found(identifier)
        problems = await moves.move_problems(session, current, target)
        if current.active:  # triggers would start runs of types disabled there
            policy = info.context.services.node_type_policy()
            published = await moves.published_nodes(session, current)
            problems += policy.problems(published, target)
        if problems:
            return validation_error(problems)
        await moves.move(session, current, target)
        # Recorded in both workspaces: each one's owners and admins read their own log.
        for workspace, details in ((source, {"to": target}), (target, {"from": source})):
            await audit.record(
                session,
                actor=viewer,
                action=AuditAction.WORKFLOW_MOVE,
                workspace_id=workspace,
                target_kind="workflow",
                target_id=identifier,
                details={"name": current.name, **details},
            )
        session.expunge(current)
        moved = await workflows.get_workflow(session, identifier, [target])
        if moved is None:  # the row was moved in this transaction
            return _not_found(identifier)
    info.context.services.webhook_routes.clear()  # routes name the workflow's workspace
    return mapping.workflow(moved, info.context.services.node_type_policy())
