"""Checking what a sender asks to send: message ids, kinds, text, locations, contacts.

Both ways into the network come through here: a session's ``send`` frame
(:func:`content_from_frame`) and a simulated phone's ``phone_send``
(:func:`check_content`). Anything wrong is an
:class:`~wagate.errors.InvalidInput` naming the field, which a session sees
as an ``error`` frame and the control API as a 422.
"""

from __future__ import annotations

import base64
import binascii
import math
import re
from collections.abc import Callable
from typing import Any

from wagate.domain.message import MEDIA_KINDS, MessageKind, media_format_problem
from wagate.errors import InvalidInput
from wagate.sandbox.envelope import Content, Json, Media

MAX_TEXT = 65_536  # WhatsApp's own limit on a text or a caption
MAX_MENTIONS = 1_024
MAX_THUMBNAIL = 256 * 1024  # decoded bytes of a link card's inline thumbnail
_MESSAGE_ID = re.compile(r"[A-Za-z0-9_.:-]{1,128}")


def message_id(raw: object, field: str = "id") -> str | None:
    if raw is None:
        return None
    if not isinstance(raw, str) or not _MESSAGE_ID.fullmatch(raw):
        raise InvalidInput(field, f"{field} must be 1-128 characters of A-Z a-z 0-9 _ . : -")
    return raw


def kind_of(raw: object, field: str = "kind") -> MessageKind:
    try:
        kind = MessageKind(str(raw))
    except ValueError:
        kind = MessageKind.OTHER
    if kind is MessageKind.OTHER:
        names = ", ".join(k.value for k in MessageKind if k is not MessageKind.OTHER)
        raise InvalidInput(field, f"unknown message kind {raw!r}; use one of {names}")
    return kind


def kind_for_mimetype(mimetype: str) -> MessageKind:
    """The kind a phone sends media of this type as, unless told otherwise."""
    top = mimetype.split("/", 1)[0].lower()
    return {
        "image": MessageKind.IMAGE,
        "video": MessageKind.VIDEO,
        "audio": MessageKind.AUDIO,
    }.get(top, MessageKind.DOCUMENT)


def text(raw: object, field: str = "text") -> str | None:
    if raw is None:
        return None
    if not isinstance(raw, str) or len(raw) > MAX_TEXT:
        raise InvalidInput(field, f"{field} must be a string of at most {MAX_TEXT} characters")
    return raw


def optional_str(raw: object, field: str, limit: int = 1_024) -> str | None:
    if raw is None:
        return None
    if not isinstance(raw, str) or not raw or len(raw) > limit:
        raise InvalidInput(field, f"{field} must be a non-empty string of at most {limit} chars")
    return raw


def optional_number(raw: object, field: str, *, integer: bool = False) -> Any:
    if raw is None:
        return None
    wanted = int if integer else (int, float)
    if isinstance(raw, bool) or not isinstance(raw, wanted) or raw < 0:
        raise InvalidInput(field, f"{field} must be a non-negative number")
    return raw


def location(raw: object, field: str = "location") -> Json | None:
    if raw is None:
        return None
    if not isinstance(raw, dict):
        raise InvalidInput(field, f"{field} must be an object with latitude and longitude")
    lat, lon = raw.get("latitude"), raw.get("longitude")
    if not _in_range(lat, 90) or not _in_range(lon, 180):
        raise InvalidInput(field, f"{field} needs latitude in ±90 and longitude in ±180")
    return {
        "latitude": float(lat),  # type: ignore[arg-type]  # checked by _in_range
        "longitude": float(lon),  # type: ignore[arg-type]
        "name": optional_str(raw.get("name"), field),
        "address": optional_str(raw.get("address"), field),
    }


def _in_range(value: object, bound: float) -> bool:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    return math.isfinite(value) and -bound <= value <= bound


def contact(raw: object, field: str = "contact") -> Json | None:
    if raw is None:
        return None
    if not isinstance(raw, dict) or not isinstance(raw.get("name"), str) or not raw["name"]:
        raise InvalidInput(field, f"{field} must be an object with a name")
    card = {
        "name": optional_str(raw["name"], field),
        "phone": optional_str(raw.get("phone"), field, 32),
        "vcard": optional_str(raw.get("vcard"), field, MAX_TEXT),
    }
    if card["phone"] is None and card["vcard"] is None:
        raise InvalidInput(field, f"{field} needs a phone or a vcard")
    return card


def mentions(raw: object, field: str = "mentions") -> tuple[str, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, list | tuple) or len(raw) > MAX_MENTIONS:
        raise InvalidInput(field, f"{field} must be a list of at most {MAX_MENTIONS} JIDs")
    return tuple(optional_str(each, field, 64) or "" for each in raw)


def preview(raw: object, field: str = "preview") -> Json | None:
    """A text's link card: the link as written in the text, a title, a description, a JPEG."""
    if raw is None:
        return None
    if not isinstance(raw, dict) or not isinstance(raw.get("url"), str):
        raise InvalidInput(field, f"{field} must be an object with the url it previews")
    return {
        "url": optional_str(raw["url"], f"{field}.url", 4_096),
        "title": optional_str(raw.get("title"), f"{field}.title", MAX_TEXT),
        "description": optional_str(raw.get("description"), f"{field}.description", MAX_TEXT),
        "thumbnail": _thumbnail(raw.get("thumbnail"), f"{field}.thumbnail"),
    }


def _thumbnail(raw: object, field: str) -> str | None:
    if raw is None:
        return None
    if not isinstance(raw, str) or len(raw) > MAX_THUMBNAIL * 4 // 3 + 4:
        raise InvalidInput(field, f"{field} must be base64 of at most {MAX_THUMBNAIL} bytes")
    try:
        base64.b64decode(raw, validate=True)
    except (binascii.Error, ValueError):
        raise InvalidInput(field, f"{field} is not valid base64") from None
    return raw


def check_content(content: Content) -> Content:
    """Each kind carries what it needs: text, media, a location, a contact, a target."""
    kind = content.kind
    if kind is MessageKind.TEXT and not content.text:
        raise InvalidInput("text", "a text message needs text")
    if (kind in MEDIA_KINDS) != (content.media is not None):
        raise InvalidInput("media", f"media goes with the media kinds only, not with {kind}")
    problem = media_format_problem(kind, content.media.mimetype) if content.media else None
    if problem is not None:
        raise InvalidInput("mimetype", problem)
    if content.preview is not None and kind is not MessageKind.TEXT:
        raise InvalidInput("preview", "only a text message has a link preview")
    if content.preview is not None and content.preview["url"] not in (content.text or ""):
        raise InvalidInput("preview", "a link preview's url must appear in the text")
    if (kind is MessageKind.LOCATION) != (content.location is not None):
        raise InvalidInput("location", "a location message needs a location (and only it)")
    if (kind is MessageKind.CONTACT) != (content.contact is not None):
        raise InvalidInput("contact", "a contact message needs a contact (and only it)")
    if (kind is MessageKind.REACTION) != (content.react_to is not None):
        raise InvalidInput("react_to", "a reaction needs react_to (and only a reaction has it)")
    return content


MediaLookup = Callable[[Json], Media]


def content_from_frame(frame: Json, media_of: MediaLookup) -> Content:
    """The content of a session's ``send`` frame; ``media_of`` resolves its uploaded blob."""
    raw_media = frame.get("media")
    if raw_media is not None and not isinstance(raw_media, dict):
        raise InvalidInput("media", "media must be an object naming an uploaded blob")
    quote = frame.get("quote")
    if quote is not None and not isinstance(quote, dict):
        raise InvalidInput("quote", "quote must be an object with an id")
    return check_content(
        Content(
            kind=kind_of(frame.get("kind")),
            text=text(frame.get("text")),
            media=media_of(raw_media) if raw_media is not None else None,
            location=location(frame.get("location")),
            contact=contact(frame.get("contact")),
            quoted_id=message_id(quote.get("id") if quote else None, "quote"),
            react_to=message_id(frame.get("react_to"), "react_to"),
            mentions=mentions(frame.get("mentions")),
            preview=preview(frame.get("preview")),
        )
    )


def media_fields(raw: Json, handle: str, size: int) -> Media:
    """The descriptive fields a sender gives with a blob."""
    mimetype = optional_str(raw.get("mimetype"), "mimetype", 255)
    if mimetype is None or "/" not in mimetype:
        raise InvalidInput("mimetype", "media needs a mimetype such as image/jpeg")
    return Media(
        handle=handle,
        size=size,
        mimetype=mimetype,
        filename=optional_str(raw.get("filename"), "filename", 255),
        width=optional_number(raw.get("width"), "width", integer=True),
        height=optional_number(raw.get("height"), "height", integer=True),
        duration_s=optional_number(raw.get("duration_s"), "duration_s"),
    )
