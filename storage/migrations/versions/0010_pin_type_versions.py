"""workflow nodes write down their type's version

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-07

A node without `typeVersion` used to run the latest version of its type, so that a new
version of a type would have changed how existing workflows run. From now on a node is saved
with its version (docs/node-types.md, "Versions"); this writes down, in drafts and published
snapshots alike, the version such nodes ran until now. Every built-in type was at version 1
until this revision (Set's version 2 comes with it), so built-ins are pinned to 1, frozen
here: what this migration does must not change with the versions installed later. A plugin's
type is pinned to its latest as installed when the migration runs, the version it was
running; nodes of a type not installed then are left as they are (they cannot run anyway)
and get their version when next saved.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_BATCH_ROWS = 500


def upgrade() -> None:
    from engine.node_types import load_registry

    registry = load_registry()

    def ran(type_name: str) -> int | None:
        if "." not in type_name:  # a built-in (plugins' names are `namespace.name`)
            return 1 if registry.has_name(type_name) else None
        return registry.latest_version(type_name)

    connection = op.get_bind()
    for table_name in ("workflows", "workflow_versions"):
        table = sa.table(table_name, sa.column("id", sa.String), sa.column("nodes", sa.JSON))
        last_id = ""
        while True:
            rows = connection.execute(
                sa.select(table.c.id, table.c.nodes)
                .where(table.c.id > last_id)
                .order_by(table.c.id)
                .limit(_BATCH_ROWS)
            ).all()
            if not rows:
                break
            last_id = rows[-1].id
            for row in rows:
                nodes = _pinned(row.nodes, ran)
                if nodes is not None:
                    connection.execute(
                        table.update().where(table.c.id == row.id).values(nodes=nodes)
                    )


def _pinned(nodes: Any, latest: Any) -> list[Any] | None:
    """The nodes with their type's version written down, or None when none changed."""
    if not isinstance(nodes, list):
        return None
    changed = False
    pinned = []
    for node in nodes:
        if isinstance(node, dict) and node.get("typeVersion") is None:
            version = latest(node.get("type")) if isinstance(node.get("type"), str) else None
            if version is not None:
                node = {**node, "typeVersion": version}
                changed = True
        pinned.append(node)
    return pinned if changed else None


def downgrade() -> None:
    # A written-down version is what the node ran before; nothing to undo.
    pass
