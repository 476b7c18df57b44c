"""``media``: one row per distinct file, keyed by its sha256 (seed 003 §7)."""

from __future__ import annotations

from wagate.clock import Clock
from wagate.domain.media import Media
from wagate.storage.db import Database
from wagate.storage.tables import media as t
from wagate.storage.upsert import insert_ignore


class MediaRepo:
    def __init__(self, db: Database, clock: Clock) -> None:
        self._db = db
        self._clock = clock

    async def by_sha256(self, sha256: str) -> Media | None:
        async with self._db.begin() as conn:
            row = (await conn.execute(t.select().where(t.c.sha256 == sha256))).mappings().first()
        return Media(**row) if row else None

    async def get(self, media_id: int) -> Media | None:
        async with self._db.begin() as conn:
            row = (await conn.execute(t.select().where(t.c.id == media_id))).mappings().first()
        return Media(**row) if row else None

    async def insert_if_absent(
        self,
        *,
        sha256: str,
        mime: str,
        size: int,
        storage_path: str,
        width: int | None = None,
        height: int | None = None,
        duration_s: float | None = None,
    ) -> Media:
        """Record the file; if another writer got there first, return its row."""
        values = {
            "sha256": sha256,
            "mime": mime,
            "bytes": size,
            "width": width,
            "height": height,
            "duration_s": duration_s,
            "storage_path": storage_path,
            "created_at": self._clock.now(),
        }
        async with self._db.begin() as conn:
            await insert_ignore(conn, t, values, ["sha256"])
        found = await self.by_sha256(sha256)
        assert found is not None
        return found
