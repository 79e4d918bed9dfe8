"""A workspace's declarative node types: their stored versions, and the view of the node
types a workspace sees (the registry plus its own types).

A version, once stored, never changes: an update stores the next version. Deleting a type
marks its versions deleted (`deleted_at`); a type made again under the same name continues
the numbering, so that `(workspace, name, version)` always means one definition, and a plan
or compiled type kept by a process is never stale.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import func
from sqlalchemy.exc import IntegrityError
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from engine.declarative import declared_node_type
from engine.node_types import NodeType, NodeTypeLookup, NodeTypeRegistry, WorkspaceNodeTypes
from storage import workflows
from storage.db import Database
from storage.errors import DuplicateNameError, NotFoundError, StorageError
from storage.models import NodeTypeDefinition
from storage.types import utcnow


class NodeTypeInUseError(StorageError):
    """Workflows use the type: it cannot be deleted."""

    def __init__(self, name: str, workflows: list[tuple[str, str]]) -> None:
        names = ", ".join(repr(workflow_name) for _, workflow_name in workflows)
        super().__init__(f"node type {name!r} is used by workflow(s) {names}")
        self.workflows = workflows


class ConcurrentChangeError(StorageError):
    """Another change of the same type took the version number first."""


def _current(workspace_ids: Sequence[str]) -> Any:
    return (
        col(NodeTypeDefinition.workspace_id).in_(workspace_ids),
        col(NodeTypeDefinition.deleted_at).is_(None),
    )


async def current_versions(
    session: AsyncSession, workspace_ids: Sequence[str]
) -> Sequence[NodeTypeDefinition]:
    """Every version not deleted of the workspaces' types, by workspace, name, version."""
    query = (
        select(NodeTypeDefinition)
        .where(*_current(workspace_ids))
        .order_by(
            col(NodeTypeDefinition.workspace_id),
            col(NodeTypeDefinition.name),
            col(NodeTypeDefinition.version),
        )
    )
    return (await session.exec(query)).all()


async def version_ids(session: AsyncSession, workspace_ids: Sequence[str]) -> list[str]:
    """The ids of those versions, sorted: they change exactly when what the workspaces'
    types are does (a key for what is built from them)."""
    query = select(NodeTypeDefinition.id).where(*_current(workspace_ids))
    return sorted((await session.exec(query)).all())


async def _store(
    session: AsyncSession,
    workspace_id: str,
    name: str,
    definition: dict[str, Any],
    created_by: str | None,
) -> NodeTypeDefinition:
    """The next version of the type, numbered after every version ever stored (deleted ones
    too)."""
    last = (
        await session.exec(
            select(func.max(NodeTypeDefinition.version)).where(
                NodeTypeDefinition.workspace_id == workspace_id, NodeTypeDefinition.name == name
            )
        )
    ).one()
    row = NodeTypeDefinition(
        workspace_id=workspace_id,
        name=name,
        version=(last or 0) + 1,
        definition=definition,
        created_by=created_by,
    )
    session.add(row)
    try:
        await session.flush()
    except IntegrityError as exc:
        raise ConcurrentChangeError(f"node type {name!r} changed meanwhile; try again") from exc
    return row


async def _exists(session: AsyncSession, workspace_id: str, name: str) -> bool:
    query = select(NodeTypeDefinition.id).where(
        *_current([workspace_id]), NodeTypeDefinition.name == name
    )
    return (await session.exec(query.limit(1))).first() is not None


async def create_type(
    session: AsyncSession,
    workspace_id: str,
    name: str,
    definition: dict[str, Any],
    created_by: str | None,
) -> NodeTypeDefinition:
    """A new type (its first version, or the next after a deleted one's)."""
    if await _exists(session, workspace_id, name):
        raise DuplicateNameError("node type", name)
    return await _store(session, workspace_id, name, definition, created_by)


async def update_type(
    session: AsyncSession,
    workspace_id: str,
    name: str,
    definition: dict[str, Any],
    created_by: str | None,
) -> NodeTypeDefinition:
    """A new version of an existing type."""
    if not await _exists(session, workspace_id, name):
        raise NotFoundError("node type", name)
    return await _store(session, workspace_id, name, definition, created_by)


async def delete_type(session: AsyncSession, workspace_id: str, name: str) -> None:
    """Mark every version of the type deleted; refused while a draft or a published version
    of a workflow of the workspace uses it."""
    rows = (
        await session.exec(
            select(NodeTypeDefinition).where(
                *_current([workspace_id]), NodeTypeDefinition.name == name
            )
        )
    ).all()
    if not rows:
        raise NotFoundError("node type", name)
    users = await workflows.workflows_using(
        session,
        workspace_id,
        lambda nodes: any(isinstance(node, dict) and node.get("type") == name for node in nodes),
    )
    if users:
        raise NodeTypeInUseError(name, users)
    now = utcnow()
    for row in rows:
        row.deleted_at = now
        session.add(row)
    await session.flush()


def workspace_view(
    registry: NodeTypeRegistry, rows: Sequence[NodeTypeDefinition]
) -> WorkspaceNodeTypes:
    """The registry with these stored versions (of one workspace) added."""
    declared: dict[str, dict[int, NodeType]] = {}
    for row in rows:
        declared.setdefault(row.name, {})[row.version] = declared_node_type(
            row.id, row.name, row.version, row.definition
        )
    return WorkspaceNodeTypes(registry, declared, tuple(sorted(row.id for row in rows)))


class DeclaredNodeTypes:
    """The node types each workspace sees, read from the database when asked: every API and
    worker process builds the same view from the same rows (compiled types are kept per
    stored version, engine/declarative.py)."""

    def __init__(self, database: Database, registry: NodeTypeRegistry) -> None:
        self.database = database
        self.registry = registry

    async def for_workspace(
        self, workspace_id: str, session: AsyncSession | None = None
    ) -> NodeTypeLookup:
        """The registry plus the workspace's types; the registry itself when it has none.
        Read in `session` when given."""
        if session is not None:
            rows = await current_versions(session, [workspace_id])
        else:
            async with self.database.session() as own:
                rows = await current_versions(own, [workspace_id])
        return workspace_view(self.registry, rows) if rows else self.registry
