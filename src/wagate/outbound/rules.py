"""What a message to send may look like: types, recipients, and which fields each type uses.

Pure checks, shared by every door a send request comes through (our API, seed
002's ``/session/{id}/send``, the CLI). Each failure is an
:class:`~wagate.errors.InvalidInput` naming the field, in the words of our API.
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass

from wagate.domain.message import ContactCard, Location, MessageKind
from wagate.errors import InvalidInput
from wagate.ids import LID_SERVER, USER_SERVER, normalize_phone, user_jid
from wagate.outbound.media_fetch import MediaBytes

MAX_TEXT = 65_536
MAX_EMOJI = 32
MAX_MENTIONS = 1_024

KINDS: dict[str, MessageKind] = {
    **{kind.value: kind for kind in MessageKind if kind is not MessageKind.OTHER},
    # the words other gateways use for the same kinds
    "ptt": MessageKind.VOICE,
    "voice_note": MessageKind.VOICE,
    "file": MessageKind.DOCUMENT,
    "vcard": MessageKind.CONTACT,
    "react": MessageKind.REACTION,
}
CAPTIONED = frozenset({MessageKind.IMAGE, MessageKind.VIDEO, MessageKind.DOCUMENT})
MEDIA = CAPTIONED | {MessageKind.AUDIO, MessageKind.VOICE, MessageKind.STICKER}

# the content field each kind needs; every other content field must be absent
_NEEDS: dict[MessageKind, str] = {
    MessageKind.TEXT: "text",
    MessageKind.LOCATION: "location",
    MessageKind.CONTACT: "contact",
    MessageKind.REACTION: "reaction",
    **{kind: "media" for kind in MEDIA},
}
_CONTENT = ("text", "caption", "media", "location", "contact", "reaction")

_USER = re.compile(r"^(?P<user>[0-9]{5,20})(?::[0-9]+)?@(?P<server>s\.whatsapp\.net|c\.us|lid)$")
_GROUP = re.compile(r"^[0-9]{5,25}(?:-[0-9]{5,15})?@g\.us$")


@dataclass(frozen=True, slots=True)
class MediaInput:
    """Media as the caller gave it: exactly one of a URL, base64, or uploaded bytes."""

    url: str | None = None
    base64: str | None = None
    upload: MediaBytes | None = None
    mimetype: str | None = None
    filename: str | None = None


@dataclass(frozen=True, slots=True)
class ReactionInput:
    message_id: str
    emoji: str  # an empty emoji takes a reaction back


@dataclass(frozen=True, slots=True)
class SendRequest:
    """One message to send, independent of the door it came through."""

    to: str
    type: str
    text: str | None = None
    caption: str | None = None
    media: MediaInput | None = None
    location: Location | None = None
    contact: ContactCard | None = None
    reaction: ReactionInput | None = None
    quoted_id: str | None = None
    mentions: tuple[str, ...] = ()
    link_preview: bool = False
    idempotency_key: str | None = None


def new_wa_id() -> str:
    """A WhatsApp-style message id, chosen before the send so a resend is the same message."""
    return "3EB0" + secrets.token_hex(8).upper()


def message_kind(value: str) -> MessageKind:
    kind = KINDS.get(value.strip().lower())
    if kind is None:
        known = ", ".join(k.value for k in MessageKind if k is not MessageKind.OTHER)
        raise InvalidInput("type", f"unknown message type {value[:40]!r}; use one of: {known}")
    return kind


def recipient_jid(value: str, field: str = "to", *, groups: bool = True) -> str:
    """A phone number or a user, LID or group JID, as the JID to send to."""
    text = value.strip()
    if "@" not in text:
        return user_jid(normalize_phone(text, field))
    if groups and _GROUP.match(text):
        return text
    match = _USER.match(text)
    if match is None:
        where = "a …@s.whatsapp.net or …@lid user" + (", or a …@g.us group" if groups else "")
        raise InvalidInput(field, f"{field} {text[:80]!r} is not a phone number, {where}")
    if match["server"] == LID_SERVER:
        return f"{match['user']}@{LID_SERVER}"
    return f"{normalize_phone(match['user'], field)}@{USER_SERVER}"


def check_fields(kind: MessageKind, request: SendRequest) -> None:
    """The content fields present are exactly those ``kind`` uses."""
    given = {name for name in _CONTENT if getattr(request, name) is not None}
    needed = _NEEDS[kind]
    allowed = {needed, "text", "caption"} if kind in CAPTIONED else {needed}
    for name in _CONTENT:
        if name in given and name not in allowed:
            raise InvalidInput(name, f"{name} is not used by messages of type {kind}")
    if kind in CAPTIONED and {"text", "caption"} <= given:
        raise InvalidInput("caption", "give the caption as caption or as text, not both")
    if needed not in given:
        raise InvalidInput(needed, f"{needed} is required for messages of type {kind}")
    if kind is MessageKind.REACTION and (request.quoted_id or request.mentions):
        raise InvalidInput("quotedId", "a reaction cannot quote or mention")
    check_content(request)


def check_content(request: SendRequest) -> None:
    for name in ("text", "caption"):
        value = getattr(request, name)
        if value is not None and not value.strip():
            raise InvalidInput(name, f"{name} is empty")
        if value is not None and len(value) > MAX_TEXT:
            raise InvalidInput(name, f"{name} is longer than {MAX_TEXT} characters")
    if request.location is not None:
        check_location(request.location)
    if request.contact is not None:
        check_contact(request.contact)
    if request.reaction is not None and len(request.reaction.emoji) > MAX_EMOJI:
        raise InvalidInput("reaction.emoji", "reaction.emoji is too long")
    if len(request.mentions) > MAX_MENTIONS:
        raise InvalidInput("mentions", f"at most {MAX_MENTIONS} mentions")


def check_location(location: Location) -> None:
    if not -90 <= location.latitude <= 90:
        raise InvalidInput("location.latitude", "location.latitude must be within -90..90")
    if not -180 <= location.longitude <= 180:
        raise InvalidInput("location.longitude", "location.longitude must be within -180..180")


def check_contact(contact: ContactCard) -> None:
    """A phone number or a whole vCard; both would leave one of them unsent."""
    if contact.phone and contact.vcard:
        raise InvalidInput("contact", "give contact.phone or contact.vcard, not both")
    if not (contact.phone or contact.vcard):
        raise InvalidInput("contact", "a contact needs a phone or a vcard")
    if contact.vcard is not None:
        lines = contact.vcard.strip().upper().splitlines()
        if lines[:1] != ["BEGIN:VCARD"] or lines[-1:] != ["END:VCARD"]:
            raise InvalidInput(
                "contact.vcard", "contact.vcard must be a vCard: BEGIN:VCARD … END:VCARD"
            )


def check_media_source(media: MediaInput) -> None:
    sources = [s for s in (media.url, media.base64, media.upload) if s is not None]
    if len(sources) != 1:
        raise InvalidInput("media", "give the media as exactly one of url, base64 or a file")
    check_mimetype(media.mimetype)


def media_field(media: MediaInput) -> str:
    """The request field the media's bytes came in, for errors about them."""
    if media.url is not None:
        return "media.url"
    return "media.base64" if media.base64 is not None else "file"


def check_mimetype(value: str | None) -> None:
    """A caller's mimetype, when given, looks like one (``type/subtype``)."""
    if value is None or not value.strip():
        return
    base = value.split(";", 1)[0].strip()
    top, slash, sub = base.partition("/")
    if not (top and slash and sub) or " " in base:
        raise InvalidInput("media.mimetype", f"media.mimetype {value[:60]!r} is not a mimetype")
