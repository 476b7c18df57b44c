"""Seed 001's worker-proxy: its request bodies read, in the spellings edge workers use.

The seed fixes the paths, not every body: each is read accepting the
spellings hand-written edge functions use (``instanceId``/``instance_id``,
``text``/``body``/``message``, one object, an array, or ``{"data": [...]}``)
and becomes one of :mod:`wagate.control.edge_bodies`' reports. A body it
cannot read is an :class:`~wagate.errors.InvalidInput` naming the field.
"""

from __future__ import annotations

import base64
import binascii
import math
from datetime import UTC, datetime
from typing import Any

from fastapi import Request

from wagate.api.message_body import decode_json, read_limited
from wagate.api.nul import check_data
from wagate.control.edge_bodies import STATUSES, InlineMedia, Received, SentReport, StatusReport
from wagate.domain.message import ContactCard, Location
from wagate.errors import InvalidInput
from wagate.ids import check_session_id

MAX_STATUS_BYTES = 512 * 1024  # a QR drawn as a PNG data URL is a few kilobytes
MAX_MARK_BYTES = 256 * 1024
OVERHEAD = 1024 * 1024  # room around an inbound message's media
_TEXT_MAX = 65_536
_ID_MAX = 128
_LAST_S = 253_402_300_799  # 9999-12-31T23:59:59Z

_INSTANCE = ("instanceId", "instance_id")
Json = dict[str, Any]


async def read_body(request: Request, limit: int) -> Any:
    data = decode_json(await read_limited(request, limit))
    check_data(data)
    return data


def object_of(data: Any) -> Json:
    if isinstance(data, dict) and isinstance(data.get("data"), dict):
        data = {**data, **data["data"]}
    if not isinstance(data, dict):
        raise InvalidInput("body", "request body must be a JSON object")
    return data


def items(data: Any) -> list[Json]:
    """One object, an array of them, or ``{"data": …}`` / ``{"messages": [...]}`` around
    them (the wrapper's instance id is each item's default)."""
    outer: Json = {}
    if isinstance(data, dict):
        inner = data.get("data", data.get("messages"))
        if isinstance(inner, (list, dict)):
            outer = {k: data[k] for k in _INSTANCE if k in data}
            data = inner
    listed = data if isinstance(data, list) else [data]
    if not listed:
        raise InvalidInput("body", "the request holds no item")
    for i, item in enumerate(listed):
        if not isinstance(item, dict):
            raise InvalidInput(f"body[{i}]" if isinstance(data, list) else "body", "not an object")
    return [outer | item for item in listed]


def _pick(data: Json, names: tuple[str, ...]) -> tuple[str, Any]:
    for name in names:
        if data.get(name) is not None:
            return name, data[name]
    return names[0], None


def _text(
    data: Json, names: tuple[str, ...], field: str, *, required: bool = False, limit: int = _ID_MAX
) -> str | None:
    """The first of ``names`` given, as text (a number is taken as its digits)."""
    name, value = _pick(data, names)
    if value is None:
        if required:
            spelled = " or ".join(names)
            raise InvalidInput(field, f"{field} is required (send {spelled})")
        return None
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str):
        raise InvalidInput(name, f"{name} must be a string")
    if required and not value.strip():
        raise InvalidInput(name, f"{name} must not be empty")
    if len(value) > limit:
        raise InvalidInput(name, f"{name} is longer than {limit} characters")
    return value


def instance_of(data: Json) -> str:
    """The instance's id: required, and a session id."""
    instance_id = _text(data, _INSTANCE, "instanceId", required=True)
    assert instance_id is not None
    name, _ = _pick(data, _INSTANCE)
    return check_session_id(instance_id, name)


def _flag(data: Json, names: tuple[str, ...]) -> bool:
    name, value = _pick(data, names)
    if value is None:
        return False
    if not isinstance(value, bool):
        raise InvalidInput(name, f"{name} must be true or false")
    return value


def status_report(data: Json) -> StatusReport:
    instance_id = instance_of(data)
    status = _text(data, ("status", "state"), "status", required=True)
    assert status is not None
    status = status.strip().upper()
    if status not in STATUSES:
        raise InvalidInput("status", f"unknown status {status[:40]!r}: use {', '.join(STATUSES)}")
    return StatusReport(
        instance_id=instance_id,
        status=status,
        qr_code=_text(data, ("qr_code", "qrCode"), "qr_code", limit=MAX_STATUS_BYTES),
        qr=_text(data, ("qr",), "qr", limit=4096),
        phone=_text(data, ("phone", "phoneNumber", "phone_number", "number"), "phone", limit=64),
        reason=_text(data, ("reason", "code"), "reason", limit=1000),
    )


def sent_report(data: Json) -> SentReport:
    instance_id = instance_of(data)
    message_id = _text(data, ("messageId", "message_id", "id"), "messageId", required=True)
    assert message_id is not None
    status = (_text(data, ("status",), "status") or "sent").strip().lower()
    if status not in ("sent", "failed"):
        raise InvalidInput("status", f"unknown status {status[:40]!r}: use sent or failed")
    return SentReport(
        instance_id=instance_id,
        message_id=message_id,
        sent=status == "sent",
        wa_message_id=_text(data, ("waMessageId", "wa_message_id", "waId"), "waMessageId"),
        error=_text(data, ("error", "reason"), "error", limit=1000),
    )


def received(data: Json) -> Received:
    instance_id = instance_of(data)
    message_id = _text(data, ("messageId", "message_id", "id"), "messageId", required=True)
    sender = _text(data, ("from", "sender", "phone", "number"), "from", required=True)
    assert message_id is not None and sender is not None
    return Received(
        instance_id=instance_id,
        message_id=message_id,
        sender=sender,
        chat=_text(data, ("chat", "chatId", "chat_id", "remoteJid"), "chat"),
        kind=_text(data, ("type", "messageType"), "type", limit=32),
        timestamp=_timestamp(data),
        text=_text(data, ("text", "body", "message", "caption"), "text", limit=_TEXT_MAX),
        push_name=_text(data, ("pushName", "push_name"), "pushName", limit=256),
        media=_media(data),
        from_me=_flag(data, ("fromMe", "from_me")),
        quoted_id=_text(data, ("quotedId", "quoted_id"), "quotedId"),
        react_to=_text(data, ("reactTo", "react_to"), "reactTo"),
        location=_location(data),
        contact=_contact(data),
        sender_lid=_text(data, ("senderLid", "sender_lid"), "senderLid"),
        media_error=_text(data, ("mediaError", "media_error"), "mediaError", limit=1000),
        received_at=_timestamp(data, ("receivedAt", "received_at")),
    )


def _location(data: Json) -> Location | None:
    name, value = _pick(data, ("location",))
    if value is None:
        return None
    if not isinstance(value, dict):
        raise InvalidInput(name, "location must be an object {latitude, longitude, name?}")
    try:
        latitude, longitude = float(value["latitude"]), float(value["longitude"])
    except (KeyError, TypeError, ValueError):
        raise InvalidInput(name, "location needs numeric latitude and longitude") from None
    if not (-90 <= latitude <= 90 and -180 <= longitude <= 180):
        raise InvalidInput(name, "location's latitude or longitude is out of range")
    return Location(
        latitude,
        longitude,
        _text(value, ("name",), "location.name", limit=1000),
        _text(value, ("address",), "location.address", limit=1000),
    )


def _contact(data: Json) -> ContactCard | None:
    name, value = _pick(data, ("contact",))
    if value is None:
        return None
    if not isinstance(value, dict):
        raise InvalidInput(name, "contact must be an object {name, phone?, vcard?}")
    display = _text(value, ("name", "displayName"), "contact.name", required=True, limit=256)
    assert display is not None
    return ContactCard(
        display,
        _text(value, ("phone", "number"), "contact.phone", limit=64),
        _text(value, ("vcard",), "contact.vcard", limit=_TEXT_MAX),
    )


def _timestamp(
    data: Json, names: tuple[str, ...] = ("timestamp", "messageTimestamp", "ts")
) -> datetime | None:
    """ISO 8601, or epoch seconds or milliseconds (a number or its digits); None: now."""
    name, value = _pick(data, names)
    if value is None:
        return None
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value.strip())
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        seconds = value / 1000 if value > 10**11 else value  # ms from 1973 on; s until 5138
        if not math.isfinite(seconds) or not 0 <= seconds <= _LAST_S:
            raise InvalidInput(name, f"{name} is out of range")
        return datetime.fromtimestamp(seconds, UTC)
    if isinstance(value, str):
        try:
            at = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
        except ValueError:
            raise InvalidInput(name, f"{name} must be ISO 8601 or epoch seconds/ms") from None
        return at if at.tzinfo else at.replace(tzinfo=UTC)
    raise InvalidInput(name, f"{name} must be ISO 8601 or epoch seconds/ms")


def _media(data: Json) -> InlineMedia | None:
    name, media = _pick(data, ("media",))
    if media is None:
        return None
    if not isinstance(media, dict):
        raise InvalidInput(name, "media must be an object {base64, mimetype, filename?}")
    encoded = _text(media, ("base64", "data"), "media.base64", required=True, limit=2**31)
    assert encoded is not None
    if encoded.startswith("data:") and ";base64," in encoded:  # a data URL: its payload
        encoded = encoded.split(";base64,", 1)[1]
    try:
        raw = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        raise InvalidInput("media.base64", "media.base64 is not valid base64") from None
    return InlineMedia(
        data=raw,
        mimetype=_text(media, ("mimetype", "mimeType", "mime_type"), "media.mimetype"),
        filename=_text(media, ("filename", "fileName"), "media.filename", limit=256),
    )


def limit_of(value: str | None) -> int | None:
    """``?limit=N``: how many more instances the worker can take (a wagate edge worker's)."""
    if value is None or value == "":
        return None
    if not value.isdigit() or int(value) > 100_000:
        raise InvalidInput("limit", "limit must be a whole number from 0 to 100000")
    return int(value)
