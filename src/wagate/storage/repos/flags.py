"""``runtime_flags``: seed 003's UI → worker signals, ``{"at": ISO}`` under a key.

A flag row with ``session_id = ''`` addresses every session (the seed's single
session deployments write it that way).
"""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa

from wagate.clock import Clock
from wagate.domain.flag import EVERY_SESSION, Flag, flag_time
from wagate.storage.db import Database
from wagate.storage.tables import runtime_flags as t
from wagate.storage.upsert import insert_for


class FlagRepo:
    def __init__(self, db: Database, clock: Clock) -> None:
        self._db = db
        self._clock = clock

    async def set(self, session_id: str, key: Flag, at: datetime | None = None) -> datetime:
        at = at or self._clock.now()
        value = {"at": at.isoformat()}
        now = self._clock.now()
        async with self._db.begin() as conn:
            stmt = insert_for(conn, t).values(
                session_id=session_id, key=key.value, value=value, updated_at=now
            )
            await conn.execute(
                stmt.on_conflict_do_update(
                    index_elements=["session_id", "key"], set_={"value": value, "updated_at": now}
                )
            )
        return at

    async def clear(self, session_id: str, key: Flag) -> None:
        async with self._db.begin() as conn:
            await conn.execute(
                t.delete().where(t.c.session_id.in_([session_id, EVERY_SESSION]), t.c.key == key)
            )

    async def times(self, session_ids: list[str]) -> dict[tuple[str, Flag], datetime]:
        """The newest ``at`` of each flag for each session, counting the every-session rows."""
        query = t.select().where(
            t.c.session_id.in_([*session_ids, EVERY_SESSION]),
            t.c.key.in_([f.value for f in Flag]),
        )
        async with self._db.begin() as conn:
            rows = (await conn.execute(query)).mappings().all()
        found: dict[tuple[str, Flag], datetime] = {}
        for row in rows:
            at = flag_time(row["value"])
            if at is None:
                continue
            targets = session_ids if row["session_id"] == EVERY_SESSION else [row["session_id"]]
            for sid in targets:
                key = (sid, Flag(row["key"]))
                if key not in found or at > found[key]:
                    found[key] = at
        return found

    async def count(self) -> int:
        async with self._db.begin() as conn:
            return int(await conn.scalar(sa.select(sa.func.count()).select_from(t)) or 0)
