"""seed 004's MAX_SESSIONS_PER_PHONE: several sessions of one phone (a plain index on phone)

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-17
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

_HAS_PHONE = "phone IS NOT NULL"


def upgrade() -> None:
    op.drop_index("uq_sessions_phone", table_name="sessions")
    op.create_index("ix_sessions_phone", "sessions", ["phone"])


def downgrade() -> None:
    op.drop_index("ix_sessions_phone", table_name="sessions")
    op.create_index(
        "uq_sessions_phone",
        "sessions",
        ["phone"],
        unique=True,
        sqlite_where=sa.text(_HAS_PHONE),
        postgresql_where=sa.text(_HAS_PHONE),
    )
