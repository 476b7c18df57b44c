"""The events wagate tells the outside world about, and every payload of them.

Event names are the public contract of webhooks. Each builder here is pure:
it turns what a producer wrote (a session change, a message row, a group
upsert) into :class:`~wagate.domain.event.OutboxEvent` values, and the
repository that writes the state records them in the same transaction
(:mod:`wagate.storage.outbox`). Every delivery carries the same envelope::

    {"id": uuid, "event": name, "sessionId": …, "timestamp": ISO UTC, "data": {…}}
"""

from __future__ import annotations

import enum
import json
import uuid
from collections.abc import Sequence
from datetime import UTC, date, datetime
from typing import Any

from wagate.domain.event import Announce, OutboxEvent
from wagate.domain.group import GroupUpsert
from wagate.domain.message import MEDIA_KINDS, OUT, MediaRef, Message
from wagate.domain.session import SEED_004, ChangeKind, SessionChange, SessionState


class Event(enum.StrEnum):
    SESSION_STATUS = "session.status"
    SESSION_QR = "session.qr"
    SESSION_PROXY_CHANGED = "session.proxy_changed"
    MESSAGE_RECEIVED = "message.received"
    MESSAGE_SENT = "message.sent"
    MESSAGE_ACK = "message.ack"
    MESSAGE_FAILED = "message.failed"
    GROUP_DISCOVERED = "group.discovered"
    GROUP_RENAMED = "group.renamed"


def outbox_event(
    event: Event, session_id: str | None, data: dict[str, Any], at: datetime
) -> OutboxEvent:
    return OutboxEvent(event.value, session_id, envelope(event.value, session_id, data, at))


# --- session.* -----------------------------------------------------------------------


def session_events(change: SessionChange) -> list[OutboxEvent]:
    """``session.qr`` for a QR or pairing code; ``session.status`` for everything else."""
    at, data = change.at.isoformat(), change.data
    if change.kind is ChangeKind.QR:
        payload = {"qr": data.get("qr"), "expiresAt": data.get("expires_at"), "at": at}
        return [outbox_event(Event.SESSION_QR, change.session_id, payload, change.at)]
    if change.kind is ChangeKind.PAIR_CODE:
        payload = {"pairCode": data.get("code"), "at": at}
        return [outbox_event(Event.SESSION_QR, change.session_id, payload, change.at)]
    payload = _status(change.state, change.kind, data, at)
    return [outbox_event(Event.SESSION_STATUS, change.session_id, payload, change.at)]


def _status(state: SessionState, kind: ChangeKind, data: dict[str, Any], at: str) -> dict[str, Any]:
    status: dict[str, Any] = {"state": state.value, "status": SEED_004[state], "at": at}
    if kind is ChangeKind.CONNECTED:
        status.update(phone=data.get("phone"), jid=data.get("jid"), pushName=data.get("push_name"))
    if "reason" in data:
        status.update(disconnectKind=data.get("kind"), reason=data["reason"])
    return status


# --- message.* -----------------------------------------------------------------------


def message_received(
    message: Message,
    at: datetime,
    *,
    media: MediaRef | None = None,
    media_error: dict[str, str] | None = None,
) -> OutboxEvent:
    """``message.received``; ``mediaError`` says why media is missing."""
    data = received_data(message, media, media_error)
    return outbox_event(Event.MESSAGE_RECEIVED, message.session_id, data, at)


def received_data(
    message: Message, media: MediaRef | None = None, media_error: dict[str, str] | None = None
) -> dict[str, Any]:
    """The ``data`` of ``message.received``."""
    data: dict[str, Any] = {
        "id": message.id,
        "waMessageId": message.wa_msg_id,
        "chat": message.chat_id,
        "isGroup": message.chat_id.endswith("@g.us"),
        "sender": message.sender,
        "senderPhone": message.sender_pn,
        "senderLid": message.sender_lid,
        "pushName": message.push_name,
        "fromMe": message.direction == OUT,
        "type": message.kind,
        "text": message.text,
        "quotedId": message.quoted_id,
        "parentId": message.parent_id,
        "timestamp": message.ts.isoformat(),
        "media": None,
        "mediaError": media_error,
    }
    if message.media_id is not None:
        data["media"] = {"id": message.media_id, "url": f"/api/media/{message.media_id}"}
    if media is not None and message.kind in MEDIA_KINDS:
        data["media"] = {
            **(data["media"] or {}),
            "mimetype": media.mimetype,
            "filename": media.filename,
            "size": media.size,
        }
    return data


def message_status(event: Event, at: datetime, /, **extra: Any) -> Announce[Message]:
    """``message.sent|ack|failed`` for the message a status write returns (``extra`` added)."""

    def announce(message: Message) -> Sequence[OutboxEvent]:
        data = status_data(message) | extra
        if event is Event.MESSAGE_FAILED:
            data["attempts"] = message.attempts
        return [outbox_event(event, message.session_id, data, at)]

    return announce


def status_data(message: Message) -> dict[str, Any]:
    """The ``data`` of ``message.sent|ack|failed``."""
    return {
        "id": message.id,
        "messageId": message.wa_msg_id,
        "chat": message.chat_id,
        "type": message.kind,
        "status": message.status,
        "idempotencyKey": message.idempotency_key,
        "sentAt": message.sent_at.isoformat() if message.sent_at else None,
    }


# --- group.* -------------------------------------------------------------------------


def group_changes(at: datetime, /) -> Announce[GroupUpsert]:
    """``group.discovered`` for a new group, ``group.renamed`` for a new name."""

    def announce(upsert: GroupUpsert) -> Sequence[OutboxEvent]:
        group = upsert.group
        data = {
            "id": group.id,
            "waGroupId": group.wa_group_id,
            "name": group.name,
            "monitor": group.monitor,
        }
        found = []
        if upsert.created:
            found.append(outbox_event(Event.GROUP_DISCOVERED, group.session_id, data, at))
        if upsert.renamed_from is not None:
            renamed = {**data, "previousName": upsert.renamed_from}
            found.append(outbox_event(Event.GROUP_RENAMED, group.session_id, renamed, at))
        return found

    return announce


# --- the envelope --------------------------------------------------------------------


def iso_utc(moment: datetime) -> str:
    """``2026-01-01T00:00:00.000Z``: the envelope's timestamp format."""
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def envelope(
    event: str, session_id: str | None, data: dict[str, Any], now: datetime
) -> dict[str, Any]:
    """The JSON every subscriber receives; ``id`` names the event across subscriptions."""
    return {
        "id": str(uuid.uuid4()),
        "event": event,
        "sessionId": session_id,
        "timestamp": iso_utc(now),
        "data": jsonable(data),
    }


def jsonable(data: dict[str, Any]) -> dict[str, Any]:
    """``data`` as plain JSON values (datetimes as ISO UTC, enums by value)."""
    result: dict[str, Any] = json.loads(json.dumps(data, default=_json_default))
    return result


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime):
        return iso_utc(value) if value.tzinfo is not None else value.isoformat()
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, set | frozenset | tuple):
        return list(value)
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    # an unknown type must not make the event unrecordable; its text is better than nothing
    return str(value)
