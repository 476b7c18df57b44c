"""groups, media, messages; seed 003's wa_sessions view

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-21
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from wagate.storage.tables import JSONType, UTCDateTime

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")

# seed 003's single-row view of the session state: status in its words, detail.qr/expiresAt
_WA_SESSIONS = """
CREATE VIEW wa_sessions AS
SELECT id,
       CASE status WHEN 'connected' THEN 'connected'
                   WHEN 'connecting' THEN 'connecting'
                   WHEN 'qr' THEN 'connecting'
                   ELSE 'disconnected' END AS status,
       {detail} AS detail,
       wa_name,
       phone_number AS wa_number,
       updated_at
FROM sessions
"""
_DETAIL = {
    "postgresql": "CASE WHEN qr IS NULL THEN '{}'::jsonb ELSE jsonb_build_object('qr', qr, "
    "'expiresAt', to_char(qr_expires_at AT TIME ZONE 'UTC', "
    '\'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"\')) END',
    "sqlite": "CASE WHEN qr IS NULL THEN json_object() ELSE json_object('qr', qr, "
    "'expiresAt', strftime('%Y-%m-%dT%H:%M:%fZ', qr_expires_at)) END",
}


def upgrade() -> None:
    op.create_table(
        "groups",
        sa.Column("id", _ID, nullable=False),
        sa.Column("session_id", sa.String(64), nullable=False),
        sa.Column("wa_group_id", sa.String(128), nullable=False),
        sa.Column("name", sa.Text(), nullable=True),
        sa.Column("monitor", sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.Column("participants", sa.Integer(), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_groups")),
        sa.UniqueConstraint(
            "session_id", "wa_group_id", name=op.f("uq_groups_session_id_wa_group_id")
        ),
    )
    op.create_table(
        "media",
        sa.Column("id", _ID, nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("mime", sa.String(128), nullable=False),
        sa.Column("bytes", sa.BigInteger(), nullable=False),
        sa.Column("width", sa.Integer(), nullable=True),
        sa.Column("height", sa.Integer(), nullable=True),
        sa.Column("duration_s", sa.Float(), nullable=True),
        sa.Column("storage_path", sa.Text(), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_media")),
        sa.UniqueConstraint("sha256", name=op.f("uq_media_sha256")),
    )
    op.create_table(
        "messages",
        sa.Column("id", _ID, nullable=False),
        sa.Column("session_id", sa.String(64), nullable=False),
        sa.Column("wa_msg_id", sa.String(128), nullable=False),
        sa.Column("direction", sa.String(3), nullable=False),
        sa.Column("chat_id", sa.String(128), nullable=False),
        sa.Column("sender", sa.String(128), nullable=True),
        sa.Column("sender_pn", sa.String(128), nullable=True),
        sa.Column("sender_lid", sa.String(128), nullable=True),
        sa.Column("push_name", sa.String(256), nullable=True),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("text", sa.Text(), nullable=True),
        sa.Column("raw", JSONType, nullable=True),
        sa.Column("group_id", _ID, nullable=True),
        sa.Column("media_id", _ID, nullable=True),
        sa.Column("parent_id", _ID, nullable=True),
        sa.Column("quoted_id", sa.String(128), nullable=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("idempotency_key", sa.String(256), nullable=True),
        sa.Column("payload", JSONType, nullable=True),
        sa.Column("attempts", sa.Integer(), server_default="0", nullable=False),
        sa.Column("ts", UTCDateTime(), nullable=False),
        sa.Column("sent_at", UTCDateTime(), nullable=True),
        sa.Column("delivered_at", UTCDateTime(), nullable=True),
        sa.Column("read_at", UTCDateTime(), nullable=True),
        sa.Column("notified_at", UTCDateTime(), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["group_id"],
            ["groups.id"],
            ondelete="SET NULL",
            name=op.f("fk_messages_group_id_groups"),
        ),
        sa.ForeignKeyConstraint(
            ["media_id"], ["media.id"], ondelete="SET NULL", name=op.f("fk_messages_media_id_media")
        ),
        sa.ForeignKeyConstraint(
            ["parent_id"],
            ["messages.id"],
            ondelete="SET NULL",
            name=op.f("fk_messages_parent_id_messages"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_messages")),
        sa.UniqueConstraint(
            "session_id", "wa_msg_id", name=op.f("uq_messages_session_id_wa_msg_id")
        ),
        sa.UniqueConstraint(
            "session_id", "idempotency_key", name=op.f("uq_messages_session_id_idempotency_key")
        ),
    )
    op.create_index(
        "ix_messages_session_id_chat_id_ts", "messages", ["session_id", "chat_id", "ts"]
    )
    op.create_index("ix_messages_session_id_ts", "messages", ["session_id", "ts"])
    op.create_index(
        "ix_messages_session_id_direction_status_id",
        "messages",
        ["session_id", "direction", "status", "id"],
    )
    op.create_index("ix_messages_media_id", "messages", ["media_id"])
    op.create_index("ix_messages_parent_id", "messages", ["parent_id"])
    dialect = op.get_bind().dialect.name
    op.execute(_WA_SESSIONS.format(detail=_DETAIL.get(dialect, _DETAIL["sqlite"])))


def downgrade() -> None:
    op.execute("DROP VIEW wa_sessions")
    op.drop_table("messages")
    op.drop_table("media")
    op.drop_table("groups")
