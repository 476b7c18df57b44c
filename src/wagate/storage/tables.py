"""The schema, as SQLAlchemy Core tables: one definition for SQLite and PostgreSQL.

Alembic migrations (``storage/migrations``) create exactly these tables; a test
checks that the migrated schema and this metadata agree.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeDecorator


class UTCDateTime(TypeDecorator[datetime]):
    """``timestamptz`` on PostgreSQL; on SQLite, an ISO string read back as aware UTC."""

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


JSONType = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")

metadata = sa.MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "ck": "ck_%(table_name)s_%(constraint_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)


def _ts(name: str, **kw: Any) -> sa.Column[datetime]:
    return sa.Column(name, UTCDateTime(), **kw)


sessions = sa.Table(
    "sessions",
    metadata,
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("status", sa.String(16), nullable=False, server_default="created"),
    sa.Column("engine", sa.String(16), nullable=False, server_default="sandbox"),
    sa.Column("worker_id", sa.String(64), nullable=True),
    sa.Column("proxy", sa.Text, nullable=True),
    # the number the operator provisioned for (seed 004), digits only
    sa.Column("phone", sa.String(20), nullable=True),
    sa.Column("user_id", sa.String(128), nullable=True),
    sa.Column("session_name", sa.String(256), nullable=True),
    # seed 000's columns
    sa.Column("qr", sa.Text, nullable=True),
    _ts("qr_generated_at", nullable=True),
    _ts("qr_expires_at", nullable=True),
    sa.Column("is_ready", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("is_connected", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("phone_number", sa.String(20), nullable=True),
    sa.Column("device_name", sa.String(128), nullable=True),
    _ts("last_connected_at", nullable=True),
    _ts("last_disconnected_at", nullable=True),
    sa.Column("disconnect_reason", sa.Text, nullable=True),
    # ours
    sa.Column("disconnect_kind", sa.String(32), nullable=True),
    sa.Column("pair_code", sa.String(16), nullable=True),
    sa.Column("wa_name", sa.String(256), nullable=True),
    sa.Column("jid", sa.String(128), nullable=True),
    sa.Column("lid", sa.String(128), nullable=True),
    sa.Column("reconnect_attempts", sa.Integer, nullable=False, server_default="0"),
    _ts("last_activity_at", nullable=True),
    # the last PING of the session's process (seed 004's lastPing)
    _ts("last_ping_at", nullable=True),
    _ts("created_at", nullable=False),
    _ts("updated_at", nullable=False),
    # who hosts it: fleet (our workers) | edge (seed 001's edge workers), never both
    sa.Column("uplink", sa.String(8), nullable=False, server_default="fleet"),
)
sa.Index("ix_sessions_phone_number", sessions.c.phone_number)
# at most MAX_SESSIONS_PER_PHONE sessions per phone: checked with each insert (SessionRepo)
sa.Index("ix_sessions_phone", sessions.c.phone)
sa.Index("ix_sessions_worker_id_status", sessions.c.worker_id, sessions.c.status)
sa.Index("ix_sessions_qr_expires_at", sessions.c.qr_expires_at)

# seed 004's proxy pool, and each phone's sticky proxy (the same IP whenever it connects)
proxies = sa.Table(
    "proxies",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("url", sa.Text, nullable=False, unique=True),  # with its credentials: never shown
    sa.Column("label", sa.String(128), nullable=True),
    sa.Column("source", sa.String(16), nullable=False, server_default="api"),
    sa.Column("status", sa.String(16), nullable=False, server_default="unchecked"),
    _ts("last_checked_at", nullable=True),
    _ts("last_ok_at", nullable=True),
    sa.Column("last_error", sa.Text, nullable=True),
    sa.Column("failures", sa.Integer, nullable=False, server_default="0"),
    _ts("next_check_at", nullable=True),
    _ts("created_at", nullable=False),
    _ts("updated_at", nullable=False),
)
phone_proxies = sa.Table(
    "phone_proxies",
    metadata,
    sa.Column("phone", sa.String(20), primary_key=True),
    sa.Column("proxy", sa.Text, nullable=False),
    sa.Column("session_id", sa.String(64), nullable=True),
    _ts("updated_at", nullable=False),
)

audit_log = sa.Table(
    "audit_log",
    metadata,
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True),
    sa.Column("session_id", sa.String(64), nullable=True),
    sa.Column("event", sa.String(32), nullable=False),
    sa.Column("data", JSONType, nullable=False),
    _ts("created_at", nullable=False),
)
sa.Index("ix_audit_log_session_id_id", audit_log.c.session_id, audit_log.c.id)
sa.Index("ix_audit_log_event", audit_log.c.event)

# seed 003's UI → worker signals: ``{"at": ISO}`` values under well-known keys.
# ``session_id = ''`` addresses every session (a single-session deployment).
runtime_flags = sa.Table(
    "runtime_flags",
    metadata,
    sa.Column("session_id", sa.String(64), primary_key=True, server_default=""),
    sa.Column("key", sa.String(64), primary_key=True),
    sa.Column("value", JSONType, nullable=False),
    _ts("updated_at", nullable=False),
)

# --- the fleet: workers, who owns each session, leaders, admin users ---------------

workers = sa.Table(
    "workers",
    metadata,
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("endpoint", sa.Text, nullable=False),
    sa.Column("max_sessions", sa.Integer, nullable=False),
    sa.Column("description", sa.Text, nullable=False, server_default=""),
    # live | draining | dead (dead: missed its heartbeats; its sessions move)
    sa.Column("status", sa.String(16), nullable=False, server_default="live"),
    # the running process behind the id: a second live process with the same id is refused
    sa.Column("instance", sa.String(64), nullable=False),
    sa.Column("session_count", sa.Integer, nullable=False, server_default="0"),
    sa.Column("message_count", sa.BigInteger, nullable=False, server_default="0"),
    sa.Column("cpu_usage", sa.Float, nullable=True),
    sa.Column("memory_usage", sa.Float, nullable=True),
    sa.Column("uptime_s", sa.BigInteger, nullable=True),
    _ts("registered_at", nullable=False),
    _ts("last_heartbeat_at", nullable=False),
    _ts("updated_at", nullable=False),
)

# one owner per session: a lease with a fencing token that grows on every change of owner
session_leases = sa.Table(
    "session_leases",
    metadata,
    sa.Column("session_id", sa.String(64), primary_key=True),
    sa.Column("worker_id", sa.String(64), nullable=True),
    sa.Column("epoch", sa.BigInteger, nullable=False, server_default="0"),
    _ts("expires_at", nullable=True),
    _ts("updated_at", nullable=False),
)
sa.Index("ix_session_leases_worker_id", session_leases.c.worker_id)

# duties one control replica holds at a time (the scheduler, the health monitor)
leader_leases = sa.Table(
    "leader_leases",
    metadata,
    sa.Column("name", sa.String(64), primary_key=True),
    sa.Column("holder", sa.String(128), nullable=False),
    sa.Column("epoch", sa.BigInteger, nullable=False, server_default="0"),
    _ts("expires_at", nullable=False),
)

admin_users = sa.Table(
    "admin_users",
    metadata,
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True),
    sa.Column("username", sa.String(64), nullable=False, unique=True),
    sa.Column("password_hash", sa.Text, nullable=False),
    _ts("created_at", nullable=False),
    _ts("updated_at", nullable=False),
)

# engine credentials, when they are kept in the database (AUTH_STORE=database)
auth_state = sa.Table(
    "auth_state",
    metadata,
    sa.Column("session_id", sa.String(64), primary_key=True),
    sa.Column("name", sa.String(64), primary_key=True),
    sa.Column("data", JSONType, nullable=False),
    _ts("updated_at", nullable=False),
)

# --- messaging (seed 003's groups, messages, media) ---------------------------------

groups = sa.Table(
    "groups",
    metadata,
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True),
    sa.Column("session_id", sa.String(64), nullable=False),
    sa.Column("wa_group_id", sa.String(128), nullable=False),
    sa.Column("name", sa.Text, nullable=True),
    # the operator's choice: discovery never changes it (seed 003 §6)
    sa.Column("monitor", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("participants", sa.Integer, nullable=True),
    _ts("created_at", nullable=False),
    _ts("updated_at", nullable=False),
    sa.UniqueConstraint("session_id", "wa_group_id"),
)

media = sa.Table(
    "media",
    metadata,
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True),
    # the lock across processes: two workers storing one file race on this constraint
    sa.Column("sha256", sa.String(64), nullable=False, unique=True),
    sa.Column("mime", sa.String(128), nullable=False),
    sa.Column("bytes", sa.BigInteger, nullable=False),
    sa.Column("width", sa.Integer, nullable=True),
    sa.Column("height", sa.Integer, nullable=True),
    sa.Column("duration_s", sa.Float, nullable=True),
    sa.Column("storage_path", sa.Text, nullable=False),
    _ts("created_at", nullable=False),
)

messages = sa.Table(
    "messages",
    metadata,
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True),
    sa.Column("session_id", sa.String(64), nullable=False),
    sa.Column("wa_msg_id", sa.String(128), nullable=False),
    sa.Column("direction", sa.String(3), nullable=False),  # in | out
    sa.Column("chat_id", sa.String(128), nullable=False),
    sa.Column("sender", sa.String(128), nullable=True),
    sa.Column("sender_pn", sa.String(128), nullable=True),
    sa.Column("sender_lid", sa.String(128), nullable=True),
    sa.Column("push_name", sa.String(256), nullable=True),
    sa.Column("kind", sa.String(16), nullable=False),
    sa.Column("text", sa.Text, nullable=True),
    sa.Column("raw", JSONType, nullable=True),
    sa.Column("group_id", sa.ForeignKey("groups.id", ondelete="SET NULL"), nullable=True),
    sa.Column("media_id", sa.ForeignKey("media.id", ondelete="SET NULL"), nullable=True),
    sa.Column("parent_id", sa.ForeignKey("messages.id", ondelete="SET NULL"), nullable=True),
    sa.Column("quoted_id", sa.String(128), nullable=True),
    # received | queued | sent | delivered | read | played | failed
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("error", sa.Text, nullable=True),
    sa.Column("idempotency_key", sa.String(256), nullable=True),
    sa.Column("payload", JSONType, nullable=True),  # an outbound request, kept until sent
    sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
    _ts("ts", nullable=False),
    _ts("sent_at", nullable=True),
    _ts("delivered_at", nullable=True),
    _ts("read_at", nullable=True),
    # when message.received was recorded in the webhook outbox (inbound rows)
    _ts("notified_at", nullable=True),
    _ts("created_at", nullable=False),
    _ts("updated_at", nullable=False),
    # a queued message handed to an edge worker (seed 001): whose, and until when
    sa.Column("claimed_by", sa.String(128), nullable=True),
    _ts("claimed_until", nullable=True),
    # dedupe by id only: a distinct message is never dropped as a duplicate
    sa.UniqueConstraint("session_id", "wa_msg_id"),
    sa.UniqueConstraint("session_id", "idempotency_key"),
)
sa.Index(
    "ix_messages_session_id_chat_id_ts", messages.c.session_id, messages.c.chat_id, messages.c.ts
)
sa.Index("ix_messages_session_id_ts", messages.c.session_id, messages.c.ts)
sa.Index(
    "ix_messages_session_id_direction_status_id",
    messages.c.session_id,
    messages.c.direction,
    messages.c.status,
    messages.c.id,
)
sa.Index("ix_messages_media_id", messages.c.media_id)
# received messages not yet announced: what a session's next link completes
_UNFINISHED = sa.and_(messages.c.direction == "in", messages.c.notified_at.is_(None))
sa.Index(
    "ix_messages_unfinished",
    messages.c.session_id,
    messages.c.id,
    sqlite_where=_UNFINISHED,
    postgresql_where=_UNFINISHED,
)
sa.Index("ix_messages_parent_id", messages.c.parent_id)

# --- webhooks ---------------------------------------------------------------------

webhook_subscriptions = sa.Table(
    "webhook_subscriptions",
    metadata,
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("url", sa.Text, nullable=False),
    sa.Column("events", JSONType, nullable=False),  # event names, or ["*"]
    sa.Column("secret", sa.Text, nullable=False),
    sa.Column("session_id", sa.String(64), nullable=True),  # null: every session
    sa.Column("headers", JSONType, nullable=False),  # extra request headers
    sa.Column("enabled", sa.Boolean, nullable=False, server_default=sa.true()),
    sa.Column("description", sa.Text, nullable=True),
    _ts("created_at", nullable=False),
    _ts("updated_at", nullable=False),
)

# the outbox: one row per (event, subscription), kept after delivery as the log
webhook_deliveries = sa.Table(
    "webhook_deliveries",
    metadata,
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True),
    sa.Column(
        "subscription_id",
        sa.ForeignKey("webhook_subscriptions.id", ondelete="CASCADE"),
        nullable=False,
    ),
    sa.Column("event", sa.String(64), nullable=False),
    sa.Column("session_id", sa.String(64), nullable=True),
    sa.Column("payload", JSONType, nullable=False),
    sa.Column("status", sa.String(16), nullable=False),  # pending | delivered | dead
    sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
    # when pending: due time; while an attempt is in flight, the end of its lease
    _ts("next_attempt_at", nullable=False),
    _ts("last_attempt_at", nullable=True),
    sa.Column("last_status", sa.Integer, nullable=True),  # the receiver's HTTP status
    sa.Column("last_error", sa.Text, nullable=True),
    _ts("created_at", nullable=False),
    _ts("delivered_at", nullable=True),
)
sa.Index(
    "ix_webhook_deliveries_status_next_attempt_at",
    webhook_deliveries.c.status,
    webhook_deliveries.c.next_attempt_at,
)
sa.Index(
    "ix_webhook_deliveries_subscription_id_id",
    webhook_deliveries.c.subscription_id,
    webhook_deliveries.c.id,
)
