"""Webhook subscriptions and the delivery outbox (``webhook_deliveries``).

A delivery row is written in the same transaction as the event it reports and
stays as the delivery log once sent. Its life::

    pending ──2xx──▶ delivered
       │  ▲
       │  └── network error, 5xx, 408, 429: attempts < max → pending, later
       └──── other 4xx, or the last attempt failed ──▶ dead ──replay──▶ pending

Claiming a due row leases it: ``next_attempt_at`` moves to the end of the
lease, so a row whose dispatcher died mid-flight becomes due again by itself.
``attempts`` counts claims; an outcome is recorded only if the row still
holds the claim's count (a dispatcher that outlived its lease cannot
overwrite a newer attempt). Replaying resets ``attempts`` to 0 (a fresh
retry budget) and keeps ``last_status``/``last_error`` until the next attempt.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import fields
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import RowMapping
from sqlalchemy.ext.asyncio import AsyncConnection

from wagate.clock import Clock
from wagate.domain.webhook import (
    DEAD,
    DELIVERED,
    PENDING,
    STATUSES,
    Claim,
    Delivery,
    Subscription,
)
from wagate.storage.db import Database
from wagate.storage.tables import webhook_deliveries as d
from wagate.storage.tables import webhook_subscriptions as s

_SUB_FIELDS = frozenset(f.name for f in fields(Subscription))
_DELIVERY_FIELDS = frozenset(f.name for f in fields(Delivery))


def _subscription(row: RowMapping) -> Subscription:
    return Subscription(**{k: v for k, v in row.items() if k in _SUB_FIELDS})


def _delivery(row: RowMapping) -> Delivery:
    return Delivery(**{k: v for k, v in row.items() if k in _DELIVERY_FIELDS})


class SubscriptionRepo:
    """Reads and writes ``webhook_subscriptions``; every write stamps ``updated_at``."""

    def __init__(self, db: Database, clock: Clock) -> None:
        self._db = db
        self._clock = clock

    async def create(self, subscription_id: str, **values: Any) -> Subscription:
        now = self._clock.now()
        row = {"id": subscription_id, "enabled": True, "created_at": now, "updated_at": now}
        row.update(values)
        async with self._db.begin() as conn:
            await conn.execute(s.insert().values(**row))
        created = await self.get(subscription_id)
        assert created is not None
        return created

    async def get(self, subscription_id: str) -> Subscription | None:
        async with self._db.begin() as conn:
            row = (await conn.execute(s.select().where(s.c.id == subscription_id))).mappings()
            found = row.first()
        return _subscription(found) if found else None

    async def find(self, *, session_id: str | None = None) -> list[Subscription]:
        query = s.select().order_by(s.c.created_at, s.c.id)
        if session_id is not None:
            query = query.where(s.c.session_id == session_id)
        async with self._db.begin() as conn:
            rows = (await conn.execute(query)).mappings().all()
        return [_subscription(r) for r in rows]

    async def update(self, subscription_id: str, **values: Any) -> Subscription | None:
        values["updated_at"] = self._clock.now()
        async with self._db.begin() as conn:
            await conn.execute(s.update().where(s.c.id == subscription_id).values(**values))
        return await self.get(subscription_id)

    async def delete(self, subscription_id: str) -> bool:
        """Delete the subscription and (by the foreign key's cascade) its deliveries."""
        async with self._db.begin() as conn:
            result = await conn.execute(s.delete().where(s.c.id == subscription_id))
        return bool(result.rowcount)

    @staticmethod
    async def matching_in(
        conn: AsyncConnection, event: str, session_id: str | None
    ) -> list[Subscription]:
        """Enabled subscriptions that want ``event`` from ``session_id``, inside ``conn``."""
        scope: sa.ColumnElement[bool] = s.c.session_id.is_(None)
        if session_id is not None:
            scope = sa.or_(scope, s.c.session_id == session_id)
        query = s.select().where(s.c.enabled == sa.true(), scope).order_by(s.c.id)
        rows = (await conn.execute(query)).mappings().all()
        # the event filter is a JSON list: matched here, alike on both dialects
        return [sub for sub in map(_subscription, rows) if sub.wants(event, session_id)]


class DeliveryRepo:
    """The outbox: inserts, leases due rows, records outcomes, lists and replays."""

    def __init__(self, db: Database, clock: Clock) -> None:
        self._db = db
        self._clock = clock

    @staticmethod
    async def insert_in(
        conn: AsyncConnection,
        subscription_ids: Sequence[str],
        *,
        event: str,
        session_id: str | None,
        payload: dict[str, Any],
        now: datetime,
    ) -> int:
        """One pending delivery of ``payload`` per subscription, due now, inside ``conn``."""
        if not subscription_ids:
            return 0
        common = {
            "event": event,
            "session_id": session_id,
            "payload": payload,
            "status": PENDING,
            "attempts": 0,
            "next_attempt_at": now,
            "created_at": now,
        }
        rows = [{"subscription_id": sid, **common} for sid in subscription_ids]
        await conn.execute(d.insert(), rows)
        return len(rows)

    async def claim_due(self, limit: int, lease: timedelta) -> list[Claim]:
        """Lease up to ``limit`` due deliveries of enabled subscriptions, oldest due first.

        On PostgreSQL the due rows are picked ``FOR UPDATE SKIP LOCKED``, so
        dispatchers in several processes never claim one row twice; SQLite
        runs the pick and the lease as one writing statement.
        """
        now = self._clock.now()
        due = (
            sa.select(d.c.id)
            .join(s, s.c.id == d.c.subscription_id)
            .where(d.c.status == PENDING, d.c.next_attempt_at <= now, s.c.enabled == sa.true())
            .order_by(d.c.next_attempt_at, d.c.id)
            .limit(limit)
        )
        async with self._db.begin() as conn:
            if conn.dialect.name == "postgresql":
                due = due.with_for_update(skip_locked=True, of=d)
            lease_rows = await conn.execute(
                d.update()
                .where(d.c.id.in_(due), d.c.status == PENDING, d.c.next_attempt_at <= now)
                .values(attempts=d.c.attempts + 1, last_attempt_at=now, next_attempt_at=now + lease)
                .returning(*d.c)
            )
            claimed = [_delivery(r) for r in lease_rows.mappings().all()]
            if not claimed:
                return []
            ids = {c.subscription_id for c in claimed}
            subs = (await conn.execute(s.select().where(s.c.id.in_(ids)))).mappings().all()
        by_id = {row["id"]: _subscription(row) for row in subs}
        claimed.sort(key=lambda c: c.id)
        return [Claim(c, by_id[c.subscription_id]) for c in claimed]

    async def delivered(self, claim: Delivery, http_status: int) -> bool:
        now = self._clock.now()
        values = {"status": DELIVERED, "last_status": http_status, "last_error": None}
        return await self._finish(claim, delivered_at=now, next_attempt_at=now, **values)

    async def retry(
        self, claim: Delivery, at: datetime, http_status: int | None, error: str
    ) -> bool:
        return await self._finish(
            claim, next_attempt_at=at, last_status=http_status, last_error=error
        )

    async def dead(self, claim: Delivery, http_status: int | None, error: str) -> bool:
        return await self._finish(
            claim,
            status=DEAD,
            next_attempt_at=self._clock.now(),
            last_status=http_status,
            last_error=error,
        )

    async def _finish(self, claim: Delivery, **values: Any) -> bool:
        """Record an outcome; False when the claim is stale (someone else holds the row now)."""
        query = (
            d.update()
            .where(d.c.id == claim.id, d.c.status == PENDING, d.c.attempts == claim.attempts)
            .values(**values)
        )
        async with self._db.begin() as conn:
            result = await conn.execute(query)
        return bool(result.rowcount)

    async def get(self, delivery_id: int) -> Delivery | None:
        async with self._db.begin() as conn:
            row = (await conn.execute(d.select().where(d.c.id == delivery_id))).mappings().first()
        return _delivery(row) if row else None

    async def find(
        self,
        *,
        status: str | None = None,
        event: str | None = None,
        session_id: str | None = None,
        subscription_id: str | None = None,
        before_id: int | None = None,
        limit: int = 100,
    ) -> list[Delivery]:
        """Deliveries newest first; page on with ``before_id`` = the last id seen."""
        query = d.select().order_by(d.c.id.desc()).limit(limit)
        filters = {
            d.c.status: status,
            d.c.event: event,
            d.c.session_id: session_id,
            d.c.subscription_id: subscription_id,
        }
        for column, value in filters.items():
            if value is not None:
                query = query.where(column == value)
        if before_id is not None:
            query = query.where(d.c.id < before_id)
        async with self._db.begin() as conn:
            rows = (await conn.execute(query)).mappings().all()
        return [_delivery(r) for r in rows]

    async def replay(self, delivery_id: int) -> Delivery | None:
        """Make a delivered or dead delivery pending and due now; None if it is pending."""
        async with self._db.begin() as conn:
            result = await conn.execute(
                d.update()
                .where(d.c.id == delivery_id, d.c.status != PENDING)
                .values(**self._reset())
            )
        return await self.get(delivery_id) if result.rowcount else None

    async def replay_dead(self, subscription_id: str | None = None) -> int:
        """Make every dead delivery (of one subscription, or all) pending; how many."""
        query = d.update().where(d.c.status == DEAD)
        if subscription_id is not None:
            query = query.where(d.c.subscription_id == subscription_id)
        async with self._db.begin() as conn:
            result = await conn.execute(query.values(**self._reset()))
        return int(result.rowcount)

    def _reset(self) -> dict[str, Any]:
        return {
            "status": PENDING,
            "attempts": 0,
            "next_attempt_at": self._clock.now(),
            "delivered_at": None,
        }

    async def counts(self) -> dict[str, int]:
        """How many deliveries are in each status (for health and metrics)."""
        query = sa.select(d.c.status, sa.func.count()).group_by(d.c.status)
        async with self._db.begin() as conn:
            rows = (await conn.execute(query)).all()
        found = {status: 0 for status in STATUSES}
        found.update({str(status): int(n) for status, n in rows})
        return found
