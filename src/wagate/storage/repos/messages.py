"""``messages``: one row per message, both directions, unique by ``(session_id, wa_msg_id)``."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import fields
from datetime import timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import RowMapping

from wagate.clock import Clock
from wagate.domain.message import IN, MEDIA_KINDS, Message
from wagate.storage.db import Database
from wagate.storage.tables import messages as t
from wagate.storage.upsert import insert_for

_FIELDS = frozenset(f.name for f in fields(Message))


def to_message(row: RowMapping) -> Message:
    return Message(**{k: v for k, v in row.items() if k in _FIELDS})


class MessageRepo:
    """Inbound persistence and the lookups the ingest pipeline needs."""

    def __init__(self, db: Database, clock: Clock) -> None:
        self._db = db
        self._clock = clock

    async def insert_inbound(self, values: dict[str, Any]) -> Message | None:
        """Insert unless ``(session_id, wa_msg_id)`` exists; the new row, or None if it did."""
        now = self._clock.now()
        row = {"direction": IN, "status": "received", "created_at": now, "updated_at": now}
        row.update(values)
        async with self._db.begin() as conn:
            stmt = (
                insert_for(conn, t)
                .values(**row)
                .on_conflict_do_nothing(index_elements=["session_id", "wa_msg_id"])
            )
            found = (await conn.execute(stmt.returning(*t.c))).mappings().first()
        return to_message(found) if found else None

    async def get(self, message_id: int) -> Message | None:
        async with self._db.begin() as conn:
            row = (await conn.execute(t.select().where(t.c.id == message_id))).mappings().first()
        return to_message(row) if row else None

    async def by_wa_id(self, session_id: str, wa_msg_id: str) -> Message | None:
        query = t.select().where(t.c.session_id == session_id, t.c.wa_msg_id == wa_msg_id)
        async with self._db.begin() as conn:
            row = (await conn.execute(query)).mappings().first()
        return to_message(row) if row else None

    async def notify(self, message_id: int, record: Callable[[Any], Awaitable[object]]) -> None:
        """Run ``record(conn)`` and stamp ``notified_at`` in one transaction.

        ``record`` writes the message's event to the webhook outbox: the event
        and the mark commit together, so a crash leaves neither or both.
        """
        now = self._clock.now()
        async with self._db.begin() as conn:
            await record(conn)
            await conn.execute(
                t.update().where(t.c.id == message_id).values(notified_at=now, updated_at=now)
            )

    async def set_media(self, message_id: int, media_id: int) -> None:
        await self._set(message_id, media_id=media_id)

    async def set_parent(self, message_id: int, parent_id: int) -> None:
        await self._set(message_id, parent_id=parent_id)

    async def _set(self, message_id: int, **values: Any) -> None:
        values["updated_at"] = self._clock.now()
        async with self._db.begin() as conn:
            await conn.execute(t.update().where(t.c.id == message_id).values(**values))

    async def link_partner(self, message: Message, window: timedelta) -> Message | None:
        """The unlinked text↔media partner of ``message`` within ``window``, same chat and sender.

        Seed 003's heuristic, both directions: a text pairs with a media message
        and a media message with a text; a message is in one pair at most. The
        caller stores the link on whichever of the two is later.
        """
        partner_kinds = ["text"] if message.is_media else list(MEDIA_KINDS)
        if message.kind != "text" and not message.is_media:
            return None
        child = t.alias("child")
        has_child = sa.exists().where(child.c.parent_id == t.c.id)
        query = (
            t.select()
            .where(
                t.c.session_id == message.session_id,
                t.c.chat_id == message.chat_id,
                t.c.sender == message.sender,
                t.c.direction == message.direction,
                t.c.id != message.id,
                t.c.kind.in_(partner_kinds),
                t.c.ts >= message.ts - window,
                t.c.ts <= message.ts + window,
                t.c.parent_id.is_(None),
                ~has_child,
            )
            .order_by(t.c.ts.desc())
            .limit(10)
        )
        async with self._db.begin() as conn:
            if await conn.scalar(sa.select(sa.exists().where(t.c.parent_id == message.id))):
                return None  # already the earlier half of a pair
            rows = (await conn.execute(query)).mappings().all()
        candidates = [to_message(r) for r in rows]
        return min(candidates, key=lambda m: abs(m.ts - message.ts), default=None)
