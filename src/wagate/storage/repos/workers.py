"""``workers``: the fleet as the control plane knows it (seed 002), and its health monitor's switch.

A worker id is held by one process at a time, its *instance*. A new instance
taking an id over bumps the fencing token of every lease held under that id in
the same transaction (docs/cluster.md, rule 5), so the old process's writes
are refused from then on.
"""

from __future__ import annotations

import builtins
from dataclasses import dataclass, fields
from datetime import datetime, timedelta
from typing import Any, Final

import sqlalchemy as sa
from sqlalchemy.engine import RowMapping
from sqlalchemy.ext.asyncio import AsyncConnection

from wagate.clock import Clock
from wagate.domain.flag import EVERY_SESSION, flag_time
from wagate.domain.worker import Worker, WorkerStatus
from wagate.errors import Conflict, NotFound
from wagate.storage.db import Database
from wagate.storage.tables import runtime_flags, session_leases
from wagate.storage.tables import workers as t
from wagate.storage.upsert import insert_for

_FIELDS = frozenset(f.name for f in fields(Worker))
_ALIVE = (WorkerStatus.LIVE.value, WorkerStatus.DRAINING.value)

ANY_INSTANCE: Final = "*"
"""``register(replacing=ANY_INSTANCE)``: take the id over from whichever instance holds it."""


def _to_worker(row: RowMapping) -> Worker:
    data = {k: v for k, v in row.items() if k in _FIELDS}
    data["status"] = WorkerStatus(data["status"])
    return Worker(**data)


def _kept_draining(status: WorkerStatus) -> Any:
    """``status``, except that a draining worker stays draining until it registers again."""
    return sa.case((t.c.status == WorkerStatus.DRAINING.value, t.c.status), else_=status.value)


class WorkerRepo:
    """Reads and writes ``workers``; every write stamps ``updated_at``."""

    def __init__(self, db: Database, clock: Clock) -> None:
        self._db = db
        self._clock = clock

    async def register(
        self,
        worker_id: str,
        *,
        endpoint: str,
        max_sessions: int,
        description: str,
        instance: str,
        replacing: str | None = ANY_INSTANCE,
    ) -> Worker:
        """Insert or update the worker, live again, its heartbeat now.

        ``replacing`` guards a take-over decided on an earlier read: the id may
        be taken from that instance only (None: only when no row exists; the
        default, :data:`ANY_INSTANCE`: from whichever holds it), and a row held
        by any other instance is a :class:`Conflict` (``worker_id_in_use``).
        The same instance registering again changes no lease; a new one bumps
        the epoch of every lease held under the id.
        """
        now = self._clock.now()
        values = {
            "endpoint": endpoint,
            "max_sessions": max_sessions,
            "description": description,
            "status": WorkerStatus.LIVE.value,
            "instance": instance,
            "last_heartbeat_at": now,
            "updated_at": now,
        }
        async with self._db.begin() as conn:
            if not await self._update(conn, worker_id, values, t.c.instance == instance):
                await self._take_over_or_insert(conn, worker_id, values, replacing, now)
            row = await self._row(conn, worker_id)
        assert row is not None
        return _to_worker(row)

    async def _take_over_or_insert(
        self,
        conn: AsyncConnection,
        worker_id: str,
        values: dict[str, Any],
        replacing: str | None,
        now: datetime,
    ) -> None:
        if replacing is not None:
            held_by = t.c.instance != values["instance"]
            if replacing != ANY_INSTANCE:
                held_by = t.c.instance == replacing
            if await self._update(conn, worker_id, values | {"registered_at": now}, held_by):
                await conn.execute(
                    session_leases.update()
                    .where(session_leases.c.worker_id == worker_id)
                    .values(epoch=session_leases.c.epoch + 1, updated_at=now)
                )
                return
        insert = insert_for(conn, t).values(id=worker_id, registered_at=now, **values)
        insert = insert.on_conflict_do_nothing(index_elements=["id"]).returning(t.c.id)
        if (await conn.execute(insert)).scalar() is None:
            raise Conflict(
                f"worker id {worker_id!r} was just registered by another process",
                code="worker_id_in_use",
            )

    async def heartbeat(
        self,
        worker_id: str,
        *,
        status: WorkerStatus,
        session_count: int | None = None,
        cpu_usage: float | None = None,
        memory_usage: float | None = None,
        uptime_s: int | None = None,
        message_count: int | None = None,
    ) -> Worker:
        """Record a heartbeat and its figures (None: unchanged); NotFound for an unknown id.

        A draining worker stays draining (only a new registration makes it live
        again); a dead one that beats again is live.
        """
        now = self._clock.now()
        figures = {
            "session_count": session_count,
            "cpu_usage": cpu_usage,
            "memory_usage": memory_usage,
            "uptime_s": uptime_s,
            "message_count": message_count,
        }
        values: dict[str, Any] = {k: v for k, v in figures.items() if v is not None}
        values |= {"status": _kept_draining(status), "last_heartbeat_at": now, "updated_at": now}
        async with self._db.begin() as conn:
            if not await self._update(conn, worker_id, values):
                raise NotFound(f"worker {worker_id!r} is not registered; register it first")
            row = await self._row(conn, worker_id)
        assert row is not None
        return _to_worker(row)

    async def touch(self, worker_id: str, instance: str) -> bool:
        """Heartbeat now, only while ``instance`` still holds the id.

        False tells a process that its id was taken over (or removed): it must stop.
        """
        now = self._clock.now()
        values = {
            "status": _kept_draining(WorkerStatus.LIVE),
            "last_heartbeat_at": now,
            "updated_at": now,
        }
        async with self._db.begin() as conn:
            return await self._update(conn, worker_id, values, t.c.instance == instance)

    async def get(self, worker_id: str) -> Worker | None:
        async with self._db.begin() as conn:
            row = await self._row(conn, worker_id)
        return _to_worker(row) if row else None

    async def list(self) -> builtins.list[Worker]:
        async with self._db.begin() as conn:
            rows = (await conn.execute(t.select().order_by(t.c.id))).mappings().all()
        return [_to_worker(r) for r in rows]

    async def delete(self, worker_id: str) -> bool:
        async with self._db.begin() as conn:
            result = await conn.execute(t.delete().where(t.c.id == worker_id))
        return bool(result.rowcount)

    async def set_status(self, worker_id: str, status: WorkerStatus) -> Worker | None:
        """Set the status (an operator's drain, say); None for an unknown id."""
        async with self._db.begin() as conn:
            values = {"status": status.value, "updated_at": self._clock.now()}
            if not await self._update(conn, worker_id, values):
                return None
            row = await self._row(conn, worker_id)
        return _to_worker(row) if row else None

    async def mark_dead(self, silent_for: timedelta) -> builtins.list[str]:
        """Live or draining workers whose last heartbeat is older than ``silent_for`` → dead."""
        now = self._clock.now()
        query = (
            t.update()
            .where(t.c.status.in_(_ALIVE), t.c.last_heartbeat_at < now - silent_for)
            .values(status=WorkerStatus.DEAD.value, updated_at=now)
            .returning(t.c.id)
        )
        async with self._db.begin() as conn:
            ids = (await conn.execute(query)).scalars().all()
        return sorted(ids)

    async def live(self, fresh_within: timedelta) -> builtins.list[Worker]:
        """Live (not draining, not dead) workers heard from within ``fresh_within``."""
        since = self._clock.now() - fresh_within
        query = (
            t.select()
            .where(t.c.status == WorkerStatus.LIVE.value, t.c.last_heartbeat_at >= since)
            .order_by(t.c.id)
        )
        async with self._db.begin() as conn:
            rows = (await conn.execute(query)).mappings().all()
        return [_to_worker(r) for r in rows]

    @staticmethod
    async def _row(conn: AsyncConnection, worker_id: str) -> RowMapping | None:
        result = await conn.execute(t.select().where(t.c.id == worker_id))
        return result.mappings().first()

    @staticmethod
    async def _update(
        conn: AsyncConnection,
        worker_id: str,
        values: dict[str, Any],
        *where: sa.ColumnElement[bool],
    ) -> bool:
        result = await conn.execute(t.update().where(t.c.id == worker_id, *where).values(**values))
        return bool(result.rowcount)


# --- the health monitor's switch, one for every control replica ----------------------

_MONITOR_KEY = "fleet.health_monitor"
_CHECK_KEY = "fleet.health_check"


@dataclass(frozen=True, slots=True)
class MonitorState:
    enabled: bool
    changed_at: datetime | None  # None: never switched (the monitor is on by default)
    checked_at: datetime | None  # the last check, by whichever replica ran it
    last_dead: tuple[str, ...]  # the workers that check marked dead


class MonitorSwitch:
    """The health monitor's on/off state and its last check, kept in ``runtime_flags``.

    Stored under ``session_id = ''`` with keys of their own (seed 003's flags
    are never read from them), so every control replica agrees on it.
    """

    def __init__(self, db: Database, clock: Clock) -> None:
        self._db = db
        self._clock = clock

    async def state(self) -> MonitorState:
        query = runtime_flags.select().where(
            runtime_flags.c.session_id == EVERY_SESSION,
            runtime_flags.c.key.in_([_MONITOR_KEY, _CHECK_KEY]),
        )
        async with self._db.begin() as conn:
            rows = {r["key"]: r["value"] for r in (await conn.execute(query)).mappings()}
        switch, check = rows.get(_MONITOR_KEY) or {}, rows.get(_CHECK_KEY) or {}
        return MonitorState(
            enabled=bool(switch.get("on", True)),
            changed_at=flag_time(switch),
            checked_at=flag_time(check),
            last_dead=tuple(str(i) for i in check.get("dead", ())),
        )

    async def set(self, enabled: bool) -> None:
        await self._put(_MONITOR_KEY, {"on": enabled})

    async def checked(self, dead: builtins.list[str]) -> None:
        await self._put(_CHECK_KEY, {"dead": dead})

    async def _put(self, key: str, value: dict[str, Any]) -> None:
        now = self._clock.now()
        value = value | {"at": now.isoformat()}
        async with self._db.begin() as conn:
            stmt = insert_for(conn, runtime_flags).values(
                session_id=EVERY_SESSION, key=key, value=value, updated_at=now
            )
            await conn.execute(
                stmt.on_conflict_do_update(
                    index_elements=["session_id", "key"], set_={"value": value, "updated_at": now}
                )
            )
