"""``groups``: discovered per session; ``monitor`` belongs to the operator."""

from __future__ import annotations

from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from wagate.clock import Clock
from wagate.domain.audit import AuditEvent
from wagate.domain.event import Announce
from wagate.domain.group import Group, GroupUpsert
from wagate.storage.db import Database
from wagate.storage.outbox import Outbox
from wagate.storage.repos.audit import AuditRepo
from wagate.storage.tables import groups as t
from wagate.storage.upsert import insert_for


class GroupRepo:
    """Reads and writes ``groups``; an upsert records its audit entry and events with the row."""

    def __init__(self, db: Database, clock: Clock, *, outbox: Outbox | None = None) -> None:
        self._db = db
        self._clock = clock
        self._outbox = outbox
        self._audit = AuditRepo(db, clock)

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
        announce: Announce[GroupUpsert] | None = None,
    ) -> GroupUpsert:
        """Insert or update name/participants; never touches ``monitor``.

        A rename is audited (``group_rename``) and ``announce(upsert)``'s events
        recorded in the same transaction: a crash leaves all of them or none.
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
            result = GroupUpsert(
                Group(**row), created=before is None, renamed_from=old if renamed else None
            )
            await self._record_in(conn, result, announce)
        return result

    async def _record_in(
        self, conn: AsyncConnection, upsert: GroupUpsert, announce: Announce[GroupUpsert] | None
    ) -> None:
        group = upsert.group
        if upsert.renamed_from is not None:
            change = {
                "from": upsert.renamed_from,
                "to": group.name,
                "wa_group_id": group.wa_group_id,
            }
            await self._audit.add_in(conn, group.session_id, AuditEvent.GROUP_RENAME, change)
        if announce is not None and self._outbox is not None:
            await self._outbox.write_in(conn, announce(upsert))

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
