"""execution records

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-26
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "execution_events",
        sa.Column("execution_id", sa.String(length=36), nullable=False),
        sa.Column("sequence", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("type", sa.String(length=32), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("node_id", sa.String(length=255), nullable=True),
        sa.Column("node_name", sa.String(length=255), nullable=True),
        sa.Column("attempt", sa.Integer(), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=True),
        sa.Column("duration_ms", sa.Float(), nullable=True),
        sa.Column("input_items", sa.Integer(), nullable=True),
        sa.Column("output_items", sa.Integer(), nullable=True),
        sa.Column("error", sa.JSON(), nullable=True),
        sa.Column("preview", sa.JSON(), nullable=True),
        sa.ForeignKeyConstraint(["execution_id"], ["executions.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("execution_id", "sequence"),
    )
    op.create_table(
        "node_run_payloads",
        sa.Column("node_run_id", sa.String(length=36), nullable=False),
        sa.Column("execution_id", sa.String(length=36), nullable=False),
        sa.Column("encoding", sa.String(length=16), nullable=False),
        sa.Column("raw_bytes", sa.Integer(), nullable=False),
        sa.Column("data", sa.LargeBinary(), nullable=False),
        sa.ForeignKeyConstraint(["execution_id"], ["executions.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["node_run_id"], ["node_runs.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("node_run_id"),
    )
    with op.batch_alter_table("node_run_payloads", schema=None) as batch_op:
        batch_op.create_index("ix_node_run_payloads_execution", ["execution_id"], unique=False)

    with op.batch_alter_table("executions", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("workflow_version", sa.Integer(), nullable=False, server_default="1")
        )
        batch_op.add_column(sa.Column("start_node_id", sa.String(length=255), nullable=True))
        batch_op.add_column(sa.Column("retry_of", sa.String(length=36), nullable=True))
        batch_op.add_column(
            sa.Column("reuse_outputs", sa.Boolean(), nullable=False, server_default=sa.false())
        )
        batch_op.add_column(sa.Column("created_by", sa.String(length=36), nullable=True))
        batch_op.add_column(
            sa.Column("cancel_requested_at", sa.DateTime(timezone=True), nullable=True)
        )
        batch_op.create_index("ix_executions_status", ["status"], unique=False)
        batch_op.create_foreign_key(
            "fk_executions_retry_of", "executions", ["retry_of"], ["id"], ondelete="SET NULL"
        )
        batch_op.create_foreign_key(
            "fk_executions_created_by", "users", ["created_by"], ["id"], ondelete="SET NULL"
        )

    with op.batch_alter_table("node_runs", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_node_runs_execution"))
        batch_op.create_index(
            "ix_node_runs_execution", ["execution_id", "created_at"], unique=False
        )
        batch_op.create_index(
            "uq_node_runs_one_success",
            ["execution_id", "node_id"],
            unique=True,
            sqlite_where=sa.text("status = 'SUCCEEDED'"),
            postgresql_where=sa.text("status = 'SUCCEEDED'"),
        )


def downgrade() -> None:
    with op.batch_alter_table("node_runs", schema=None) as batch_op:
        batch_op.drop_index(
            "uq_node_runs_one_success",
            sqlite_where=sa.text("status = 'SUCCEEDED'"),
            postgresql_where=sa.text("status = 'SUCCEEDED'"),
        )
        batch_op.drop_index("ix_node_runs_execution")
        batch_op.create_index(batch_op.f("ix_node_runs_execution"), ["execution_id"], unique=False)

    with op.batch_alter_table("executions", schema=None) as batch_op:
        batch_op.drop_constraint("fk_executions_created_by", type_="foreignkey")
        batch_op.drop_constraint("fk_executions_retry_of", type_="foreignkey")
        batch_op.drop_index("ix_executions_status")
        batch_op.drop_column("cancel_requested_at")
        batch_op.drop_column("created_by")
        batch_op.drop_column("reuse_outputs")
        batch_op.drop_column("retry_of")
        batch_op.drop_column("start_node_id")
        batch_op.drop_column("workflow_version")

    with op.batch_alter_table("node_run_payloads", schema=None) as batch_op:
        batch_op.drop_index("ix_node_run_payloads_execution")

    op.drop_table("node_run_payloads")
    op.drop_table("execution_events")
