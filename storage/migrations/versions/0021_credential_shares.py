"""teams: credentials shared with other workspaces

Revision ID: 0021
Revises: 0020
Create Date: 2026-12-08

A credential belongs to one workspace; a row here lets another workspace use it in its nodes
(its members never see nor change its fields). Deleting the credential or the workspace
deletes the row.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0021"
down_revision: str | None = "0020"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "credential_shares",
        sa.Column("credential_id", sa.String(length=36), nullable=False),
        sa.Column("workspace_id", sa.String(length=36), nullable=False),
        sa.Column("shared_by", sa.String(length=36), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["credential_id"], ["credentials.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["workspace_id"], ["workspaces.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["shared_by"], ["users.id"], ondelete="SET NULL"),
        sa.PrimaryKeyConstraint("credential_id", "workspace_id"),
    )
    with op.batch_alter_table("credential_shares", schema=None) as batch_op:
        batch_op.create_index("ix_credential_shares_workspace", ["workspace_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("credential_shares", schema=None) as batch_op:
        batch_op.drop_index("ix_credential_shares_workspace")
    op.drop_table("credential_shares")
