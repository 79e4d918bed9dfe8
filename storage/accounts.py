"""Users, workspaces, memberships and API tokens."""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from sqlalchemy.exc import IntegrityError
from sqlmodel import col, select, update
from sqlmodel.ext.asyncio.session import AsyncSession

from storage.db import Database
from storage.errors import DuplicateNameError, NotFoundError
from storage.models import ApiToken, Membership, User, Workspace
from storage.roles import Action, Role, allows, parse_role, weaker
from storage.types import storable, utcnow

TOKEN_PREFIX = "loom_"  # noqa: S105 (a public prefix, not a secret)
ADMIN_USER_NAME = "admin"
ROLE_ADMIN = "admin"
ROLE_MEMBER = "member"


def hash_token(token: str) -> str:
    """SHA-256 of a token. Tokens carry 256 random bits, so a slow hash would add nothing."""
    return hashlib.sha256(token.encode()).hexdigest()


def generate_token() -> str:
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling, the workspaces they may see, and their role in each.

    `roles` is what their memberships give them, lowered by a scoped token's cap (and limited
    to its workspace). `scopes` lists, for each action, the workspaces where the role allows
    it: worked out once per principal (the authenticator caches it), so a permission check on
    a hot path is a dictionary lookup.
    """

    user_id: str
    user_name: str
    role: str
    workspace_ids: tuple[str, ...]
    personal_workspace_id: str
    roles: Mapping[str, Role] = field(default_factory=dict)
    scopes: Mapping[Action, tuple[str, ...]] = field(default_factory=dict)
    # A scoped token: it never acts as a server admin, and makes no tokens.
    scoped: bool = False
    # A scoped token's cap on roles (None: no cap), for checks against stored memberships.
    token_role: Role | None = None
    # The id of the token that authenticated the call (never the token), scoped or not,
    # which the audit log records beside the user: a leaked token's actions can be found.
    # None when no token did (the command line).
    token_id: str | None = None

    @property
    def is_admin(self) -> bool:
        return self.role == ROLE_ADMIN

    def role_in(self, workspace_id: str) -> Role | None:
        """The caller's role in the workspace; None when they are not a member."""
        return self.roles.get(workspace_id)

    def may(self, action: Action, workspace_id: str) -> bool:
        """Whether the caller may do `action` in the workspace."""
        role = self.roles.get(workspace_id)
        return role is not None and allows(role, action)


def make_principal(
    user: User,
    memberships: Sequence[tuple[str, str]],
    token_workspace_id: str | None = None,
    token_role: Role | None = None,
    token_id: str | None = None,
) -> Principal:
    """The principal of `user` with their (workspace id, role) memberships, within a token's
    scope: only its workspace when it names one, and no role above its cap."""
    roles: dict[str, Role] = {}
    for workspace_id, name in memberships:
        role = parse_role(name)
        if role is None or (token_workspace_id is not None and workspace_id != token_workspace_id):
            continue
        roles[workspace_id] = weaker(role, token_role)
    scoped = token_workspace_id is not None or token_role is not None
    return _principal(
        user.id,
        user.name,
        ROLE_MEMBER if scoped else user.role,
        user.personal_workspace_id,
        roles,
        scoped,
        token_role,
        token_id,
    )


def _principal(
    user_id: str,
    user_name: str,
    role: str,
    personal_workspace_id: str,
    roles: dict[str, Role],
    scoped: bool,
    token_role: Role | None,
    token_id: str | None = None,
) -> Principal:
    ordered = sorted(roles)
    return Principal(
        user_id=user_id,
        user_name=user_name,
        role=role,
        workspace_ids=tuple(ordered),
        personal_workspace_id=personal_workspace_id,
        roles=roles,
        scopes={action: tuple(w for w in ordered if allows(roles[w], action)) for action in Action},
        scoped=scoped,
        token_role=token_role,
        token_id=token_id,
    )


def with_membership(principal: Principal, workspace_id: str, role: Role) -> Principal:
    """`principal` as a member of one more workspace (the rest of a request that made it)."""
    return _principal(
        principal.user_id,
        principal.user_name,
        principal.role,
        principal.personal_workspace_id,
        {**principal.roles, workspace_id: role},
        principal.scoped,
        principal.token_role,
        principal.token_id,
    )


async def create_user(session: AsyncSession, name: str, role: str = ROLE_MEMBER) -> User:
    """Create a user with a personal workspace they own."""
    existing = await session.exec(select(User).where(User.name == name))
    if existing.first() is not None:
        raise DuplicateNameError("user", name)
    workspace = Workspace(name=f"{name}'s workspace")
    session.add(workspace)
    await session.flush()
    user = User(name=name, role=role, personal_workspace_id=workspace.id)
    session.add(user)
    await session.flush()
    session.add(Membership(workspace_id=workspace.id, user_id=user.id, role=Role.OWNER.value))
    await session.flush()
    return user


async def get_user_by_name(session: AsyncSession, name: str) -> User | None:
    return (await session.exec(select(User).where(User.name == name))).first()


async def list_users(session: AsyncSession) -> Sequence[User]:
    return (await session.exec(select(User).order_by(col(User.name)))).all()


async def users_by_ids(session: AsyncSession, user_ids: Sequence[str]) -> dict[str, User]:
    keys = [user_id for user_id in user_ids if storable(user_id)]
    rows = await session.exec(select(User).where(col(User.id).in_(keys)))
    return {user.id: user for user in rows}


async def workspaces_by_ids(
    session: AsyncSession, workspace_ids: Sequence[str]
) -> dict[str, Workspace]:
    rows = await session.exec(select(Workspace).where(col(Workspace.id).in_(workspace_ids)))
    return {workspace.id: workspace for workspace in rows}


async def workspace_role(session: AsyncSession, workspace_id: str, user_id: str) -> str | None:
    """The user's role in the workspace; None when they are not a member."""
    membership = await session.get(Membership, (workspace_id, user_id))
    return None if membership is None else membership.role


async def create_token(
    session: AsyncSession,
    user_id: str,
    name: str,
    token: str | None = None,
    *,
    workspace_id: str | None = None,
    role: Role | None = None,
) -> tuple[ApiToken, str]:
    """Store a new token for the user; returns the row and the token, shown only now.
    `workspace_id` limits the token to that workspace, `role` to that role at most."""
    token = token or generate_token()
    row = ApiToken(
        user_id=user_id,
        name=name,
        token_hash=hash_token(token),
        workspace_id=workspace_id,
        role=None if role is None else role.value,
    )
    session.add(row)
    await session.flush()
    return row, token


async def revoke_token(
    session: AsyncSession, token_id: str, user_id: str | None
) -> tuple[ApiToken, bool]:
    """Revoke a token; `user_id` restricts it to that user's tokens (None: any, for admins).
    Also whether this revoked it: False when it was revoked already (by an earlier or a
    concurrent call, which the conditional update waits for)."""
    if not storable(token_id):
        raise NotFoundError("token", token_id)
    query = select(ApiToken).where(ApiToken.id == token_id)
    if user_id is not None:
        query = query.where(ApiToken.user_id == user_id)
    row = (await session.exec(query)).first()
    if row is None:
        raise NotFoundError("token", token_id)
    result = await session.exec(
        update(ApiToken)
        .where(col(ApiToken.id) == token_id, col(ApiToken.revoked_at).is_(None))
        .values(revoked_at=utcnow())
    )
    fresh = select(ApiToken).where(ApiToken.id == token_id)
    row = (await session.exec(fresh.execution_options(populate_existing=True))).one()
    return row, result.rowcount == 1


async def list_tokens(session: AsyncSession, user_id: str) -> Sequence[ApiToken]:
    query = (
        select(ApiToken)
        .where(ApiToken.user_id == user_id)
        .order_by(col(ApiToken.created_at).desc())
    )
    return (await session.exec(query)).all()


async def principal_for_token(session: AsyncSession, token: str) -> Principal | None:
    """The caller a bearer token belongs to, or None for an unknown or revoked token, and
    for one whose stored role cap this version does not know: read as no cap, it would
    carry every right of its user."""
    query = (
        select(User, ApiToken.workspace_id, ApiToken.role, ApiToken.id)
        .join(ApiToken, col(ApiToken.user_id) == col(User.id))
        .where(ApiToken.token_hash == hash_token(token), col(ApiToken.revoked_at).is_(None))
    )
    found = (await session.exec(query)).first()
    if found is None:
        return None
    user, workspace_id, role_name, token_id = found
    role = None if role_name is None else parse_role(role_name)
    if role_name is not None and role is None:
        return None
    return await principal_for_user(session, user, workspace_id, role, token_id)


async def principal_for_user(
    session: AsyncSession,
    user: User,
    token_workspace_id: str | None = None,
    token_role: Role | None = None,
    token_id: str | None = None,
) -> Principal:
    memberships = await session.exec(
        select(Membership.workspace_id, Membership.role).where(Membership.user_id == user.id)
    )
    return make_principal(user, list(memberships.all()), token_workspace_id, token_role, token_id)


async def bootstrap_admin(database: Database, admin_token: str | None) -> str | None:
    """Make sure an admin exists; returns a newly generated token to print once, or None.

    With `admin_token` the `admin` user is created if missing and the token is made valid for
    it (an upsert). Without it, an admin with a generated token is created only when the
    database has no users at all. Runs under a database lock, so replicas that start together
    create one admin, not several.
    """
    async with database.transaction() as session:
        await database.lock(session, "loom.bootstrap_admin")
        admin = await get_user_by_name(session, ADMIN_USER_NAME)
        if admin_token is not None:
            if admin is None:
                admin = await create_user(session, ADMIN_USER_NAME, ROLE_ADMIN)
            elif admin.role != ROLE_ADMIN:
                await session.exec(
                    update(User).where(col(User.id) == admin.id).values(role=ROLE_ADMIN)
                )
            token_hash = hash_token(admin_token)
            known = await session.exec(select(ApiToken).where(ApiToken.token_hash == token_hash))
            if known.first() is None:
                await create_token(session, admin.id, "LOOM_ADMIN_TOKEN", admin_token)
            return None
        any_user = (await session.exec(select(User.id).limit(1))).first()
        if any_user is not None:
            return None
        admin = await create_user(session, ADMIN_USER_NAME, ROLE_ADMIN)
        _, token = await create_token(session, admin.id, "bootstrap")
        return token


async def create_user_with_token(
    database: Database,
    name: str,
    role: str,
    token_name: str = "cli",  # noqa: S107
) -> str:
    """Create the user if missing and give them a new token (`loom token create`)."""
    try:
        async with database.transaction() as session:
            user = await get_user_by_name(session, name)
            if user is None:
                user = await create_user(session, name, role)
            elif role == ROLE_ADMIN and user.role != ROLE_ADMIN:
                user.role = ROLE_ADMIN
                session.add(user)
            _, token = await create_token(session, user.id, token_name)
            return token
    except IntegrityError as exc:  # a concurrent creation of the same name
        raise DuplicateNameError("user", name) from exc
