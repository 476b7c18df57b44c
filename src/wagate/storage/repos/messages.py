"""``messages``: one row per message, both directions, unique by ``(session_id, wa_msg_id)``."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import fields
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import RowMapping

from wagate.clock import Clock
from wagate.domain.event import OutboxEvent
from wagate.domain.message import IN, MEDIA_KINDS, HistoryQuery, Message
from wagate.storage.db import Database
from wagate.storage.outbox import Outbox
from wagate.storage.tables import messages as t
from wagate.storage.upsert import insert_for

_FIELDS = frozenset(f.name for f in fields(Message))


def to_message(row: RowMapping) -> Message:
    return Message(**{k: v for k, v in row.items() if k in _FIELDS})


_MAX_ID = 2**63 - 1


class MessageRepo:
    """Messages of both directions: history, and what the ingest pipeline writes.

    The send queue's own writes (enqueue, attempts, statuses) are
    :class:`~wagate.storage.repos.outbound.OutboundRepo`'s.
    """

    def __init__(self, db: Database, clock: Clock, *, outbox: Outbox | None = None) -> None:
        self._db = db
        self._clock = clock
        self._outbox = outbox

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

    async def mark_notified(self, message_id: int, events: Sequence[OutboxEvent]) -> None:
        """Record a received message's events and stamp ``notified_at``, in one transaction.

        The events and the mark commit together: a crash leaves neither or both.
        The media reference kept for completing the row goes with it.
        """
        now = self._clock.now()
        values = {"notified_at": now, "updated_at": now, "payload": None}
        first = sa.and_(t.c.id == message_id, t.c.notified_at.is_(None))
        async with self._db.begin() as conn:
            marked = await conn.execute(t.update().where(first).values(**values))
            if marked.rowcount and self._outbox is not None:  # announced once, whoever races
                await self._outbox.write_in(conn, events)

    async def unfinished(
        self, session_id: str, before: datetime, limit: int = 500
    ) -> list[Message]:
        """Received messages of the session, stored before ``before``, not yet announced."""
        query = (
            t.select()
            .where(
                t.c.session_id == session_id,
                t.c.direction == IN,
                t.c.notified_at.is_(None),
                t.c.created_at < before,
            )
            .order_by(t.c.id)
            .limit(limit)
        )
        async with self._db.begin() as conn:
            rows = (await conn.execute(query)).mappings().all()
        return [to_message(row) for row in rows]

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

    # --- history (both directions) ------------------------------------------------

    async def find(self, session_id: str, ident: str) -> Message | None:
        """A message of the session by our id (digits) or its WhatsApp id."""
        if ident.isdigit() and int(ident) <= _MAX_ID:
            found = await self._one(t.c.session_id == session_id, t.c.id == int(ident))
            if found is not None:
                return found
        return await self._one(t.c.session_id == session_id, t.c.wa_msg_id == ident)

    async def history(self, session_id: str, query: HistoryQuery) -> list[Message]:
        """One page, newest first; pass the last id back as ``before_id`` for the next."""
        where = [t.c.session_id == session_id, *_filters(query)]
        select = t.select().where(*where).order_by(t.c.id.desc()).limit(query.limit)
        async with self._db.begin() as conn:
            rows = (await conn.execute(select)).mappings().all()
        return [to_message(row) for row in rows]

    async def page(self, session_id: str, limit: int, offset: int) -> tuple[list[Message], int]:
        """Seed 002's pages: ``limit`` messages after ``offset``, newest first, and the total."""
        select = (
            t.select()
            .where(t.c.session_id == session_id)
            .order_by(t.c.id.desc())
            .limit(limit)
            .offset(offset)
        )
        count = sa.select(sa.func.count()).select_from(t).where(t.c.session_id == session_id)
        async with self._db.begin() as conn:
            rows = (await conn.execute(select)).mappings().all()
            total = (await conn.execute(count)).scalar_one()
        return [to_message(row) for row in rows], int(total)

    async def _one(self, *where: sa.ColumnElement[bool]) -> Message | None:
        async with self._db.begin() as conn:
            row = (await conn.execute(t.select().where(*where).limit(1))).mappings().first()
        return to_message(row) if row else None


def _filters(query: HistoryQuery) -> list[sa.ColumnElement[bool]]:
    where: list[sa.ColumnElement[bool]] = []
    if query.chat is not None:
        where.append(t.c.chat_id == query.chat)
    if query.direction is not None:
        where.append(t.c.direction == query.direction)
    if query.status is not None:
        where.append(t.c.status == query.status)
    if query.since is not None:
        where.append(t.c.ts >= query.since)
    if query.until is not None:
        where.append(t.c.ts < query.until)
    if query.before_id is not None:
        where.append(t.c.id < query.before_id)
    return where
