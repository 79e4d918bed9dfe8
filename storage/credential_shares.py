"""Credentials shared with other workspaces: share, unshare, and who shares what.

The owner's workspace shares a credential with another one; that workspace's nodes may then
use it (storage/credentials.py `usable_in`), its members never see nor change its fields.
Sharing twice is one share (the first is kept). Unsharing gives the drafts of that
workspace whose nodes use the credential the node issue CREDENTIAL_NOT_SHARED (their runs
fail at those nodes: the credential is no longer found for them); sharing again removes it.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from typing import Any

from sqlmodel import col, delete, or_, select, update
from sqlmodel.ext.asyncio.session import AsyncSession

from engine.validation import Problem, Severity
from engine.validation.text import escape
from storage.errors import StorageError
from storage.models import Credential, CredentialShare, Workflow, Workspace
from storage.types import storable, utcnow

CREDENTIAL_NOT_SHARED = "CREDENTIAL_NOT_SHARED"


class NotSharedError(StorageError):
    """The credential is not shared with that workspace."""

    def __init__(self, credential_id: str, workspace_id: str) -> None:
        super().__init__(
            f"credential {credential_id!r} is not shared with workspace {workspace_id!r}"
        )
        self.workspace_id = workspace_id


async def share(
    session: AsyncSession, credential: Credential, workspace_id: str, shared_by: str
) -> bool:
    """Let the workspace use the credential; False when it already could (nothing changes)."""
    if await session.get(CredentialShare, (credential.id, workspace_id)) is not None:
        return False
    session.add(
        CredentialShare(
            credential_id=credential.id,
            workspace_id=workspace_id,
            shared_by=shared_by,
            created_at=utcnow(),
        )
    )
    await session.flush()
    await _set_issues(session, credential, workspace_id, shared=True)
    return True


async def unshare(session: AsyncSession, credential: Credential, workspace_id: str) -> None:
    """End the share (NotSharedError: there is none, or a concurrent unshare ended it
    first); the workspace's nodes using the credential get the node issue
    CREDENTIAL_NOT_SHARED."""
    if not storable(workspace_id) or not await _delete_shares(
        session,
        col(CredentialShare.credential_id) == credential.id,
        col(CredentialShare.workspace_id) == workspace_id,
    ):
        raise NotSharedError(credential.id, workspace_id)
    await _set_issues(session, credential, workspace_id, shared=False)


async def unshare_all(session: AsyncSession, credential: Credential) -> None:
    """End every share of the credential (before it is deleted), with the node issues of
    the shares this deletion removed (one that a concurrent unshare ended first has its
    issues already)."""
    removed = await _delete_shares(session, col(CredentialShare.credential_id) == credential.id)
    for workspace_id in sorted(removed):
        await _set_issues(session, credential, workspace_id, shared=False)


async def _delete_shares(session: AsyncSession, *where: Any) -> list[str]:
    """Delete these shares; the workspaces of those deleted (DELETE ... RETURNING: on
    PostgreSQL a share a concurrent transaction deleted first is not among them)."""
    result = await session.exec(
        delete(CredentialShare).where(*where).returning(col(CredentialShare.workspace_id))
    )
    return [workspace_id for (workspace_id,) in result.all()]


async def hold(session: AsyncSession, credential_ids: Collection[str], workspace_id: str) -> None:
    """PostgreSQL: lock the shares of these credentials with the workspace FOR SHARE until
    the transaction ends, before a save checks its references: an unshare then waits for
    the save (and gives the saved draft its node issue) or the save, having waited, finds
    the share gone. SQLite has one writer."""
    wanted = [credential_id for credential_id in credential_ids if storable(credential_id)]
    if not wanted or session.get_bind().dialect.name == "sqlite":
        return
    await session.exec(
        select(CredentialShare.credential_id)
        .where(
            col(CredentialShare.credential_id).in_(sorted(wanted)),
            CredentialShare.workspace_id == workspace_id,
        )
        .order_by(col(CredentialShare.credential_id))
        .with_for_update(read=True)
    )


async def shared_with(
    session: AsyncSession, credential_ids: Collection[str]
) -> dict[str, list[Workspace]]:
    """The workspaces each of these credentials is shared with, by name (one query)."""
    rows = await session.exec(
        select(CredentialShare.credential_id, Workspace)
        .join(Workspace, col(Workspace.id) == col(CredentialShare.workspace_id))
        .where(col(CredentialShare.credential_id).in_(list(credential_ids)))
        .order_by(col(Workspace.name), col(Workspace.id))
    )
    grouped: dict[str, list[Workspace]] = {credential_id: [] for credential_id in credential_ids}
    for credential_id, workspace in rows:
        grouped[credential_id].append(workspace)
    return grouped


async def owners(session: AsyncSession, workspace_ids: Sequence[str]) -> dict[str, Workspace]:
    """These workspaces, by id (the owners of credentials shared with a caller)."""
    rows = await session.exec(select(Workspace).where(col(Workspace.id).in_(list(workspace_ids))))
    return {workspace.id: workspace for workspace in rows}


async def _set_issues(
    session: AsyncSession, credential: Credential, workspace_id: str, *, shared: bool
) -> None:
    """Add (`shared` False) or remove the CREDENTIAL_NOT_SHARED issue of each node of the
    workspace's drafts that uses the credential. Node issues are derived from the draft, so
    the draft's version does not change."""
    drafts = await session.exec(
        select(Workflow.id, Workflow.nodes, Workflow.node_issues).where(
            Workflow.workspace_id == workspace_id
        )
    )
    for workflow_id, nodes, stored in drafts.all():
        issues = {node_id: list(found) for node_id, found in (stored or {}).items()}
        changed = False
        for node in nodes:
            for kind, credential_id in (node.get("credentials") or {}).items():
                if credential_id != credential.id:
                    continue
                field = f"credentials.{escape(kind)}"
                kept = [
                    issue
                    for issue in issues.get(node["id"], [])
                    if not (issue["code"] == CREDENTIAL_NOT_SHARED and issue["field"] == field)
                ]
                if not shared:
                    kept.append(_issue(credential, node["id"], field))
                if kept != issues.get(node["id"], []):
                    changed = True
                    if kept:
                        issues[node["id"]] = kept
                    else:
                        issues.pop(node["id"], None)
        if changed:
            await session.exec(
                update(Workflow).where(col(Workflow.id) == workflow_id).values(node_issues=issues)
            )


async def issues_in(
    session: AsyncSession,
    nodes: Sequence[dict[str, Any]],
    stored: dict[str, list[dict[str, Any]]] | None,
    workspace_id: str,
) -> dict[str, list[dict[str, Any]]]:
    """A draft's node issues re-derived for the workspace it is in now (a move): each node's
    CREDENTIAL_NOT_SHARED issue is dropped, and given again for each credential the
    workspace can no longer use. Its other issues are kept."""
    used = {
        credential_id
        for node in nodes
        for credential_id in (node.get("credentials") or {}).values()
        if isinstance(credential_id, str) and storable(credential_id)
    }
    usable = set(
        (
            await session.exec(
                select(Credential.id).where(
                    col(Credential.id).in_(sorted(used)), _usable_in(workspace_id)
                )
            )
        ).all()
    )
    lost = {
        row.id: row
        for row in (
            await session.exec(
                select(Credential).where(col(Credential.id).in_(sorted(used - usable)))
            )
        ).all()
    }
    issues: dict[str, list[dict[str, Any]]] = {}
    for node_id, found in (stored or {}).items():
        kept = [issue for issue in found if issue["code"] != CREDENTIAL_NOT_SHARED]
        if kept:
            issues[node_id] = kept
    for node in nodes:
        for kind, credential_id in (node.get("credentials") or {}).items():
            if credential_id in lost:
                field = f"credentials.{escape(kind)}"
                issues.setdefault(node["id"], []).append(
                    _issue(lost[credential_id], node["id"], field)
                )
    return issues


def _usable_in(workspace_id: str) -> Any:
    """Credentials the workspace owns or that are shared with it (storage/credentials.py's
    `usable_in`, which imports this module)."""
    shared = select(CredentialShare.credential_id).where(
        CredentialShare.workspace_id == workspace_id
    )
    return or_(Credential.workspace_id == workspace_id, col(Credential.id).in_(shared))


def _issue(credential: Credential, node_id: str, field: str) -> dict[str, Any]:
    message = (
        f"credential {credential.name!r} is no longer shared with this workspace: choose "
        "another credential (runs fail at this node)"
    )
    return Problem(
        CREDENTIAL_NOT_SHARED, message, node_id, field, severity=Severity.PARAMETER
    ).to_json()
