"""neonize's protobuf events → wagate's engine events. Pure: no I/O, no Go calls.

Units are neonize's, as its Go side encodes them (goneonize ``utils/encoder.go``):
``MessageInfo.Timestamp`` is milliseconds (``UnixMilli``), ``Receipt.Timestamp``
and ``SendResponse.Timestamp`` are seconds (``Unix``), ``TemporaryBan.Expire``
is a duration in seconds. A sender WhatsApp addresses by ``@lid`` carries its
phone JID in ``MessageSource.SenderAlt``; so does a direct chat it addresses
by the peer's ``@lid`` (``RecipientAlt`` for what we sent from our own phone).
A direct chat is named by the peer's phone JID whenever WhatsApp gives it, so
one conversation keeps one chat id and ``?chat=<phone>`` finds it.
"""

from __future__ import annotations

import base64
from datetime import UTC, datetime, timedelta
from typing import Any

from wagate.domain.group import GroupInfo
from wagate.domain.message import ContactCard, Location, MediaRef, MessageKind, ReceiptStatus
from wagate.domain.session import DisconnectKind
from wagate.engine.base import Connected, Disconnected, GroupEvent, MessageEvent, ReceiptEvent
from wagate.engine.neonize import _loader as nz

USER_SERVER = "s.whatsapp.net"
LID_SERVER = "lid"

# --- JIDs and time --------------------------------------------------------------------


def jid_str(jid: Any, *, device: bool = False) -> str | None:
    """``user@server`` (``user:device@server`` with ``device=True``); None for an empty JID."""
    if jid is None or not jid.User or not jid.Server:
        return None
    if device and jid.Device:
        return f"{jid.User}:{jid.Device}@{jid.Server}"
    return f"{jid.User}@{jid.Server}"


def from_ms(value: int) -> datetime:
    return datetime.fromtimestamp(value / 1000, UTC)


def from_s(value: int) -> datetime:
    return datetime.fromtimestamp(value, UTC)


# --- the session's own state ----------------------------------------------------------


def connected(me: Any, device_name: str) -> Connected:
    """From the ``Device`` neonize's Go side sends first (``FetchMe``), never from ``GetMe``."""
    jid = jid_str(me.JID, device=True) if me is not None else None
    if me is None or jid is None:
        raise ValueError("neonize reported a connection without the device's JID")
    lid = jid_str(me.LID) if me.HasField("LID") else None
    return Connected(
        jid=jid,
        phone=me.JID.User,
        push_name=me.PushName or None,
        device_name=device_name,
        lid=lid if lid and lid.endswith("@" + LID_SERVER) else None,
    )


_OUTDATED = (
    "WhatsApp refused this client as outdated: upgrade wagate (or its neonize, pinned at "
    f"{nz.NEONIZE_VERSION}) and restart the worker; the session's link is kept"
)


def client_outdated() -> Disconnected:
    return Disconnected(DisconnectKind.CLIENT_OUTDATED, _OUTDATED)


def login_status(status: str) -> Disconnected | None:
    """The QR channel's final word (whatsmeow ``qrchan.go``), which aioze's client drops."""
    if status == "timeout":
        return Disconnected(DisconnectKind.QR_TIMEOUT, "nobody scanned the QR code in time")
    if status == "err-client-outdated":
        return client_outdated()
    if status in ("error", "err-unexpected-state"):
        return Disconnected(DisconnectKind.CONNECTION_LOST, f"pairing failed ({status})")
    return None  # "success" (Connected follows) and "err-scanned-without-multidevice"


def logged_out(event: Any) -> Disconnected:
    reason = nz.nproto.ConnectFailureReason.Name(event.Reason) if event.HasField("Reason") else ""
    return Disconnected(
        DisconnectKind.LOGGED_OUT,
        "the device was logged out" + (f" ({reason.lower()})" if reason else ""),
        {"on_connect": event.OnConnect},
    )


def temporary_ban(event: Any, now: datetime) -> Disconnected:
    code = nz.nproto.TemporaryBan.TempBanReason.Name(event.Code) if event.HasField("Code") else ""
    expires = now + timedelta(seconds=event.Expire)
    detail = {"code": code.lower(), "expires_in_s": event.Expire, "expires_at": expires.isoformat()}
    return Disconnected(
        DisconnectKind.BANNED, f"temporarily banned until {expires.isoformat()}", detail
    )


_LOGGED_OUT_REASONS = frozenset({"LOGGED_OUT", "MAIN_DEVICE_GONE", "UNKNOWN_LOGOUT"})


def connect_failure(event: Any) -> Disconnected:
    reason = nz.nproto.ConnectFailureReason.Name(event.Reason) if event.HasField("Reason") else ""
    text = f"WhatsApp refused the connection ({reason.lower() or 'unknown'}) {event.Message}"
    if reason in _LOGGED_OUT_REASONS:
        return Disconnected(DisconnectKind.LOGGED_OUT, text.strip())
    if reason == "TEMP_BANNED":
        return Disconnected(DisconnectKind.BANNED, text.strip())
    if reason in ("CLIENT_OUTDATED", "BAD_USER_AGENT"):
        return client_outdated()
    return Disconnected(DisconnectKind.CONNECTION_LOST, text.strip())


# --- receipts and groups --------------------------------------------------------------

_RECEIPTS = {
    "DELIVERED": ReceiptStatus.DELIVERED,
    "READ": ReceiptStatus.READ,
    "PLAYED": ReceiptStatus.PLAYED,
}


def receipt(event: Any) -> ReceiptEvent | None:
    """Receipts from others about our messages; our own devices' receipts are skipped."""
    if not event.HasField("Type") or event.MessageSource.IsFromMe:
        return None
    status = _RECEIPTS.get(nz.nproto.Receipt.ReceiptType.Name(event.Type))
    source = event.MessageSource
    chat = chat_of(source)
    if status is None or chat is None or not event.MessageIDs:
        return None
    by = None
    if source.IsGroup:
        sender_pn, _ = _sender_ids(source)
        by = sender_pn or jid_str(source.Sender)
    return ReceiptEvent(
        chat=chat,
        message_ids=tuple(event.MessageIDs),
        status=status,
        timestamp=from_s(event.Timestamp),
        by=by,
    )


def chat_of(source: Any) -> str | None:
    """The chat's JID; a direct chat WhatsApp names by the peer's ``@lid``, by their phone."""
    chat = jid_str(source.Chat)
    if chat is None or source.IsGroup or source.Chat.Server != LID_SERVER:
        return chat
    alt = jid_str(source.RecipientAlt if source.IsFromMe else source.SenderAlt)
    return alt if alt and alt.endswith("@" + USER_SERVER) else chat


def group_change(event: Any) -> GroupEvent | None:
    jid = jid_str(event.JID)
    if jid is None:
        return None
    by = jid_str(event.Sender) if event.HasField("Sender") else None
    if event.HasField("Name"):
        return GroupEvent(jid=jid, name=event.Name.Name, change="renamed", by=by)
    if event.Join or event.Leave or event.Promote or event.Demote:
        return GroupEvent(jid=jid, name=None, change="participants", by=by)
    return None


def joined_group(event: Any) -> GroupEvent | None:
    jid = jid_str(event.GroupInfo.JID)
    if jid is None:
        return None
    by = jid_str(event.Sender) if event.HasField("Sender") else None
    return GroupEvent(jid=jid, name=event.GroupInfo.GroupName.Name or None, change="created", by=by)


def group_info(info: Any) -> GroupInfo:
    return GroupInfo(
        jid=jid_str(info.JID) or "",
        name=info.GroupName.Name,
        participants=len(info.Participants) or None,
        owner=jid_str(info.OwnerJID),
        announce=info.GroupAnnounce.IsAnnounce if info.HasField("GroupAnnounce") else None,
    )


# --- messages -------------------------------------------------------------------------

_WRAPPERS = (
    "ephemeralMessage",
    "viewOnceMessage",
    "viewOnceMessageV2",
    "viewOnceMessageV2Extension",
    "documentWithCaptionMessage",
)
# The media sub-messages, their kind, and which of their fields holds the caption.
_MEDIA = {
    "imageMessage": (MessageKind.IMAGE, "caption"),
    "videoMessage": (MessageKind.VIDEO, "caption"),
    "audioMessage": (MessageKind.AUDIO, None),
    "documentMessage": (MessageKind.DOCUMENT, "caption"),
    "stickerMessage": (MessageKind.STICKER, None),
}
# Parts that carry no content a person sent (key distribution, protocol chatter).
_SILENT = frozenset(
    {
        "senderKeyDistributionMessage",
        "fastRatchetKeySenderKeyDistributionMessage",
        "messageContextInfo",
        "protocolMessage",
        "deviceSentMessage",
    }
)


def unwrap(message: Any) -> Any:
    """The content inside ephemeral / view-once / document-with-caption envelopes."""
    for _ in range(4):
        for wrapper in _WRAPPERS:
            if message.HasField(wrapper) and getattr(message, wrapper).HasField("message"):
                message = getattr(message, wrapper).message
                break
        else:
            return message
    return message


def message(event: Any) -> MessageEvent | None:
    """One received (or sent-elsewhere) message; None for protocol-only traffic."""
    info, content = event.Info, unwrap(event.Message)
    parts = _content_fields(content)
    if not parts:
        return None
    source = info.MessageSource
    chat, sender = chat_of(source), jid_str(source.Sender)
    if chat is None or sender is None:
        return None
    sender_pn, sender_lid = _sender_ids(source)
    body = _body(content, parts[0])
    return MessageEvent(
        id=info.ID,
        chat=chat,
        sender=sender,
        timestamp=from_ms(info.Timestamp),
        from_me=source.IsFromMe,
        sender_pn=sender_pn,
        sender_lid=sender_lid,
        push_name=info.Pushname or None,
        raw={"type": info.Type, "fields": parts, "media_type": info.MediaType},
        **body,
    )


def _content_fields(content: Any) -> list[str]:
    return [f.name for f, _ in content.ListFields() if f.name not in _SILENT]


def _sender_ids(source: Any) -> tuple[str | None, str | None]:
    sender, alt = jid_str(source.Sender), jid_str(source.SenderAlt)
    if source.Sender.Server == LID_SERVER:
        return (alt if alt and alt.endswith("@" + USER_SERVER) else None), sender
    return sender, (alt if alt and alt.endswith("@" + LID_SERVER) else None)


def _body(content: Any, part: str) -> dict[str, Any]:
    """The kind-specific fields of :class:`MessageEvent` for the message's first part."""
    sub = getattr(content, part)
    if part == "conversation":
        return {"kind": MessageKind.TEXT, "text": content.conversation}
    if part == "extendedTextMessage":
        return {"kind": MessageKind.TEXT, "text": sub.text, **_context(sub)}
    if part in _MEDIA:
        return _media_body(part, sub)
    if part in ("locationMessage", "liveLocationMessage"):
        return {"kind": MessageKind.LOCATION, "location": _location(sub), **_context(sub)}
    if part == "contactMessage":
        card = ContactCard(name=sub.displayName, vcard=sub.vcard or None)
        return {"kind": MessageKind.CONTACT, "contact": card, **_context(sub)}
    if part == "reactionMessage":
        return {"kind": MessageKind.REACTION, "text": sub.text, "react_to": sub.key.ID or None}
    return {"kind": MessageKind.OTHER}


def _context(sub: Any) -> dict[str, Any]:
    if not sub.HasField("contextInfo"):
        return {}
    ctx = sub.contextInfo
    return {"quoted_id": ctx.stanzaID or None, "mentions": tuple(ctx.mentionedJID)}


def _location(sub: Any) -> Location:
    name = sub.name if sub.DESCRIPTOR.name == "LocationMessage" else sub.caption
    address = sub.address if sub.DESCRIPTOR.name == "LocationMessage" else ""
    return Location(sub.degreesLatitude, sub.degreesLongitude, name or None, address or None)


def _media_body(part: str, sub: Any) -> dict[str, Any]:
    kind, caption_field = _MEDIA[part]
    if part == "audioMessage" and sub.PTT:
        kind = MessageKind.VOICE
    fields = {f.name for f, _ in sub.ListFields()}
    media = MediaRef(
        kind=kind,
        mimetype=sub.mimetype or None,
        size=sub.fileLength if "fileLength" in fields else None,
        filename=(sub.fileName or None) if part == "documentMessage" else None,
        width=(sub.width or None) if "width" in fields else None,
        height=(sub.height or None) if "height" in fields else None,
        duration_s=float(sub.seconds) if "seconds" in fields else None,
        sha256=sub.fileSHA256.hex() if "fileSHA256" in fields else None,
        handle=media_handle(part, sub),
    )
    caption = getattr(sub, caption_field) if caption_field else ""
    return {"kind": kind, "text": caption or None, "media": media, **_context(sub)}


def media_handle(part: str, sub: Any) -> dict[str, Any]:
    """What :meth:`NeonizeLink.download` needs: the media part alone, without thumbnails."""
    copy = type(sub)()
    copy.CopyFrom(sub)
    for bulky in ("JPEGThumbnail", "contextInfo", "pngThumbnail", "waveform"):
        if bulky in copy.DESCRIPTOR.fields_by_name:
            copy.ClearField(bulky)
    holder = nz.wae2e.Message()
    getattr(holder, part).CopyFrom(copy)
    return {"part": part, "message": base64.b64encode(holder.SerializeToString()).decode()}
