"""The viewer, users and API tokens. Admins manage users and everyone's tokens."""

from __future__ import annotations

from typing import Annotated

import strawberry
from sqlmodel.ext.asyncio.session import AsyncSession

from engine.workflow_fields import Collected, check_text
from resolvers import mapping
from resolvers.context import Context
from resolvers.permissions import check_role
from resolvers.workflows import validation_error
from schema import results, types
from storage import accounts, audit, errors
from storage.audit import AuditAction
from storage.models import ApiToken
from storage.types import storable

Info = strawberry.Info[Context, None]

MAX_USER_NAME = 64


async def viewer(info: Info) -> types.User:
    principal = info.context.viewer()
    user = await info.context.loaders.users.load(principal.user_id)
    if user is None:  # deleted since the token was cached
        raise LookupError("authenticated user no longer exists")
    return user


async def users(info: Info) -> list[types.User]:
    principal = info.context.viewer()
    if not principal.is_admin:
        return []
    async with info.context.database.session() as session:
        rows = await accounts.list_users(session)
    return [mapping.user(row) for row in rows]


async def api_tokens(info: Info) -> list[types.ApiToken]:
    principal = info.context.viewer()
    async with info.context.database.session() as session:
        rows = await accounts.list_tokens(session, principal.user_id)
    if principal.scoped:
        # A scoped token sees the scoped tokens within its reach, never a wider one.
        rows = [
            row
            for row in rows
            if (row.workspace_id is not None or row.role is not None)
            and (row.workspace_id is None or row.workspace_id in principal.roles)
        ]
    return [mapping.api_token(row) for row in rows]


def _forbidden(what: str) -> results.ForbiddenError:
    return results.ForbiddenError(message=f"only an admin may {what}")


async def _audited(info: Info, session: AsyncSession, action: AuditAction, row: ApiToken) -> None:
    """Record the caller's `action` on a token: its id, name, user and scope (never the
    token). A scoped token's record belongs to its workspace, any other one is server-wide."""
    await audit.record(
        session,
        actor=info.context.viewer(),
        action=action,
        workspace_id=row.workspace_id,
        target_kind="token",
        target_id=row.id,
        details={"name": row.name, "user_id": row.user_id, "role": row.role},
    )


async def create_user(
    info: Info,
    name: str,
    admin: bool = False,
    token_name: str = "default",  # noqa: S107
) -> results.TokenResult:
    principal = info.context.viewer()
    if not principal.is_admin:
        return _forbidden("create users")
    collected = Collected()
    check_text(collected, name, "name", max_length=MAX_USER_NAME, required=True)
    check_text(collected, token_name, "tokenName", max_length=128, required=True)
    if collected.problems:
        return validation_error(collected.problems)
    role = accounts.ROLE_ADMIN if admin else accounts.ROLE_MEMBER
    try:
        async with info.context.database.transaction() as session:
            user = await accounts.create_user(session, name.strip(), role)
            row, token = await accounts.create_token(session, user.id, token_name)
    except errors.DuplicateNameError as exc:
        collected.add("DUPLICATE_NAME", str(exc), "name")
        return validation_error(collected.problems)
    return results.CreatedApiToken(
        token=token, api_token=mapping.api_token(row), user=mapping.user(user)
    )


async def create_api_token(
    info: Info,
    name: str,
    user_id: strawberry.ID | None = None,
    workspace_id: Annotated[
        strawberry.ID | None,
        strawberry.argument(description="Limit the token to this workspace (one of the user's)."),
    ] = None,
    role: Annotated[
        str | None,
        strawberry.argument(
            description="Limit the token to this role at most: owner, admin, editor, operator "
            "or viewer (a `viewer` token reads; an `operator` token runs)."
        ),
    ] = None,
) -> results.TokenResult:
    principal = info.context.viewer()
    if principal.scoped:
        return results.ForbiddenError(message="a scoped token cannot create tokens")
    target_user_id = str(user_id) if user_id is not None else principal.user_id
    if target_user_id != principal.user_id and not principal.is_admin:
        return _forbidden("create tokens for other users")
    collected = Collected()
    check_text(collected, name, "name", max_length=128, required=True)
    cap = None if role is None else check_role(collected, role)
    if collected.problems:
        return validation_error(collected.problems)
    async with info.context.database.transaction() as session:
        found = await accounts.users_by_ids(session, [target_user_id])
        if target_user_id not in found:
            return results.NotFoundError(
                message=f"user {target_user_id!r} not found", id=strawberry.ID(target_user_id)
            )
        if workspace_id is not None and (
            not storable(str(workspace_id))
            or await accounts.workspace_role(session, str(workspace_id), target_user_id) is None
        ):
            return results.NotFoundError(
                message=f"workspace {str(workspace_id)[:64]!r} not found among the user's",
                id=strawberry.ID(str(workspace_id)[:64]),
            )
        row, token = await accounts.create_token(
            session,
            target_user_id,
            name,
            workspace_id=None if workspace_id is None else str(workspace_id),
            role=cap,
        )
        await _audited(info, session, AuditAction.TOKEN_CREATE, row)
    return results.CreatedApiToken(
        token=token, api_token=mapping.api_token(row), user=mapping.user(found[target_user_id])
    )


async def revoke_api_token(info: Info, id: strawberry.ID) -> results.RevokeTokenResult:
    principal = info.context.viewer()
    if principal.scoped:  # it may not make tokens, nor take them away
        return results.NotFoundError(message=f"token {str(id)[:64]!r} not found", id=id)
    try:
        async with info.context.database.transaction() as session:
            row, changed = await accounts.revoke_token(
                session, str(id), None if principal.is_admin else principal.user_id
            )
            if changed:  # revoking a revoked token changes and records nothing
                await _audited(info, session, AuditAction.TOKEN_REVOKE, row)
    except errors.NotFoundError:
        return results.NotFoundError(message=f"token {str(id)!r} not found", id=id)
    info.context.services.authenticator.forget_user(row.user_id)
    return mapping.api_token(row)
