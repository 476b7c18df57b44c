"""The sandbox client's codec: network frames to engine events, engine messages to frames.

Decoders raise ``KeyError``, ``ValueError`` or ``TypeError`` on a malformed
frame; the link decides what that means. Timestamps become aware UTC datetimes.
"""

from __future__ import annotations

import base64
from dataclasses import asdict
from datetime import UTC, datetime
from typing import Any

from wagate.domain.group import GroupInfo
from wagate.domain.message import (
    ContactCard,
    LinkPreview,
    Location,
    MediaRef,
    MessageKind,
    Outgoing,
    ReceiptStatus,
    SendResult,
)
from wagate.domain.session import DisconnectKind
from wagate.engine.base import (
    Connected,
    Disconnected,
    GroupEvent,
    MessageEvent,
    PairCode,
    QRCode,
    ReceiptEvent,
)
from wagate.sandbox.transport import Frame


def timestamp(raw: object) -> datetime:
    moment = datetime.fromisoformat(str(raw))
    if moment.tzinfo is None:
        raise ValueError(f"timestamp {raw!r} has no zone")
    return moment.astimezone(UTC)


def _opt_str(raw: object) -> str | None:
    return None if raw is None else str(raw)


# --- events -------------------------------------------------------------------------


def qr(frame: Frame) -> QRCode:
    return QRCode(code=str(frame["code"]), ttl_s=float(frame["ttl"]))


def pair_code(frame: Frame) -> PairCode:
    return PairCode(code=str(frame["code"]))


def connected(frame: Frame) -> Connected:
    return Connected(
        jid=str(frame["jid"]),
        phone=str(frame["phone"]),
        push_name=frame.get("push_name"),
        device_name=frame.get("device_name"),
        lid=frame.get("lid"),
    )


def disconnected(frame: Frame) -> Disconnected:
    try:
        kind = DisconnectKind(str(frame.get("kind")))
    except ValueError:
        kind = DisconnectKind.CONNECTION_LOST  # a kind we do not know yet: reconnecting is safe
    return Disconnected(kind, str(frame.get("reason", "")))


def message(frame: Frame) -> MessageEvent:
    raw = {key: value for key, value in frame.items() if key not in ("ev", "q")}
    return MessageEvent(
        id=str(frame["id"]),
        chat=str(frame["chat"]),
        sender=str(frame["sender"]),
        timestamp=timestamp(frame["ts"]),
        kind=MessageKind(frame["kind"]),
        text=_opt_str(frame.get("text")),
        from_me=bool(frame.get("from_me", False)),
        sender_pn=_opt_str(frame.get("sender_pn")),
        sender_lid=_opt_str(frame.get("sender_lid")),
        push_name=_opt_str(frame.get("push_name")),
        media=_media(frame.get("media")),
        location=Location(**frame["location"]) if frame.get("location") else None,
        contact=ContactCard(**frame["contact"]) if frame.get("contact") else None,
        quoted_id=_opt_str(frame.get("quoted_id")),
        react_to=_opt_str(frame.get("react_to")),
        mentions=tuple(str(each) for each in frame.get("mentions") or ()),
        raw=raw,
    )


def _media(raw: Any) -> MediaRef | None:
    if raw is None:
        return None
    return MediaRef(
        kind=MessageKind(raw["kind"]),
        mimetype=_opt_str(raw.get("mimetype")),
        size=int(raw["size"]),
        filename=_opt_str(raw.get("filename")),
        width=raw.get("width"),
        height=raw.get("height"),
        duration_s=raw.get("duration_s"),
        sha256=_opt_str(raw.get("sha256")),
        handle=dict(raw["handle"]),
    )


def receipt(frame: Frame) -> ReceiptEvent:
    return ReceiptEvent(
        chat=str(frame["chat"]),
        message_ids=tuple(str(each) for each in frame["ids"]),
        status=ReceiptStatus(frame["status"]),
        timestamp=timestamp(frame["ts"]),
        by=_opt_str(frame.get("by")),
    )


def group(frame: Frame) -> GroupEvent:
    return GroupEvent(
        jid=str(frame["jid"]),
        name=_opt_str(frame.get("name")),
        change=str(frame["change"]),
        by=_opt_str(frame.get("by")),
    )


# --- answers to requests ------------------------------------------------------------


def send_result(reply: Frame) -> SendResult:
    return SendResult(id=str(reply["id"]), timestamp=timestamp(reply["ts"]))


def chunk(reply: Frame) -> tuple[bytes, int]:
    """The bytes of a download answer and the blob's total size."""
    return base64.b64decode(str(reply["data"]), validate=True), int(reply["total"])


def group_infos(reply: Frame) -> list[GroupInfo]:
    return [
        GroupInfo(
            jid=str(raw["jid"]),
            name=str(raw["name"]),
            participants=raw.get("participants"),
            owner=_opt_str(raw.get("owner")),
            announce=raw.get("announce"),
        )
        for raw in reply["groups"]
    ]


def handle(reply: Frame) -> str:
    return str(reply["handle"])


# --- requests -----------------------------------------------------------------------


def _preview(preview: LinkPreview | None) -> Frame | None:
    if preview is None:
        return None
    thumbnail = preview.thumbnail
    return {
        "url": preview.url,
        "title": preview.title,
        "description": preview.description,
        "thumbnail": base64.b64encode(thumbnail).decode("ascii") if thumbnail else None,
    }


def send_frame(out: Outgoing, blob: str | None) -> Frame:
    """The ``send`` request for ``out``, its media already uploaded as ``blob``."""
    media = out.media
    frame: Frame = {
        "op": "send",
        "to": out.to,
        "kind": out.kind.value,
        "id": out.id,
        "text": out.text,
        "react_to": out.react_to,
        "quote": {"id": out.quote.id} if out.quote else None,
        "mentions": list(out.mentions),
        "location": asdict(out.location) if out.location else None,
        "contact": asdict(out.contact) if out.contact else None,
        "preview": _preview(out.preview),
    }
    if media is not None:
        frame["media"] = {
            "blob": blob,
            "mimetype": media.mimetype,
            "filename": media.filename,
            "width": media.width,
            "height": media.height,
            "duration_s": media.duration_s,
        }
    return frame
