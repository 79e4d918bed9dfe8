"""Shared workspaces and their members (a user's personal workspace is made with the user).

Every refusal is a `WorkspaceRefusal` with a code the API shows: the last owner cannot
leave or be demoted, a workspace with active workflows or unfinished executions cannot be
deleted, a personal workspace cannot be deleted nor its user leave it or be demoted in it,
a user is a member once.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sqlmodel import col, delete, func, select
from sqlmodel.ext.asyncio.session import AsyncSession

from storage import credential_shares
from storage.errors import NotFoundError, StorageError
from storage.executions import UNFINISHED
from storage.models import (
    Credential,
    Execution,
    Membership,
    NodeTypePolicy,
    NodeTypePolicyChange,
    User,
    WebhookIdempotencyKey,
    Workflow,
    Workspace,
)
from storage.roles import Role, parse_role
from storage.types import storable

LAST_OWNER = "LAST_OWNER"
HAS_ACTIVE_WORKFLOWS = "HAS_ACTIVE_WORKFLOWS"
HAS_RUNNING_EXECUTIONS = "HAS_RUNNING_EXECUTIONS"
PERSONAL_WORKSPACE = "PERSONAL_WORKSPACE"
ALREADY_MEMBER = "ALREADY_MEMBER"


class WorkspaceRefusal(StorageError):
    """A change the workspace's rules refuse; `code` says which rule."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True, slots=True)
class Member:
    """A member of a workspace."""

    user: User
    role: str


def lock_name(workspace_id: str) -> str:
    """The database lock that member changes, deletion and activations in the workspace take."""
    return f"loom.workspace.{workspace_id}"


async def create_workspace(session: AsyncSession, name: str, owner_id: str) -> Workspace:
    """A new shared workspace, owned by `owner_id`."""
    workspace = Workspace(name=name)
    session.add(workspace)
    await session.flush()
    session.add(Membership(workspace_id=workspace.id, user_id=owner_id, role=Role.OWNER.value))
    await session.flush()
    return workspace


async def get_workspace(session: AsyncSession, workspace_id: str) -> Workspace:
    workspace = await session.get(Workspace, workspace_id) if storable(workspace_id) else None
    if workspace is None:
        raise NotFoundError("workspace", workspace_id)
    return workspace


async def rename_workspace(
    session: AsyncSession, workspace_id: str, name: str
) -> tuple[Workspace, bool]:
    """Rename the workspace (under its lock); also whether the name changed (False when it
    has that name already: nothing is written)."""
    workspace = await get_workspace(session, workspace_id)
    if workspace.name == name:
        return workspace, False
    workspace.name = name
    session.add(workspace)
    await session.flush()
    return workspace, True


async def delete_workspace(session: AsyncSession, workspace_id: str) -> None:
    """Delete a shared workspace and everything in it; refused while a workflow in it is
    active (its triggers would stop without a word), while an execution in it is queued,
    running or waiting (the engine would lose it mid-run), and for a personal workspace."""
    await get_workspace(session, workspace_id)
    personal = await session.exec(
        select(User.id).where(User.personal_workspace_id == workspace_id).limit(1)
    )
    if personal.first() is not None:
        raise WorkspaceRefusal(PERSONAL_WORKSPACE, "a personal workspace cannot be deleted")
    active = await session.exec(
        select(Workflow.name)
        .where(Workflow.workspace_id == workspace_id, col(Workflow.active).is_(True))
        .order_by(col(Workflow.name))
    )
    names = list(active.all())
    if names:
        raise WorkspaceRefusal(
            HAS_ACTIVE_WORKFLOWS,
            f"the workspace has {len(names)} active workflow(s) ({', '.join(names[:5])}); "
            "deactivate them first",
        )
    unfinished = await session.exec(
        select(func.count()).where(
            Execution.workspace_id == workspace_id, col(Execution.status).in_(UNFINISHED)
        )
    )
    count = int(unfinished.one())
    if count:
        raise WorkspaceRefusal(
            HAS_RUNNING_EXECUTIONS,
            f"the workspace has {count} execution(s) queued, running or waiting; "
            "cancel them or let them finish first",
        )
    # Workspaces its credentials are shared with lose them as by an unshare: node issues.
    owned = await session.exec(select(Credential).where(Credential.workspace_id == workspace_id))
    for credential in owned.all():
        await credential_shares.unshare_all(session, credential)
    # Node type policies name their workspace without a foreign key (server-wide ones: "*").
    for policy in (NodeTypePolicy, NodeTypePolicyChange):
        await session.exec(delete(policy).where(col(policy.scope) == workspace_id))
    # Webhook idempotency keys (and the answers they keep) name their workflow without one.
    workflows = select(Workflow.id).where(Workflow.workspace_id == workspace_id)
    await session.exec(
        delete(WebhookIdempotencyKey).where(col(WebhookIdempotencyKey.workflow_id).in_(workflows))
    )
    await session.exec(delete(Workspace).where(col(Workspace.id) == workspace_id))
    await session.flush()


async def workspaces_of(session: AsyncSession, workspace_ids: Sequence[str]) -> list[Workspace]:
    """The workspaces with these ids, by name."""
    rows = await session.exec(
        select(Workspace)
        .where(col(Workspace.id).in_(list(workspace_ids)))
        .order_by(col(Workspace.name), col(Workspace.id))
    )
    return list(rows.all())


async def members_by_workspace(
    session: AsyncSession, workspace_ids: Sequence[str]
) -> dict[str, list[Member]]:
    """The members of each workspace (one query for all), by user name."""
    rows = await session.exec(
        select(Membership.workspace_id, Membership.role, User)
        .join(User, col(User.id) == col(Membership.user_id))
        .where(col(Membership.workspace_id).in_(list(workspace_ids)))
        .order_by(col(User.name))
    )
    grouped: dict[str, list[Member]] = {workspace_id: [] for workspace_id in workspace_ids}
    for workspace_id, role, user in rows:
        grouped[workspace_id].append(Member(user=user, role=role))
    return grouped


async def _membership(session: AsyncSession, workspace_id: str, user_id: str) -> Membership:
    membership = (
        await session.get(Membership, (workspace_id, user_id)) if storable(user_id) else None
    )
    if membership is None:
        raise NotFoundError("member", user_id)
    return membership


async def get_member_role(session: AsyncSession, workspace_id: str, user_id: str) -> Role | None:
    """The member's role (NotFoundError: not a member)."""
    return parse_role((await _membership(session, workspace_id, user_id)).role)


async def _is_personal(session: AsyncSession, workspace_id: str, user_id: str) -> bool:
    user = await session.get(User, user_id)
    return user is not None and user.personal_workspace_id == workspace_id


async def _owners(session: AsyncSession, workspace_id: str) -> int:
    count = await session.exec(
        select(func.count()).where(
            Membership.workspace_id == workspace_id, Membership.role == Role.OWNER.value
        )
    )
    return int(count.one())


async def add_member(
    session: AsyncSession, workspace_id: str, user_id: str, role: Role
) -> Membership:
    """Make the user a member; a user who already is one is refused (change their role)."""
    user = await session.get(User, user_id) if storable(user_id) else None
    if user is None:
        raise NotFoundError("user", user_id)
    if await session.get(Membership, (workspace_id, user_id)) is not None:
        raise WorkspaceRefusal(ALREADY_MEMBER, f"user {user.name!r} is already a member")
    membership = Membership(workspace_id=workspace_id, user_id=user_id, role=role.value)
    session.add(membership)
    await session.flush()
    return membership


async def change_role(
    session: AsyncSession, workspace_id: str, user_id: str, role: Role
) -> Membership:
    """Give a member another role; the last owner stays an owner, and a user the owner of
    their personal workspace."""
    membership = await _membership(session, workspace_id, user_id)
    if role is not Role.OWNER and await _is_personal(session, workspace_id, user_id):
        raise WorkspaceRefusal(PERSONAL_WORKSPACE, "nobody is demoted in their personal workspace")
    if (
        membership.role == Role.OWNER.value
        and role is not Role.OWNER
        and await _owners(session, workspace_id) == 1
    ):
        raise WorkspaceRefusal(LAST_OWNER, "the last owner cannot give up ownership")
    membership.role = role.value
    session.add(membership)
    await session.flush()
    return membership


async def remove_member(session: AsyncSession, workspace_id: str, user_id: str) -> Membership:
    """Remove a member; the last owner cannot leave, nor a user their personal workspace."""
    membership = await _membership(session, workspace_id, user_id)
    if await _is_personal(session, workspace_id, user_id):
        raise WorkspaceRefusal(PERSONAL_WORKSPACE, "nobody leaves their personal workspace")
    if membership.role == Role.OWNER.value and await _owners(session, workspace_id) == 1:
        raise WorkspaceRefusal(LAST_OWNER, "the last owner cannot leave the workspace")
    await session.delete(membership)
    await session.flush()
    return membership
