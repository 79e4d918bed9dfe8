"""Workflow drafts, their tags and their immutable version snapshots.

Every change of a draft is one conditional UPDATE on `(id, version)`: of two concurrent
changes made from the same version exactly one matches, the other gets a conflict.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TypeVar

from sqlalchemy import String, bindparam, delete, false, func, insert, literal, or_
from sqlalchemy import inspect as sa_inspect
from sqlalchemy import select as sa_select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import defer
from sqlmodel import col, select, update
from sqlmodel.ext.asyncio.session import AsyncSession

from storage.db import run_core
from storage.errors import NotFoundError, VersionConflictError
from storage.models import (
    WebhookIdempotencyKey,
    Workflow,
    WorkflowTag,
    WorkflowVersion,
    new_id,
)
from storage.paging import newest_first
from storage.types import UTCDateTime, storable, utcnow


@dataclass(frozen=True, slots=True)
class WorkflowFilter:
    """Narrows a workflow listing; every given criterion must hold."""

    name_contains: str | None = None
    tag: str | None = None
    active: bool | None = None


@dataclass(slots=True)
class DraftChange:
    """New values for a draft; fields left as None are not changed."""

    name: str | None = None
    description: str | None = None
    tags: list[str] | None = None
    nodes: list[dict[str, Any]] | None = None
    edges: list[dict[str, Any]] | None = None
    node_issues: dict[str, list[dict[str, Any]]] | None = None
    settings: dict[str, Any] | None = None
    pinned_data: dict[str, list[dict[str, Any]]] | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def values(self) -> dict[str, Any]:
        values = {
            name: value
            for name, value in (
                ("name", self.name),
                ("description", self.description),
                ("tags", self.tags),
                ("nodes", self.nodes),
                ("edges", self.edges),
                ("node_issues", self.node_issues),
                ("settings", self.settings),
                ("pinned_data", self.pinned_data),
            )
            if value is not None
        }
        values.update(self.extra)
        return values


def _scoped(workspace_ids: Sequence[str]) -> Any:
    return col(Workflow.workspace_id).in_(workspace_ids)


async def _replace_tags(session: AsyncSession, workflow_id: str, tags: Sequence[str]) -> None:
    await session.exec(delete(WorkflowTag).where(col(WorkflowTag.workflow_id) == workflow_id))
    if tags:
        await session.exec(
            insert(WorkflowTag),
            params=[{"workflow_id": workflow_id, "tag": tag} for tag in dict.fromkeys(tags)],
        )


async def create_workflow(session: AsyncSession, workflow: Workflow) -> Workflow:
    """Insert a new draft (version 1) and its tags."""
    session.add(workflow)
    await session.flush()
    await _replace_tags(session, workflow.id, workflow.tags)
    return workflow


# Pinned items can be megabytes a workflow (engine/pins.py): reads that do not use them
# leave them in the database, and reading them from such a row is an error (not a query
# behind the caller's back). Pins are read where they are used: shown on a node (through a
# DataLoader when the row has none), pinned and unpinned, exported, and by a manual run's
# load (from its snapshot). A row read without them leaves the session (`without_pins`):
# the raising attribute sticks to the instance, which a later read of the same row in that
# session (`session.get`) would otherwise return.
WITHOUT_PINS = defer(Workflow.pinned_data, raiseload=True)  # type: ignore[arg-type]
WITHOUT_VERSION_PINS = defer(WorkflowVersion.pinned_data, raiseload=True)  # type: ignore[arg-type]
Row = TypeVar("Row", Workflow, WorkflowVersion)


def without_pins(session: AsyncSession, row: Row | None) -> Row | None:
    """`row`, read without its pins, taken out of the session (see `WITHOUT_PINS`); a row
    the session held whole before is left there."""
    if row is not None and "pinned_data" in sa_inspect(row).unloaded:
        session.expunge(row)
    return row


async def get_without_pins(session: AsyncSession, model: type[Row], row_id: str) -> Row | None:
    """`session.get` of a draft or a version, without its pins (see `without_pins`)."""
    options = [WITHOUT_PINS if model is Workflow else WITHOUT_VERSION_PINS]
    return without_pins(session, await session.get(model, row_id, options=options))


async def get_workflow(
    session: AsyncSession, workflow_id: str, workspace_ids: Sequence[str], *, pins: bool = True
) -> Workflow | None:
    """The draft, if it exists in one of the caller's workspaces (without its pins unless
    `pins`)."""
    if not storable(workflow_id):
        return None
    query = select(Workflow).where(Workflow.id == workflow_id, _scoped(workspace_ids))
    if pins:
        return (await session.exec(query)).first()
    return without_pins(session, (await session.exec(query.options(WITHOUT_PINS))).first())


async def draft_pins(session: AsyncSession, workflow_ids: Collection[str]) -> dict[str, Any]:
    """The pinned items of drafts by workflow id (for those read without them)."""
    query = select(Workflow.id, Workflow.pinned_data).where(col(Workflow.id).in_(workflow_ids))
    return {workflow_id: pinned for workflow_id, pinned in await session.exec(query)}


@dataclass(frozen=True, slots=True)
class WorkflowHead:
    """What running a workflow needs of its draft when its checks are cached: no graph."""

    id: str
    workspace_id: str
    version: int
    settings: dict[str, Any]


_HEAD = select(Workflow.id, Workflow.workspace_id, Workflow.version, Workflow.settings).where(
    Workflow.id == bindparam("workflow_id"),
    col(Workflow.workspace_id).in_(bindparam("workspace_ids", expanding=True)),
)


async def get_workflow_head(
    session: AsyncSession, workflow_id: str, workspace_ids: Sequence[str]
) -> WorkflowHead | None:
    """The draft's id, workspace, revision and settings, if it is the caller's (one
    statement built once: it is on the path of every execution)."""
    if not storable(workflow_id) or not workspace_ids:
        return None
    params = {"workflow_id": workflow_id, "workspace_ids": list(workspace_ids)}
    row = (await run_core(session, _HEAD, params)).first()
    return None if row is None else WorkflowHead(row[0], row[1], row[2], dict(row[3] or {}))


async def existing_ids(
    session: AsyncSession, workflow_ids: Collection[str], workspace_id: str
) -> set[str]:
    """Those of the ids that are workflows of the workspace."""
    wanted = [workflow_id for workflow_id in workflow_ids if storable(workflow_id)]
    if not wanted:
        return set()
    query = select(Workflow.id).where(
        col(Workflow.id).in_(wanted), Workflow.workspace_id == workspace_id
    )
    return set((await session.exec(query)).all())


async def workspace_of(session: AsyncSession, workflow_id: str) -> str | None:
    """The workspace a workflow belongs to, whoever asks (for the command line, which works
    on the whole database); None when there is no such workflow."""
    if not storable(workflow_id):
        return None
    query = select(Workflow.workspace_id).where(Workflow.id == workflow_id)
    return (await session.exec(query)).first()


async def require_workflow(
    session: AsyncSession, workflow_id: str, workspace_ids: Sequence[str]
) -> Workflow:
    workflow = await get_workflow(session, workflow_id, workspace_ids)
    if workflow is None:
        raise NotFoundError("workflow", workflow_id)
    return workflow


def _filtered(query: Any, workspace_ids: Sequence[str], where: WorkflowFilter) -> Any:
    query = query.where(_scoped(workspace_ids))
    criteria = (where.name_contains, where.tag)
    if not all(storable(text) for text in criteria if text is not None):
        return query.where(false())
    if where.name_contains:
        pattern = (
            "%"
            + where.name_contains.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
            + "%"
        )
        # Both sides folded by the database, so they fold alike whatever its locale.
        query = query.where(
            func.lower(Workflow.name).like(func.lower(literal(pattern)), escape="\\")
        )
    if where.tag is not None:
        tagged = select(WorkflowTag.workflow_id).where(WorkflowTag.tag == where.tag)
        query = query.where(col(Workflow.id).in_(tagged))
    if where.active is not None:
        query = query.where(Workflow.active == where.active)
    return query


async def list_workflows(
    session: AsyncSession,
    workspace_ids: Sequence[str],
    *,
    where: WorkflowFilter,
    limit: int,
    after: tuple[datetime, str] | None = None,
) -> Sequence[Workflow]:
    """Newest first, keyset-paginated on (created_at, id)."""
    query = _filtered(select(Workflow).options(WITHOUT_PINS), workspace_ids, where)
    query = newest_first(query, col(Workflow.created_at), col(Workflow.id), after, limit)
    rows: Sequence[Workflow] = (await session.exec(query)).all()
    return rows


async def count_workflows(
    session: AsyncSession, workspace_ids: Sequence[str], *, where: WorkflowFilter
) -> int:
    query = _filtered(select(func.count()).select_from(Workflow), workspace_ids, where)
    return int((await session.exec(query)).one())


async def update_draft(
    session: AsyncSession,
    workflow_id: str,
    workspace_ids: Sequence[str],
    expected_version: int,
    change: DraftChange,
) -> Workflow:
    """Apply a change if the draft is still at `expected_version`; bumps the version."""
    if not storable(workflow_id):
        raise NotFoundError("workflow", workflow_id)
    values = change.values()
    values["version"] = col(Workflow.version) + 1
    values["updated_at"] = utcnow()
    result = await session.exec(
        update(Workflow)
        .where(
            col(Workflow.id) == workflow_id,
            _scoped(workspace_ids),
            col(Workflow.version) == expected_version,
        )
        .values(**values)
    )
    if result.rowcount == 0:
        current = await get_workflow(session, workflow_id, workspace_ids)
        if current is None:
            raise NotFoundError("workflow", workflow_id)
        raise VersionConflictError(workflow_id, expected_version, current.version)
    if change.tags is not None:
        await _replace_tags(session, workflow_id, change.tags)
    return await _reload(session, workflow_id)


async def _fresh(session: AsyncSession, workflow_id: str) -> Workflow | None:
    """The row as stored now (not as the session last saw it), None when it is gone."""
    query = (
        select(Workflow).where(Workflow.id == workflow_id).execution_options(populate_existing=True)
    )
    return (await session.exec(query)).first()


async def _reload(session: AsyncSession, workflow_id: str) -> Workflow:
    query = (
        select(Workflow).where(Workflow.id == workflow_id).execution_options(populate_existing=True)
    )
    return (await session.exec(query)).one()


async def delete_workflow(
    session: AsyncSession, workflow_id: str, workspace_ids: Sequence[str]
) -> None:
    if not storable(workflow_id):
        raise NotFoundError("workflow", workflow_id)
    result = await session.exec(
        delete(Workflow).where(col(Workflow.id) == workflow_id, _scoped(workspace_ids))
    )
    if result.rowcount == 0:
        raise NotFoundError("workflow", workflow_id)
    # Its webhook idempotency keys (and the answers they keep) name it without a foreign key.
    await session.exec(
        delete(WebhookIdempotencyKey).where(col(WebhookIdempotencyKey.workflow_id) == workflow_id)
    )


async def ensure_snapshot(
    session: AsyncSession, workflow: Workflow, created_by: str | None
) -> WorkflowVersion:
    """The immutable snapshot of the draft's current version, written on first need.

    Two callers racing to snapshot the same version both end up with the one row. A draft
    changed since `workflow` was read is a VersionConflictError (nothing is written).
    """
    query = (
        select(WorkflowVersion)
        .where(
            WorkflowVersion.workflow_id == workflow.id,
            WorkflowVersion.version == workflow.version,
        )
        .options(WITHOUT_VERSION_PINS)
    )
    existing = without_pins(session, (await session.exec(query)).first())
    if existing is not None:
        return existing
    # INSERT ... SELECT ... ON CONFLICT DO NOTHING rather than a savepoint: SQLite's driver
    # would commit a savepoint that opens the transaction, beyond the reach of a later
    # rollback. Everything is copied from the draft's row at this version, in the database
    # (the pins are not read here): a draft changed since `workflow` was read inserts nothing,
    # rather than a snapshot of this version with another version's pins.
    copied = sa_select(
        literal(new_id()),
        col(Workflow.id),
        col(Workflow.version),
        col(Workflow.name),
        col(Workflow.nodes),
        col(Workflow.edges),
        col(Workflow.settings),
        col(Workflow.pinned_data),
        literal(created_by, String(36)),
        literal(utcnow(), UTCDateTime),
    ).where(col(Workflow.id) == workflow.id, col(Workflow.version) == workflow.version)
    columns = [
        "id",
        "workflow_id",
        "version",
        "name",
        "nodes",
        "edges",
        "settings",
        "pinned_data",
        "created_by",
        "created_at",
    ]
    dialect = session.get_bind().dialect.name
    statement = (sqlite_insert if dialect == "sqlite" else pg_insert)(WorkflowVersion)
    await session.exec(
        statement.from_select(columns, copied).on_conflict_do_nothing(
            index_elements=["workflow_id", "version"]
        )
    )
    snapshot = without_pins(session, (await session.exec(query)).first())
    if snapshot is None:
        # Neither inserted nor there: the draft is no longer at this version.
        current = (
            await session.exec(select(Workflow.version).where(col(Workflow.id) == workflow.id))
        ).first()
        if current is None:
            raise NotFoundError("workflow", workflow.id)
        raise VersionConflictError(workflow.id, workflow.version, current)
    return snapshot


async def publish(
    session: AsyncSession,
    workflow_id: str,
    workspace_ids: Sequence[str],
    expected_version: int,
    created_by: str | None,
) -> tuple[Workflow, bool]:
    """Make the draft at `expected_version` what triggers run. Does not bump the version.
    Also whether that changed anything: False when that version is published already (one of
    two concurrent publishes of a version, or a repeat)."""
    workflow = await require_workflow(session, workflow_id, workspace_ids)
    if workflow.version != expected_version:
        raise VersionConflictError(workflow_id, expected_version, workflow.version)
    await ensure_snapshot(session, workflow, created_by)
    result = await session.exec(
        update(Workflow)
        .where(
            col(Workflow.id) == workflow_id,
            col(Workflow.version) == expected_version,
            or_(
                col(Workflow.published_version).is_(None),
                col(Workflow.published_version) != expected_version,
            ),
        )
        .values(published_version=expected_version, updated_at=utcnow())
    )
    if result.rowcount == 0:
        current = await _fresh(session, workflow_id)
        if current is None:
            raise NotFoundError("workflow", workflow_id)
        if current.version != expected_version:
            raise VersionConflictError(workflow_id, expected_version, current.version)
        return current, False  # published already
    return await _reload(session, workflow_id), True


async def set_active(
    session: AsyncSession, workflow_id: str, workspace_ids: Sequence[str], active: bool
) -> tuple[Workflow, bool]:
    """Switch the published version's triggers on or off; the version does not change.
    Also whether that changed the row: False when it was `active` already (the row is
    left as it was, `updated_at` too)."""
    if not storable(workflow_id):
        raise NotFoundError("workflow", workflow_id)
    result = await session.exec(
        update(Workflow)
        .where(
            col(Workflow.id) == workflow_id,
            _scoped(workspace_ids),
            col(Workflow.active) != active,
        )
        .values(active=active, updated_at=utcnow())
    )
    if result.rowcount == 0:
        await require_workflow(session, workflow_id, workspace_ids)  # NotFoundError if gone
        return await _reload(session, workflow_id), False  # `active` already
    return await _reload(session, workflow_id), True


async def get_version(
    session: AsyncSession,
    workflow_id: str,
    version: int,
    workspace_ids: Sequence[str],
    *,
    pins: bool = True,
) -> WorkflowVersion | None:
    """A version of the workflow, if the caller may read it (without its pins unless
    `pins`)."""
    if not storable(workflow_id):
        return None
    query = (
        select(WorkflowVersion)
        .join(Workflow, col(Workflow.id) == col(WorkflowVersion.workflow_id))
        .where(
            WorkflowVersion.workflow_id == workflow_id,
            WorkflowVersion.version == version,
            _scoped(workspace_ids),
        )
    )
    if pins:
        return (await session.exec(query)).first()
    return without_pins(session, (await session.exec(query.options(WITHOUT_VERSION_PINS))).first())


async def versions_by_workflow(
    session: AsyncSession, workflow_ids: Sequence[str]
) -> dict[str, list[WorkflowVersion]]:
    """Snapshots of many workflows at once, newest first (for a DataLoader)."""
    query = (
        select(WorkflowVersion)
        .where(col(WorkflowVersion.workflow_id).in_(workflow_ids))
        .order_by(col(WorkflowVersion.version).desc())
    )
    grouped: dict[str, list[WorkflowVersion]] = {workflow_id: [] for workflow_id in workflow_ids}
    for snapshot in await session.exec(query):
        grouped[snapshot.workflow_id].append(snapshot)
    return grouped


async def workflows_using(
    session: AsyncSession, workspace_id: str, uses: Callable[[list[dict[str, Any]]], bool]
) -> list[tuple[str, str]]:
    """(id, name) of the workspace's workflows, by name, whose draft or published version
    has nodes for which `uses(nodes)` holds: what must change before a thing they use (a
    credential, a node type) may be deleted."""
    drafts = (
        await session.exec(
            select(Workflow).where(Workflow.workspace_id == workspace_id).options(WITHOUT_PINS)
        )
    ).all()
    users: dict[str, str] = {}
    for workflow in drafts:
        without_pins(session, workflow)
        if uses(workflow.nodes):
            users[workflow.id] = workflow.name
    published = (
        await session.exec(
            select(WorkflowVersion, Workflow.name)
            .options(WITHOUT_VERSION_PINS)
            .join(Workflow, col(Workflow.id) == col(WorkflowVersion.workflow_id))
            .where(
                Workflow.workspace_id == workspace_id,
                col(WorkflowVersion.version) == col(Workflow.published_version),
            )
        )
    ).all()
    for version, name in published:
        without_pins(session, version)
        if version.workflow_id not in users and uses(version.nodes):
            users[version.workflow_id] = name
    return sorted(users.items(), key=lambda item: item[1])
