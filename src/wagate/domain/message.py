"""Messages across the engine boundary: what we send, what we receive, groups.

Engine-agnostic and pure. JIDs are WhatsApp's strings: ``<digits>@s.whatsapp.net``
for a phone, ``<digits>@lid`` for a hidden-number identity, ``<id>@g.us`` for a
group. Timestamps are aware UTC datetimes, whatever unit the engine speaks.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any


class MessageKind(enum.StrEnum):
    TEXT = "text"
    IMAGE = "image"
    VIDEO = "video"
    AUDIO = "audio"
    VOICE = "voice"  # a push-to-talk voice note (audio with ptt=true)
    DOCUMENT = "document"
    STICKER = "sticker"
    LOCATION = "location"
    CONTACT = "contact"
    REACTION = "reaction"
    OTHER = "other"  # a kind wagate does not model; ``raw`` has what the engine saw


MEDIA_KINDS = frozenset(
    {
        MessageKind.IMAGE,
        MessageKind.VIDEO,
        MessageKind.AUDIO,
        MessageKind.VOICE,
        MessageKind.DOCUMENT,
        MessageKind.STICKER,
    }
)


# the only formats WhatsApp shows as a sticker and plays as a voice note
STICKER_MIMETYPE = "image/webp"
VOICE_MIMETYPE = "audio/ogg; codecs=opus"


def media_format_problem(kind: MessageKind, mimetype: str) -> str | None:
    """Why media of ``mimetype`` cannot go out as ``kind``, or None if it can."""
    base, _, params = (part.strip() for part in mimetype.lower().partition(";"))
    if kind is MessageKind.STICKER and base != STICKER_MIMETYPE:
        return f"a sticker must be {STICKER_MIMETYPE} (WhatsApp shows no other), not {base!r}"
    opus = "codecs=" not in params or "opus" in params
    if kind is MessageKind.VOICE and not (base == "audio/ogg" and opus):
        return f"a voice note must be {VOICE_MIMETYPE} (WhatsApp plays no other), not {base!r}"
    return None


class ReceiptStatus(enum.StrEnum):
    DELIVERED = "delivered"
    READ = "read"
    PLAYED = "played"


@dataclass(frozen=True, slots=True)
class Location:
    latitude: float
    longitude: float
    name: str | None = None
    address: str | None = None


@dataclass(frozen=True, slots=True)
class ContactCard:
    """A contact to share: a display name and either a phone number or a full vCard."""

    name: str
    phone: str | None = None
    vcard: str | None = None


@dataclass(frozen=True, slots=True)
class MediaRef:
    """Media attached to a received message; ``handle`` is what the engine needs to fetch it."""

    kind: MessageKind
    mimetype: str | None = None
    size: int | None = None
    filename: str | None = None
    width: int | None = None
    height: int | None = None
    duration_s: float | None = None
    sha256: str | None = None  # the sender's claimed hash (hex), when the engine knows it
    handle: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class OutgoingMedia:
    """Bytes to send, already fetched and checked by wagate (engines never fetch URLs)."""

    data: bytes
    mimetype: str
    filename: str | None = None
    width: int | None = None
    height: int | None = None
    duration_s: float | None = None


@dataclass(frozen=True, slots=True)
class LinkPreview:
    """The card WhatsApp shows under a text's link; built by wagate (engines never fetch pages).

    ``url`` is the link exactly as it appears in the text (WhatsApp's "matched
    text"); ``thumbnail`` is a small JPEG, or None.
    """

    url: str
    title: str | None = None
    description: str | None = None
    thumbnail: bytes | None = None


@dataclass(frozen=True, slots=True)
class Quote:
    """The message a reply quotes."""

    id: str
    sender: str | None = None
    text: str | None = None


@dataclass(frozen=True, slots=True)
class Outgoing:
    """One message to send to ``to`` (a user JID, a ``@lid`` or a group JID)."""

    to: str
    kind: MessageKind
    text: str | None = None  # the text, the media caption, or the reaction emoji
    media: OutgoingMedia | None = None
    location: Location | None = None
    contact: ContactCard | None = None
    react_to: str | None = None  # reactions: the id of the message reacted to
    react_to_sender: str | None = None
    quote: Quote | None = None
    mentions: tuple[str, ...] = ()
    link_preview: bool = False  # asked for: wagate fills ``preview`` when it can
    preview: LinkPreview | None = None
    id: str | None = None  # a message id chosen by wagate, when the engine accepts one


@dataclass(frozen=True, slots=True)
class SendResult:
    id: str
    timestamp: datetime


# --- stored messages ------------------------------------------------------------------


class Direction(enum.StrEnum):
    IN = "in"  # received (or sent by us from another device)
    OUT = "out"  # sent through wagate


IN = Direction.IN
OUT = Direction.OUT


class MessageStatus(enum.StrEnum):
    """Where a message stands. A received message is ``received``; a sent one moves forward only::

    queued ─► sent ─► delivered ─► read ─► played
       └────► failed (permanent error, or too many attempts)
    """

    RECEIVED = "received"
    QUEUED = "queued"
    SENT = "sent"
    DELIVERED = "delivered"
    READ = "read"
    PLAYED = "played"
    FAILED = "failed"


STATUSES = tuple(s.value for s in MessageStatus)
# how far along a sent message is; a receipt never moves a message to a lower rank
STATUS_RANK: dict[MessageStatus, int] = {
    MessageStatus.QUEUED: 0,
    MessageStatus.SENT: 1,
    MessageStatus.DELIVERED: 2,
    MessageStatus.READ: 3,
    MessageStatus.PLAYED: 4,
}


def overtaken_by(status: MessageStatus) -> list[MessageStatus]:
    """The statuses a receipt of ``status`` moves forward: every lower rank, and ``failed``.

    A receipt is proof the message arrived, even if our send call reported a failure.
    """
    rank = STATUS_RANK[status]
    return [s for s, r in STATUS_RANK.items() if r < rank] + [MessageStatus.FAILED]


@dataclass(frozen=True, slots=True)
class Message:
    """A message as stored, either direction; unique by ``(session_id, wa_msg_id)``."""

    id: int
    session_id: str
    wa_msg_id: str
    direction: str
    chat_id: str
    sender: str | None
    sender_pn: str | None
    sender_lid: str | None
    push_name: str | None
    kind: str
    text: str | None
    raw: dict[str, Any] | None
    group_id: int | None
    media_id: int | None
    parent_id: int | None
    quoted_id: str | None
    status: str
    error: str | None
    idempotency_key: str | None
    payload: dict[str, Any] | None
    attempts: int
    ts: datetime
    sent_at: datetime | None
    delivered_at: datetime | None
    read_at: datetime | None
    notified_at: datetime | None
    created_at: datetime
    updated_at: datetime

    @property
    def is_media(self) -> bool:
        return self.kind in MEDIA_KINDS


@dataclass(frozen=True, slots=True)
class HistoryQuery:
    """Filters of a history page; ``before_id`` is the cursor (newest first)."""

    chat: str | None = None
    direction: str | None = None
    status: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    before_id: int | None = None
    limit: int = 50
