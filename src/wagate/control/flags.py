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

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from datetime import datetime
from types import TracebackType
from typing import Self

from wagate.clock import Clock
from wagate.domain.audit import AuditEvent
from wagate.domain.flag import Flag
from wagate.domain.session import Unlink
from wagate.storage.repos.audit import AuditRepo
from wagate.storage.repos.flags import FlagRepo
from wagate.worker.host import Worker

log = logging.getLogger(__name__)

Discover = Callable[[str], Awaitable[object]]


class FlagWatcher:
    """A service: entering starts the poll loop, leaving stops it."""

    def __init__(
        self,
        flags: FlagRepo,
        worker: Worker,
        audit: AuditRepo,
        clock: Clock,
        *,
        interval_s: float,
        discover: Discover,
    ) -> None:
        self.flags = flags
        self.worker = worker
        self.audit = audit
        self.clock = clock
        self.interval_s = interval_s
        self.discover = discover
        self.handled: dict[tuple[str, Flag], datetime] = {}
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Self:
        self._task = asyncio.create_task(self._loop(), name="flag-watcher")
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _loop(self) -> None:
        while True:
            try:
                await self.poll()
            except Exception:
                log.exception("runtime flag poll failed")
            await self.clock.sleep(self.interval_s)

    async def poll(self) -> int:
        """One pass; returns how many flags were acted on."""
        running = self.worker.running()
        if not running:
            return 0
        acted = 0
        for (session_id, flag), at in sorted((await self.flags.times(running)).items()):
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
            if self.worker.link(session_id) is None:
                return False  # not connected yet: handled on a later poll
            await self.discover(session_id)
            return True
        if flag is Flag.REFRESH_QR:
            await self.flags.clear(session_id, flag)
            await self.worker.refresh_qr(session_id)
            return True
        unlinked = await self.worker.logout(session_id)
        await self.worker.stop(session_id, reason="disconnect requested")
        await self.flags.clear(session_id, flag)
        if unlinked is not Unlink.LIVE:  # over the live link, its runner recorded the disconnect
            await self.audit.add(session_id, AuditEvent.DISCONNECT, {"reason": "requested"})
        return True
