"""Credential queries and mutations. Secrets go in, never out."""

from __future__ import annotations

import logging
from typing import Any, cast

import strawberry
from sqlmodel.ext.asyncio.session import AsyncSession
from strawberry.scalars import JSON

from engine.credentials import KINDS, check_data
from engine.validation import Problem
from resolvers.context import Context
from resolvers.permissions import refusal, scope, target_workspace
from resolvers.workflows import validation_error
from schema import inputs, results, types
from storage import audit, credentials
from storage.audit import AuditAction
from storage.errors import DuplicateNameError
from storage.models import Credential
from storage.roles import Action
from storage.secrets import CredentialDecryptionError, SecretBox

logger = logging.getLogger("loom.credentials")

Info = strawberry.Info[Context, None]

MAX_NAME = 255


def _box(info: Info) -> SecretBox:
    box = info.context.services.secret_box
    if box is None:
        raise RuntimeError("no secret key configured: credentials are unavailable")
    return box


def _credential(box: SecretBox, row: Credential, names_only: bool = False) -> types.Credential:
    """The credential as the API shows it; `names_only` for a role that sees names alone."""
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
    )


def _not_found(identifier: str) -> results.NotFoundError:
    return results.NotFoundError(
        message=f"credential {identifier!r} not found", id=strawberry.ID(identifier)
    )


def _name_problems(name: str) -> list[Problem]:
    if not name.strip() or len(name) > MAX_NAME:
        return [Problem("INVALID_NAME", f"name must be 1 to {MAX_NAME} characters", None, "name")]
    return []


def _duplicate(name: str) -> results.ValidationError:
    problem = Problem(
        "DUPLICATE_NAME", f"a credential named {name!r} exists in this workspace", None, "name"
    )
    return validation_error([problem])


async def credentials_list(info: Info) -> list[types.Credential]:
    viewer = info.context.viewer()
    box = _box(info)
    async with info.context.database.session() as session:
        rows = await credentials.list_credentials(session, scope(info))
    return [
        _credential(box, row, not viewer.may(Action.READ_FIELDS, row.workspace_id)) for row in rows
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


async def create_credential(info: Info, input: inputs.CredentialInput) -> results.CredentialResult:
    viewer = info.context.viewer()
    box = _box(info)
    workspace_id = target_workspace(info, input.workspace_id)
    if not isinstance(workspace_id, str):
        return workspace_id
    problems = _name_problems(input.name) + check_data(input.kind, input.data)
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
    if problems:
        return validation_error(problems)
    try:
        async with info.context.database.transaction() as session:
            row = await credentials.get_credential(session, identifier, viewer.workspace_ids)
            if row is None:
                return _not_found(identifier)
            if (forbidden := refusal(info, row.workspace_id)) is not None:
                return forbidden
            changes = cast(dict[str, Any], input.data or {})
            data = credentials.merged(credentials.reveal(box, row), changes)
            problems = check_data(row.kind, data)
            if problems:
                return validation_error(problems)
            row = await credentials.update_credential(session, box, row, name=input.name, data=data)
            # The names of the fields changed, never their values.
            await _audited(
                info,
                session,
                AuditAction.CREDENTIAL_UPDATE,
                row.id,
                row.workspace_id,
                name=row.name,
                fields=sorted(changes),
            )
    except DuplicateNameError:
        return _duplicate(input.name or "")
    return _credential(box, row)


async def delete_credential(info: Info, id: strawberry.ID) -> results.DeleteResult:
    viewer = info.context.viewer()
    identifier = str(id)
    try:
        async with info.context.database.transaction() as session:
            row = await credentials.get_credential(session, identifier, viewer.workspace_ids)
            if row is None:
                return _not_found(identifier)
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
