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


@dataclass(frozen=True, slots=True)
class GroupInfo:
    jid: str
    name: str
    participants: int | None = None
    owner: str | None = None
    announce: bool | None = None
