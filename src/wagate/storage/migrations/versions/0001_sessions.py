"""sessions, audit_log, runtime_flags

Revision ID: 0001
Revises:
Create Date: 2026-11-21
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from wagate.storage.tables import JSONType, UTCDateTime

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "sessions",
        sa.Column("id", sa.String(64), nullable=False),
        sa.Column("status", sa.String(16), server_default="created", nullable=False),
        sa.Column("engine", sa.String(16), server_default="sandbox", nullable=False),
        sa.Column("worker_id", sa.String(64), nullable=True),
        sa.Column("proxy", sa.Text(), nullable=True),
        sa.Column("phone", sa.String(20), nullable=True),
        sa.Column("user_id", sa.String(128), nullable=True),
        sa.Column("session_name", sa.String(256), nullable=True),
        sa.Column("qr", sa.Text(), nullable=True),
        sa.Column("qr_generated_at", UTCDateTime(), nullable=True),
        sa.Column("qr_expires_at", UTCDateTime(), nullable=True),
        sa.Column("is_ready", sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.Column("is_connected", sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.Column("phone_number", sa.String(20), nullable=True),
        sa.Column("device_name", sa.String(128), nullable=True),
        sa.Column("last_connected_at", UTCDateTime(), nullable=True),
        sa.Column("last_disconnected_at", UTCDateTime(), nullable=True),
        sa.Column("disconnect_reason", sa.Text(), nullable=True),
        sa.Column("disconnect_kind", sa.String(32), nullable=True),
        sa.Column("pair_code", sa.String(16), nullable=True),
        sa.Column("wa_name", sa.String(256), nullable=True),
        sa.Column("jid", sa.String(128), nullable=True),
        sa.Column("lid", sa.String(128), nullable=True),
        sa.Column("reconnect_attempts", sa.Integer(), server_default="0", nullable=False),
        sa.Column("last_activity_at", UTCDateTime(), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_sessions")),
    )
    op.create_index("ix_sessions_phone_number", "sessions", ["phone_number"])
    op.create_index("ix_sessions_worker_id_status", "sessions", ["worker_id", "status"])
    op.create_index("ix_sessions_qr_expires_at", "sessions", ["qr_expires_at"])

    op.create_table(
        "audit_log",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("session_id", sa.String(64), nullable=True),
        sa.Column("event", sa.String(32), nullable=False),
        sa.Column("data", JSONType, nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_log")),
    )
    op.create_index("ix_audit_log_session_id_id", "audit_log", ["session_id", "id"])
    op.create_index("ix_audit_log_event", "audit_log", ["event"])

    op.create_table(
        "runtime_flags",
        sa.Column("session_id", sa.String(64), server_default="", nullable=False),
        sa.Column("key", sa.String(64), nullable=False),
        sa.Column("value", JSONType, nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("session_id", "key", name=op.f("pk_runtime_flags")),
    )


def downgrade() -> None:
    op.drop_table("runtime_flags")
    op.drop_index("ix_audit_log_event", table_name="audit_log")
    op.drop_index("ix_audit_log_session_id_id", table_name="audit_log")
    op.drop_table("audit_log")
    op.drop_index("ix_sessions_qr_expires_at", table_name="sessions")
    op.drop_index("ix_sessions_worker_id_status", table_name="sessions")
    op.drop_index("ix_sessions_phone_number", table_name="sessions")
    op.drop_table("sessions")
