"""pinned data: items pinned as a node's output on the draft, copied into each snapshot, and
where a node run's output came from

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-08

`pinned_data` maps node ids to the items pinned as that node's output (issue 16, "Pinned
data"); a manual execution of a snapshot gives those items as the node's output without
running it. `node_runs.source` says so: NULL for a node that ran, `PINNED` for pinned items.
Existing drafts and snapshots pin nothing.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    for table in ("workflows", "workflow_versions"):
        op.add_column(
            table,
            sa.Column("pinned_data", sa.JSON(), nullable=False, server_default=sa.text("'{}'")),
        )
    op.add_column("node_runs", sa.Column("source", sa.String(16), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("node_runs") as batch:
        batch.drop_column("source")
    for table in ("workflow_versions", "workflows"):
        with op.batch_alter_table(table) as batch:
            batch.drop_column("pinned_data")
