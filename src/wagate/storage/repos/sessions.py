"""Session rows: what the API provisions and what the runtime reports."""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from dataclasses import fields
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import RowMapping
from sqlalchemy.exc import IntegrityError

from wagate.clock import Clock
from wagate.domain.event import Announce
from wagate.domain.lease import Fences
from wagate.domain.session import (
    CLEAR_QR,
    DisconnectKind,
    RecordsChanges,
    Session,
    SessionChange,
    SessionState,
    Uplink,
    state_columns,
)
from wagate.errors import Conflict, NotFound
from wagate.ids import check_session_id
from wagate.storage.db import Database
from wagate.storage.fencing import Fencing
from wagate.storage.outbox import Outbox
from wagate.storage.tables import session_leases as leases
from wagate.storage.tables import sessions as t

_FIELDS = frozenset(f.name for f in fields(Session))


def _to_session(row: RowMapping) -> Session:
    data = {k: v for k, v in row.items() if k in _FIELDS}
    data["status"] = SessionState(data["status"])
    kind = data.get("disconnect_kind")
    data["disconnect_kind"] = DisconnectKind(kind) if kind else None
    data["uplink"] = Uplink(data.get("uplink") or Uplink.FLEET)
    return Session(**data)


class SessionRepo(RecordsChanges):
    """Reads and writes ``sessions``; every write stamps ``updated_at``.

    A runner's changes are written with :meth:`record` (and its ``record_*``
    forms): the row and the change's outbox events (``announce(change)``,
    see :mod:`wagate.webhooks.events`) commit in one transaction, so a state
    is never recorded without its events, nor an event without its state.

    With ``fences`` (a worker of a fleet), those runner's writes are owner-only:
    each carries the session's fencing token and raises :class:`StaleLease`,
    writing nothing, when this process no longer holds the session's lease.
    The operator's writes (:meth:`create`, :meth:`update`, :meth:`delete`, …)
    are never fenced. Without ``fences`` (the all-in-one gateway) nothing is.
    """

    def __init__(
        self,
        db: Database,
        clock: Clock,
        *,
        outbox: Outbox | None = None,
        announce: Announce[SessionChange] | None = None,
        fences: Fences | None = None,
    ) -> None:
        self._db = db
        self._clock = clock
        self._outbox = outbox
        self._announce = announce
        self._fencing = Fencing(fences)

    async def create(
        self,
        session_id: str,
        *,
        engine: str,
        worker_id: str | None = None,
        phone: str | None = None,
        proxy: str | None = None,
        user_id: str | None = None,
        session_name: str | None = None,
        uplink: Uplink = Uplink.FLEET,
        phone_limit: int = 1,
    ) -> Session:
        """A new session row; a Conflict when the id exists, or when ``phone`` already has
        ``phone_limit`` sessions (checked with the insert, so provisions that race agree)."""
        now = self._clock.now()
        values = {
            "id": session_id,
            "status": SessionState.CREATED.value,
            "engine": engine,
            "worker_id": worker_id,
            "phone": phone,
            "proxy": proxy,
            "user_id": user_id,
            "session_name": session_name,
            "uplink": uplink.value,
            "created_at": now,
            "updated_at": now,
        }
        try:
            async with self._db.begin() as conn:
                if phone is not None and conn.dialect.name == "postgresql":
                    # one phone's inserts one at a time (SQLite has one writer already)
                    lock = sa.text("SELECT pg_advisory_xact_lock(hashtext(:key))")
                    await conn.execute(lock, {"key": f"wagate:phone:{phone}"})
                await conn.execute(t.insert().values(**values))
                if phone is not None:
                    holders = await self._holders(conn, phone)
                    if len(holders) > phone_limit:
                        raise phone_full(
                            phone, phone_limit, [h for h in holders if h != session_id]
                        )
        except IntegrityError:
            raise await self._conflict(session_id, phone) from None
        created = await self.get(session_id)
        assert created is not None
        return created

    async def _conflict(self, session_id: str, phone: str | None) -> Conflict:
        """The unique rule an insert broke: the id."""
        return Conflict(f"session {session_id!r} already exists")

    @staticmethod
    async def _holders(conn: Any, phone: str) -> list[str]:
        query = (
            sa.select(t.c.id)
            .where(sa.or_(t.c.phone == phone, t.c.phone_number == phone))
            .order_by(t.c.created_at, t.c.id)
        )
        return list((await conn.execute(query)).scalars())

    async def sessions_of_phone(self, phone: str) -> list[str]:
        """The ids of the sessions provisioned for, or linked to, ``phone``, oldest first."""
        async with self._db.begin() as conn:
            return await self._holders(conn, phone)

    async def get(self, session_id: str) -> Session | None:
        async with self._db.begin() as conn:
            row = (await conn.execute(t.select().where(t.c.id == session_id))).mappings().first()
        return _to_session(row) if row else None

    async def require(self, session_id: str) -> Session:
        """The session; :class:`NotFound` when there is none (the id checked first)."""
        check_session_id(session_id)
        session = await self.get(session_id)
        if session is None:
            raise NotFound(f"session {session_id!r} not found")
        return session

    async def find(
        self,
        *,
        worker_id: str | None = None,
        states: Iterable[SessionState] | None = None,
        uplink: Uplink | None = None,
    ) -> list[Session]:
        """``uplink``: only the sessions hosted so (None: every one)."""
        query = t.select().order_by(t.c.created_at, t.c.id)
        if uplink is not None:
            query = query.where(t.c.uplink == uplink.value)
        if worker_id is not None:
            query = query.where(t.c.worker_id == worker_id)
        if states is not None:
            query = query.where(t.c.status.in_([s.value for s in states]))
        async with self._db.begin() as conn:
            rows = (await conn.execute(query)).mappings().all()
        return [_to_session(r) for r in rows]

    async def find_by_phone(self, phone: str) -> Session | None:
        query = t.select().where(sa.or_(t.c.phone == phone, t.c.phone_number == phone)).limit(1)
        async with self._db.begin() as conn:
            row = (await conn.execute(query)).mappings().first()
        return _to_session(row) if row else None

    async def delete(self, session_id: str) -> bool:
        async with self._db.begin() as conn:
            result = await conn.execute(t.delete().where(t.c.id == session_id))
        return bool(result.rowcount)

    async def update(self, session_id: str, **values: Any) -> None:
        """Set columns that report no change of the session (its worker, its proxy, …)."""
        await self._write(session_id, values, None, fenced=False)

    async def record(self, change: SessionChange, **columns: Any) -> None:
        """Write a runner's change: its state (and seed 000's booleans), ``columns``, its events."""
        values = {**state_columns(change.state), **columns}
        await self._write(change.session_id, values, change, fenced=True)

    async def _write(
        self,
        session_id: str,
        values: dict[str, Any],
        change: SessionChange | None,
        *,
        fenced: bool,
    ) -> None:
        fence = self._fencing.fence(session_id) if fenced else None
        values["updated_at"] = self._clock.now()
        where = [t.c.id == session_id, *self._fencing.where(fence)]
        async with self._db.begin() as conn:
            result = await conn.execute(t.update().where(*where).values(**values))
            if not result.rowcount:
                await self._fencing.confirm(conn, fence)  # a missing row is no error
                return
            if change is not None and self._announce and self._outbox:
                await self._outbox.write_in(conn, self._announce(change))

    async def record_report(
        self,
        change: SessionChange,
        *,
        same: Collection[SessionState],
        match: Mapping[str, Any] | None = None,
        **columns: Any,
    ) -> bool:
        """Apply a worker's report of ``change``, as :meth:`record` would; whether it was applied.

        The record is the truth: nothing is written when the row was updated
        after ``change.at`` (a fresher write), nor when it already says what
        the report says (its state in ``same`` and each ``match`` column
        equal). Applied, the row's ``updated_at`` is ``change.at``: a report
        made in the same instant after it still applies.
        """
        values = {**state_columns(change.state), **columns, "updated_at": change.at}
        told: list[sa.ColumnElement[bool]] = [t.c.status.in_([s.value for s in same])]
        told += [t.c[name].is_not_distinct_from(value) for name, value in (match or {}).items()]
        query = t.update().where(
            t.c.id == change.session_id, t.c.updated_at <= change.at, sa.not_(sa.and_(*told))
        )
        async with self._db.begin() as conn:
            result = await conn.execute(query.values(**values))
            applied = bool(result.rowcount)
            if applied and self._announce and self._outbox:
                await self._outbox.write_in(conn, self._announce(change))
        return applied

    async def set_last_ping(self, session_id: str, at: datetime) -> bool:
        """Seed 004's ``lastPing``, forward only; False when the session does not exist.

        A ping is liveness, not a change of the record: ``updated_at`` stays.
        """
        newer = sa.or_(t.c.last_ping_at.is_(None), t.c.last_ping_at < at)
        async with self._db.begin() as conn:
            result = await conn.execute(
                t.update().where(t.c.id == session_id, newer).values(last_ping_at=at)
            )
            if result.rowcount:
                return True
            found = await conn.execute(sa.select(t.c.id).where(t.c.id == session_id))
            return found.first() is not None

    async def expire_qrs(self, now: datetime) -> list[str]:
        """Seed 000's sweep: clear every QR whose ``qr_expires_at`` has passed."""
        expired = sa.and_(t.c.qr.is_not(None), t.c.qr_expires_at < now)
        async with self._db.begin() as conn:
            ids = list((await conn.execute(sa.select(t.c.id).where(expired))).scalars())
            if ids:
                await conn.execute(
                    t.update().where(t.c.id.in_(ids), expired).values(updated_at=now, **CLEAR_QR)
                )
        return ids

    async def owners(self, session_id: str | None = None) -> dict[str, str]:
        """Who holds each live lease (``session_leases``): session id → worker id.

        Read only, for mirrors (Redis's ``session:<id>:lock``); the leases are
        written by their own repository. ``session_id`` narrows it to one session.
        """
        live = sa.and_(leases.c.worker_id.is_not(None), leases.c.expires_at > self._clock.now())
        query = sa.select(leases.c.session_id, leases.c.worker_id).where(live)
        if session_id is not None:
            query = query.where(leases.c.session_id == session_id)
        async with self._db.begin() as conn:
            rows = (await conn.execute(query)).all()
        return {sid: worker for sid, worker in rows}

    async def count_by_state(self, worker_id: str | None = None) -> dict[SessionState, int]:
        query = sa.select(t.c.status, sa.func.count()).group_by(t.c.status)
        if worker_id is not None:
            query = query.where(t.c.worker_id == worker_id)
        async with self._db.begin() as conn:
            rows = (await conn.execute(query)).all()
        return {SessionState(status): int(n) for status, n in rows}


def phone_full(phone: str, limit: int, holders: list[str]) -> Conflict:
    """409 ``phone_registered``: the phone has its ``limit`` sessions already."""
    if limit == 1 and holders:
        return Conflict(
            f"phone +{phone} is already registered to session {holders[0]!r}",
            code="phone_registered",
        )
    names = ", ".join(repr(h) for h in holders[:limit])
    return Conflict(
        f"phone +{phone} already has {limit} sessions ({names}): MAX_SESSIONS_PER_PHONE is {limit}",
        code="phone_registered",
    )
