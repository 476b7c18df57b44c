"""The storage side of the webhook outbox: events become delivery rows.

A repository that writes a state change calls :meth:`Outbox.write_in` with the
events of that change (built by :mod:`wagate.webhooks.events` from what it
wrote) inside its own transaction, so the state and its deliveries commit
together or not at all: a crash or an outage between two writes can neither
lose an event nor invent one. No connection leaves :mod:`wagate.storage`.
The dispatcher is rung when such a transaction commits, not before: it
would find nothing yet.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from sqlalchemy.ext.asyncio import AsyncConnection

from wagate.clock import Clock
from wagate.domain.event import OutboxEvent
from wagate.storage.db import Database, on_commit
from wagate.storage.repos.webhooks import DeliveryRepo, SubscriptionRepo
from wagate.storage.sanitize import clean


def _nobody() -> None:
    return None


class Outbox:
    """Writes deliveries for every subscription an event matches; rings ``on_commit`` after."""

    def __init__(
        self, db: Database, clock: Clock, *, on_commit: Callable[[], None] = _nobody
    ) -> None:
        self._db = db
        self._clock = clock
        self._ring = on_commit

    async def emit(self, events: Sequence[OutboxEvent]) -> int:
        """Record events in a transaction of their own (replays, tools); how many deliveries."""
        async with self._db.begin() as conn:
            return await self.write_in(conn, events)

    async def write_in(self, conn: AsyncConnection, events: Sequence[OutboxEvent]) -> int:
        """Record ``events`` inside the caller's open transaction; how many deliveries."""
        count = 0
        for event in events:
            subs = await SubscriptionRepo.matching_in(conn, event.name, event.session_id)
            if not subs:
                continue
            count += await DeliveryRepo.insert_in(
                conn,
                [s.id for s in subs],
                event=event.name,
                session_id=event.session_id,
                payload=clean(event.payload),
                now=self._clock.now(),
            )
        if count:
            on_commit(conn, self._ring)
        return count
