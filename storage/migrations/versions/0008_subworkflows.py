"""sub-workflow executions: the link to the calling execution, node and attempt

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-26
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("executions") as batch:
        batch.add_column(sa.Column("parent_execution_id", sa.String(length=36), nullable=True))
        batch.add_column(sa.Column("parent_node_id", sa.String(length=255), nullable=True))
        batch.add_column(sa.Column("parent_run_id", sa.String(length=36), nullable=True))
        batch.add_column(sa.Column("parent_batch", sa.Integer(), nullable=True))
        batch.add_column(
            sa.Column("parent_waits", sa.Boolean(), nullable=False, server_default=sa.false())
        )
        batch.add_column(sa.Column("call_depth", sa.Integer(), nullable=False, server_default="0"))
        batch.create_foreign_key(
            "fk_executions_parent_execution_id_executions",
            "executions",
            ["parent_execution_id"],
            ["id"],
            ondelete="SET NULL",
        )
        batch.create_index("ix_executions_parent_run", ["parent_run_id", "parent_batch"])
        batch.create_index("ix_executions_parent", ["parent_execution_id", "created_at"])


def downgrade() -> None:
    with op.batch_alter_table("executions") as batch:
        batch.drop_index("ix_executions_parent")
        batch.drop_index("ix_executions_parent_run")
        batch.drop_constraint("fk_executions_parent_execution_id_executions", type_="foreignkey")
        batch.drop_column("call_depth")
        batch.drop_column("parent_waits")
        batch.drop_column("parent_batch")
        batch.drop_column("parent_run_id")
        batch.drop_column("parent_node_id")
        batch.drop_column("parent_execution_id")
