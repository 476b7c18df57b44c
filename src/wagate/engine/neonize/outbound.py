"""wagate's :class:`~wagate.domain.message.Outgoing` → the WhatsApp protobuf neonize sends.

We build every message ourselves instead of using neonize's conveniences:
its string form of ``send_message`` reads ``@digits`` in the text as mentions
and looks ``…@g.us`` mentions up over the network, and its ``build_*_message``
helpers call ffmpeg and fetch URLs. Media arrives here as bytes wagate has
already fetched and checked; the caller uploads them and passes the upload.
"""

from __future__ import annotations

import time
from typing import Any

from wagate.domain.message import (
    MEDIA_KINDS,
    LinkPreview,
    MessageKind,
    Outgoing,
    Quote,
    media_format_problem,
)
from wagate.engine.neonize import _loader as nz
from wagate.errors import InvalidInput

SERVERS = frozenset({"s.whatsapp.net", "lid", "g.us", "broadcast", "newsletter"})

_MEDIA_PART = {
    MessageKind.IMAGE: "imageMessage",
    MessageKind.VIDEO: "videoMessage",
    MessageKind.AUDIO: "audioMessage",
    MessageKind.VOICE: "audioMessage",
    MessageKind.DOCUMENT: "documentMessage",
    MessageKind.STICKER: "stickerMessage",
}
_UPLOAD_AS = {
    MessageKind.IMAGE: "MediaImage",
    MessageKind.STICKER: "MediaImage",
    MessageKind.VIDEO: "MediaVideo",
    MessageKind.AUDIO: "MediaAudio",
    MessageKind.VOICE: "MediaAudio",
    MessageKind.DOCUMENT: "MediaDocument",
}


def parse_jid(value: str, field: str = "to") -> Any:
    """``user@server`` or ``user:device@server`` → neonize's ``JID``."""
    user, sep, server = value.strip().partition("@")
    device = 0
    if ":" in user:
        user, _, dev = user.partition(":")
        device = int(dev) if dev.isdigit() else -1
    if not sep or not user or server not in SERVERS or device < 0:
        raise InvalidInput(field, f"not a WhatsApp JID: {value[:80]!r}")
    return nz.nproto.JID(
        User=user, Server=server, Device=device, RawAgent=0, Integrator=0, IsEmpty=False
    )


def check(message: Outgoing) -> None:
    """Refuse, before any network work, what could never be sent as is."""
    kind = message.kind
    parse_jid(message.to)
    if kind is MessageKind.TEXT and not message.text:
        raise InvalidInput("text", "a text message needs text")
    if kind in MEDIA_KINDS and message.media is None:
        raise InvalidInput("media", f"a {kind} message needs media")
    problem = media_format_problem(kind, message.media.mimetype) if message.media else None
    if problem is not None:
        raise InvalidInput("media.mimetype", problem)
    if kind is MessageKind.LOCATION and message.location is None:
        raise InvalidInput("location", "a location message needs a location")
    if kind is MessageKind.CONTACT and message.contact is None:
        raise InvalidInput("contact", "a contact message needs a contact")
    if kind is MessageKind.REACTION and not message.react_to:
        raise InvalidInput("react_to", "a reaction needs the id of the message it reacts to")
    if kind is MessageKind.OTHER:
        raise InvalidInput("kind", "cannot send a message of kind 'other'")


def upload_type(kind: MessageKind) -> Any:
    return getattr(nz.nenum.MediaType, _UPLOAD_AS[kind])


def build(message: Outgoing, *, own_user: str | None, upload: Any = None) -> Any:
    """The ``waE2E.Message`` for ``message`` (``upload``: neonize's ``UploadResponse``)."""
    kind = message.kind
    if kind is MessageKind.TEXT:
        return _text(message)
    if kind in MEDIA_KINDS:
        if upload is None:
            raise ValueError("media must be uploaded before the message is built")
        return _media(message, upload)
    if kind is MessageKind.LOCATION:
        return _location(message)
    if kind is MessageKind.CONTACT:
        return _contact(message)
    if kind is MessageKind.REACTION:
        return _reaction(message, own_user)
    raise InvalidInput("kind", f"cannot send a message of kind {kind!r}")


def _context(message: Outgoing) -> Any | None:
    if message.quote is None and not message.mentions:
        return None
    ctx = nz.wae2e.ContextInfo(mentionedJID=list(message.mentions))
    if message.quote is not None:
        _quote_into(ctx, message.quote)
    return ctx


def _quote_into(ctx: Any, quote: Quote) -> None:
    ctx.stanzaID = quote.id
    if quote.sender:
        ctx.participant = non_ad(quote.sender)
    ctx.quotedMessage.conversation = quote.text or ""


def non_ad(jid: str) -> str:
    """A JID without its device part: ``123:4@s.whatsapp.net`` → ``123@s.whatsapp.net``."""
    user, sep, server = jid.partition("@")
    return f"{user.split(':', 1)[0]}{sep}{server}"


def _text(message: Outgoing) -> Any:
    ctx = _context(message)
    if ctx is None and message.preview is None:
        # A plain ``conversation``: exactly what a phone sends for unadorned text.
        return nz.wae2e.Message(conversation=message.text)
    sub = nz.wae2e.ExtendedTextMessage(text=message.text, contextInfo=ctx)
    if message.preview is not None:
        _preview_into(sub, message.preview)
    return nz.wae2e.Message(extendedTextMessage=sub)


def _preview_into(sub: Any, preview: LinkPreview) -> None:
    # what a phone sends for a link card; WhatsApp finds the link by matchedText
    sub.matchedText = preview.url
    sub.previewType = nz.wae2e.ExtendedTextMessage.PreviewType.NONE
    if preview.title:
        sub.title = preview.title
    if preview.description:
        sub.description = preview.description
    if preview.thumbnail:
        sub.JPEGThumbnail = preview.thumbnail


def _media(message: Outgoing, upload: Any) -> Any:
    media = message.media
    assert media is not None
    kind, part = message.kind, _MEDIA_PART[message.kind]
    fields: dict[str, Any] = {
        "URL": upload.url,
        "directPath": upload.DirectPath,
        "mediaKey": upload.MediaKey,
        "fileEncSHA256": upload.FileEncSHA256,
        "fileSHA256": upload.FileSHA256,
        "fileLength": upload.FileLength or len(media.data),
        "mimetype": media.mimetype,
        "mediaKeyTimestamp": int(time.time()),
    }
    if kind in (MessageKind.IMAGE, MessageKind.VIDEO, MessageKind.STICKER):
        fields.update(_dimensions(media.width, media.height))
    if kind in (MessageKind.VIDEO, MessageKind.AUDIO, MessageKind.VOICE) and media.duration_s:
        fields["seconds"] = round(media.duration_s)
    if kind is MessageKind.VOICE:
        fields["PTT"] = True
    if kind is MessageKind.DOCUMENT:
        fields["fileName"] = media.filename or "file"
        fields["title"] = media.filename or "file"
    if message.text and kind in (MessageKind.IMAGE, MessageKind.VIDEO, MessageKind.DOCUMENT):
        fields["caption"] = message.text
    ctx = _context(message)
    if ctx is not None:
        fields["contextInfo"] = ctx
    sub_type = getattr(nz.wae2e, part[0].upper() + part[1:])
    return nz.wae2e.Message(**{part: sub_type(**fields)})


def _dimensions(width: int | None, height: int | None) -> dict[str, int]:
    return {k: v for k, v in (("width", width), ("height", height)) if v}


def _location(message: Outgoing) -> Any:
    loc = message.location
    assert loc is not None
    sub = nz.wae2e.LocationMessage(
        degreesLatitude=loc.latitude,
        degreesLongitude=loc.longitude,
        name=loc.name or "",
        address=loc.address or "",
    )
    ctx = _context(message)
    if ctx is not None:
        sub.contextInfo.CopyFrom(ctx)
    return nz.wae2e.Message(locationMessage=sub)


def _contact(message: Outgoing) -> Any:
    card = message.contact
    assert card is not None
    vcard = card.vcard or vcard_for(card.name, card.phone)
    sub = nz.wae2e.ContactMessage(displayName=card.name, vcard=vcard)
    ctx = _context(message)
    if ctx is not None:
        sub.contextInfo.CopyFrom(ctx)
    return nz.wae2e.Message(contactMessage=sub)


def vcard_for(name: str, phone: str | None) -> str:
    lines = ["BEGIN:VCARD", "VERSION:3.0", f"FN:{_vcard_text(name)}"]
    if phone:
        digits = "".join(ch for ch in phone if ch.isdigit())
        lines.append(f"TEL;type=CELL;waid={digits}:+{digits}")
    lines.append("END:VCARD")
    return "\n".join(lines)


def _vcard_text(value: str) -> str:
    """A vCard value on one line: a newline in a name must not start a vCard line of its own."""
    return " ".join(value.split())


def _reaction(message: Outgoing, own_user: str | None) -> Any:
    sender = non_ad(message.react_to_sender) if message.react_to_sender else None
    from_me = sender is not None and sender.split("@", 1)[0] == own_user
    key = nz.wacommon.MessageKey(remoteJID=message.to, fromMe=from_me, ID=message.react_to)
    if message.to.endswith("@g.us") and sender and not from_me:
        key.participant = sender
    reaction = nz.wae2e.ReactionMessage(
        key=key, text=message.text or "", senderTimestampMS=int(time.time() * 1000)
    )
    return nz.wae2e.Message(reactionMessage=reaction)
