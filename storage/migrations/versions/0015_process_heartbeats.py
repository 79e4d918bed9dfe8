"""process heartbeats: every API and worker process writes its row periodically

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-08

`systemStatus` (issue 17) lists the processes alive from these rows: a process writes its
own every `LOOM_HEARTBEAT_S` and removes it when it stops; one not written for
`LOOM_HEARTBEAT_FORGET_S` is removed by the others. Executions gain an index on (status,
created_at): the sampled counts by status and the oldest QUEUED read it alone.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0015"
down_revision: str | None = "0014"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "process_heartbeats",
        sa.Column("id", sa.String(length=128), nullable=False),
        sa.Column("role", sa.String(length=16), nullable=False),
        sa.Column("version", sa.String(length=64), nullable=False),
        sa.Column("host", sa.String(length=255), nullable=False),
        sa.Column("pid", sa.Integer(), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_seen_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("interval_s", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_executions_status_created", "executions", ["status", "created_at"])


def downgrade() -> None:
    op.drop_index("ix_executions_status_created", table_name="executions")
    op.drop_table("process_heartbeats")
