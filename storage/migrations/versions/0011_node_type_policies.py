"""node type policies: types disabled server-wide or per workspace, and their audit trail

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-07
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "node_type_policies",
        sa.Column("scope", sa.String(36), primary_key=True),
        sa.Column("node_type", sa.String(128), primary_key=True),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("changed_by", sa.String(64), nullable=True),
        sa.Column("changed_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "node_type_policy_changes",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("scope", sa.String(36), nullable=False),
        sa.Column("node_type", sa.String(128), nullable=False),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column(
            "changed_by_id",
            sa.String(36),
            sa.ForeignKey("users.id", ondelete="SET NULL"),
            nullable=True,
        ),
        sa.Column("changed_by", sa.String(64), nullable=True),
        sa.Column("changed_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index(
        "ix_node_type_policy_changes_scope", "node_type_policy_changes", ["scope", "id"]
    )


def downgrade() -> None:
    op.drop_index("ix_node_type_policy_changes_scope", "node_type_policy_changes")
    op.drop_table("node_type_policy_changes")
    op.drop_table("node_type_policies")
