"""Seed 003's runtime flags: an operator's UI signals a session's worker through ``runtime_flags``.

A flag's value is ``{"at": ISO}``; a flag row with ``session_id = ''``
(:data:`EVERY_SESSION`) addresses every session.
"""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Any

EVERY_SESSION = ""


class Flag(enum.StrEnum):
    FETCH_GROUPS = "fetch_groups_requested"
    REFRESH_QR = "wa_refresh_qr_requested"
    DISCONNECT = "wa_disconnect_requested"


def flag_time(value: Any) -> datetime | None:
    """The ``at`` of a flag value, or None when it has none or it does not parse."""
    at = value.get("at") if isinstance(value, dict) else None
    if not isinstance(at, str):
        return None
    try:
        parsed = datetime.fromisoformat(at.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None else None
