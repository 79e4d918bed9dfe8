"""Node type policies in the database, and each process's copy of them.

Policies are few and read on every start of an execution, so every process keeps them in
memory (`NodeTypePolicies`) and asks the database every `refresh_s`, in the background,
whether they changed (one count of the changes, which are few); the process that makes a
change sees it at once, the others within `refresh_s`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable, Sequence

from sqlalchemy import func
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlmodel import col, delete, select
from sqlmodel.ext.asyncio.session import AsyncSession

from engine.node_type_policy import Disabled, PolicyScope, PolicySnapshot
from storage.db import Database
from storage.models import SERVER_SCOPE, NodeTypePolicy, NodeTypePolicyChange
from storage.types import utcnow

logger = logging.getLogger(__name__)

# Longest reason kept with a change (a sentence or two for the catalog and the node issue).
MAX_REASON_CHARS = 500


async def set_enabled(
    session: AsyncSession,
    *,
    scope: str,
    node_type: str,
    enabled: bool,
    reason: str | None,
    user_id: str | None,
    user_name: str | None,
) -> bool:
    """Enable or disable `node_type` in `scope` (`SERVER_SCOPE` or a workspace id), recording
    the change; False, and nothing written, when it was so already. Concurrent calls are
    safe on both databases: the row is removed or inserted by one statement whose row count
    says whether this call changed it (a concurrent one that did is not recorded twice)."""
    now = utcnow()
    if enabled:
        removed = await session.exec(
            delete(NodeTypePolicy).where(
                col(NodeTypePolicy.scope) == scope, col(NodeTypePolicy.node_type) == node_type
            )
        )
        changed = removed.rowcount > 0
    else:
        dialect = session.get_bind().dialect.name
        statement = (sqlite_insert if dialect == "sqlite" else pg_insert)(NodeTypePolicy)
        inserted = await session.exec(
            statement.values(
                scope=scope,
                node_type=node_type,
                reason=reason,
                changed_by=user_name,
                changed_at=now,
            ).on_conflict_do_nothing(index_elements=["scope", "node_type"])
        )
        changed = inserted.rowcount > 0
    if not changed:
        return False
    session.add(
        NodeTypePolicyChange(
            scope=scope,
            node_type=node_type,
            enabled=enabled,
            reason=reason,
            changed_by_id=user_id,
            changed_by=user_name,
            changed_at=now,
        )
    )
    await session.flush()
    return True


async def revision(session: AsyncSession) -> int:
    """How many changes were made: moves with every change. (Not the newest id: on
    PostgreSQL a change may commit after one with a higher id, and would go unseen.)"""
    return int((await session.exec(select(func.count()).select_from(NodeTypePolicyChange))).one())


async def changes(
    session: AsyncSession, scopes: Sequence[str], limit: int
) -> list[NodeTypePolicyChange]:
    """The newest `limit` changes made in `scopes`, newest first."""
    rows = await session.exec(
        select(NodeTypePolicyChange)
        .where(col(NodeTypePolicyChange.scope).in_(scopes))
        .order_by(col(NodeTypePolicyChange.id).desc())
        .limit(limit)
    )
    return list(rows.all())


async def snapshot(session: AsyncSession, setting: Iterable[str]) -> PolicySnapshot:
    """Every policy in force, with the revision it was read at."""
    at = await revision(session)
    server: dict[str, Disabled] = {}
    workspaces: dict[str, dict[str, Disabled]] = {}
    for row in (await session.exec(select(NodeTypePolicy))).all():
        if row.scope == SERVER_SCOPE:
            server[row.node_type] = Disabled(
                PolicyScope.SERVER, row.reason, row.changed_by, row.changed_at
            )
        else:
            workspaces.setdefault(row.scope, {})[row.node_type] = Disabled(
                PolicyScope.WORKSPACE, row.reason, row.changed_by, row.changed_at
            )
    return PolicySnapshot(at, frozenset(setting), server, workspaces)


class NodeTypePolicies:
    """The policies as this process knows them: `current`, read without I/O.

    Loaded when the process starts (`reload`), then kept fresh by `keep_fresh`, a task that
    asks the database every `refresh_s` whether they changed; the process that makes a change
    reloads at once. Requests never wait on the database for them, so what a request costs in
    queries does not depend on when it comes.
    """

    def __init__(
        self, database: Database, setting: Iterable[str] = (), refresh_s: float = 1.0
    ) -> None:
        self.database = database
        self.setting = frozenset(setting)
        self.refresh_s = refresh_s
        self.current = PolicySnapshot(setting=self.setting)
        self._lock = asyncio.Lock()

    async def reload(self) -> PolicySnapshot:
        """Read every policy now (at start, and after this process changed one)."""
        async with self._lock, self.database.session() as session:
            self.current = await snapshot(session, self.setting)
        return self.current

    async def refresh(self) -> None:
        """Reload when another process changed the policies (one count when it did not)."""
        async with self.database.session() as session:
            changed = await revision(session) != self.current.revision
        if changed:
            await self.reload()

    async def keep_fresh(self) -> None:
        """`refresh` every `refresh_s`, for as long as the process runs; a database that
        cannot be reached keeps the policies as they were, and is tried again."""
        while True:
            await asyncio.sleep(self.refresh_s)
            try:
                await self.refresh()
            except asyncio.CancelledError:
                raise
            except Exception:
                logger.warning("reading node type policies failed; trying again", exc_info=True)
