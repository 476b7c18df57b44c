"""Outbound messages in ``messages`` (``direction = 'out'``): the durable send queue.

A message is written ``queued`` before the API answers, and moves forward
only::

    queued ─► sent ─► delivered ─► read ─► played
       └────► failed (permanent error, or too many attempts)

Receipts may overtake the sender's own ``sent`` write (the engine sends, the
phone acknowledges, then we record): a receipt moves any earlier status
forward, and ``sent`` never moves a later status back. History queries (both
directions) live here too, since they read the same rows.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa

from wagate.clock import Clock
from wagate.domain.event import Announce
from wagate.domain.lease import Fences
from wagate.domain.message import OUT, STATUS_RANK, Message, MessageStatus, overtaken_by
from wagate.storage.db import Database
from wagate.storage.fencing import Fencing
from wagate.storage.outbox import Outbox
from wagate.storage.repos.messages import to_message
from wagate.storage.tables import messages as t
from wagate.storage.upsert import insert_for

QUEUED, SENT, FAILED = MessageStatus.QUEUED, MessageStatus.SENT, MessageStatus.FAILED
_MAX_ID = 2**63 - 1


@dataclass(frozen=True, slots=True)
class NewOutbound:
    """A message to queue, as the control layer validated it."""

    session_id: str
    wa_msg_id: str
    chat_id: str
    kind: str
    text: str | None
    payload: dict[str, Any]
    sender: str | None = None
    quoted_id: str | None = None
    idempotency_key: str | None = None


class OutboundRepo:
    """The send queue, receipts, and message history.

    With ``fences`` (a worker of a fleet), the sender's writes (:meth:`begin_attempt`,
    :meth:`requeue`, :meth:`mark_sent`, :meth:`mark_failed`, :meth:`apply_receipt`)
    are owner-only: they raise :class:`StaleLease`, writing nothing (nor any event),
    when this process no longer holds the message's session.
    """

    def __init__(
        self,
        db: Database,
        clock: Clock,
        *,
        outbox: Outbox | None = None,
        fences: Fences | None = None,
    ) -> None:
        self._db = db
        self._clock = clock
        self._outbox = outbox
        self._fencing = Fencing(fences)

    # --- enqueue -------------------------------------------------------------------

    async def enqueue(self, new: NewOutbound) -> tuple[Message, bool]:
        """Queue ``new``; ``(message, True)``, or ``(existing, False)`` if its key was taken."""
        now = self._clock.now()
        row = {
            "session_id": new.session_id,
            "wa_msg_id": new.wa_msg_id,
            "direction": OUT,
            "chat_id": new.chat_id,
            "sender": new.sender,
            "kind": new.kind,
            "text": new.text,
            "quoted_id": new.quoted_id,
            "status": QUEUED,
            "idempotency_key": new.idempotency_key,
            "payload": new.payload,
            "attempts": 0,
            "ts": now,
            "created_at": now,
            "updated_at": now,
        }
        async with self._db.begin() as conn:
            stmt = (
                insert_for(conn, t)
                .values(**row)
                .on_conflict_do_nothing(index_elements=["session_id", "idempotency_key"])
                .returning(*t.c)
            )
            created = (await conn.execute(stmt)).mappings().first()
        if created is not None:
            return to_message(created), True
        assert new.idempotency_key is not None  # only that key can be ignored
        existing = await self.by_idempotency_key(new.session_id, new.idempotency_key)
        assert existing is not None
        return existing, False

    async def by_idempotency_key(self, session_id: str, key: str) -> Message | None:
        return await self._one(t.c.session_id == session_id, t.c.idempotency_key == key)

    # --- the sender's side ---------------------------------------------------------

    async def next_queued(self, session_id: str) -> Message | None:
        """The oldest queued message of the session: messages go out in the order queued.

        A message an edge worker holds (:meth:`claim_queued`) is not offered.
        """
        query = (
            t.select()
            .where(
                t.c.session_id == session_id,
                t.c.direction == OUT,
                t.c.status == QUEUED,
                _unclaimed(self._clock.now()),
            )
            .order_by(t.c.id)
            .limit(1)
        )
        async with self._db.begin() as conn:
            row = (await conn.execute(query)).mappings().first()
        return to_message(row) if row else None

    async def claim_queued(
        self, session_id: str, holder: str, ttl: timedelta, limit: int = 50
    ) -> list[Message]:
        """Hand the session's oldest unclaimed queued messages to ``holder`` for ``ttl``.

        Each hand-out counts as an attempt.
        For seed 001's edge workers, which send by themselves: a message handed
        out is not handed out again (to anyone) until its claim lapses unsettled.
        One conditional UPDATE: on PostgreSQL the candidates are locked with
        ``SKIP LOCKED`` (a concurrent claim takes the next ones) and the
        condition is evaluated again on each row's latest version, so two
        concurrent claims never both get a message; SQLite serialises writers.
        """
        now = self._clock.now()
        free = _unclaimed(now)
        # materialized: evaluated once (a subquery under IN may be rescanned, and a rescan
        # skips the rows this statement just locked and takes the next ones instead)
        picked = (
            sa.select(t.c.id)
            .where(t.c.session_id == session_id, t.c.direction == OUT, t.c.status == QUEUED, free)
            .order_by(t.c.id)
            .limit(limit)
            .with_for_update(skip_locked=True)
            .cte("picked")
            .prefix_with("MATERIALIZED", dialect="postgresql")
        )
        stmt = (
            t.update()
            .where(t.c.id == picked.c.id, t.c.status == QUEUED, free)
            .values(
                claimed_by=holder,
                claimed_until=now + ttl,
                attempts=t.c.attempts + 1,  # a hand-out is an attempt: a poison message runs out
                updated_at=now,
            )
            .returning(*t.c)
        )
        async with self._db.begin() as conn:
            rows = (await conn.execute(stmt)).mappings().all()
        return sorted((to_message(r) for r in rows), key=lambda m: m.id)

    async def outbound(self, session_id: str, wa_msg_id: str) -> Message | None:
        """The session's outbound message with that WhatsApp id."""
        return await self._one(
            t.c.session_id == session_id, t.c.direction == OUT, t.c.wa_msg_id == wa_msg_id
        )

    async def sessions_with_queue(self) -> list[str]:
        query = (
            sa.select(t.c.session_id)
            .where(t.c.direction == OUT, t.c.status == QUEUED)
            .group_by(t.c.session_id)
        )
        async with self._db.begin() as conn:
            return list((await conn.execute(query)).scalars())

    async def is_queued(self, session_id: str, wa_msg_id: str) -> bool:
        found = await self._one(
            t.c.session_id == session_id, t.c.wa_msg_id == wa_msg_id, t.c.status == QUEUED
        )
        return found is not None

    async def begin_attempt(self, message_id: int) -> None:
        """Count an attempt before it is made, so a message that kills the process runs out."""
        await self._update(message_id, attempts=t.c.attempts + 1)

    async def requeue(self, message_id: int, error: str) -> None:
        """A transient failure: the message stays queued; the error is kept for the operator."""
        await self._update(message_id, t.c.status == QUEUED, error=error[:1000])

    async def mark_sent(
        self,
        message_id: int,
        *,
        wa_msg_id: str,
        at: datetime,
        payload: dict[str, Any] | None,
        announce: Announce[Message] | None = None,
        only_queued: bool = False,
    ) -> Message | None:
        """Record the send; a receipt that got here first keeps its (later) status.

        ``announce(message)``'s events are recorded in the same transaction.
        ``only_queued``: write (and announce) nothing unless the message is still
        queued (a repeated report of one send; None then).
        """
        status = sa.case((t.c.status == QUEUED, SENT), else_=t.c.status)
        return await self._update(
            message_id,
            *([t.c.status == QUEUED] if only_queued else []),
            announce=announce,
            status=status,
            wa_msg_id=wa_msg_id,
            sent_at=sa.func.coalesce(t.c.sent_at, at),
            payload=payload,
            error=None,
        )

    async def mark_failed(
        self,
        message_id: int,
        error: str,
        payload: dict[str, Any] | None,
        announce: Announce[Message] | None = None,
    ) -> Message | None:
        """Fail a queued message; ``announce(message)``'s events are recorded with it."""
        return await self._update(
            message_id,
            t.c.status == QUEUED,
            announce=announce,
            status=FAILED,
            error=error[:1000],
            payload=payload,
        )

    async def apply_receipt(
        self,
        session_id: str,
        wa_msg_ids: list[str],
        status: str,
        at: datetime,
        announce: Announce[Message] | None = None,
    ) -> list[Message]:
        """Move our messages forward to ``status``; the ones that moved (none move back).

        ``announce`` runs for each moved message; its events are recorded with the move.
        """
        status = MessageStatus(status)
        fence = self._fencing.fence(session_id)
        values: dict[str, Any] = {
            "status": status.value,
            "delivered_at": sa.func.coalesce(t.c.delivered_at, at),
            "updated_at": self._clock.now(),
        }
        if STATUS_RANK[status] >= STATUS_RANK[MessageStatus.READ]:
            values["read_at"] = sa.func.coalesce(t.c.read_at, at)
        stmt = (
            t.update()
            .where(
                t.c.session_id == session_id,
                t.c.direction == OUT,
                t.c.wa_msg_id.in_(wa_msg_ids),
                t.c.status.in_([s.value for s in overtaken_by(status)]),
                *self._fencing.where(fence),
            )
            .values(**values)
            .returning(*t.c)
        )
        async with self._db.begin() as conn:
            moved = [to_message(row) for row in (await conn.execute(stmt)).mappings().all()]
            if not moved:
                await self._fencing.confirm(conn, fence)
            if announce is not None and self._outbox is not None:
                for message in moved:
                    await self._outbox.write_in(conn, announce(message))
        return moved

    # --- helpers -------------------------------------------------------------------

    async def _one(self, *where: sa.ColumnElement[bool]) -> Message | None:
        async with self._db.begin() as conn:
            row = (await conn.execute(t.select().where(*where).limit(1))).mappings().first()
        return to_message(row) if row else None

    async def _update(
        self,
        message_id: int,
        *where: sa.ColumnElement[bool],
        announce: Announce[Message] | None = None,
        **values: Any,
    ) -> Message | None:
        """An owner-only write of one message (fenced when fencing is on); None if none matched."""
        fence = None
        if self._fencing.enabled:
            session_id = await self._session_of(message_id)
            if session_id is None:
                return None
            fence = self._fencing.fence(session_id)
        values["updated_at"] = self._clock.now()
        where = (t.c.id == message_id, *where, *self._fencing.where(fence))
        stmt = t.update().where(*where).values(**values).returning(*t.c)
        async with self._db.begin() as conn:
            row = (await conn.execute(stmt)).mappings().first()
            if row is None:
                await self._fencing.confirm(conn, fence)
                return None
            message = to_message(row)
            if announce is not None and self._outbox is not None:
                await self._outbox.write_in(conn, announce(message))
        return message

    async def _session_of(self, message_id: int) -> str | None:
        """The message's session (it never changes): which fence a write on it carries."""
        async with self._db.begin() as conn:
            query = sa.select(t.c.session_id).where(t.c.id == message_id)
            session_id: str | None = await conn.scalar(query)
        return session_id


def _unclaimed(now: datetime) -> sa.ColumnElement[bool]:
    """No edge worker holds the message (never claimed, or its claim lapsed)."""
    return sa.or_(t.c.claimed_until.is_(None), t.c.claimed_until <= now)
