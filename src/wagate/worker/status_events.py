"""Session lifecycle → webhook events: ``session.status`` on each change, ``session.qr`` per QR."""

from __future__ import annotations

from typing import Any

from wagate.domain.session import SEED_004
from wagate.events import Event, EventSink
from wagate.worker.runner import SessionChange

_STATUS_CHANGES = frozenset({"state", "connected", "disconnected"})


class StatusEvents:
    """A worker listener that records lifecycle events in the event sink."""

    def __init__(self, sink: EventSink) -> None:
        self.sink = sink

    async def __call__(self, change: SessionChange) -> None:
        if change.event in ("qr", "pair_code"):
            await self.sink.emit(Event.SESSION_QR, change.session_id, _qr(change))
        elif change.event in _STATUS_CHANGES:
            await self.sink.emit(Event.SESSION_STATUS, change.session_id, _status(change))


def _status(change: SessionChange) -> dict[str, Any]:
    data: dict[str, Any] = {
        "state": change.state.value,
        "status": SEED_004[change.state],
        "at": change.at.isoformat(),
    }
    if change.event == "connected":
        data.update(
            phone=change.data.get("phone"),
            jid=change.data.get("jid"),
            pushName=change.data.get("push_name"),
        )
    if change.event == "disconnected":
        data.update(disconnectKind=change.data.get("kind"), reason=change.data.get("reason"))
    return data


def _qr(change: SessionChange) -> dict[str, Any]:
    if change.event == "pair_code":
        return {"pairCode": change.data.get("code"), "at": change.at.isoformat()}
    return {
        "qr": change.data.get("qr"),
        "expiresAt": change.data.get("expires_at"),
        "at": change.at.isoformat(),
    }
