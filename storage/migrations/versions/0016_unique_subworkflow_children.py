"""one execution per sub-workflow call and batch: a unique index on (parent_run_id,
parent_batch)

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-08

A guard, cheap: the engine does not start one attempt's call twice (a fresh attempt has a new
run id; a takeover closes the running attempt WORKER_LOST and runs a new one, which adopts the
lost attempt's children, and a process that lost the caller's lease creates none: see storage/
subworkflows.py and GroupCommitWriter.transaction). Should two creations for one attempt
ever meet, the second fails and reads the first's children. NULLs are distinct in a unique
index on both databases, so executions that are not sub-workflow calls are unaffected.

Children created twice before this migration are told apart by age: the oldest of each call
and batch keeps its link to the call's attempt (`parent_run_id`), the later ones lose it (they
stay children of their parent execution, `parent_execution_id`); downgrading does not restore
it.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0016"
down_revision: str | None = "0015"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute(
        sa.text(
            "UPDATE executions SET parent_run_id = NULL "
            "WHERE parent_run_id IS NOT NULL AND EXISTS ("
            "SELECT 1 FROM executions AS earlier "
            "WHERE earlier.parent_run_id = executions.parent_run_id "
            "AND earlier.parent_batch = executions.parent_batch "
            "AND (earlier.created_at < executions.created_at "
            "OR (earlier.created_at = executions.created_at AND earlier.id < executions.id)))"
        )
    )
    # Index statements only: on SQLite a batch rebuild of `executions` would cascade to its
    # node runs and events.
    op.drop_index("ix_executions_parent_run", table_name="executions")
    op.create_index(
        "uq_executions_parent_call", "executions", ["parent_run_id", "parent_batch"], unique=True
    )


def downgrade() -> None:
    op.drop_index("uq_executions_parent_call", table_name="executions")
    op.create_index("ix_executions_parent_run", "executions", ["parent_run_id", "parent_batch"])
