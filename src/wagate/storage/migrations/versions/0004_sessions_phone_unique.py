"""one session per provisioned phone: a partial unique index on sessions.phone

Sessions without a phone keep ``phone`` NULL (an empty string is made NULL
first) and are not indexed; a deleted session's row is gone, so its phone is
free again. Rows made before the index that share a phone (two provisions
that raced) keep it on the oldest session only; the others' ``phone`` becomes
NULL (the linked account's ``phone_number`` is untouched).

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-02
"""

from __future__ import annotations

import logging

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

log = logging.getLogger("alembic.runtime.migration")

_HAS_PHONE = "phone IS NOT NULL"
_OLDER_SAME_PHONE = """
EXISTS (SELECT 1 FROM sessions AS older
        WHERE older.phone = sessions.phone
          AND (older.created_at < sessions.created_at
               OR (older.created_at = sessions.created_at AND older.id < sessions.id)))
"""


def upgrade() -> None:
    conn = op.get_bind()
    conn.execute(sa.text("UPDATE sessions SET phone = NULL WHERE phone = ''"))
    duplicates = conn.execute(
        sa.text(f"SELECT id FROM sessions WHERE {_HAS_PHONE} AND {_OLDER_SAME_PHONE}")
    ).scalars()
    ids = sorted(duplicates)
    if ids:
        log.warning("sessions sharing a phone with an older session lose it: %s", ", ".join(ids))
        conn.execute(sa.text(f"UPDATE sessions SET phone = NULL WHERE {_OLDER_SAME_PHONE}"))
    op.create_index(
        "uq_sessions_phone",
        "sessions",
        ["phone"],
        unique=True,
        sqlite_where=sa.text(_HAS_PHONE),
        postgresql_where=sa.text(_HAS_PHONE),
    )


def downgrade() -> None:
    op.drop_index("uq_sessions_phone", table_name="sessions")
