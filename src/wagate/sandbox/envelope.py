"""A message on the sandbox network, and how each party sees it.

An :class:`Envelope` is one routed message: who sent it, to what JID they
addressed it, when, and its :class:`Content`. The same envelope becomes a
``message`` frame for a receiving device, a ``from_me`` frame for the sender's
other devices, and an inbox entry (a JSON-able dict) for the control API.

Addressing mirrors modern WhatsApp: in a group the sender appears by their
``@lid`` (with ``sender_pn``, their phone JID, beside it); in a direct chat by
their phone JID (with ``sender_lid`` beside it).
"""

from __future__ import annotations

import base64
import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from wagate.domain.message import MessageKind

Json = dict[str, Any]


def new_message_id() -> str:
    """A WhatsApp-like message id: ``3EB0`` and 16 uppercase hex digits."""
    return "3EB0" + secrets.token_hex(8).upper()


def is_group(jid: str) -> bool:
    return jid.endswith("@g.us")


@dataclass(frozen=True, slots=True)
class Media:
    """A stored blob as one message presents it."""

    handle: str  # the blob's sha256, hex
    size: int
    mimetype: str
    filename: str | None = None
    width: int | None = None
    height: int | None = None
    duration_s: float | None = None

    def to_json(self, kind: MessageKind) -> Json:
        return {
            "kind": kind.value,
            "mimetype": self.mimetype,
            "size": self.size,
            "filename": self.filename,
            "width": self.width,
            "height": self.height,
            "duration_s": self.duration_s,
            "sha256": self.handle,
            "handle": {"blob": self.handle},
        }


@dataclass(frozen=True, slots=True)
class Content:
    """What a message says, whoever sent it; checked by :mod:`.compose`."""

    kind: MessageKind
    text: str | None = None  # the text, the caption, or the reaction emoji
    media: Media | None = None
    location: Json | None = None  # {"latitude", "longitude", "name", "address"}
    contact: Json | None = None  # {"name", "phone", "vcard"}
    quoted_id: str | None = None
    react_to: str | None = None
    mentions: tuple[str, ...] = ()
    preview: Json | None = None  # a text's link card: {"url", "title", "description", "thumbnail"}


@dataclass(frozen=True, slots=True)
class Party:
    """The sending account as a message remembers it."""

    phone: str
    lid: str
    push_name: str

    @property
    def jid(self) -> str:
        return f"{self.phone}@s.whatsapp.net"


@dataclass(frozen=True, slots=True)
class Envelope:
    """One routed message."""

    id: str
    sender: Party
    to: str  # as the sender addressed it: a phone JID, a LID JID or a group JID
    timestamp: datetime
    content: Content

    def frame(self, *, from_me: bool) -> Json:
        """The ``message`` frame for a receiver, or for the sender's other devices."""
        sender = self.sender
        group = is_group(self.to)
        return {
            "ev": "message",
            "id": self.id,
            "chat": self.to if from_me or group else sender.jid,
            "sender": sender.lid if group else sender.jid,
            "sender_pn": sender.jid,
            "sender_lid": sender.lid,
            "push_name": sender.push_name,
            "from_me": from_me,
            "ts": self.timestamp.isoformat(),
            **self._body(),
        }

    def inbox_entry(self) -> Json:
        """What the receiving account's inbox keeps (see ``SandboxNetwork.inbox``)."""
        content, media = self.content, self.content.media
        entry: Json = {
            "id": self.id,
            "from": self.sender.jid,
            "from_lid": self.sender.lid,
            "push_name": self.sender.push_name,
            "chat": self.to if is_group(self.to) else self.sender.jid,
            "to": self.to,
            "kind": content.kind.value,
            "text": content.text,
            "mimetype": media and media.mimetype,
            "filename": media and media.filename,
            "size": media and media.size,
            "sha256": media and media.handle,
            "width": media and media.width,
            "height": media and media.height,
            "duration_s": media and media.duration_s,
            "location": content.location,
            "contact": content.contact,
            "quoted_id": content.quoted_id,
            "react_to": content.react_to,
            "mentions": list(content.mentions),
            "preview": preview_summary(content.preview),
            "timestamp": self.timestamp.isoformat(),
        }
        if media is not None:
            entry["media_handle"] = media.handle
        return entry

    def _body(self) -> Json:
        content = self.content
        return {
            "kind": content.kind.value,
            "text": content.text,
            "media": content.media.to_json(content.kind) if content.media else None,
            "location": content.location,
            "contact": content.contact,
            "quoted_id": content.quoted_id,
            "react_to": content.react_to,
            "mentions": list(content.mentions),
            "preview": content.preview,
        }


def preview_summary(preview: Json | None) -> Json | None:
    """A link card as an inbox shows it: its thumbnail by hash and size, not its bytes."""
    if preview is None:
        return None
    thumbnail = preview.get("thumbnail")
    data = base64.b64decode(thumbnail) if thumbnail else b""
    return {
        "url": preview["url"],
        "title": preview.get("title"),
        "description": preview.get("description"),
        "thumbnail_sha256": hashlib.sha256(data).hexdigest() if data else None,
        "thumbnail_size": len(data) if data else None,
    }


def receipt_frame(
    chat: str, ids: list[str], status: str, at: datetime, by: str | None = None
) -> Json:
    return {
        "ev": "receipt",
        "chat": chat,
        "ids": ids,
        "status": status,
        "ts": at.isoformat(),
        "by": by,
    }


def group_frame(jid: str, name: str, change: str, by: str | None = None) -> Json:
    return {"ev": "group", "jid": jid, "name": name, "change": change, "by": by}
