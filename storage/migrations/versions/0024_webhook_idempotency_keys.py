"""operations: webhook idempotency keys that outlive their executions

Revision ID: 0024
Revises: 0023
Create Date: 2026-12-08

Issue 17: a webhook's `Idempotency-Key` lived only as long as the execution row (a minute
for a run that kept none of its data), and a repeat of a run that kept none or a summary
got an empty answer. A row per key holds the execution and the answer sent, until
`LOOM_IDEMPOTENCY_KEY_TTL_HOURS` after the key's first use (storage/idempotency.py).
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0024"
down_revision: str | None = "0023"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "webhook_idempotency_keys",
        sa.Column("workflow_id", sa.String(length=36), primary_key=True),
        sa.Column("key", sa.String(length=255), primary_key=True),
        sa.Column("execution_id", sa.String(length=36), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("status_code", sa.Integer(), nullable=True),
        sa.Column("headers", sa.JSON(), nullable=True),
        sa.Column("body", sa.LargeBinary(), nullable=True),
    )
    op.create_index(
        "ix_webhook_idempotency_keys_created", "webhook_idempotency_keys", ["created_at"]
    )


def downgrade() -> None:
    op.drop_index("ix_webhook_idempotency_keys_created", "webhook_idempotency_keys")
    op.drop_table("webhook_idempotency_keys")
