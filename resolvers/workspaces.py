"""Workspaces and their members: create, rename, delete, add, change a role, remove.

Who may do each is decided by resolvers/permissions.py; the one rule it cannot express
alone is about owners: making someone an owner, or changing or removing an owner, needs
the owner's own action (`Action.OWN`), and anyone may leave a workspace (with a scoped
token, only one that may manage members). Each change decides again, under the workspace's
lock, on the caller's role as stored: every change runs inside `_change`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import strawberry
from sqlmodel.ext.asyncio.session import AsyncSession

from engine.workflow_fields import Collected, check_text
from resolvers import mapping
from resolvers.context import Context
from resolvers.permissions import check_role, refusal, refusal_for, scope, stored_role
from resolvers.workflows import validation_error
from schema import results, types
from storage import audit, errors, workspaces
from storage.accounts import with_membership
from storage.audit import AuditAction
from storage.models import Membership, User
from storage.roles import Action, Role

Info = strawberry.Info[Context, None]

MAX_WORKSPACE_NAME = 255


def _not_found(kind: str, identifier: str) -> results.NotFoundError:
    return results.NotFoundError(
        message=f"{kind} {identifier!r} not found", id=strawberry.ID(identifier)
    )


def _refusal_problem(exc: workspaces.WorkspaceRefusal, field: str) -> results.ValidationError:
    collected = Collected()
    collected.add(exc.code, str(exc), field)
    return validation_error(collected.problems)


def _checked_name(name: str) -> results.ValidationError | None:
    collected = Collected()
    check_text(collected, name, "name", max_length=MAX_WORKSPACE_NAME, required=True)
    return validation_error(collected.problems) if collected.problems else None


def _checked_role(name: str) -> Role | results.ValidationError:
    collected = Collected()
    role = check_role(collected, name)
    return validation_error(collected.problems) if role is None else role


def _forget(info: Info, user_id: str) -> None:
    """Roles are part of a cached principal: a change shows at once in this process."""
    info.context.services.authenticator.forget_user(user_id)


async def _locked(info: Info, session: AsyncSession, workspace_id: str) -> Role | None:
    """Take the workspace's lock; the caller's role in it as stored now (capped by a scoped
    token), None when they are no longer a member. Changes decide on this role, not on the
    principal: one cached by another replica, or read before a change that this one waited
    for (two owners demoting each other), gives no rights the caller no longer has."""
    await info.context.database.lock(session, workspaces.lock_name(workspace_id))
    return await stored_role(info, session, workspace_id)


_Answer = results.NotFoundError | results.ForbiddenError | results.ValidationError


class _Refused(Exception):
    """Ends a change inside `_change` early with the answer the caller gets."""

    def __init__(self, answer: _Answer) -> None:
        super().__init__(answer.message)
        self.answer = answer


@dataclass(frozen=True)
class _Change:
    """A change under way: its transaction, and the caller's role as stored under the lock."""

    session: AsyncSession
    role: Role


@asynccontextmanager
async def _change(
    info: Info,
    workspace_id: str,
    action: Action | None = None,
    *,
    invalid: results.ValidationError | None = None,
    checked: bool = True,
) -> AsyncIterator[_Change]:
    """A change to a workspace the caller belongs to, decided twice: on the principal first
    (cheap, no transaction), then under the workspace's lock on the role as stored
    (`_locked`). Raises `_Refused` with NotFoundError when the workspace is not the caller's,
    `invalid` (an argument's problems, which a member hears before a refusal) when given,
    ForbiddenError when their role does not allow the operation (or `action`); with
    `checked=False`, membership is all that is asked."""
    viewer = info.context.viewer()
    if workspace_id not in viewer.workspace_ids:
        raise _Refused(_not_found("workspace", workspace_id))
    if invalid is not None:
        raise _Refused(invalid)
    if checked and (forbidden := refusal(info, workspace_id, action)) is not None:
        raise _Refused(forbidden)
    async with info.context.database.transaction() as session:
        mine = await _locked(info, session, workspace_id)
        if mine is None:
            raise _Refused(_not_found("workspace", workspace_id))
        if checked and (forbidden := refusal_for(info, mine, action)) is not None:
            raise _Refused(forbidden)
        yield _Change(session, mine)


async def _audited(
    info: Info,
    session: AsyncSession,
    action: AuditAction,
    workspace_id: str,
    user_id: str | None = None,
    **details: Any,
) -> None:
    """Record the caller's `action` on the workspace, or on its member `user_id`."""
    await audit.record(
        session,
        actor=info.context.viewer(),
        action=action,
        workspace_id=workspace_id,
        target_kind="workspace" if user_id is None else "user",
        target_id=workspace_id if user_id is None else user_id,
        details=details,
    )


# Queries


async def workspaces_list(info: Info) -> list[types.Workspace]:
    viewer = info.context.viewer()
    async with info.context.database.session() as session:
        rows = await workspaces.workspaces_of(session, viewer.workspace_ids)
    return [mapping.workspace(row) for row in rows]


async def workspace(info: Info, id: strawberry.ID) -> types.Workspace | None:
    if str(id) not in scope(info):
        return None
    return await info.context.loaders.workspaces.load(str(id))


# Mutations


async def create_workspace(info: Info, name: str) -> results.WorkspaceResult:
    viewer = info.context.viewer()
    if viewer.scoped:
        return results.ForbiddenError(message="a scoped token cannot create workspaces")
    if (invalid := _checked_name(name)) is not None:
        return invalid
    async with info.context.database.transaction() as session:
        row = await workspaces.create_workspace(session, name.strip(), viewer.user_id)
        await _audited(info, session, AuditAction.WORKSPACE_CREATE, row.id, name=row.name)
    _forget(info, viewer.user_id)
    info.context.principal = with_membership(viewer, row.id, Role.OWNER)
    return mapping.workspace(row)


async def rename_workspace(info: Info, id: strawberry.ID, name: str) -> results.WorkspaceResult:
    try:
        async with _change(info, str(id)) as change:
            # The name is checked after the role as stored under the lock (a member demoted
            # meanwhile hears ForbiddenError, whatever the name): kept on purpose.
            if (invalid := _checked_name(name)) is not None:
                return invalid
            row, changed = await workspaces.rename_workspace(change.session, str(id), name.strip())
            if changed:  # renamed to the name it has: nothing to record
                await _audited(
                    info, change.session, AuditAction.WORKSPACE_RENAME, row.id, name=row.name
                )
    except _Refused as refused:
        return refused.answer
    return mapping.workspace(row)


async def delete_workspace(info: Info, id: strawberry.ID) -> results.DeleteWorkspaceResult:
    try:
        async with _change(info, str(id)) as change:
            members = await workspaces.members_by_workspace(change.session, [str(id)])
            await workspaces.delete_workspace(change.session, str(id))
            await _audited(info, change.session, AuditAction.WORKSPACE_DELETE, str(id))
    except _Refused as refused:
        return refused.answer
    except workspaces.WorkspaceRefusal as exc:
        return _refusal_problem(exc, "id")
    for member in members[str(id)]:
        _forget(info, member.user.id)
    return results.Deleted(id=id)


async def add_workspace_member(
    info: Info, workspace_id: strawberry.ID, user_id: strawberry.ID, role: str
) -> results.MemberResult:
    checked = _checked_role(role)
    invalid = checked if isinstance(checked, results.ValidationError) else None
    needed = Action.OWN if checked is Role.OWNER else None
    try:
        async with _change(info, str(workspace_id), needed, invalid=invalid) as change:
            assert isinstance(checked, Role)  # `_change` answered `invalid` otherwise
            row = await workspaces.add_member(
                change.session, str(workspace_id), str(user_id), checked
            )
            member = await _mapped_member(change.session, row)
            await _audited(
                info,
                change.session,
                AuditAction.MEMBER_ADD,
                row.workspace_id,
                row.user_id,
                role=row.role,
            )
    except _Refused as refused:
        return refused.answer
    except errors.NotFoundError:
        return _not_found("user", str(user_id))
    except workspaces.WorkspaceRefusal as exc:
        return _refusal_problem(exc, "userId")
    _forget(info, str(user_id))
    return member


async def _mapped_member(session: AsyncSession, row: Membership) -> types.WorkspaceMember:
    """The member as the change's own transaction reads them (the user row is there: the
    membership refers to it), so that an answer never misses its user."""
    user = await session.get(User, row.user_id)
    if user is None:  # the membership's foreign key keeps the user while it exists
        raise errors.NotFoundError("user", row.user_id)
    return types.WorkspaceMember(user=mapping.user(user), role=row.role)


async def change_member_role(
    info: Info, workspace_id: strawberry.ID, user_id: strawberry.ID, role: str
) -> results.MemberResult:
    checked = _checked_role(role)
    invalid = checked if isinstance(checked, results.ValidationError) else None
    try:
        async with _change(info, str(workspace_id), invalid=invalid) as change:
            assert isinstance(checked, Role)  # `_change` answered `invalid` otherwise
            session = change.session
            current = await workspaces.get_member_role(session, str(workspace_id), str(user_id))
            owners = Role.OWNER in (checked, current)
            if owners and (forbidden := refusal_for(info, change.role, Action.OWN)) is not None:
                return forbidden
            row = await workspaces.change_role(session, str(workspace_id), str(user_id), checked)
            member = await _mapped_member(session, row)
            if current is not checked:  # the role they have already: nothing to record
                old_role = None if current is None else current.value
                await _audited(
                    info,
                    session,
                    AuditAction.MEMBER_ROLE_CHANGE,
                    row.workspace_id,
                    row.user_id,
                    old_role=old_role,
                    role=row.role,
                )
    except _Refused as refused:
        return refused.answer
    except errors.NotFoundError:
        return _not_found("member", str(user_id))
    except workspaces.WorkspaceRefusal as exc:
        return _refusal_problem(exc, "role")
    _forget(info, str(user_id))
    return member


async def remove_workspace_member(
    info: Info, workspace_id: strawberry.ID, user_id: strawberry.ID
) -> results.MemberResult:
    viewer = info.context.viewer()
    leaving = str(user_id) == viewer.user_id
    # Anyone may leave, except with a scoped token that may not manage members: a leaked
    # read-only token must not end its user's membership.
    checked = not leaving or viewer.scoped
    try:
        async with _change(info, str(workspace_id), checked=checked) as change:
            session = change.session
            current = await workspaces.get_member_role(session, str(workspace_id), str(user_id))
            owner = current is Role.OWNER and not leaving
            if owner and (forbidden := refusal_for(info, change.role, Action.OWN)) is not None:
                return forbidden
            row = await workspaces.remove_member(session, str(workspace_id), str(user_id))
            member = await _mapped_member(session, row)
            await _audited(
                info,
                session,
                AuditAction.MEMBER_REMOVE,
                row.workspace_id,
                row.user_id,
                role=row.role,
            )
    except _Refused as refused:
        return refused.answer
    except errors.NotFoundError:
        return _not_found("member", str(user_id))
    except workspaces.WorkspaceRefusal as exc:
        return _refusal_problem(exc, "userId")
    _forget(info, str(user_id))
    return member
