"""`auditLog`: a workspace's records for its owners and admins, any workspace's (a deleted
one's too) and every record for server admins."""

from __future__ import annotations

from typing import Annotated, cast

import strawberry
from strawberry.scalars import JSON

from resolvers import mapping
from resolvers.context import Context
from resolvers.errors import BAD_USER_INPUT, RequestError
from resolvers.pagination import decode_cursor, encode_cursor, page_info, page_size
from resolvers.permissions import refusal
from schema import audit_types, results
from storage import accounts, audit
from storage.models import AuditEvent, User

Info = strawberry.Info[Context, None]

_ACTIONS = ", ".join(action.value for action in audit.AuditAction)


def _action(name: str | None) -> audit.AuditAction | None:
    if name is None:
        return None
    action = audit.parse_action(name)
    if action is None:
        raise RequestError(
            f"unknown action {name[:64]!r}; one of {_ACTIONS}", BAD_USER_INPUT, field="action"
        )
    return action


async def audit_log(
    info: Info,
    workspace_id: Annotated[
        strawberry.ID | None,
        strawberry.argument(
            description="The workspace whose records to list (its owners and admins may; a "
            "server admin may name any workspace, a deleted one too); without it, every "
            "record, server-wide ones included (server admins only)."
        ),
    ] = None,
    first: Annotated[
        int | None, strawberry.argument(description="Records per page (default 20).")
    ] = None,
    after: Annotated[
        str | None, strawberry.argument(description="The cursor of the last record seen.")
    ] = None,
    actor: Annotated[
        strawberry.ID | None, strawberry.argument(description="Only this user's records.")
    ] = None,
    action: Annotated[
        str | None,
        strawberry.argument(description="Only this action's records (`workflow.publish`, ...)."),
    ] = None,
) -> audit_types.AuditLogResult:
    viewer = info.context.viewer()
    limit = page_size(first, info.context.services.max_page_size)
    key = decode_cursor(after) if after is not None else None
    wanted = _action(action)
    workspace_ids: list[str] | None = None
    if workspace_id is None:
        if not viewer.is_admin:
            return results.ForbiddenError(
                message="only a server admin may read the whole audit log; a workspace's "
                "owners and admins may read its own (workspaceId)"
            )
    else:
        # A server admin reads any workspace's records, one they are not in and one deleted
        # (its records outlive it) too; anyone else those of a workspace they own or admin.
        if not viewer.is_admin:
            if str(workspace_id) not in viewer.workspace_ids:
                return results.NotFoundError(
                    message=f"workspace {str(workspace_id)[:64]!r} not found",
                    id=strawberry.ID(str(workspace_id)[:64]),
                )
            if (forbidden := refusal(info, str(workspace_id))) is not None:
                return forbidden
        workspace_ids = [str(workspace_id)]
    async with info.context.database.session() as session:
        rows = await audit.list_events(
            session,
            workspace_ids,
            actor_id=None if actor is None else str(actor),
            action=wanted,
            limit=limit + 1,
            after=key,
        )
        page = rows[:limit]
        users = await accounts.users_by_ids(session, sorted({row.actor_id for row in page}))
    edges = [
        audit_types.AuditEventEdge(
            cursor=encode_cursor(row.occurred_at, row.id), node=_event(row, users)
        )
        for row in page
    ]
    return audit_types.AuditEventConnection(
        edges=edges, page_info=page_info(len(rows), limit, [edge.cursor for edge in edges], key)
    )


def _event(row: AuditEvent, users: dict[str, User]) -> audit_types.AuditEvent:
    user = users.get(row.actor_id)
    return audit_types.AuditEvent(
        id=strawberry.ID(row.id),
        occurred_at=row.occurred_at,
        workspace_id=None if row.workspace_id is None else strawberry.ID(row.workspace_id),
        actor=audit_types.AuditActor(
            user_id=strawberry.ID(row.actor_id),
            user=None if user is None else mapping.user(user),
            token_id=None if row.token_id is None else strawberry.ID(row.token_id),
        ),
        action=row.action,
        target_kind=row.target_kind,
        target_id=row.target_id,
        details=cast(JSON, row.details),
    )
