"""Seed 001's edge worker: the sessions of a worker with no database, run for a worker-proxy.

:class:`EdgeHost` ties a :class:`~wagate.worker.host.Worker` (running over a
:class:`~wagate.worker.record.MemoryRecord`) to the worker-proxy:

- every ``INSTANCE_POLL_MS``: ``GET /disconnected-instances``; each id not
  running here is started (at most ``WORKER_MAX_SESSIONS`` in all), its
  credentials in ``AUTH_DIR/<id>``;
- each change of a session → ``POST /update-status`` (``StatusReports``:
  latest wins, retried): ``CONNECTING`` with the QR as a PNG data URL (and the
  raw ``qr``), ``CONNECTED`` with the phone, ``DISCONNECTED`` with a reason;
- each received message → the edge spool → ``POST /inbound`` (``Courier``),
  spooled before the engine is told it was handled;
- each connected instance polls ``/queued-messages`` (``Sends``).

Never two connections on one account. wagate's worker-proxy claims an
instance for the worker it hands it to, for a TTL it names in
``X-Wagate-Claim-Ttl-Ms``, renewed by each call about the instance. When such
a claim could not be renewed for 2/3 of its TTL (the worker-proxy is
unreachable), this worker lets go of the instance: once the claim lapsed the
worker-proxy may hand it to another worker. A 404 or 409 about an instance
(deleted, stopped, or another worker's; or 410) lets go of it at once. A foreign
worker-proxy keeps no claims and names no TTL: nothing is let go for its
silence.
"""

from __future__ import annotations

import asyncio
import base64
import logging
from typing import Any

from wagate.clock import Clock
from wagate.domain.message import MediaRef
from wagate.domain.session import (
    Session,
    SessionChange,
    SessionState,
)
from wagate.engine.base import GroupEvent, Link, MessageEvent, ReceiptEvent
from wagate.errors import Conflict, StorageError
from wagate.lifecycle import Service
from wagate.storage.edge_spool import EdgeSpool
from wagate.uplinks.edge import EdgeClient, EdgeRefused, EdgeUnavailable
from wagate.uplinks.edge_bodies import inbound_body, status_body
from wagate.uplinks.edge_reports import Courier, StatusReports
from wagate.uplinks.edge_sends import Sends
from wagate.worker.host import Worker
from wagate.worker.record import MemoryRecord

log = logging.getLogger(__name__)

INBOUND = "/inbound"
GUARD_SHARE = 2 / 3  # of the claim TTL: let go of an instance whose claim was not renewed
SPOOL_RETRY_MAX_S = 10.0  # a spool that cannot be written is tried again this often at most
GUARD_EVERY_S = 1.0  # the claims are looked at this often (a tenth of the TTL when shorter)


class EdgeHost(Service):
    """See the module docstring. Entered after the worker, left before it."""

    def __init__(
        self,
        *,
        client: EdgeClient,
        record: MemoryRecord,
        spool: EdgeSpool,
        courier: Courier,
        clock: Clock,
        engine_name: str,
        max_sessions: int,
        instance_poll_s: float,
        max_media_bytes: int,
        stop_timeout_s: float = 10.0,
    ) -> None:
        super().__init__("edge-host", stop_timeout_s=stop_timeout_s)
        self.client = client
        self.record = record
        self.spool = spool
        self.courier = courier
        self.clock = clock
        self.engine_name = engine_name
        self.max_sessions = max_sessions
        self.instance_poll_s = instance_poll_s
        self.max_media_bytes = max_media_bytes
        # set by the composition root once the worker exists (the worker hears this host)
        self.worker: Worker
        self.status: StatusReports
        self.sends: Sends
        self._renewed: dict[str, float] = {}  # instance → when its claim was last renewed
        self._letting_go: set[str] = set()
        self.last_poll_ok: float | None = None
        self.last_error: str | None = None
        self._stopping = False

    # --- lifecycle -----------------------------------------------------------------

    async def open(self) -> None:
        self.tasks.spawn(self._poll_instances(), "instances")
        self.tasks.spawn(self._guard(), "claim-guard")

    async def stop_intake(self) -> None:
        """Stop every session here and say so: the worker-proxy offers them again."""
        self._stopping = True
        running = list(self.worker.running())
        for instance in running:
            self.sends.unlinked(instance)
        await asyncio.gather(*(self.worker.hand_over(instance) for instance in running))
        for instance in running:
            self.report_status(instance, {"status": "DISCONNECTED", "reason": "worker_stopped"})

    # --- polling for instances -----------------------------------------------------

    async def _poll_instances(self) -> None:
        while not self._stopping:
            try:
                await self.poll_once()
            except Exception:  # a bug must not end the polling: log it, poll again
                log.exception("the instance poll failed")
            await self.clock.sleep(self._poll_interval())

    def _poll_interval(self) -> float:
        ttl = self.client.claim_ttl_s
        # a claim must be renewed well within its TTL, whatever INSTANCE_POLL_MS says
        return min(self.instance_poll_s, ttl / 3) if ttl else self.instance_poll_s

    async def poll_once(self) -> list[str]:
        """One ``/disconnected-instances``; the instances started by it."""
        running = self.worker.running()
        free = max(0, self.max_sessions - len(running))
        asked = self.clock.monotonic()
        try:
            offered = await self.client.instances(free)
        except (EdgeUnavailable, EdgeRefused) as exc:
            self._poll_failed(exc.message)
            return []
        self.last_poll_ok, self.last_error = asked, None
        started = []
        for instance in offered:
            self._renewed[instance] = asked  # listing it renewed our claim (wagate's proxy)
            if self.worker.is_running(instance) or self._stopping:
                continue
            if len(self.worker.running()) >= self.max_sessions:
                log.warning(
                    "instance %s waits: this worker runs its maximum of %d sessions "
                    "(WORKER_MAX_SESSIONS)",
                    instance,
                    self.max_sessions,
                )
                continue
            if await self._start(instance):
                started.append(instance)
        return started

    def _poll_failed(self, error: str) -> None:
        if error != self.last_error:
            log.warning("the worker-proxy at %s: %s", self.client.base_url, error)
        self.last_error = error

    async def _start(self, instance: str) -> bool:
        known = await self.record.get(instance)
        if known is None or not known.status.is_running:
            self.record.put(
                Session(
                    id=instance,
                    status=SessionState.CREATED,
                    engine=self.engine_name,
                    created_at=self.clock.now(),
                )
            )
        try:
            started = await self.worker.start(instance)
        except Conflict as exc:
            log.warning("instance %s not started: %s", instance, exc.message)
            return False
        if started:
            log.info("instance %s started", instance)
        return started

    # --- claims: never two connections on one account ------------------------------

    async def _guard(self) -> None:
        """Look at every claim often: a poll may hang for its whole request timeout."""
        while not self._stopping:
            self._let_go_of_lapsed()
            ttl = self.client.claim_ttl_s
            await self.clock.sleep(min(GUARD_EVERY_S, ttl / 10) if ttl else GUARD_EVERY_S)

    def renewed(self, instance: str, at: float | None = None) -> None:
        self._renewed[instance] = self.clock.monotonic() if at is None else at

    def _let_go_of_lapsed(self) -> None:
        ttl = self.client.claim_ttl_s
        if ttl is None:
            return
        now = self.clock.monotonic()
        for instance in self.worker.running():
            since = now - self._renewed.get(instance, now)
            if since > ttl * GUARD_SHARE and instance not in self._letting_go:
                log.error(
                    "instance %s: its claim was not renewed for %.1fs (TTL %.1fs): letting go "
                    "of it, another worker may be handed it",
                    instance,
                    since,
                    ttl,
                )
                self.tasks.spawn(self.let_go(instance), f"let-go:{instance}")

    async def let_go(self, instance: str, why: EdgeRefused | None = None) -> None:
        """Stop running ``instance`` here, saying nothing: it is not this worker's now."""
        if why is not None:
            log.warning("instance %s is not this worker's: %s; stopping it", instance, why.message)
        self._letting_go.add(instance)
        try:
            self.sends.unlinked(instance)
            await self.worker.hand_over(instance)
        finally:
            self._letting_go.discard(instance)
            self._renewed.pop(instance, None)
            self.record.forget(instance)

    # --- what the sessions do: status reports ---------------------------------------

    async def on_change(self, change: SessionChange) -> None:
        body = status_body(change)
        if body is not None and not self._stopping:
            self.report_status(change.session_id, body)

    def report_status(self, instance: str, body: dict[str, Any]) -> None:
        self.status.report(instance, {"instanceId": instance, **body})

    # --- what the sessions do: the EventHandler ---------------------------------------

    async def linked(self, session_id: str, link: Link) -> None:
        self._renewed.setdefault(session_id, self.clock.monotonic())
        self.sends.linked(session_id, link)

    async def unlinked(self, session_id: str) -> None:
        self.sends.unlinked(session_id)

    async def message(self, session_id: str, link: Link, event: MessageEvent) -> None:
        """Spooled before returning: the engine is told it was handled only then."""
        media, media_error = None, None
        if event.media is not None:
            media, media_error = await self._download(link, event.media)
        body = inbound_body(session_id, event, media=media, media_error=media_error)
        body["receivedAt"] = round(self.clock.now().timestamp() * 1000)
        attempt = 0
        while True:  # the engine hears it was handled only once it is on disk
            try:
                await self.spool.add_post(session_id, INBOUND, body, key=event.id)
                break
            except StorageError as exc:
                attempt += 1
                if self._stopping and attempt > 3:
                    log.critical("message %s of %s NOT SPOOLED, stopping: %s; its body: %.2000r",
                                 event.id, session_id, exc.message, body)  # fmt: skip
                    return
                log.error("message %s of %s not spooled (try %d): %s", event.id, session_id,
                          attempt, exc.message)  # fmt: skip
                await self.clock.sleep(min(SPOOL_RETRY_MAX_S, 0.2 * 2**attempt))
        self.courier.wake(session_id, INBOUND)

    async def _download(
        self, link: Link, media: MediaRef
    ) -> tuple[dict[str, Any] | None, str | None]:
        if media.size is not None and media.size > self.max_media_bytes:
            return None, f"larger than {self.max_media_bytes} bytes (WAGATE_MAX_MEDIA_MB)"
        chunks, size = [], 0
        try:
            async for chunk in link.download(media):
                size += len(chunk)
                if size > self.max_media_bytes:
                    return None, f"larger than {self.max_media_bytes} bytes (WAGATE_MAX_MEDIA_MB)"
                chunks.append(chunk)
        except Exception as exc:
            reason = getattr(exc, "message", None) or f"{type(exc).__name__}: {exc}"
            return None, f"could not be downloaded: {reason}"[:300]
        data = b"".join(chunks)
        return {
            "base64": base64.b64encode(data).decode("ascii"),
            "mimetype": media.mimetype or "application/octet-stream",
            "filename": media.filename,
            "size": len(data),
        }, None

    async def group(self, session_id: str, link: Link, event: GroupEvent) -> None:
        return None  # seed 001 has no endpoint for groups: their messages go to /inbound

    async def receipt(self, session_id: str, event: ReceiptEvent) -> None:
        return None  # seed 001 has no endpoint for receipts

    # --- health ----------------------------------------------------------------------

    async def health(self) -> dict[str, Any]:
        counts = {"connected": 0, "connecting": 0, "reconnecting": 0}
        running = self.worker.running()
        for state in running.values():
            if state is SessionState.CONNECTED:
                counts["connected"] += 1
            elif state is SessionState.RECONNECTING:
                counts["reconnecting"] += 1
            else:
                counts["connecting"] += 1
        try:
            pending: int | None = await self.spool.pending()
        except StorageError:
            pending = None
        now = self.clock.monotonic()
        return {
            "status": "ok",
            "instances": counts,
            "running": {instance: state.value for instance, state in sorted(running.items())},
            "edge": {
                "url": self.client.base_url,
                "reachable": self.last_error is None and self.last_poll_ok is not None,
                "lastPollAgoS": None
                if self.last_poll_ok is None
                else round(now - self.last_poll_ok, 1),
                "lastError": self.last_error,
                "claimTtlS": self.client.claim_ttl_s,
                "spooled": pending,
                "statusWaiting": self.status.waiting(),
                "delivered": self.courier.delivered,
                "dropped": self.courier.dropped,
                "sent": self.sends.sent,
                "failed": self.sends.failed,
            },
            "maxSessions": self.max_sessions,
        }
