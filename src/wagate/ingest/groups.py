"""Group discovery (seed 003 §6): upsert names and counts, never touch ``monitor``, audit.

Each group's row, its ``group_rename`` audit entry and its ``group.*`` event
are written in one transaction by :meth:`GroupRepo.upsert`: a crash leaves
all of them or none.
"""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict

from wagate.clock import Clock
from wagate.domain.audit import AuditEvent
from wagate.engine.base import GroupEvent, Link
from wagate.storage.repos.audit import AuditRepo
from wagate.storage.repos.groups import GroupRepo
from wagate.storage.sanitize import clean_text
from wagate.webhooks.events import group_changes

log = logging.getLogger(__name__)


class GroupSync:
    """Keeps a session's groups: discovery passes and live changes, one at a time."""

    def __init__(self, groups: GroupRepo, audit: AuditRepo, clock: Clock) -> None:
        self.groups = groups
        self.audit = audit
        self.clock = clock
        # one session's upserts run one at a time: a discovery pass and a live rename (or two
        # passes) reading the same old name would otherwise both record the rename
        self._locks: defaultdict[str, asyncio.Lock] = defaultdict(asyncio.Lock)

    async def discover(self, session_id: str, link: Link) -> int:
        """Fetch the account's groups (names only, no member lists) and upsert them."""
        found = await link.groups()
        for info in found:
            await self._upsert(session_id, info.jid, info.name, info.participants)
        await self.audit.add(session_id, AuditEvent.DISCOVERY, {"count": len(found)})
        log.info("session %s: discovered %d group(s)", session_id, len(found))
        return len(found)

    async def on_event(self, session_id: str, event: GroupEvent) -> None:
        """A live group change: a new group, or a rename."""
        if event.change not in ("created", "renamed") or event.name is None:
            return
        await self._upsert(session_id, event.jid, event.name)

    async def _upsert(
        self, session_id: str, jid: str, name: str | None, participants: int | None = None
    ) -> None:
        clean_name = clean_text(name) if name is not None else None
        announce = group_changes(self.clock.now())
        async with self._locks[session_id]:
            await self.groups.upsert(session_id, jid, clean_name, participants, announce=announce)
