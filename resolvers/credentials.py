"""Credential queries and mutations. Secrets go in, never out.

A credential shared with a workspace (`shareCredential`) is listed there with `sharedFrom`
and names only: that workspace's members may choose it in their nodes, never read its
fields, change it, delete it or share it on (ForbiddenError). Sharing and unsharing need
`Action.MANAGE` in the owner's workspace (owners and admins), and sharing membership of the
workspace shared with (another one is not found, as any foreign id).
"""

from __future__ import annotations

import logging
from collections.abc import Collection
from typing import Any, cast

import strawberry
from sqlmodel.ext.asyncio.session import AsyncSession
from strawberry.scalars import JSON

from engine import credential_domains
from engine.credentials import KINDS, check_data
from engine.validation import Problem
from resolvers import mapping
from resolvers.context import Context
from resolvers.permissions import refusal, refusal_for, scope, stored_role, target_workspace
from resolvers.workflows import validation_error
from schema import inputs, results, types
from storage import audit, credential_shares, credentials, workspaces
from storage.audit import AuditAction
from storage.errors import DuplicateNameError
from storage.models import Credential, Workspace
from storage.roles import Action
from storage.secrets import CredentialDecryptionError, SecretBox
from storage.types import storable

logger = logging.getLogger("loom.credentials")

Info = strawberry.Info[Context, None]

MAX_NAME = 255
CREDENTIAL_NOT_RESTRICTED = "CREDENTIAL_NOT_RESTRICTED"


def _box(info: Info) -> SecretBox:
    box = info.context.services.secret_box
    if box is None:
        raise RuntimeError("no secret key configured: credentials are unavailable")
    return box


def _credential(
    box: SecretBox,
    row: Credential,
    names_only: bool = False,
    *,
    shared_with: list[Workspace] | None = None,
    shared_from: Workspace | None = None,
    members_of: Collection[str] = (),
) -> types.Credential:
    """The credential as the API shows it; `names_only` for a role that sees names alone
    (and for a workspace it is shared with: `shared_from` its owner). Of the workspaces it
    is shared with, those the caller is a member of (`members_of`) are named, the others
    counted."""
    shared = shared_with or []
    named = [workspace for workspace in shared if workspace.id in members_of]
    kind = KINDS.get(row.kind)
    try:
        data = {} if names_only else credentials.reveal(box, row)
    except CredentialDecryptionError:
        logger.warning("credential %s does not decrypt with the configured keys", row.id)
        data = {}
    public = kind.public(data) if kind is not None else {}
    secrets = [name for name in kind.secret_fields if name in data] if kind is not None else []
    return types.Credential(
        id=strawberry.ID(row.id),
        name=row.name,
        kind=row.kind,
        workspace_id=strawberry.ID(row.workspace_id),
        fields=cast(JSON, public),
        secret_fields=secrets,
        created_at=row.created_at,
        updated_at=row.updated_at,
        shared_with=[mapping.workspace(workspace) for workspace in named],
        shared_elsewhere=len(shared) - len(named),
        shared_from=None if shared_from is None else mapping.workspace(shared_from),
        allowed_domains=None if row.allowed_domains is None else list(row.allowed_domains),
    )


def _not_found(identifier: str) -> results.NotFoundError:
    return results.NotFoundError(
        message=f"credential {identifier!r} not found", id=strawberry.ID(identifier)
    )


def _name_problems(name: str) -> list[Problem]:
    if not name.strip() or len(name) > MAX_NAME:
        return [Problem("INVALID_NAME", f"name must be 1 to {MAX_NAME} characters", None, "name")]
    return []


def _domains(entries: list[str] | None) -> tuple[list[str] | None, list[Problem]]:
    """`allowedDomains` in normal form (None: not given), and the problems (one per bad
    entry)."""
    if entries is None:
        return None, []
    problems: list[Problem] = []
    for index, entry in enumerate(entries):
        try:
            credential_domains.normal_entry(entry)
        except credential_domains.InvalidDomain as exc:
            problems.append(
                Problem("INVALID_DOMAIN", f"allowedDomains[{index}] {exc}", None, "allowedDomains")
            )
    if problems:
        return None, problems
    try:
        return credential_domains.normal_entries(entries), []
    except credential_domains.InvalidDomain as exc:
        return None, [Problem("INVALID_DOMAIN", f"allowedDomains: {exc}", None, "allowedDomains")]


def _not_restricted(message: str) -> results.ValidationError:
    return validation_error([Problem(CREDENTIAL_NOT_RESTRICTED, message, None, "allowedDomains")])


def _duplicate(name: str) -> results.ValidationError:
    problem = Problem(
        "DUPLICATE_NAME", f"a credential named {name!r} exists in this workspace", None, "name"
    )
    return validation_error([problem])


async def credentials_list(info: Info) -> list[types.Credential]:
    viewer = info.context.viewer()
    box = _box(info)
    mine = set(viewer.workspace_ids)
    async with info.context.database.session() as session:
        rows = await credentials.list_credentials(session, scope(info))
        owned = [row.id for row in rows if row.workspace_id in mine]
        shares = await credential_shares.shared_with(session, owned)
        foreign = {row.workspace_id for row in rows if row.workspace_id not in mine}
        owners = await credential_shares.owners(session, sorted(foreign))
    return [
        _credential(
            box,
            row,
            not viewer.may(Action.READ_FIELDS, row.workspace_id),
            shared_with=shares.get(row.id),
            members_of=mine,
            shared_from=owners.get(row.workspace_id),
        )
        for row in rows
    ]


def credential_kinds() -> list[types.CredentialKind]:
    return [
        types.CredentialKind(
            name=kind.name,
            display_name=kind.display_name,
            description=kind.description,
            schema=cast(JSON, kind.schema),
            secret_fields=list(kind.secret_fields),
        )
        for kind in KINDS.values()
    ]


async def _audited(
    info: Info,
    session: AsyncSession,
    action: AuditAction,
    credential_id: str,
    workspace_id: str,
    **details: Any,
) -> None:
    """Record the caller's `action` on a credential; `details` never holds its values."""
    await audit.record(
        session,
        actor=info.context.viewer(),
        action=action,
        workspace_id=workspace_id,
        target_kind="credential",
        target_id=credential_id,
        details=details,
    )


async def _audited_share(
    info: Info, session: AsyncSession, action: AuditAction, row: Credential, target: str
) -> None:
    """A share or unshare, recorded in both workspaces as a move is: each one's owners and
    admins read their own log (`shared_with` in the credential's, `shared_from` in the
    target's)."""
    await _audited(
        info, session, action, row.id, row.workspace_id, name=row.name, shared_with=target
    )
    await _audited(
        info, session, action, row.id, target, name=row.name, shared_from=row.workspace_id
    )


async def create_credential(info: Info, input: inputs.CredentialInput) -> results.CredentialResult:
    viewer = info.context.viewer()
    box = _box(info)
    workspace_id = target_workspace(info, input.workspace_id)
    if not isinstance(workspace_id, str):
        return workspace_id
    problems = _name_problems(input.name) + check_data(input.kind, input.data)
    domains, bad = _domains(input.allowed_domains)
    problems += bad
    if problems:
        return validation_error(problems)
    data = cast(dict[str, Any], input.data)
    try:
        async with info.context.database.transaction() as session:
            row = await credentials.create_credential(
                session,
                box,
                workspace_id=workspace_id,
                name=input.name,
                kind=input.kind,
                data=data,
                created_by=viewer.user_id,
                allowed_domains=domains or None,
            )
            await _audited(
                info,
                session,
                AuditAction.CREDENTIAL_CREATE,
                row.id,
                row.workspace_id,
                name=row.name,
                kind=row.kind,
            )
    except DuplicateNameError:
        return _duplicate(input.name)
    return _credential(box, row)


async def update_credential(
    info: Info, id: strawberry.ID, input: inputs.CredentialUpdateInput
) -> results.CredentialResult:
    viewer = info.context.viewer()
    box = _box(info)
    identifier = str(id)
    problems = [] if input.name is None else _name_problems(input.name)
    if input.data is not None and not isinstance(input.data, dict):
        problems.append(Problem("INVALID_CREDENTIAL", "must be a JSON object", None, "data"))
    domains, bad = _domains(input.allowed_domains)
    problems += bad
    if problems:
        return validation_error(problems)
    try:
        async with info.context.database.transaction() as session:
            row = await credentials.get_credential(
                session, identifier, viewer.workspace_ids, for_update=True
            )
            if row is None:
                return await _foreign(info, session, identifier)
            if (forbidden := refusal(info, row.workspace_id)) is not None:
                return forbidden
            changes = cast(dict[str, Any], input.data or {})
            stored = credentials.reveal(box, row)
            data = credentials.merged(stored, changes)
            problems = check_data(row.kind, data)
            if problems:
                return validation_error(problems)
            shares = await credential_shares.shared_with(session, [row.id])
            if domains == [] and shares[row.id]:
                return _not_restricted(
                    "a shared credential must keep its allowedDomains: unshare it first"
                )
            # The names of the fields changed, never their values.
            fields = sorted(
                key
                for key in stored.keys() | data.keys()
                if (key in stored, stored.get(key)) != (key in data, data.get(key))
            )
            renamed = input.name is not None and input.name != row.name
            restricted = domains is not None and (domains or None) != row.allowed_domains
            if renamed or fields or restricted:  # else nothing written, nothing recorded
                row = await credentials.update_credential(
                    session, box, row, name=input.name, data=data, allowed_domains=domains
                )
                details: dict[str, Any] = {"name": row.name, "fields": fields}
                if restricted:
                    details["allowed_domains"] = row.allowed_domains or []
                await _audited(
                    info,
                    session,
                    AuditAction.CREDENTIAL_UPDATE,
                    row.id,
                    row.workspace_id,
                    **details,
                )
            shares = await credential_shares.shared_with(session, [row.id])
    except DuplicateNameError:
        return _duplicate(input.name or "")
    return _credential(box, row, shared_with=shares[row.id], members_of=viewer.workspace_ids)


async def delete_credential(info: Info, id: strawberry.ID) -> results.DeleteResult:
    viewer = info.context.viewer()
    identifier = str(id)
    try:
        async with info.context.database.transaction() as session:
            row = await credentials.get_credential(
                session, identifier, viewer.workspace_ids, for_update=True
            )
            if row is None:
                return await _foreign(info, session, identifier)
            if (forbidden := refusal(info, row.workspace_id)) is not None:
                return forbidden
            await credentials.delete_credential(session, row)
            await _audited(
                info,
                session,
                AuditAction.CREDENTIAL_DELETE,
                row.id,
                row.workspace_id,
                name=row.name,
            )
    except credentials.CredentialInUseError as exc:
        return results.InUseError(
            message=str(exc),
            workflows=[
                types.WorkflowReference(id=strawberry.ID(workflow_id), name=name)
                for workflow_id, name in exc.workflows
            ],
        )
    return results.Deleted(id=strawberry.ID(identifier))


async def _foreign(
    info: Info, session: AsyncSession, identifier: str
) -> results.NotFoundError | results.ForbiddenError:
    """Why a credential none of the caller's workspaces owns cannot be changed: it is shared
    with one of them (ForbiddenError), or it is not found."""
    workspace_ids = info.context.viewer().workspace_ids
    if await credentials.get_usable(session, identifier, workspace_ids) is not None:
        return results.ForbiddenError(
            message=f"credential {identifier!r} is shared with your workspace: only the "
            "workspace that owns it may change, delete or share it"
        )
    return _not_found(identifier)


def _workspace_not_found(identifier: str) -> results.NotFoundError:
    return results.NotFoundError(
        message=f"workspace {identifier!r} not found", id=strawberry.ID(identifier)
    )


async def _held(
    info: Info, session: AsyncSession, row: Credential, target: str, *, target_action: Action | None
) -> Credential | results.NotFoundError | results.ForbiddenError:
    """Under the locks of the credential's workspace and the target (taken in the order of
    their ids, as moves take them, so that the two never wait for each other), the
    credential read again and locked (updateCredential and deleteCredential lock it too),
    and the caller's roles as stored now: `Action.MANAGE` in the owner's workspace and
    `target_action` (if any) in the target. deleteWorkspace deletes under these locks: a
    share never names a deleted workspace; two shares (or unshares) of one workspace take
    turns."""
    for locked in sorted({row.workspace_id, target}):
        await info.context.database.lock(session, workspaces.lock_name(locked))
    held = await credentials.get_credential(session, row.id, [row.workspace_id], for_update=True)
    if held is None:
        return _not_found(row.id)
    if (
        forbidden := refusal_for(info, await stored_role(info, session, held.workspace_id))
    ) is not None:
        return forbidden
    if target_action is not None:
        role = await stored_role(info, session, target)
        if role is None:
            return _workspace_not_found(target)
        if (forbidden := refusal_for(info, role, target_action)) is not None:
            return forbidden
    return held


async def share_credential(
    info: Info, id: strawberry.ID, workspace_id: strawberry.ID
) -> results.CredentialResult:
    """Let another workspace of the caller's use the credential (idempotent). The caller
    needs `Action.EDIT` in that workspace too: sharing changes its drafts' node issues."""
    viewer = info.context.viewer()
    box = _box(info)
    identifier, target = str(id), str(workspace_id)
    async with info.context.database.transaction() as session:
        found = await credentials.get_credential(session, identifier, viewer.workspace_ids)
        if found is None:
            return await _foreign(info, session, identifier)
        if (forbidden := refusal(info, found.workspace_id)) is not None:
            return forbidden
        if target not in viewer.workspace_ids:
            return _workspace_not_found(target)
        if (forbidden := refusal(info, target, Action.EDIT)) is not None:
            return forbidden
        if target == found.workspace_id:
            problem = Problem(
                "SAME_WORKSPACE", "the credential belongs to this workspace", None, "workspaceId"
            )
            return validation_error([problem])
        row = await _held(info, session, found, target, target_action=Action.EDIT)
        if not isinstance(row, Credential):
            return row
        if not row.allowed_domains:
            return _not_restricted(
                f"credential {row.name!r} has no allowedDomains: set the hosts it may be sent "
                "to (updateCredential) before sharing it, since members of the workspace it "
                "is shared with may send requests carrying it to those hosts"
            )
        if await credential_shares.share(session, row, target, viewer.user_id):
            await _audited_share(info, session, AuditAction.CREDENTIAL_SHARE, row, target)
        shares = await credential_shares.shared_with(session, [row.id])
    return _credential(box, row, shared_with=shares[row.id], members_of=viewer.workspace_ids)


async def unshare_credential(
    info: Info, id: strawberry.ID, workspace_id: strawberry.ID
) -> results.CredentialResult:
    """End a share: NotFoundError (the workspace's id) when the credential is not shared
    with that workspace. The owner's owners and admins may end any share of it, whatever
    their role in that workspace (or none): taking a credential back is never refused."""
    viewer = info.context.viewer()
    box = _box(info)
    identifier, target = str(id), str(workspace_id)
    try:
        async with info.context.database.transaction() as session:
            found = await credentials.get_credential(session, identifier, viewer.workspace_ids)
            if found is None:
                return await _foreign(info, session, identifier)
            if (forbidden := refusal(info, found.workspace_id)) is not None:
                return forbidden
            if not storable(target):
                raise credential_shares.NotSharedError(found.id, target)
            row = await _held(info, session, found, target, target_action=None)
            if not isinstance(row, Credential):
                return row
            await credential_shares.unshare(session, row, target)
            await _audited_share(info, session, AuditAction.CREDENTIAL_UNSHARE, row, target)
            shares = await credential_shares.shared_with(session, [row.id])
    except credential_shares.NotSharedError as exc:
        return results.NotFoundError(message=str(exc), id=strawberry.ID(exc.workspace_id))
    return _credential(box, row, shared_with=shares[row.id], members_of=viewer.workspace_ids)
