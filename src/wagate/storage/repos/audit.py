"""``audit_log``: small, append-only records of what happened to a session."""

from __future__ import annotations

from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from wagate.clock import Clock
from wagate.domain.audit import AuditEntry, AuditEvent
from wagate.storage.db import Database
from wagate.storage.tables import audit_log as t


class AuditRepo:
    def __init__(self, db: Database, clock: Clock) -> None:
        self._db = db
        self._clock = clock

    async def add(
        self, session_id: str | None, event: AuditEvent, data: dict[str, Any] | None = None
    ) -> None:
        async with self._db.begin() as conn:
            await self.add_in(conn, session_id, event, data)

    async def add_in(
        self,
        conn: AsyncConnection,
        session_id: str | None,
        event: AuditEvent,
        data: dict[str, Any] | None = None,
    ) -> None:
        """Append an entry inside ``conn``, a transaction of the caller's."""
        values = {
            "session_id": session_id,
            "event": event.value,
            "data": data or {},
            "created_at": self._clock.now(),
        }
        await conn.execute(t.insert().values(**values))

    async def recent(
        self,
        session_id: str | None = None,
        *,
        event: str | None = None,
        limit: int = 100,
        before_id: int | None = None,
    ) -> list[AuditEntry]:
        query = t.select().order_by(t.c.id.desc()).limit(limit)
        if session_id is not None:
            query = query.where(t.c.session_id == session_id)
        if event is not None:
            query = query.where(t.c.event == event)
        if before_id is not None:
            query = query.where(t.c.id < before_id)
        async with self._db.begin() as conn:
            rows = (await conn.execute(query)).mappings().all()
        return [AuditEntry(**dict(r)) for r in rows]
