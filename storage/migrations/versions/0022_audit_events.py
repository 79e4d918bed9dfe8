"""teams: the audit log, who did what and when

Revision ID: 0022
Revises: 0021
Create Date: 2026-12-08

Issue 18, point 5: one append-only row per change (storage/audit.py). No foreign keys, so
that the record of a deleted workspace, user's token or workflow stays; retention prunes
rows by age (`LOOM_AUDIT_MAX_AGE_HOURS`).
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0022"
down_revision: str | None = "0021"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "audit_events",
        sa.Column("id", sa.String(length=36), primary_key=True),
        sa.Column("occurred_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("workspace_id", sa.String(length=36), nullable=True),
        sa.Column("actor_id", sa.String(length=36), nullable=False),
        sa.Column("token_id", sa.String(length=36), nullable=True),
        sa.Column("action", sa.String(length=64), nullable=False),
        sa.Column("target_kind", sa.String(length=32), nullable=False),
        sa.Column("target_id", sa.String(length=255), nullable=False),
        sa.Column("details", sa.JSON(), nullable=False),
    )
    op.create_index(
        "ix_audit_events_workspace", "audit_events", ["workspace_id", "occurred_at", "id"]
    )
    op.create_index("ix_audit_events_occurred", "audit_events", ["occurred_at", "id"])
    # The server-wide log filtered by actor, or by action, newest first.
    op.create_index("ix_audit_events_actor", "audit_events", ["actor_id", "occurred_at", "id"])
    op.create_index("ix_audit_events_action", "audit_events", ["action", "occurred_at", "id"])


def downgrade() -> None:
    op.drop_index("ix_audit_events_action", "audit_events")
    op.drop_index("ix_audit_events_actor", "audit_events")
    op.drop_index("ix_audit_events_occurred", "audit_events")
    op.drop_index("ix_audit_events_workspace", "audit_events")
    op.drop_table("audit_events")
