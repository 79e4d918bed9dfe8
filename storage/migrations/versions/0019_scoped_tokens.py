"""teams: API tokens limited to one workspace and to a role at most

Revision ID: 0019
Revises: 0017
Create Date: 2026-12-08

Workspaces and memberships with a role already exist (every user owns a personal
workspace); issue 18 adds shared workspaces and roles without changing them. A token may
now be scoped: `workspace_id` limits it to one workspace, `role` to that role at most (both
NULL: the user's own access, as every existing token keeps).
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0019"
down_revision: str | None = "0017"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("api_tokens") as batch:
        batch.add_column(sa.Column("workspace_id", sa.String(length=36), nullable=True))
        batch.add_column(sa.Column("role", sa.String(length=16), nullable=True))
        batch.create_foreign_key(
            "fk_api_tokens_workspace_id_workspaces",
            "workspaces",
            ["workspace_id"],
            ["id"],
            ondelete="CASCADE",
        )


def downgrade() -> None:
    with op.batch_alter_table("api_tokens") as batch:
        batch.drop_constraint("fk_api_tokens_workspace_id_workspaces", type_="foreignkey")
        batch.drop_column("role")
        batch.drop_column("workspace_id")
