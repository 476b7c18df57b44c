"""Leases: which worker owns each session, and which control replica leads each duty.

A session lease (``session_leases``) is *live* while it has an owner and
``expires_at`` is still ahead; it is taken only when it is not live, in one
compare-and-set that increments its ``epoch``, the fencing token (see
``docs/cluster.md``, "Exactly one owner per session"). Both dialects take it
with one ``INSERT … ON CONFLICT DO UPDATE … WHERE``: on PostgreSQL the
conflicting row is locked and the condition evaluated on its latest version,
so of two racing assigns exactly one wins; SQLite serialises writers.

Times are the injected clock's, written and compared as bound values, never
the database server's ``now()``.
"""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import RowMapping

from wagate.clock import Clock
from wagate.domain.lease import Fence, Lease
from wagate.domain.session import SessionState, Uplink
from wagate.storage.db import Database
from wagate.storage.tables import leader_leases as leaders
from wagate.storage.tables import session_leases as t
from wagate.storage.tables import sessions
from wagate.storage.upsert import insert_for

_RUNNING = sorted(s.value for s in SessionState if s.is_running)


def _live(now: datetime) -> sa.ColumnElement[bool]:
    return sa.and_(t.c.worker_id.is_not(None), t.c.expires_at.is_not(None), t.c.expires_at > now)


def _to_lease(row: RowMapping) -> Lease:
    return Lease(row["session_id"], row["worker_id"], int(row["epoch"]), row["expires_at"])


class SessionLeaseRepo:
    """``session_leases``: assign, renew, release and look up who owns a session."""

    def __init__(self, db: Database, clock: Clock) -> None:
        self._db = db
        self._clock = clock

    async def assign(self, session_id: str, worker_id: str, ttl: timedelta) -> Lease | None:
        """Give the session to ``worker_id`` unless a live lease holds it (its own included).

        The new lease's epoch is one more than the last (1 for a session never leased).
        """
        return await self._take(session_id, worker_id, ttl, keep_own=False)

    async def claim(self, session_id: str, worker_id: str, ttl: timedelta) -> Lease | None:
        """Take the session for ``worker_id`` when no live lease holds it, or keep it (its own).

        :meth:`assign`'s compare-and-set, but a holder's own claim is renewed to
        ``now + ttl`` (its epoch unchanged) instead of refused; None while another
        live lease holds the session. Seed 001's edge workers hold sessions this way.
        """
        return await self._take(session_id, worker_id, ttl, keep_own=True)

    async def _take(
        self, session_id: str, worker_id: str, ttl: timedelta, *, keep_own: bool
    ) -> Lease | None:
        """The compare-and-set of :meth:`assign` (``keep_own``: and of :meth:`claim`).

        One statement: insert the lease, or take it over when no live lease holds
        it (a new owner: epoch + 1); with ``keep_own`` the holder's own live lease
        is renewed too, its epoch unchanged.
        """
        now = self._clock.now()
        values = {
            "session_id": session_id,
            "worker_id": worker_id,
            "epoch": 1,
            "expires_at": now + ttl,
            "updated_at": now,
        }
        free = sa.not_(_live(now))
        mine = t.c.worker_id == worker_id
        async with self._db.begin() as conn:
            insert = insert_for(conn, t).values(**values)
            stmt = insert.on_conflict_do_update(
                index_elements=[t.c.session_id],
                set_={
                    "worker_id": insert.excluded.worker_id,
                    "epoch": sa.case((mine, t.c.epoch), else_=t.c.epoch + 1)
                    if keep_own
                    else t.c.epoch + 1,
                    "expires_at": insert.excluded.expires_at,
                    "updated_at": insert.excluded.updated_at,
                },
                where=sa.or_(mine, free) if keep_own else free,
            ).returning(*t.c)
            row = (await conn.execute(stmt)).mappings().first()
        return _to_lease(row) if row else None

    async def claimable(
        self,
        worker_id: str,
        uplinks: Collection[Uplink],
        states: Collection[SessionState],
        limit: int = 500,
    ) -> list[str]:
        """Sessions hosted by one of ``uplinks``, in one of ``states``, that no *other*
        live lease holds (free, expired, or ``worker_id``'s own), oldest first."""
        now = self._clock.now()
        s = sessions
        query = (
            sa.select(s.c.id)
            .select_from(s.outerjoin(t, t.c.session_id == s.c.id))
            .where(
                s.c.uplink.in_([u.value for u in uplinks]),
                s.c.status.in_([state.value for state in states]),
                sa.or_(sa.not_(_live(now)), t.c.worker_id == worker_id),
            )
            .order_by(s.c.created_at, s.c.id)
            .limit(limit)
        )
        async with self._db.begin() as conn:
            return list((await conn.execute(query)).scalars())

    async def renew(self, worker_id: str, ttl: timedelta) -> list[Lease]:
        """Extend every lease of ``worker_id`` to ``now + ttl``: the leases it holds now."""
        now = self._clock.now()
        stmt = (
            t.update()
            .where(t.c.worker_id == worker_id)
            .values(expires_at=now + ttl, updated_at=now)
            .returning(*t.c)
        )
        async with self._db.begin() as conn:
            rows = (await conn.execute(stmt)).mappings().all()
        return sorted((_to_lease(r) for r in rows), key=lambda lease: lease.session_id)

    async def release(self, fence: Fence) -> bool:
        """Give the lease up (a clean stop), if it is still the one ``fence`` names."""
        released = await self._update(
            t.c.session_id == fence.session_id,
            t.c.worker_id == fence.worker_id,
            t.c.epoch == fence.epoch,
            **self._free(),
        )
        return released > 0

    async def release_all(self, worker_id: str) -> int:
        return await self._update(t.c.worker_id == worker_id, **self._free())

    async def expire_all(self, worker_id: str) -> int:
        """End a worker's live leases now (an operator declared it dead); how many."""
        now = self._clock.now()
        return await self._update(
            t.c.worker_id == worker_id, _live(now), expires_at=now, updated_at=now
        )

    async def bump_all(self, worker_id: str) -> int:
        """A new process took the worker id over: the old process's fences go stale."""
        return await self._update(
            t.c.worker_id == worker_id, epoch=t.c.epoch + 1, updated_at=self._clock.now()
        )

    async def forget(self, session_id: str) -> None:
        """The session was deleted: its lease goes with it."""
        async with self._db.begin() as conn:
            await conn.execute(t.delete().where(t.c.session_id == session_id))

    async def owner(self, session_id: str) -> Lease | None:
        """The session's live lease, or None (never leased, released or expired)."""
        leases = await self._select(t.c.session_id == session_id)
        return leases[0] if leases else None

    async def held_by(self, worker_id: str) -> list[Lease]:
        return await self._select(t.c.worker_id == worker_id)

    async def live_counts(self) -> dict[str, int]:
        """How many live leases each worker holds (workers with none are absent)."""
        query = (
            sa.select(t.c.worker_id, sa.func.count())
            .where(_live(self._clock.now()))
            .group_by(t.c.worker_id)
        )
        async with self._db.begin() as conn:
            rows = (await conn.execute(query)).all()
        return {worker_id: int(n) for worker_id, n in rows}

    async def unplaced(self, limit: int = 500) -> list[tuple[str, str | None]]:
        """Fleet sessions that should run and have no live lease, oldest first.

        Each with the worker whose lease expired (a candidate to take it back), or None
        when it was never leased or was released.
        """
        now = self._clock.now()
        s = sessions
        query = (
            sa.select(s.c.id, t.c.worker_id)
            .select_from(s.outerjoin(t, t.c.session_id == s.c.id))
            # an edge session is never the fleet's to place (seed 001's workers host it)
            .where(s.c.status.in_(_RUNNING), s.c.uplink != Uplink.EDGE.value, sa.not_(_live(now)))
            .order_by(s.c.created_at, s.c.id)
            .limit(limit)
        )
        async with self._db.begin() as conn:
            rows = (await conn.execute(query)).all()
        return [(session_id, worker_id) for session_id, worker_id in rows]

    # --- helpers -------------------------------------------------------------------

    def _free(self) -> dict[str, Any]:
        return {"worker_id": None, "expires_at": None, "updated_at": self._clock.now()}

    async def _update(self, *where: sa.ColumnElement[bool], **values: Any) -> int:
        async with self._db.begin() as conn:
            result = await conn.execute(t.update().where(*where).values(**values))
        return int(result.rowcount)

    async def _select(self, *where: sa.ColumnElement[bool]) -> list[Lease]:
        query = t.select().where(*where, _live(self._clock.now())).order_by(t.c.session_id)
        async with self._db.begin() as conn:
            rows = (await conn.execute(query)).mappings().all()
        return [_to_lease(r) for r in rows]


class LeaderLeaseRepo:
    """``leader_leases``: duties one control replica holds at a time (scheduler, monitor)."""

    def __init__(self, db: Database, clock: Clock) -> None:
        self._db = db
        self._clock = clock

    async def hold(self, name: str, holder: str, ttl: timedelta) -> int | None:
        """Take the duty (absent or expired) or keep it (``holder`` has it) until ``now + ttl``.

        The epoch, which grows whenever the holder changes; None while another holds it.
        """
        now = self._clock.now()
        values = {"name": name, "holder": holder, "epoch": 1, "expires_at": now + ttl}
        mine = leaders.c.holder == holder
        async with self._db.begin() as conn:
            insert = insert_for(conn, leaders).values(**values)
            stmt = insert.on_conflict_do_update(
                index_elements=[leaders.c.name],
                set_={
                    "holder": insert.excluded.holder,
                    "epoch": sa.case((mine, leaders.c.epoch), else_=leaders.c.epoch + 1),
                    "expires_at": insert.excluded.expires_at,
                },
                where=sa.or_(mine, leaders.c.expires_at <= now),
            ).returning(leaders.c.epoch)
            epoch = (await conn.execute(stmt)).scalar()
        return int(epoch) if epoch is not None else None

    async def resign(self, name: str, holder: str) -> None:
        """Let the duty go at once (a clean stop), if ``holder`` has it."""
        now = self._clock.now()
        stmt = (
            leaders.update()
            .where(leaders.c.name == name, leaders.c.holder == holder, leaders.c.expires_at > now)
            .values(expires_at=now)
        )
        async with self._db.begin() as conn:
            await conn.execute(stmt)

    async def current(self, name: str) -> tuple[str, int, datetime] | None:
        """``(holder, epoch, expires_at)``, live or not; None when never held."""
        query = sa.select(leaders.c.holder, leaders.c.epoch, leaders.c.expires_at).where(
            leaders.c.name == name
        )
        async with self._db.begin() as conn:
            row = (await conn.execute(query)).first()
        return (row.holder, int(row.epoch), row.expires_at) if row else None
