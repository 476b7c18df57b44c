"""Redis kept current from the record: seed 004's keys written again from PostgreSQL.

Redis is a cache (``docs/cluster.md``): :meth:`RedisMirror.rebuild` writes
every session's keys from the database and removes what no longer exists
(``wagate redis rebuild``, and a control replica's start);
:meth:`RedisMirror.on_change` is a session listener that refreshes one
session's keys and publishes the change on the bus. Redis being down never
breaks the work that made a change: the listener logs and carries on.
"""

from __future__ import annotations

import logging
from collections import Counter

from wagate.domain.session import SessionChange, change_message
from wagate.errors import StorageUnavailable
from wagate.storage.redis import Redis
from wagate.storage.repos.sessions import SessionRepo

log = logging.getLogger(__name__)


class RedisMirror:
    """Writes seed 004's view of the sessions (``wagate.storage.redis``) from their rows."""

    def __init__(self, sessions: SessionRepo, redis: Redis) -> None:
        self._sessions = sessions
        self._redis = redis

    async def rebuild(self) -> int:
        """Write every session's keys from the database; remove the keys of sessions,
        phones and proxies it no longer knows. Returns how many sessions it wrote.

        :class:`StorageUnavailable` when the database or Redis fails (the rebuild
        is idempotent: run it again). A change recorded while it runs may be
        overwritten by the row read before it; the change's listener writes it again.
        """
        sessions = await self._sessions.find()
        owners = await self._sessions.owners()
        for session in sessions:
            await self._redis.write_session(session, owner=owners.get(session.id))
        ids = {s.id for s in sessions}
        for stale in await self._redis.session_ids() - ids:
            if await self._sessions.get(stale) is None:  # not one created since the read
                await self._redis.forget_session(stale, None)
        phones = {n for s in sessions if (n := s.phone_number or s.phone)}
        for number in await self._redis.phone_numbers() - phones:
            if await self._sessions.find_by_phone(number) is None:
                await self._redis.forget_phone(number)
        await self._proxy_loads(Counter(s.proxy for s in sessions if s.proxy))
        await self._redis.mark_mirrored()  # last: a flush meanwhile is seen by the next check
        log.info("wrote the Redis keys of %d sessions", len(sessions))
        return len(sessions)

    async def keep(self) -> bool:
        """Rebuild when Redis lost the keys (flushed, restarted empty); whether it did."""
        if await self._redis.is_mirrored():
            return False
        log.warning("Redis lost its keys (flushed or restarted): rebuilding them")
        await self.rebuild()
        return True

    async def _proxy_loads(self, loads: Counter[str]) -> None:
        """Each proxy's session count; a proxy no session uses any more counts none."""
        for url in await self._redis.proxy_urls() - loads.keys():
            await self._redis.set_proxy_load(url, 0)
        for url, count in loads.items():
            await self._redis.set_proxy_load(url, count)

    async def on_change(self, change: SessionChange) -> None:
        """A session listener: rewrite the session's keys from its row, publish the change."""
        try:
            await self._refresh(change.session_id)
        except StorageUnavailable as exc:
            log.warning("could not refresh the keys of %s: %s", change.session_id, exc.message)
        try:
            await self._redis.publish_change(change_message(change))
        except StorageUnavailable as exc:
            log.warning(
                "could not publish the %s of %s: %s", change.kind, change.session_id, exc.message
            )

    async def _refresh(self, session_id: str) -> None:
        session = await self._sessions.get(session_id)
        if session is None:
            await self._redis.forget_session(session_id, None)
            return
        owners = await self._sessions.owners(session_id)
        await self._redis.write_session(session, owner=owners.get(session_id))
