"""the trace context that created an execution

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-08

`executions.traceparent` holds the W3C `traceparent` of the span that created the execution
(the API request, webhook or node run that started it), when tracing is on (issue 17,
"Traces"): every run of it (the first, and each resume after a durable wait or a lost
worker, on any process) opens its execution span as a child of that context. Existing
executions have none: their spans start traces of their own.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0017"
down_revision: str | None = "0016"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("executions", sa.Column("traceparent", sa.String(length=64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("executions") as batch:
        batch.drop_column("traceparent")
