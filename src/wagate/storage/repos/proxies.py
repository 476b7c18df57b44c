"""``proxies`` (seed 004's pool) and ``phone_proxies`` (each phone's sticky proxy).

A proxy's load is counted, not kept: the sessions whose ``proxy`` is its URL
and that have not come to rest for good (logged out or failed sessions free
their place). So it cannot drift from the sessions it describes.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa

from wagate.clock import Clock
from wagate.domain.proxy import Proxy, ProxyStatus
from wagate.domain.session import SessionState
from wagate.storage.db import Database
from wagate.storage.tables import phone_proxies as sticky
from wagate.storage.tables import proxies as t
from wagate.storage.tables import sessions
from wagate.storage.upsert import insert_for

_FREED = (SessionState.LOGGED_OUT.value, SessionState.FAILED.value)


class ProxyRepo:
    def __init__(self, db: Database, clock: Clock) -> None:
        self._db = db
        self._clock = clock

    async def add(self, url: str, *, label: str | None = None, source: str = "api") -> Proxy:
        """The proxy with ``url``, added if new (a known one keeps its row and status)."""
        now = self._clock.now()
        async with self._db.begin() as conn:
            stmt = insert_for(conn, t).values(
                url=url, label=label, source=source, created_at=now, updated_at=now
            )
            await conn.execute(stmt.on_conflict_do_nothing(index_elements=["url"]))
            if label is not None:
                await conn.execute(
                    t.update().where(t.c.url == url, t.c.label.is_(None)).values(label=label)
                )
        found = await self.by_url(url)
        assert found is not None
        return found

    async def all(self) -> list[Proxy]:
        return await self._select(sa.true())

    async def get(self, proxy_id: int) -> Proxy | None:
        found = await self._select(t.c.id == proxy_id)
        return found[0] if found else None

    async def by_url(self, url: str) -> Proxy | None:
        found = await self._select(t.c.url == url)
        return found[0] if found else None

    async def delete(self, proxy_id: int) -> bool:
        async with self._db.begin() as conn:
            result = await conn.execute(t.delete().where(t.c.id == proxy_id))
        return bool(result.rowcount)

    async def checked(
        self,
        proxy_id: int,
        *,
        ok: bool,
        error: str | None,
        next_check_at: datetime,
    ) -> Proxy | None:
        """A health check's outcome: active (failures reset), or bad (one more failure)."""
        now = self._clock.now()
        values: dict[str, Any] = {
            "last_checked_at": now,
            "next_check_at": next_check_at,
            "updated_at": now,
        }
        if ok:
            values |= {"status": ProxyStatus.ACTIVE.value, "last_ok_at": now, "failures": 0}
            values["last_error"] = None
        else:
            values |= {
                "status": ProxyStatus.BAD.value,
                "last_error": (error or "failed")[:1000],
                "failures": t.c.failures + 1,
            }
        async with self._db.begin() as conn:
            await conn.execute(t.update().where(t.c.id == proxy_id).values(**values))
        return await self.get(proxy_id)

    async def mark_bad(self, url: str, error: str, next_check_at: datetime) -> Proxy | None:
        """A session failed through it: bad until a check finds it healthy again."""
        now = self._clock.now()
        async with self._db.begin() as conn:
            await conn.execute(
                t.update()
                .where(t.c.url == url)
                .values(
                    status=ProxyStatus.BAD.value,
                    last_error=error[:1000],
                    failures=t.c.failures + 1,
                    next_check_at=next_check_at,
                    updated_at=now,
                )
            )
        return await self.by_url(url)

    async def due(self, now: datetime) -> list[Proxy]:
        """Proxies whose next check is due (never checked: at once)."""
        return await self._select(sa.or_(t.c.next_check_at.is_(None), t.c.next_check_at <= now))

    # --- sticky proxies ------------------------------------------------------------------

    async def sticky(self, phone: str) -> str | None:
        query = sa.select(sticky.c.proxy).where(sticky.c.phone == phone)
        async with self._db.begin() as conn:
            return (await conn.execute(query)).scalar_one_or_none()

    async def stick(self, phone: str, proxy: str, session_id: str | None) -> None:
        now = self._clock.now()
        values = {"proxy": proxy, "session_id": session_id, "updated_at": now}
        async with self._db.begin() as conn:
            stmt = insert_for(conn, sticky).values(phone=phone, **values)
            await conn.execute(stmt.on_conflict_do_update(index_elements=["phone"], set_=values))

    async def sticky_of(self, proxy: str) -> list[tuple[str, str | None]]:
        """The phones stuck to ``proxy``, with their sessions."""
        query = sa.select(sticky.c.phone, sticky.c.session_id).where(sticky.c.proxy == proxy)
        async with self._db.begin() as conn:
            return [(r.phone, r.session_id) for r in await conn.execute(query)]

    # --- plumbing ------------------------------------------------------------------------

    async def _select(self, where: sa.ColumnElement[bool]) -> list[Proxy]:
        s = sessions
        load = (
            sa.select(sa.func.count())
            .where(s.c.proxy == t.c.url, s.c.status.not_in(_FREED))
            .scalar_subquery()
        )
        query = sa.select(t, load.label("load")).where(where).order_by(t.c.id)
        async with self._db.begin() as conn:
            rows = (await conn.execute(query)).mappings().all()
        return [_to_proxy(row) for row in rows]


def _to_proxy(row: Any) -> Proxy:
    values = {k: row[k] for k in row.keys() if k != "updated_at"}
    values["status"] = ProxyStatus(values["status"])
    return Proxy(**values)
