"""The audit log: who did what, when (issue 18).

Each change that an API caller makes writes one `AuditEvent` with `record`, in the change's
own transaction: a change refused or rolled back leaves no record, and no record is left
without its change. Rows are never updated; retention removes them by age
(storage/retention.py, `LOOM_AUDIT_MAX_AGE_HOURS`).

The actor is the user and the id of the API token the call used (scoped or not), so that a
leaked token's actions can be found.

`details` holds a few plain facts (a version, a name, an old and a new role), never a
credential's values nor a token: callers pass only what the action's description needs.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from enum import StrEnum
from typing import Any, Protocol

from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from storage.models import AuditEvent
from storage.paging import newest_first


class AuditAction(StrEnum):
    """Every action the audit log records: the one list `auditLog(action:)` accepts."""

    WORKFLOW_CREATE = "workflow.create"
    WORKFLOW_UPDATE = "workflow.update"
    WORKFLOW_PUBLISH = "workflow.publish"
    WORKFLOW_ACTIVATE = "workflow.activate"
    WORKFLOW_DEACTIVATE = "workflow.deactivate"
    WORKFLOW_DELETE = "workflow.delete"
    WORKFLOW_MOVE = "workflow.move"
    CREDENTIAL_CREATE = "credential.create"
    CREDENTIAL_UPDATE = "credential.update"
    CREDENTIAL_SHARE = "credential.share"
    CREDENTIAL_UNSHARE = "credential.unshare"
    CREDENTIAL_DELETE = "credential.delete"
    WORKSPACE_CREATE = "workspace.create"
    WORKSPACE_RENAME = "workspace.rename"
    WORKSPACE_DELETE = "workspace.delete"
    MEMBER_ADD = "member.add"
    MEMBER_ROLE_CHANGE = "member.role_change"
    MEMBER_REMOVE = "member.remove"
    TOKEN_CREATE = "token.create"  # noqa: S105 (an action's name, not a secret)
    TOKEN_REVOKE = "token.revoke"  # noqa: S105 (an action's name, not a secret)
    EXECUTION_RUN = "execution.run"
    EXECUTION_CANCEL = "execution.cancel"
    EXECUTION_RETRY = "execution.retry"
    NODE_TYPE_POLICY_CHANGE = "node_type_policy.change"
    NODE_TYPE_CREATE = "node_type.create"
    NODE_TYPE_UPDATE = "node_type.update"
    NODE_TYPE_DELETE = "node_type.delete"


class Actor(Protocol):
    """Who acts: a user, and the token they used, scoped or not (a `Principal`, a
    `StartedBy`)."""

    @property
    def user_id(self) -> str: ...

    @property
    def token_id(self) -> str | None: ...


def parse_action(name: str) -> AuditAction | None:
    """The action called `name`; None when the log has no such action."""
    try:
        return AuditAction(name)
    except ValueError:
        return None


def event(
    *,
    actor: Actor,
    action: AuditAction,
    workspace_id: str | None,
    target_kind: str,
    target_id: str,
    details: Mapping[str, Any] | None = None,
) -> AuditEvent:
    """The record of `actor` doing `action`, not yet stored (its id and time are made
    here, not by the database)."""
    return AuditEvent(
        workspace_id=workspace_id,
        actor_id=actor.user_id,
        token_id=actor.token_id,
        action=action.value,
        target_kind=target_kind,
        target_id=target_id,
        details=dict(details or {}),
    )


async def record(
    session: AsyncSession,
    *,
    actor: Actor,
    action: AuditAction,
    workspace_id: str | None,
    target_kind: str,
    target_id: str,
    details: Mapping[str, Any] | None = None,
) -> AuditEvent:
    """Add the record of `actor` doing `action` to the session's transaction. Not flushed:
    its id and time are made here, and nothing reads the row back; the commit (or the next
    query's autoflush) writes it."""
    row = event(
        actor=actor,
        action=action,
        workspace_id=workspace_id,
        target_kind=target_kind,
        target_id=target_id,
        details=details,
    )
    session.add(row)
    return row


async def list_events(
    session: AsyncSession,
    workspace_ids: Sequence[str] | None,
    *,
    actor_id: str | None = None,
    action: AuditAction | None = None,
    limit: int,
    after: tuple[datetime, str] | None = None,
) -> Sequence[AuditEvent]:
    """Records newest first, after the key `after`: those of `workspace_ids`, or every
    record (server-wide ones too) when it is None."""
    query = select(AuditEvent)
    if workspace_ids is not None:
        query = query.where(col(AuditEvent.workspace_id).in_(list(workspace_ids)))
    if actor_id is not None:
        query = query.where(AuditEvent.actor_id == actor_id)
    if action is not None:
        query = query.where(AuditEvent.action == action.value)
    query = newest_first(query, col(AuditEvent.occurred_at), col(AuditEvent.id), after, limit)
    rows: Sequence[AuditEvent] = (await session.exec(query)).all()
    return rows
