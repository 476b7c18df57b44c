"""Events wagate tells the outside world about (webhooks), and the sink they go to.

Producers (the session runtime, the ingest pipeline, the outbound sender) call
:meth:`EventSink.emit`; the webhook outbox implements it durably. Event names
are the public contract of webhooks.
"""

from __future__ import annotations

import enum
from typing import Any, Protocol


class Event(enum.StrEnum):
    SESSION_STATUS = "session.status"
    SESSION_QR = "session.qr"
    MESSAGE_RECEIVED = "message.received"
    MESSAGE_SENT = "message.sent"
    MESSAGE_ACK = "message.ack"
    MESSAGE_FAILED = "message.failed"
    GROUP_DISCOVERED = "group.discovered"
    GROUP_RENAMED = "group.renamed"


class EventSink(Protocol):
    async def emit(self, event: Event, session_id: str | None, data: dict[str, Any]) -> None:
        """Record the event durably (or raise); delivery happens later, with retries."""
        ...

    async def emit_in(
        self, conn: Any, event: Event, session_id: str | None, data: dict[str, Any]
    ) -> object:
        """Record the event inside ``conn``, an open storage transaction of the caller's."""
        ...


class NullSink:
    """Drops every event: for processes with no webhooks wired (tools, some tests)."""

    async def emit(self, event: Event, session_id: str | None, data: dict[str, Any]) -> None:
        return None

    async def emit_in(
        self, conn: Any, event: Event, session_id: str | None, data: dict[str, Any]
    ) -> object:
        return None


class RecordingSink:
    """Keeps events in memory, for tests."""

    def __init__(self) -> None:
        self.events: list[tuple[Event, str | None, dict[str, Any]]] = []

    async def emit(self, event: Event, session_id: str | None, data: dict[str, Any]) -> None:
        self.events.append((event, session_id, data))

    async def emit_in(
        self, conn: Any, event: Event, session_id: str | None, data: dict[str, Any]
    ) -> object:
        self.events.append((event, session_id, data))
        return None

    def of(self, event: Event) -> list[dict[str, Any]]:
        return [data for name, _, data in self.events if name is event]
