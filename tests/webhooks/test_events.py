"""The payload builders: each kind of session change, message status and group upsert."""

from __future__ import annotations

import enum
from datetime import UTC, datetime

from wagate.domain.group import Group, GroupUpsert
from wagate.domain.session import ChangeKind, SessionChange, SessionState
from wagate.webhooks.events import Event, envelope, group_changes, session_events

AT = datetime(2026, 1, 1, tzinfo=UTC)


def _one(change: SessionChange) -> tuple[str, dict[str, object]]:
    [event] = session_events(change)
    assert event.session_id == change.session_id and event.payload["event"] == event.name
    assert event.payload["sessionId"] == change.session_id
    return event.name, event.payload["data"]


def test_session_changes_become_webhook_events() -> None:
    qr = SessionChange("s1", SessionState.QR, ChangeKind.QR, AT, {"qr": "2@x", "expires_at": "E"})
    assert _one(qr) == (Event.SESSION_QR, {"qr": "2@x", "expiresAt": "E", "at": AT.isoformat()})
    data = {"phone": "628", "jid": "628:1@s.whatsapp.net", "push_name": "Me"}
    connected = SessionChange("s1", SessionState.CONNECTED, ChangeKind.CONNECTED, AT, data)
    name, body = _one(connected)
    assert name == Event.SESSION_STATUS
    assert (body["state"], body["status"], body["phone"], body["pushName"]) == (
        "connected",
        "connected",
        "628",
        "Me",
    )
    banned = {"kind": "banned", "reason": "temporary ban", "code": "x"}
    failed = SessionChange("s1", SessionState.FAILED, ChangeKind.DISCONNECTED, AT, banned)
    name, body = _one(failed)
    assert (name, body["status"], body["disconnectKind"], body["reason"]) == (
        Event.SESSION_STATUS,
        "failed",
        "banned",
        "temporary ban",
    )
    pair = SessionChange("s1", SessionState.CONNECTING, ChangeKind.PAIR_CODE, AT, {"code": "AB"})
    assert _one(pair) == (Event.SESSION_QR, {"pairCode": "AB", "at": AT.isoformat()})


def test_a_state_without_a_reason_says_only_the_state() -> None:
    change = SessionChange("s1", SessionState.CONNECTING, ChangeKind.STATE, AT)
    name, body = _one(change)
    assert (name, set(body)) == (Event.SESSION_STATUS, {"state", "status", "at"})


def test_group_upserts_announce_discoveries_and_renames_only() -> None:
    group = Group(1, "s1", "1@g.us", "New", False, 3, AT, AT)
    announce = group_changes(AT)
    assert [e.name for e in announce(GroupUpsert(group, created=True, renamed_from=None))] == [
        Event.GROUP_DISCOVERED
    ]
    renamed = announce(GroupUpsert(group, created=False, renamed_from="Old"))
    assert [(e.name, e.payload["data"]["previousName"]) for e in renamed] == [
        (Event.GROUP_RENAMED, "Old")
    ]
    assert announce(GroupUpsert(group, created=False, renamed_from=None)) == []


class Color(enum.Enum):
    RED = "red"


def test_the_envelope() -> None:
    data = {"at": AT, "color": Color.RED, "tags": ("a",), "n": 1}
    payload = envelope("message.received", "s1", data, AT)
    assert set(payload) == {"id", "event", "sessionId", "timestamp", "data"}
    assert payload["event"] == "message.received"
    assert payload["sessionId"] == "s1"
    assert payload["timestamp"] == "2026-01-01T00:00:00.000Z"
    assert payload["data"] == {
        "at": "2026-01-01T00:00:00.000Z",
        "color": "red",
        "tags": ["a"],
        "n": 1,
    }
    assert len(payload["id"]) == 36
