"""Bodies of the message endpoints: what to send (ours and seed 002's) and what comes back."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from wagate.api.schemas import Strict
from wagate.domain.message import ContactCard, Location, Message, MessageKind
from wagate.errors import InvalidInput
from wagate.outbound.media_fetch import MediaBytes
from wagate.outbound.rules import (
    CAPTIONED,
    KINDS,
    MediaInput,
    ReactionInput,
    SendRequest,
    message_kind,
)

_TYPE_ENUM: dict[str, Any] = {"enum": sorted(KINDS)}


class MediaIn(Strict):
    """Exactly one source: ``url`` (fetched by wagate), ``base64``, or a multipart ``file``."""

    url: str | None = Field(
        None, max_length=4096, description="http(s) URL wagate downloads (no internal addresses)"
    )
    base64: str | None = Field(None, description="Base64, or a data: URL")
    mimetype: str | None = Field(
        None, max_length=128, description="A claim: the bytes decide, except for documents"
    )
    filename: str | None = Field(None, max_length=256, description="Shown for documents")


class LocationIn(Strict):
    latitude: float = Field(ge=-90, le=90)
    longitude: float = Field(ge=-180, le=180)
    name: str | None = Field(None, max_length=1024)
    address: str | None = Field(None, max_length=1024)


class ContactIn(Strict):
    name: str = Field(min_length=1, max_length=256)
    phone: str | None = Field(None, max_length=64, description="International number")
    vcard: str | None = Field(None, max_length=65_536, description="A full vCard instead")


class ReactionIn(Strict):
    messageId: str = Field(min_length=1, max_length=128, description="WhatsApp id (or ours)")
    emoji: str = Field(max_length=32, description="An empty emoji removes the reaction")


class _Common(BaseModel):
    location: LocationIn | None = None
    contact: ContactIn | None = None
    reaction: ReactionIn | None = None
    quotedId: str | None = Field(
        None, max_length=128, description="Reply to this message (WhatsApp id, or ours)"
    )
    mentions: list[str] = Field(
        default_factory=list, max_length=1024, description="Phones or JIDs to @mention"
    )
    linkPreview: bool = Field(False, description="Show a preview of the first link (text)")
    idempotencyKey: str | None = Field(
        None, max_length=256, description="Same key, same message: a retry never sends twice"
    )


class SendMessageIn(_Common):
    """A message to send. ``type`` says which content field is used."""

    model_config = ConfigDict(extra="forbid")

    to: str = Field(
        max_length=128,
        description="A phone number, or a …@s.whatsapp.net, …@lid or …@g.us JID",
        examples=["+6281234567890"],
    )
    type: str = Field("text", json_schema_extra=_TYPE_ENUM)
    text: str | None = Field(None, description="The text (type text), or a caption")
    caption: str | None = Field(None, description="Caption of an image, video or document")
    media: MediaIn | None = None

    def to_request(self, upload: MediaBytes | None, key: str | None) -> SendRequest:
        return _request(self, self.text, self.caption, self.media, upload, key)


class Seed002SendIn(_Common):
    """Seed 002's ``{"to", "type", "message"}``; our optional fields are accepted too."""

    model_config = ConfigDict(extra="ignore")

    to: str = Field(max_length=128, examples=["6281234567890@s.whatsapp.net"])
    type: str = Field("text", json_schema_extra=_TYPE_ENUM)
    message: str | None = Field(
        None, description="The text, the caption of media, or the emoji of a reaction"
    )
    media: MediaIn | None = None
    mediaUrl: str | None = Field(None, max_length=4096, description="Shorthand for media.url")

    def to_request(self, upload: MediaBytes | None, key: str | None) -> SendRequest:
        media = self.media
        if self.mediaUrl is not None:
            media = (media or MediaIn()).model_copy(update={"url": self.mediaUrl})
        text, caption, common = self.message, None, self
        kind = message_kind(self.type)
        if kind in CAPTIONED:
            text, caption = None, self.message
        elif kind is MessageKind.REACTION and self.reaction and self.message is not None:
            reaction = self.reaction.model_copy(update={"emoji": self.message})
            text, common = None, self.model_copy(update={"reaction": reaction})
        return _request(common, text, caption, media, upload, key)


def _request(
    body: Any,
    text: str | None,
    caption: str | None,
    media: MediaIn | None,
    upload: MediaBytes | None,
    key: str | None,
) -> SendRequest:
    header_key, field_key = key, body.idempotencyKey
    if header_key and field_key and header_key != field_key:
        raise InvalidInput("idempotencyKey", "the Idempotency-Key header and field differ")
    loc, contact, reaction = body.location, body.contact, body.reaction
    return SendRequest(
        to=body.to,
        type=body.type,
        text=text,
        caption=caption,
        media=_media(media, upload),
        location=Location(**loc.model_dump()) if loc else None,
        contact=ContactCard(**contact.model_dump()) if contact else None,
        reaction=ReactionInput(reaction.messageId, reaction.emoji) if reaction else None,
        quoted_id=body.quotedId,
        mentions=tuple(body.mentions),
        link_preview=body.linkPreview,
        idempotency_key=header_key or field_key,
    )


def _media(media: MediaIn | None, upload: MediaBytes | None) -> MediaInput | None:
    if media is None and upload is None:
        return None
    media = media or MediaIn()
    return MediaInput(
        url=media.url,
        base64=media.base64,
        upload=upload,
        mimetype=media.mimetype,
        filename=media.filename or (upload.filename if upload else None),
    )


# --- answers ----------------------------------------------------------------------------


class MediaOut(BaseModel):
    mediaId: int | None = Field(description="Stored media (received messages)")
    url: str | None = Field(description="Where to download it from this API")
    mimetype: str | None = None
    filename: str | None = None
    size: int | None = None


class MessageOut(BaseModel):
    """A message, either direction."""

    id: int = Field(description="wagate's id")
    messageId: str = Field(description="WhatsApp's id (chosen by wagate when sending)")
    sessionId: str
    direction: str = Field(description="in | out")
    chat: str = Field(description="The chat JID: the other party, or the group")
    sender: str | None = Field(description="Who wrote it (for ours, our own JID)")
    senderPhone: str | None = Field(
        description="The sender's phone JID (…@s.whatsapp.net), when known"
    )
    senderLid: str | None = Field(description="The sender's @lid identity, when known")
    pushName: str | None
    type: str
    text: str | None = Field(description="Text, caption, or reaction emoji")
    status: str = Field(description="received | queued | sent | delivered | read | played | failed")
    error: str | None
    attempts: int
    quotedId: str | None
    parentId: int | None = Field(description="The text↔media partner (seed 003 linking)")
    idempotencyKey: str | None
    media: MediaOut | None
    timestamp: datetime
    sentAt: datetime | None
    deliveredAt: datetime | None
    readAt: datetime | None

    @classmethod
    def of(cls, m: Message) -> MessageOut:
        return cls(
            id=m.id,
            messageId=m.wa_msg_id,
            sessionId=m.session_id,
            direction=m.direction,
            chat=m.chat_id,
            sender=m.sender,
            senderPhone=m.sender_pn,
            senderLid=m.sender_lid,
            pushName=m.push_name,
            type=m.kind,
            text=m.text,
            status=m.status,
            error=m.error,
            attempts=m.attempts,
            quotedId=m.quoted_id,
            parentId=m.parent_id,
            idempotencyKey=m.idempotency_key,
            media=_media_out(m),
            timestamp=m.ts,
            sentAt=m.sent_at,
            deliveredAt=m.delivered_at,
            readAt=m.read_at,
        )


class MessageListOut(BaseModel):
    messages: list[MessageOut]
    next: int | None = Field(description="Pass as ?before= for the next (older) page")


def _media_out(m: Message) -> MediaOut | None:
    if m.media_id is not None:
        return MediaOut(mediaId=m.media_id, url=f"/api/media/{m.media_id}")
    payload = m.payload or {}
    meta = (payload.get("message") or {}).get("media")
    if not meta:
        return None
    ref = payload.get("media") or {}
    return MediaOut(
        mediaId=None,
        url=None,
        mimetype=meta.get("mimetype"),
        filename=meta.get("filename"),
        size=ref.get("size"),
    )


def iso_z(at: datetime | None) -> str | None:
    """``2024-01-15T10:30:00.000Z``: the form seed 002's JavaScript world writes."""
    if at is None:
        return None
    return at.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
