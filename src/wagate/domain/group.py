"""Groups: as WhatsApp lists them (:class:`GroupInfo`) and as wagate keeps them (:class:`Group`)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime


@dataclass(frozen=True, slots=True)
class Group:
    id: int
    session_id: str
    wa_group_id: str
    name: str | None
    monitor: bool
    participants: int | None
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True, slots=True)
class GroupInfo:
    jid: str
    name: str
    participants: int | None = None
    owner: str | None = None
    announce: bool | None = None


@dataclass(frozen=True, slots=True)
class GroupUpsert:
    """What one upsert (discovery or a live change) did to a group."""

    group: Group
    created: bool
    renamed_from: str | None  # the old name when it changed
