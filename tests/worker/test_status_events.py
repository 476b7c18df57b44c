from __future__ import annotations

from datetime import UTC, datetime

from wagate.domain.session import DisconnectKind
from wagate.webhooks.events import Event
from wagate.webhooks.session_events import events_of

AT = datetime(2026, 1, 1, tzinfo=UTC)


def test_session_writes_become_webhook_events() -> None:
    qr = events_of(
        {"status": "qr", "qr": "2@x", "qr_expires_at": AT, "qr_generated_at": AT, "updated_at": AT}
    )
    assert qr == (
        Event.SESSION_QR,
        {"qr": "2@x", "expiresAt": AT.isoformat(), "at": AT.isoformat()},
    )
    connected = events_of(
        {
            "status": "connected",
            "phone_number": "628",
            "jid": "628:1@s.whatsapp.net",
            "wa_name": "Me",
            "qr": None,
            "updated_at": AT,
        }
    )
    assert connected is not None and connected[0] is Event.SESSION_STATUS
    assert (connected[1]["state"], connected[1]["status"], connected[1]["phone"]) == (
        "connected",
        "connected",
        "628",
    )
    failed = events_of(
        {
            "status": "failed",
            "disconnect_kind": DisconnectKind.BANNED.value,
            "disconnect_reason": "temporary ban",
            "qr": None,
            "pair_code": None,
            "updated_at": AT,
        }
    )
    assert failed is not None
    assert (failed[1]["status"], failed[1]["disconnectKind"], failed[1]["reason"]) == (
        "failed",
        "banned",
        "temporary ban",
    )
    pair = events_of({"pair_code": "ABCD-EFGH", "updated_at": AT})
    assert pair == (Event.SESSION_QR, {"pairCode": "ABCD-EFGH", "at": AT.isoformat()})


def test_writes_that_are_not_lifecycle_changes_are_no_events() -> None:
    assert events_of({"proxy": "socks5://p:1", "updated_at": AT}) is None
    assert events_of({"worker_id": "w2", "updated_at": AT}) is None
