"""The durable send queue's payload: the one place that knows its format.

The API stores what to send in ``messages.payload`` (a queued row) before it
answers; the sender rebuilds the :class:`~wagate.domain.message.Outgoing`
from it, possibly in another process or after a crash::

    {"v": 1, "fingerprint": sha256 of the request, "message": to_json(…), "media": spool ref}

Media bytes are not part of the message's JSON: they are kept apart (a spool
ref, see :mod:`wagate.storage.spool`), handed back to :func:`from_json`, and
dropped from the payload once the send is settled (:func:`settled`).
"""

from __future__ import annotations

import base64
from typing import Any

from wagate.domain.message import (
    ContactCard,
    LinkPreview,
    Location,
    MessageKind,
    Outgoing,
    OutgoingMedia,
    Quote,
)

Json = dict[str, Any]
PAYLOAD_VERSION = 1


def payload(message: Outgoing, *, fingerprint: str, media: Json | None) -> Json:
    """The payload of a queued row: ``message`` without its bytes, and where the bytes wait."""
    return {
        "v": PAYLOAD_VERSION,
        "fingerprint": fingerprint,
        "message": to_json(message),
        "media": media,
    }


def fingerprint_of(payload: Json | None) -> str | None:
    """What the request that queued the row looked like (for an idempotency key's replay)."""
    return (payload or {}).get("fingerprint")


def media_of(payload: Json | None) -> Json | None:
    """The spool ref of the row's media bytes, if it has any."""
    ref = (payload or {}).get("media")
    return ref if isinstance(ref, dict) else None


def outgoing(payload: Json, *, id: str, media_data: bytes | None) -> Outgoing:
    """The message to send, rebuilt; raises ``KeyError``/``ValueError``/``TypeError`` if damaged."""
    return from_json(payload["message"], id=id, media_data=media_data)


def settled(payload: Json | None, stripped_media: Json | None) -> Json | None:
    """The payload once sent or failed: the media ref without its bytes."""
    if not payload or not payload.get("media"):
        return payload
    return {**payload, "media": stripped_media}


def to_json(message: Outgoing) -> Json:
    """Everything of ``message`` but its id and media bytes (media metadata is kept)."""
    data: Json = {"to": message.to, "kind": message.kind.value}
    optional: Json = {
        "text": message.text,
        "react_to": message.react_to,
        "react_to_sender": message.react_to_sender,
        "link_preview": message.link_preview or None,
        "mentions": list(message.mentions) or None,
        "location": _location(message.location),
        "contact": _contact(message.contact),
        "quote": _quote(message.quote),
        "media": _media_meta(message.media),
        "preview": _preview(message.preview),
    }
    data.update({k: v for k, v in optional.items() if v is not None})
    return data


def from_json(data: Json, *, id: str | None, media_data: bytes | None = None) -> Outgoing:
    """The :class:`Outgoing` that :func:`to_json` described; ``media_data`` fills its media.

    Raises ``ValueError`` (or ``KeyError``/``TypeError``) on a payload it cannot read.
    """
    return Outgoing(
        to=str(data["to"]),
        kind=MessageKind(data["kind"]),
        text=data.get("text"),
        media=_media_of(data.get("media"), media_data),
        location=Location(**data["location"]) if data.get("location") else None,
        contact=ContactCard(**data["contact"]) if data.get("contact") else None,
        react_to=data.get("react_to"),
        react_to_sender=data.get("react_to_sender"),
        quote=Quote(**data["quote"]) if data.get("quote") else None,
        mentions=tuple(str(m) for m in data.get("mentions") or ()),
        link_preview=bool(data.get("link_preview", False)),
        preview=_preview_of(data.get("preview")),
        id=id,
    )


def _location(value: Location | None) -> Json | None:
    if value is None:
        return None
    return {
        "latitude": value.latitude,
        "longitude": value.longitude,
        "name": value.name,
        "address": value.address,
    }


def _contact(value: ContactCard | None) -> Json | None:
    if value is None:
        return None
    return {"name": value.name, "phone": value.phone, "vcard": value.vcard}


def _quote(value: Quote | None) -> Json | None:
    if value is None:
        return None
    return {"id": value.id, "sender": value.sender, "text": value.text}


def _preview(value: LinkPreview | None) -> Json | None:
    if value is None:
        return None
    thumbnail = base64.b64encode(value.thumbnail).decode() if value.thumbnail else None
    return {
        "url": value.url,
        "title": value.title,
        "description": value.description,
        "thumbnail": thumbnail,
    }


def _preview_of(data: Json | None) -> LinkPreview | None:
    if not data:
        return None
    thumbnail = data.get("thumbnail")
    return LinkPreview(
        url=str(data["url"]),
        title=data.get("title"),
        description=data.get("description"),
        thumbnail=base64.b64decode(thumbnail, validate=True) if thumbnail else None,
    )


def _media_meta(value: OutgoingMedia | None) -> Json | None:
    if value is None:
        return None
    return {
        "mimetype": value.mimetype,
        "filename": value.filename,
        "width": value.width,
        "height": value.height,
        "duration_s": value.duration_s,
    }


def _media_of(meta: Json | None, data: bytes | None) -> OutgoingMedia | None:
    if meta is None:
        return None
    if data is None:
        raise ValueError("the payload names media but no bytes were given")
    return OutgoingMedia(data=data, **meta)
