"""one index on executions' status, not two

Revision ID: 0020
Revises: 0019
Create Date: 2026-12-08

`ix_executions_status_created` (status, created_at), added in 0015 for the sampled counts,
answers every lookup by status that `ix_executions_status` (status) answered: the older
index only cost a write per execution change, and PostgreSQL's planner chose between the
two by chance (the sampled counts are meant to read the (status, created_at) index alone).
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0020"
down_revision: str | None = "0019"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.drop_index("ix_executions_status", table_name="executions")


def downgrade() -> None:
    op.create_index("ix_executions_status", "executions", ["status"])
