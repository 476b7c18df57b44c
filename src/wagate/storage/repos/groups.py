"""``groups``: discovered per session; ``monitor`` belongs to the operator."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from wagate.clock import Clock
from wagate.domain.group import Group
from wagate.storage.db import Database
from wagate.storage.tables import groups as t
from wagate.storage.upsert import insert_for
from wagate.webhooks.events import Then


@dataclass(frozen=True, slots=True)
class Upserted:
    """What a discovery upsert did to one group."""

    group: Group
    created: bool
    renamed_from: str | None  # the old name when it changed


class GroupRepo:
    def __init__(self, db: Database, clock: Clock) -> None:
        self._db = db
        self._clock = clock

    async def get(self, session_id: str, wa_group_id: str) -> Group | None:
        query = t.select().where(t.c.session_id == session_id, t.c.wa_group_id == wa_group_id)
        async with self._db.begin() as conn:
            row = (await conn.execute(query)).mappings().first()
        return Group(**row) if row else None

    async def find(self, session_id: str, *, monitored: bool | None = None) -> list[Group]:
        query = t.select().where(t.c.session_id == session_id).order_by(t.c.name, t.c.id)
        if monitored is not None:
            query = query.where(t.c.monitor == monitored)
        async with self._db.begin() as conn:
            rows = (await conn.execute(query)).mappings().all()
        return [Group(**r) for r in rows]

    async def upsert(
        self,
        session_id: str,
        wa_group_id: str,
        name: str | None,
        participants: int | None = None,
        *,
        then: Then[Upserted] | None = None,
    ) -> Upserted:
        """Insert or update name/participants; never touches ``monitor``.

        ``then(conn, upserted)`` runs in the same transaction (the events of it).
        """
        now = self._clock.now()
        values: dict[str, Any] = {"name": name, "updated_at": now}
        if participants is not None:
            values["participants"] = participants
        async with self._db.begin() as conn:
            before = await self._row_in(conn, session_id, wa_group_id)
            stmt = insert_for(conn, t).values(
                session_id=session_id, wa_group_id=wa_group_id, created_at=now, **values
            )
            stmt = stmt.on_conflict_do_update(
                index_elements=["session_id", "wa_group_id"], set_=values
            )
            await conn.execute(stmt)
            row = await self._row_in(conn, session_id, wa_group_id)
            assert row is not None
            old = before["name"] if before else None
            renamed = before is not None and name is not None and old != name
            result = Upserted(
                Group(**row), created=before is None, renamed_from=old if renamed else None
            )
            if then is not None:
                await then(conn, result)
        return result

    @staticmethod
    async def _row_in(conn: AsyncConnection, session_id: str, wa_group_id: str) -> Any:
        query = t.select().where(t.c.session_id == session_id, t.c.wa_group_id == wa_group_id)
        return (await conn.execute(query)).mappings().first()

    async def set_monitor(self, session_id: str, wa_group_id: str, monitor: bool) -> Group | None:
        async with self._db.begin() as conn:
            await conn.execute(
                t.update()
                .where(t.c.session_id == session_id, t.c.wa_group_id == wa_group_id)
                .values(monitor=monitor, updated_at=self._clock.now())
            )
        return await self.get(session_id, wa_group_id)
