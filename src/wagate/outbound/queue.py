"""An :class:`~wagate.domain.message.Outgoing` as JSON, for the durable outbound queue.

The API stores what to send in ``messages.payload`` before it answers; the
sender rebuilds the :class:`Outgoing` from it, possibly in another process or
after a crash. Media bytes are not part of this form: they are kept apart (see
:mod:`wagate.storage.spool`) and handed back to :func:`from_json`.
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
