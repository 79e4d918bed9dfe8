"""pinned data and runs to a node: items pinned as a node's output on the draft, copied into
each snapshot; what a manual execution runs to and reuses; where a node run's output came from

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-08

`pinned_data` maps node ids to the items pinned as that node's output (issue 16, "Pinned
data"); a manual execution of a snapshot gives those items as the node's output without
running it. `node_runs.source` says so: NULL for a node that ran, `PINNED` for pinned items,
`REUSED` for an earlier execution's output. `executions.destination_node_id` is the node a
manual execution runs to (only it and its ancestors run), `node_only` says that only that
node runs (on the execution's input items: `executeNode`), and `reuse_from` is the earlier
execution whose still-valid outputs it reuses (engine/partial.py). Existing drafts and
snapshots pin nothing; existing executions ran whole.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0013"
down_revision: str | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    for table in ("workflows", "workflow_versions"):
        op.add_column(
            table,
            sa.Column("pinned_data", sa.JSON(), nullable=False, server_default=sa.text("'{}'")),
        )
    op.add_column("node_runs", sa.Column("source", sa.String(16), nullable=True))
    with op.batch_alter_table("executions") as batch:
        batch.add_column(sa.Column("destination_node_id", sa.String(length=255), nullable=True))
        batch.add_column(
            sa.Column("node_only", sa.Boolean(), nullable=False, server_default=sa.false())
        )
        batch.add_column(sa.Column("reuse_from", sa.String(length=36), nullable=True))
        batch.create_foreign_key(
            "fk_executions_reuse_from_executions",
            "executions",
            ["reuse_from"],
            ["id"],
            ondelete="SET NULL",
        )


def downgrade() -> None:
    with op.batch_alter_table("executions") as batch:
        batch.drop_constraint("fk_executions_reuse_from_executions", type_="foreignkey")
        batch.drop_column("reuse_from")
        batch.drop_column("node_only")
        batch.drop_column("destination_node_id")
    with op.batch_alter_table("node_runs") as batch:
        batch.drop_column("source")
    for table in ("workflow_versions", "workflows"):
        with op.batch_alter_table(table) as batch:
            batch.drop_column("pinned_data")
