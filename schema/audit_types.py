"""What `auditLog` shows: who did what, when (storage/audit.py writes the records)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

import strawberry
from strawberry.scalars import JSON

from schema.results import ForbiddenError, NotFoundError
from schema.types import PageInfo, User


@strawberry.type(description="Who made a change: a user, and the API token they used.")
class AuditActor:
    user_id: strawberry.ID = strawberry.field(description="The user's id.")
    user: User | None = strawberry.field(
        description="The user; null when the user no longer exists."
    )
    token_id: strawberry.ID | None = strawberry.field(
        description="The API token that authenticated the change (its id, never the token), "
        "scoped or not; null when no token did (the command line)."
    )


@strawberry.type(description="One change, as the audit log recorded it when it was made.")
class AuditEvent:
    id: strawberry.ID = strawberry.field(description="The record's id.")
    occurred_at: datetime = strawberry.field(description="When the change was made.")
    workspace_id: strawberry.ID | None = strawberry.field(
        description="The workspace changed; null for a server-wide change (an unscoped "
        "token, a node type policy of the whole server)."
    )
    actor: AuditActor = strawberry.field(description="Who made it.")
    action: str = strawberry.field(
        description='What was done, one of a fixed list (docs/api.md, "Audit log"): '
        "`workflow.create`, `member.role_change`, `execution.run`, ..."
    )
    target_kind: str = strawberry.field(
        description="What kind of thing was changed: workflow, credential, workspace, user "
        "(a member), token, execution or node_type."
    )
    target_id: str = strawberry.field(
        description="Its id (a node type: its name). It may no longer exist."
    )
    details: JSON = strawberry.field(
        description="A few facts about the change (a version, a name, the old and new role); "
        "never a credential's values nor a token."
    )


@strawberry.type(description="One record in an audit log page, with its cursor.")
class AuditEventEdge:
    cursor: str = strawberry.field(description="Opaque cursor; pass as `after`.")
    node: AuditEvent = strawberry.field(description="The record.")


@strawberry.type(description="A page of the audit log, newest first.")
class AuditEventConnection:
    edges: list[AuditEventEdge] = strawberry.field(description="The page's records.")
    page_info: PageInfo = strawberry.field(description="Paging state.")


AuditLogResult = Annotated[
    AuditEventConnection | NotFoundError | ForbiddenError,
    strawberry.union(
        "AuditLogResult",
        description="A page of the audit log; NotFoundError for a workspace you are not in; "
        "ForbiddenError for a role other than owner or admin there, or, without "
        "`workspaceId`, for anyone but a server admin.",
    ),
]
