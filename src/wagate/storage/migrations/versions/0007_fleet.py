"""the fleet: workers, session leases with fencing tokens, leader leases, admin users, last ping

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from wagate.storage.tables import UTCDateTime

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "workers",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("endpoint", sa.Text, nullable=False),
        sa.Column("max_sessions", sa.Integer, nullable=False),
        sa.Column("description", sa.Text, nullable=False, server_default=""),
        sa.Column("status", sa.String(16), nullable=False, server_default="live"),
        sa.Column("instance", sa.String(64), nullable=False),
        sa.Column("session_count", sa.Integer, nullable=False, server_default="0"),
        sa.Column("message_count", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("cpu_usage", sa.Float, nullable=True),
        sa.Column("memory_usage", sa.Float, nullable=True),
        sa.Column("uptime_s", sa.BigInteger, nullable=True),
        sa.Column("registered_at", UTCDateTime(), nullable=False),
        sa.Column("last_heartbeat_at", UTCDateTime(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
    )
    op.create_table(
        "session_leases",
        sa.Column("session_id", sa.String(64), primary_key=True),
        sa.Column("worker_id", sa.String(64), nullable=True),
        sa.Column("epoch", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("expires_at", UTCDateTime(), nullable=True),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
    )
    op.create_index("ix_session_leases_worker_id", "session_leases", ["worker_id"])
    op.create_table(
        "leader_leases",
        sa.Column("name", sa.String(64), primary_key=True),
        sa.Column("holder", sa.String(128), nullable=False),
        sa.Column("epoch", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("expires_at", UTCDateTime(), nullable=False),
    )
    op.create_table(
        "admin_users",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True),
        sa.Column("username", sa.String(64), nullable=False, unique=True),
        sa.Column("password_hash", sa.Text, nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
    )
    # a plain ADD COLUMN (SQLite too): a batch copy would break the views over sessions
    op.add_column("sessions", sa.Column("last_ping_at", UTCDateTime(), nullable=True))


def downgrade() -> None:
    op.drop_column("sessions", "last_ping_at")
    op.drop_table("admin_users")
    op.drop_table("leader_leases")
    op.drop_index("ix_session_leases_worker_id", table_name="session_leases")
    op.drop_table("session_leases")
    op.drop_table("workers")
