"""The runtime-flag watcher (seed 003 §4–§6): UI → worker signals polled from ``runtime_flags``.

Every ``WORKER_POLL_MS`` it reads the flags of the sessions running here and
acts on each one newer than the last it handled:

- ``fetch_groups_requested`` → group discovery;
- ``wa_refresh_qr_requested`` → a fresh QR (the link of a session waiting for a
  scan is restarted); the flag is cleared;
- ``wa_disconnect_requested`` → graceful logout, ``disconnected``; the flag is cleared and
  one ``disconnect`` row is audited (by the runner, when it was logged out over its link).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from datetime import datetime

from wagate.control.runtime import SessionRuntime
from wagate.domain.audit import AuditEvent
from wagate.domain.flag import Flag
from wagate.domain.session import SessionState, Unlink
from wagate.storage.repos.audit import AuditRepo
from wagate.storage.repos.flags import FlagRepo

log = logging.getLogger(__name__)

Discover = Callable[[str], Awaitable[object]]


class FlagWatcher:
    """Acts on flags; :meth:`poll` is one pass (run every ``WORKER_POLL_MS`` as a ``Periodic``)."""

    def __init__(
        self,
        flags: FlagRepo,
        runtime: SessionRuntime,
        audit: AuditRepo,
        *,
        discover: Discover,
    ) -> None:
        self.flags = flags
        self.runtime = runtime
        self.audit = audit
        self.discover = discover
        self.handled: dict[tuple[str, Flag], datetime] = {}

    async def poll(self) -> int:
        """One pass; returns how many flags were acted on."""
        running = await self.runtime.running()
        if not running:
            return 0
        acted = 0
        for (session_id, flag), at in sorted((await self.flags.times(list(running))).items()):
            last = self.handled.get((session_id, flag))
            if last is not None and at <= last:
                continue
            if await self._act(session_id, flag):
                self.handled[(session_id, flag)] = at
                acted += 1
        return acted

    async def _act(self, session_id: str, flag: Flag) -> bool:
        log.info("session %s: handling %s", session_id, flag)
        if flag is Flag.FETCH_GROUPS:
            if await self.runtime.state(session_id) is not SessionState.CONNECTED:
                return False  # not connected yet: handled on a later poll
            await self.discover(session_id)
            return True
        if flag is Flag.REFRESH_QR:
            await self.flags.clear(session_id, flag)
            await self.runtime.refresh_qr(session_id)
            return True
        unlinked = await self.runtime.logout(session_id)
        await self.runtime.stop(session_id, reason="disconnect requested")
        await self.flags.clear(session_id, flag)
        if unlinked is not Unlink.LIVE:  # over the live link, its runner recorded the disconnect
            await self.audit.add(session_id, AuditEvent.DISCONNECT, {"reason": "requested"})
        return True
