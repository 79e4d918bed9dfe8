"""retention: what an execution kept of its data, the record of each prune, and the indexes
that deleting executions needs

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-08

`executions.saved_data` says what an ended execution kept (issue 17, "What is kept"): NULL
for everything, `summary` for its row, node statuses and timings without any input or
output, `none` for that too until a prune deletes it a grace period after its end (a
partial index finds those). `prune_runs` records each prune (when, and how many rows of
each table it deleted).
Deleting an execution sets `retry_of`, `reuse_from` of the executions that name it and
`schedule_ticks.execution_id` to NULL: without an index each deleted execution would scan
those tables.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0014"
down_revision: str | None = "0013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("executions", sa.Column("saved_data", sa.String(8), nullable=True))
    for column in ("retry_of", "reuse_from"):
        op.create_index(
            f"ix_executions_{column}",
            "executions",
            [column],
            sqlite_where=sa.text(f"{column} IS NOT NULL"),
            postgresql_where=sa.text(f"{column} IS NOT NULL"),
        )
    op.create_index(
        "ix_executions_saved_none",
        "executions",
        ["finished_at"],
        sqlite_where=sa.text("saved_data = 'none'"),
        postgresql_where=sa.text("saved_data = 'none'"),
    )
    op.create_index(
        "ix_schedule_ticks_execution",
        "schedule_ticks",
        ["execution_id"],
        sqlite_where=sa.text("execution_id IS NOT NULL"),
        postgresql_where=sa.text("execution_id IS NOT NULL"),
    )
    op.create_table(
        "prune_runs",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("executions_deleted", sa.Integer(), nullable=False),
        sa.Column("rows_deleted", sa.JSON(), nullable=False),
    )
    op.create_index("ix_prune_runs_finished_at", "prune_runs", ["finished_at"])


def downgrade() -> None:
    op.drop_index("ix_prune_runs_finished_at", table_name="prune_runs")
    op.drop_table("prune_runs")
    op.drop_index("ix_schedule_ticks_execution", table_name="schedule_ticks")
    op.drop_index("ix_executions_saved_none", table_name="executions")
    for column in ("reuse_from", "retry_of"):
        op.drop_index(f"ix_executions_{column}", table_name="executions")
    with op.batch_alter_table("executions") as batch:
        batch.drop_column("saved_data")
