"""What an edge worker writes to its worker-proxy: ``/update-status`` and ``/inbound`` bodies.

Plain functions of a session's change or a received message (the
``/mark-sent`` body is with the sends, ``uplinks/edge_sends.py``); every field
is in ``docs/edge.md``, "What it sends".
"""

from __future__ import annotations

from datetime import UTC
from typing import Any

from wagate.domain.session import SEED_001, ChangeKind, DisconnectKind, SessionChange, SessionState
from wagate.engine.base import MessageEvent
from wagate.ids import phone_of_jid
from wagate.qr_image import qr_data_url


def status_body(change: SessionChange) -> dict[str, Any] | None:
    """``/update-status`` for a change; None for one that says nothing new to seed 001."""
    data = change.data
    match change.kind:
        case ChangeKind.QR:
            qr = str(data.get("qr") or "")
            return {"status": "CONNECTING", "qr_code": qr_data_url(qr), "qr": qr}
        case ChangeKind.PAIR_CODE:
            return {"status": "CONNECTING", "pairingCode": data.get("code")}
        case ChangeKind.CONNECTED:
            phone = data.get("phone")
            return {
                "status": "CONNECTED",
                "qr_code": None,
                "phone": phone,
                "jid": data.get("jid"),
                "pushName": data.get("push_name"),
            }
        case ChangeKind.DISCONNECTED:
            return {
                "status": "DISCONNECTED",
                "qr_code": None,
                "reason": disconnect_reason(change),
            }
    if change.state is SessionState.CONNECTING:
        return {"status": "CONNECTING"}
    if SEED_001[change.state] == "DISCONNECTED":
        return {"status": "DISCONNECTED", "qr_code": None, "reason": change.state.value}
    return None


def disconnect_reason(change: SessionChange) -> str:
    if change.state is SessionState.LOGGED_OUT:
        return "logged_out"
    kind = change.data.get("kind")
    if kind == DisconnectKind.BANNED:
        return "banned"
    return str(kind or change.state.value)


def inbound_body(
    instance: str,
    event: MessageEvent,
    *,
    media: dict[str, Any] | None = None,
    media_error: str | None = None,
) -> dict[str, Any]:
    """``/inbound`` for a received message (docs/edge.md has every field)."""
    sender = event.sender_pn or event.sender
    body: dict[str, Any] = {
        "instanceId": instance,
        "messageId": event.id,
        "from": sender,
        "phone": phone_of_jid(sender),
        "chat": event.chat,
        "pushName": event.push_name,
        "type": event.kind.value,
        "text": event.text,
        "timestamp": int(event.timestamp.astimezone(UTC).timestamp()),
        "fromMe": event.from_me,
        "isGroup": event.is_group,
    }
    if event.sender_lid:
        body["senderLid"] = event.sender_lid
    if event.quoted_id:
        body["quotedId"] = event.quoted_id
    if event.react_to:
        body["reactTo"] = event.react_to
    if event.location is not None:
        loc = event.location
        body["location"] = {
            "latitude": loc.latitude,
            "longitude": loc.longitude,
            "name": loc.name,
            "address": loc.address,
        }
    if event.contact is not None:
        body["contact"] = {
            "name": event.contact.name,
            "phone": event.contact.phone,
            "vcard": event.contact.vcard,
        }
    if media is not None:
        body["media"] = media
    elif media_error is not None:
        body["mediaError"] = media_error
    return body
