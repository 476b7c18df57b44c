"""Events wagate tells the outside world about (webhooks), and the sink they go to.

An event is recorded in the same storage transaction as the state change it
reports, so the two commit together or not at all: a repo method that writes
the state takes a :data:`Then` callback, runs it inside its transaction with
the row it wrote, and the callback calls :meth:`EventSink.emit_in`. The
webhook outbox implements the sink durably. Event names are the public
contract of webhooks.
"""

from __future__ import annotations

import enum
from collections.abc import Awaitable, Callable
from typing import Any, Protocol, TypeVar

T = TypeVar("T")

# ``then(conn, row)``: called by a repo inside its open transaction ``conn``, with what it wrote
Then = Callable[[Any, T], Awaitable[object]]


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
    async def emit_in(
        self, conn: Any, event: Event, session_id: str | None, data: dict[str, Any]
    ) -> object:
        """Record the event inside ``conn``, an open storage transaction of the producer's.

        It commits with the producer's own write, or neither does; delivery
        happens later, with retries.
        """
        ...


class NullSink:
    """Drops every event: for processes with no webhooks wired (tools, some tests)."""

    async def emit_in(
        self, conn: Any, event: Event, session_id: str | None, data: dict[str, Any]
    ) -> object:
        return None


class RecordingSink:
    """Keeps events in memory, for tests (whether or not their transaction commits)."""

    def __init__(self) -> None:
        self.events: list[tuple[Event, str | None, dict[str, Any]]] = []

    async def emit_in(
        self, conn: Any, event: Event, session_id: str | None, data: dict[str, Any]
    ) -> object:
        self.events.append((event, session_id, data))
        return None

    def of(self, event: Event) -> list[dict[str, Any]]:
        return [data for name, _, data in self.events if name is event]
