"""seed 001's edge workers: who hosts each session, queued messages claimed by an edge worker

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-10
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from wagate.storage.tables import UTCDateTime

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # plain ADD COLUMNs (SQLite too): a batch copy would break the views over sessions
    op.add_column(
        "sessions",
        sa.Column("uplink", sa.String(8), nullable=False, server_default="fleet"),
    )
    op.add_column("messages", sa.Column("claimed_by", sa.String(128), nullable=True))
    op.add_column("messages", sa.Column("claimed_until", UTCDateTime(), nullable=True))


def downgrade() -> None:
    op.drop_column("messages", "claimed_until")
    op.drop_column("messages", "claimed_by")
    op.drop_column("sessions", "uplink")
