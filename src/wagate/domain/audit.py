"""What happened to a session, as written to ``audit_log`` (seeds 000 and 003 name the events)."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime
from typing import Any


class AuditEvent(enum.StrEnum):
    """The events seeds 003 and 000 name, plus wagate's own lifecycle ones."""

    QR_GENERATED = "qr_generated"
    CONNECT = "connect"
    DISCONNECT = "disconnect"
    RECONNECT = "reconnect"
    LOGOUT = "logout"
    DISCOVERY = "discovery"
    GROUP_RENAME = "group_rename"
    INGEST = "ingest"
    ERROR = "error"
    PROXY_CHANGED = "proxy_changed"  # seed 004's failover: data {from, to, reason}, redacted
    # the fleet (``session_id`` is NULL; ``data.workerId`` names the worker)
    WORKER_REGISTERED = "worker_registered"
    WORKER_DEAD = "worker_dead"
    WORKER_DRAINING = "worker_draining"
    WORKER_REMOVED = "worker_removed"


@dataclass(frozen=True, slots=True)
class AuditEntry:
    id: int
    session_id: str | None
    event: str
    data: dict[str, Any]
    created_at: datetime
