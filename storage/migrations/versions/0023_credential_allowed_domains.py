"""credentials: the hosts a credential may be sent to

Revision ID: 0023
Revises: 0022
Create Date: 2026-12-08

`allowed_domains` (JSON list of host names, `*.example.com` wildcards, IP addresses; null:
any host) is checked by the engine before a request carrying the credential is sent. A
credential must have it to be shared with another workspace. It is not secret, so it is a
plain column, not part of the encrypted fields.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0023"
down_revision: str | None = "0022"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("credentials", schema=None) as batch_op:
        batch_op.add_column(sa.Column("allowed_domains", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("credentials", schema=None) as batch_op:
        batch_op.drop_column("allowed_domains")
