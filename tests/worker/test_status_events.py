from __future__ import annotations

from datetime import UTC, datetime

from wagate.domain.session import SessionState
from wagate.events import Event, RecordingSink
from wagate.worker.runner import SessionChange
from wagate.worker.status_events import StatusEvents

AT = datetime(2026, 1, 1, tzinfo=UTC)


async def test_lifecycle_changes_become_webhook_events() -> None:
    sink = RecordingSink()
    events = StatusEvents(sink)
    await events(SessionChange("s", SessionState.QR, "qr", AT, {"qr": "2@x", "expires_at": "t"}))
    await events(
        SessionChange(
            "s",
            SessionState.CONNECTED,
            "connected",
            AT,
            {"phone": "628", "jid": "628:1@s.whatsapp.net"},
        )
    )
    await events(
        SessionChange(
            "s",
            SessionState.FAILED,
            "disconnected",
            AT,
            {"kind": "banned", "reason": "temporary ban"},
        )
    )
    assert sink.of(Event.SESSION_QR) == [{"qr": "2@x", "expiresAt": "t", "at": AT.isoformat()}]
    connected, failed = sink.of(Event.SESSION_STATUS)
    assert (connected["state"], connected["status"], connected["phone"]) == (
        "connected",
        "connected",
        "628",
    )
    assert (failed["status"], failed["disconnectKind"], failed["reason"]) == (
        "failed",
        "banned",
        "temporary ban",
    )
