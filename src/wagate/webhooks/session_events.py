"""Session lifecycle → webhook events: ``session.status`` per state, ``session.qr`` per QR.

:class:`StatusEvents` is the ``on_write`` hook of :class:`SessionRepo`: it
runs inside the transaction that writes the session row, so a state and its
event commit together (a crash or an outage between two writes cannot lose
the event). What it reports is read from the columns written: a QR or pair
code is a ``session.qr``; any other write of ``status`` is a ``session.status``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from wagate.domain.session import SEED_004, SessionState
from wagate.storage.repos.sessions import SessionWrite
from wagate.webhooks.events import Event, EventSink


class StatusEvents:
    """Records the lifecycle events of a session write in the sink, in its transaction."""

    def __init__(self, sink: EventSink) -> None:
        self.sink = sink

    async def __call__(self, conn: Any, write: SessionWrite) -> None:
        found = events_of(write.values)
        if found is not None:
            await self.sink.emit_in(conn, found[0], write.session_id, found[1])


def events_of(values: dict[str, Any]) -> tuple[Event, dict[str, Any]] | None:
    """The event a write of these session columns reports, if any."""
    at = _iso(values["updated_at"])
    if values.get("qr"):
        return Event.SESSION_QR, {
            "qr": values["qr"],
            "expiresAt": _iso(values.get("qr_expires_at")),
            "at": at,
        }
    if values.get("pair_code"):
        return Event.SESSION_QR, {"pairCode": values["pair_code"], "at": at}
    if values.get("status") is None:
        return None
    return Event.SESSION_STATUS, _status(SessionState(values["status"]), values, at)


def _status(state: SessionState, values: dict[str, Any], at: str | None) -> dict[str, Any]:
    data: dict[str, Any] = {"state": state.value, "status": SEED_004[state], "at": at}
    if state is SessionState.CONNECTED and "phone_number" in values:
        data.update(
            phone=values["phone_number"], jid=values.get("jid"), pushName=values.get("wa_name")
        )
    if "disconnect_reason" in values:
        data.update(
            disconnectKind=values.get("disconnect_kind"), reason=values["disconnect_reason"]
        )
    return data


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment is not None else None
