"""Seed 001's worker-proxy, its plain data: what edge workers report, what they are handed.

The reports :class:`~wagate.control.edge.EdgeBackend`'s verbs take (a status,
a send's outcome, a received message with its media inline), a queued
message as handed out, and the checks and readings that need no database: a
QR's PNG data URL, a JID from bare digits, a message's kind from a
hand-written edge function's word or its media, the posted bytes as the
ingest pipeline's downloader.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime

from wagate.domain.message import ContactCard, Location, MediaRef, Message, MessageKind, Outgoing
from wagate.errors import InvalidInput
from wagate.ids import USER_SERVER, phone_of_jid
from wagate.ingest.media import MediaRejected
from wagate.qr_image import PNG_DATA_URL

STATUSES = ("CONNECTING", "CONNECTED", "DISCONNECTED")
_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
_MAX_QR_PNG = 256 * 1024
_CHUNK = 64 * 1024


@dataclass(frozen=True, slots=True)
class StatusReport:
    """``POST /update-status``: ``status`` one of :data:`STATUSES`."""

    instance_id: str
    status: str
    qr_code: str | None = None  # a PNG data URL
    qr: str | None = None  # WhatsApp's raw QR text (2@…)
    phone: str | None = None
    reason: str | None = None


@dataclass(frozen=True, slots=True)
class SentReport:
    """``POST /mark-sent``: ``message_id`` is the id ``/queued-messages`` gave."""

    instance_id: str
    message_id: str
    sent: bool
    wa_message_id: str | None = None
    error: str | None = None


@dataclass(frozen=True, slots=True)
class InlineMedia:
    data: bytes
    mimetype: str | None = None
    filename: str | None = None


@dataclass(frozen=True, slots=True)
class Received:
    """``POST /inbound``: a message the edge worker received (or sent from the phone)."""

    instance_id: str
    message_id: str
    sender: str
    chat: str | None
    kind: str | None
    timestamp: datetime | None
    text: str | None = None
    push_name: str | None = None
    media: InlineMedia | None = None
    from_me: bool = False
    quoted_id: str | None = None
    react_to: str | None = None
    location: Location | None = None
    contact: ContactCard | None = None
    sender_lid: str | None = None
    media_error: str | None = None  # why the worker posts a media message without its bytes
    received_at: datetime | None = None  # when the worker received it (it may have spooled it)


@dataclass(frozen=True, slots=True)
class Handed:
    """A queued message handed to an edge worker: its row and what to send."""

    message: Message
    outgoing: Outgoing


class InlineDownloader:
    """The pipeline's :class:`~wagate.ingest.pipeline.Downloader` over posted bytes."""

    def __init__(self, data: bytes | None, error: str | None = None) -> None:
        self._data = data
        self._error = error  # the worker's word on why it posted none

    async def download(self, media: MediaRef) -> AsyncIterator[bytes]:
        if self._data is None:
            why = f": {self._error[:300]}" if self._error else ""
            raise MediaRejected(
                f"the edge worker posted no media bytes{why}", code="MEDIA_UNAVAILABLE"
            )
        for start in range(0, len(self._data), _CHUNK):
            yield self._data[start : start + _CHUNK]


def checked_data_url(value: str | None) -> str | None:
    """A PNG data URL as it is, once checked: the QR API decodes it."""
    if not value:
        return None
    if not value.startswith(PNG_DATA_URL):
        raise InvalidInput("qr_code", "qr_code must be a data:image/png;base64,… URL")
    try:
        png = base64.b64decode(value.removeprefix(PNG_DATA_URL), validate=True)
    except (binascii.Error, ValueError):
        raise InvalidInput("qr_code", "qr_code is not valid base64") from None
    if not png.startswith(_PNG_MAGIC) or len(png) > _MAX_QR_PNG:
        raise InvalidInput("qr_code", f"qr_code must be a PNG of at most {_MAX_QR_PNG} bytes")
    return value


def jid_of(value: str, field: str) -> str:
    """A JID as it is; bare digits (``+`` allowed) as a user JID."""
    value = value.strip()
    if "@" in value:
        user, _, server = value.partition("@")
        if user and server:
            return value
    digits = value.removeprefix("+")
    if digits.isascii() and digits.isdigit() and 5 <= len(digits) <= 20:
        return f"{digits}@{USER_SERVER}"
    raise InvalidInput(field, f"{field} must be a JID or a phone number, not {value[:40]!r}")


_KIND_WORDS = {"chat": MessageKind.TEXT, "ptt": MessageKind.VOICE}


def kind_of(word: str | None, media: InlineMedia | None) -> MessageKind:
    """The message's kind: our word (or a common other one), else guessed from its media."""
    if word:
        word = word.strip().lower()
        if word in _KIND_WORDS:
            return _KIND_WORDS[word]
        try:
            return MessageKind(word)
        except ValueError:
            return MessageKind.OTHER
    if media is None:
        return MessageKind.TEXT
    major = (media.mimetype or "").split("/", 1)[0]
    return {"image": MessageKind.IMAGE, "video": MessageKind.VIDEO, "audio": MessageKind.AUDIO}.get(
        major, MessageKind.DOCUMENT
    )


def to_digits_or_jid(jid: str) -> str:
    """A user JID as its digits (what a hand-written edge function sends to); others whole."""
    return phone_of_jid(jid) or jid
