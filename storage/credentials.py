"""Credentials: stored encrypted, read back only to be used (never to be shown).

A credential belongs to one workspace and may be shared with others (storage/
credential_shares.py): a workspace may *use* those it owns and those shared with it
(`usable_in`), in its nodes and runs; only the owner's members see or change them.
"""

from __future__ import annotations

from collections.abc import Collection, Iterator, Sequence
from typing import Any

from sqlalchemy.exc import IntegrityError
from sqlmodel import col, or_, select
from sqlmodel.ext.asyncio.session import AsyncSession

from engine.nodes.base import CredentialFields
from storage import credential_shares, workflows
from storage.db import Database
from storage.errors import DuplicateNameError, StorageError
from storage.models import Credential, CredentialShare
from storage.secrets import SecretBox
from storage.types import storable, utcnow


class CredentialInUseError(StorageError):
    """Workflows refer to the credential: it cannot be deleted."""

    def __init__(self, credential_id: str, workflows: list[tuple[str, str]]) -> None:
        names = ", ".join(repr(name) for _, name in workflows)
        super().__init__(f"credential {credential_id!r} is used by workflow(s) {names}")
        self.workflows = workflows


async def create_credential(
    session: AsyncSession,
    box: SecretBox,
    *,
    workspace_id: str,
    name: str,
    kind: str,
    data: dict[str, Any],
    created_by: str | None,
    allowed_domains: list[str] | None = None,
) -> Credential:
    row = Credential(
        workspace_id=workspace_id,
        name=name,
        kind=kind,
        secret=b"",
        created_by=created_by,
        allowed_domains=allowed_domains,
    )
    row.secret = box.seal(row.id, workspace_id, data)
    await _ensure_name_free(session, workspace_id, name)
    session.add(row)
    try:
        await session.flush()
    except IntegrityError as exc:
        raise DuplicateNameError("credential", name) from exc
    return row


async def _ensure_name_free(
    session: AsyncSession, workspace_id: str, name: str, except_id: str | None = None
) -> None:
    query = select(Credential.id).where(
        Credential.workspace_id == workspace_id, Credential.name == name
    )
    found = (await session.exec(query)).first()
    if found is not None and found != except_id:
        raise DuplicateNameError("credential", name)


def usable_in(workspace_ids: Sequence[str]) -> Any:
    """The clause for credentials these workspaces own or that are shared with them."""
    shared = select(CredentialShare.credential_id).where(
        col(CredentialShare.workspace_id).in_(list(workspace_ids))
    )
    return or_(
        col(Credential.workspace_id).in_(list(workspace_ids)), col(Credential.id).in_(shared)
    )


async def list_credentials(
    session: AsyncSession, workspace_ids: Sequence[str]
) -> Sequence[Credential]:
    """The credentials these workspaces own or that are shared with them, by name."""
    query = (
        select(Credential)
        .where(usable_in(workspace_ids))
        .order_by(col(Credential.name), col(Credential.id))
    )
    rows: Sequence[Credential] = (await session.exec(query)).all()
    return rows


async def get_credential(
    session: AsyncSession,
    credential_id: str,
    workspace_ids: Sequence[str],
    *,
    for_update: bool = False,
) -> Credential | None:
    """The credential if one of the workspaces owns it; `for_update` locks its row
    (PostgreSQL) so that changes to it and to its shares take turns."""
    query = select(Credential).where(
        Credential.id == credential_id, col(Credential.workspace_id).in_(workspace_ids)
    )
    if for_update:
        query = query.with_for_update()
    return (await session.exec(query)).first()


async def kinds_by_id(
    session: AsyncSession, credential_ids: Collection[str], workspace_id: str
) -> dict[str, str]:
    """The kind of each of these credentials the workspace may use (its own and those
    shared with it), by id."""
    query = select(Credential.id, Credential.kind).where(
        col(Credential.id).in_(credential_ids), usable_in([workspace_id])
    )
    return {credential_id: kind for credential_id, kind in (await session.exec(query)).all()}


async def names_by_id(
    session: AsyncSession, credential_ids: Collection[str], workspace_id: str
) -> dict[str, str]:
    """The name of each of these credentials the workspace may use, by id."""
    query = select(Credential.id, Credential.name).where(
        col(Credential.id).in_(credential_ids), usable_in([workspace_id])
    )
    return {credential_id: name for credential_id, name in (await session.exec(query)).all()}


async def find_by_names(
    session: AsyncSession, names: Collection[str], workspace_id: str
) -> dict[str, tuple[str, str]]:
    """The id and kind of each credential the workspace may use with one of these names, by
    name (names are unique in a workspace; the workspace's own wins over a shared one)."""
    wanted = [name for name in names if storable(name)]
    if not wanted:
        return {}
    query = (
        select(Credential.name, Credential.id, Credential.kind, Credential.workspace_id)
        .where(col(Credential.name).in_(wanted), usable_in([workspace_id]))
        .order_by(col(Credential.id))
    )
    found: dict[str, tuple[str, str]] = {}
    for name, credential_id, kind, owner in (await session.exec(query)).all():
        if owner == workspace_id or name not in found:
            found[name] = (credential_id, kind)
    return found


def reveal(box: SecretBox, row: Credential) -> dict[str, Any]:
    """The credential's fields, secrets included: for using it, never for showing it."""
    return box.open(row.secret, row.id, row.workspace_id)


async def update_credential(
    session: AsyncSession,
    box: SecretBox,
    row: Credential,
    *,
    name: str | None,
    data: dict[str, Any],
    allowed_domains: list[str] | None = None,
) -> Credential:
    """Rename and/or change fields: a field given replaces the stored one, a field given as
    null is removed, the others (secrets the client cannot read back) are kept.
    `allowed_domains`: None keeps them, [] lets the credential go to any host."""
    if allowed_domains is not None:
        row.allowed_domains = allowed_domains or None
    if name is not None and name != row.name:
        await _ensure_name_free(session, row.workspace_id, name, except_id=row.id)
        row.name = name
    row.secret = box.seal(row.id, row.workspace_id, data)
    row.updated_at = utcnow()
    session.add(row)
    try:
        await session.flush()
    except IntegrityError as exc:
        raise DuplicateNameError("credential", row.name) from exc
    return row


def merged(stored: dict[str, Any], changes: dict[str, Any]) -> dict[str, Any]:
    result = dict(stored)
    for key, value in changes.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = value
    return result


async def delete_credential(session: AsyncSession, row: Credential) -> None:
    """Delete a credential no workflow of its workspace uses; the workspaces it is shared
    with lose it as by an unshare (their nodes using it get a node issue)."""
    users = await workflows_using(session, row)
    if users:
        raise CredentialInUseError(row.id, users)
    await credential_shares.unshare_all(session, row)
    await session.delete(row)
    await session.flush()


async def workflows_using(session: AsyncSession, row: Credential) -> list[tuple[str, str]]:
    """(id, name) of the workflows of the credential's workspace whose draft or published
    version refers to it."""
    return await workflows.workflows_using(
        session, row.workspace_id, lambda nodes: _refers(nodes, row.id)
    )


def _refers(nodes: list[dict[str, Any]], credential_id: str) -> bool:
    """A node refers to it by kind in `credentials`, or anywhere in its parameters."""
    return any(
        credential_id in (node.get("credentials") or {}).values()
        or credential_id in _strings(node.get("parameters"))
        for node in nodes
    )


def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from _strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item)


async def rotate_all(database: Database, box: SecretBox, batch: int = 200) -> int:
    """Re-encrypt every credential under the current key, `batch` rows per transaction;
    returns how many. Processes that still hold the previous key keep working meanwhile."""
    rotated = 0
    after = ""
    while True:
        async with database.transaction() as session:
            rows = (
                await session.exec(
                    select(Credential)
                    .where(col(Credential.id) > after)
                    .order_by(col(Credential.id))
                    .limit(batch)
                    .with_for_update()
                )
            ).all()
            for row in rows:
                row.secret = box.rotate(row.secret)
                session.add(row)
        if not rows:
            return rotated
        rotated += len(rows)
        after = rows[-1].id


async def get_usable(
    session: AsyncSession, credential_id: str, workspace_ids: Sequence[str]
) -> Credential | None:
    """The credential, if one of the workspaces owns it or it is shared with one of them."""
    if not storable(credential_id):
        return None
    query = select(Credential).where(Credential.id == credential_id, usable_in(workspace_ids))
    return (await session.exec(query)).first()


class DatabaseCredentials:
    """`engine.nodes.base.CredentialProvider` on the database: a credential is found only if
    the workspace asked for (the execution's) owns it or it is shared with that workspace,
    and only of the kind asked for."""

    def __init__(self, database: Database, box: SecretBox) -> None:
        self.database = database
        self.box = box

    async def fields(self, workspace_id: str, kind: str, credential_id: str) -> dict[str, Any]:
        async with self.database.session() as session:
            row = await get_usable(session, credential_id, [workspace_id])
        if row is None or row.kind != kind:
            raise LookupError(credential_id)
        allowed = None if row.allowed_domains is None else tuple(row.allowed_domains)
        if allowed is None and row.workspace_id != workspace_id:
            allowed = ()  # shared before allowedDomains existed: sent nowhere
        return CredentialFields(reveal(self.box, row), allowed_domains=allowed, name=row.name)
