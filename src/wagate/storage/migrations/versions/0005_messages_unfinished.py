"""received messages not yet announced: a partial index for completing them on the next link

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

_UNFINISHED = "direction = 'in' AND notified_at IS NULL"


def upgrade() -> None:
    op.create_index(
        "ix_messages_unfinished",
        "messages",
        ["session_id", "id"],
        sqlite_where=sa.text(_UNFINISHED),
        postgresql_where=sa.text(_UNFINISHED),
    )


def downgrade() -> None:
    op.drop_index("ix_messages_unfinished", table_name="messages")
