"""What an edge worker tells its worker-proxy, delivered whatever the worker-proxy's mood.

:class:`Courier` posts the spooled ``/inbound`` and ``/mark-sent`` bodies
(``storage/edge_spool.py``), oldest first and one at a time per lane (one
instance's posts to one path), so a worker-proxy sees an instance's messages
in the order they happened, and a path that keeps failing holds up no other
(a broken ``/mark-sent`` does not stop what is received). A post
the worker-proxy does not answer (or answers 5xx, 408, 429) is tried again
after a backoff with jitter, for as long as it takes: the post stays on disk
meanwhile, across restarts. One it refuses (any other 4xx) is logged, audited
and dropped: it would be refused forever.

:class:`StatusReports` sends ``/update-status``: only an instance's latest
status matters, so a newer one replaces one not yet sent (a QR that rotated
twice while the worker-proxy was down is reported once). They are retried the
same way, in memory: a restarted worker reports afresh. A 404, 409 or 410 means
the instance is not this worker's to run (deleted, stopped, or another
worker's): ``on_refused`` hears it.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable
from typing import Any

from wagate.backoff import Backoff
from wagate.clock import Clock
from wagate.domain.audit import AuditEvent
from wagate.errors import StorageError
from wagate.lifecycle import Service
from wagate.storage.edge_spool import EdgeSpool, Post
from wagate.uplinks.edge import EdgeClient, EdgeRefused, EdgeUnavailable
from wagate.worker.record import AuditLog

log = logging.getLogger(__name__)

Refused = Callable[[str, EdgeRefused], Awaitable[None]]
NOT_OURS = frozenset({404, 409, 410})  # the instance is gone, or someone else's


class Courier(Service):
    """Delivers the spool's posts; ``wake(instance, path)`` after adding one."""

    def __init__(
        self,
        spool: EdgeSpool,
        client: EdgeClient,
        *,
        audit: AuditLog,
        clock: Clock,
        retry: Backoff,
        rng: random.Random | None = None,
        stop_timeout_s: float = 5.0,
    ) -> None:
        super().__init__("edge-courier", stop_timeout_s=stop_timeout_s)
        self._spool = spool
        self._client = client
        self._audit = audit
        self._clock = clock
        self._retry = retry
        self._rng = rng or random.Random()
        self._running: dict[tuple[str, str], asyncio.Task[Any]] = {}
        self._closing = asyncio.Event()
        self.delivered = 0
        self.dropped = 0

    async def open(self) -> None:
        for instance, path in await self._spool.pending_lanes():  # left from before a restart
            self.wake(instance, path)

    async def stop_intake(self) -> None:
        self._closing.set()  # a delivery waiting out a backoff ends; its post stays spooled

    def wake(self, instance: str, path: str) -> None:
        lane = (instance, path)
        if self._closing.is_set() or lane in self._running:
            return
        self._running[lane] = self.tasks.spawn(self._deliver(lane), f"deliver:{instance}{path}")

    async def _deliver(self, lane: tuple[str, str]) -> None:
        try:
            await self._deliver_lane(lane)
        finally:  # with no await since the lane was found empty: a wake after this spawns anew
            if self._running.get(lane) is asyncio.current_task():
                del self._running[lane]

    async def _deliver_lane(self, lane: tuple[str, str]) -> None:
        failures = 0
        while not self._closing.is_set():
            try:
                post = await self._spool.oldest(*lane)
                if post is None:
                    return
                if await self._post(post):
                    failures = 0
                    continue
            except StorageError as exc:
                log.error("edge spool: %s", exc.message)
            failures += 1
            await self._clock.wait(self._closing, self._retry.delay(failures - 1, self._rng))

    async def _post(self, post: Post) -> bool:
        """Deliver one post; False when it stays for a later try."""
        try:
            await self._client.post(post.path, post.body)
        except EdgeUnavailable as exc:
            log.warning(
                "%s of %s not taken (try %d): %s", post.path, post.instance, post.attempts + 1, exc
            )
            await self._spool.failed_attempt(post.seq, exc.message)
            return False
        except EdgeRefused as exc:
            await self._drop(post, exc)
            return True
        await self._spool.done(post.seq)
        self.delivered += 1
        return True

    async def _drop(self, post: Post, exc: EdgeRefused) -> None:
        self.dropped += 1
        log.error("%s of %s refused, dropped: %s", post.path, post.instance, exc.message)
        data = {"code": "EDGE_REFUSED", "path": post.path, "key": post.key, "msg": exc.message}
        try:
            await self._audit.add(post.instance, AuditEvent.ERROR, data)
        finally:
            await self._spool.done(post.seq)


class StatusReports(Service):
    """``/update-status``, latest per instance wins; see the module docstring."""

    def __init__(
        self,
        client: EdgeClient,
        *,
        clock: Clock,
        retry: Backoff,
        on_refused: Refused,
        on_sent: Callable[[str], None] = lambda _instance: None,
        rng: random.Random | None = None,
        stop_timeout_s: float = 5.0,
    ) -> None:
        super().__init__("edge-status", stop_timeout_s=stop_timeout_s)
        self._client = client
        self._clock = clock
        self._retry = retry
        self._on_refused = on_refused
        self._on_sent = on_sent  # a call about the instance was taken (its claim renewed)
        self._rng = rng or random.Random()
        self._latest: dict[str, dict[str, Any]] = {}
        self._running: dict[str, asyncio.Task[Any]] = {}
        self._closing = asyncio.Event()

    def report(self, instance: str, body: dict[str, Any]) -> None:
        self._latest[instance] = body
        if instance not in self._running:
            self._running[instance] = self.tasks.spawn(
                self._deliver(instance), f"status:{instance}"
            )

    def waiting(self) -> int:
        return len(self._latest)

    async def stop_intake(self) -> None:
        self._closing.set()

    async def drain(self) -> None:
        """The last reports (a stopping worker's ``DISCONNECTED``) get one more try each."""
        if self._running:
            await asyncio.wait(list(self._running.values()))

    async def _deliver(self, instance: str) -> None:
        try:
            await self._deliver_latest(instance)
        finally:  # with no await since nothing was left to send: a report after this spawns anew
            if self._running.get(instance) is asyncio.current_task():
                del self._running[instance]

    async def _deliver_latest(self, instance: str) -> None:
        failures = 0
        while (body := self._latest.get(instance)) is not None:
            if await self._send(instance, body, last_try=self._closing.is_set()):
                failures = 0
                continue
            failures += 1
            await self._clock.wait(self._closing, self._retry.delay(failures - 1, self._rng))

    async def _send(self, instance: str, body: dict[str, Any], *, last_try: bool) -> bool:
        """One try; True when the report is done with (taken, or refused for good)."""
        try:
            await self._client.update_status(body)
        except EdgeUnavailable as exc:
            log.warning("status of %s not taken: %s", instance, exc.message)
            if last_try:
                self._settle(instance, body)
            return last_try
        except EdgeRefused as exc:
            self._settle(instance, body)
            log.warning("status of %s refused: %s", instance, exc.message)
            if exc.status in NOT_OURS:
                await self._on_refused(instance, exc)
            return True
        self._settle(instance, body)
        self._on_sent(instance)
        return True

    def _settle(self, instance: str, body: dict[str, Any]) -> None:
        if self._latest.get(instance) is body:  # a newer report stays to be sent
            del self._latest[instance]
