"""The outbound side of a worker: drains each connected session's send queue, in order, paced.

The sender is the worker's :class:`~wagate.worker.events.OutboundHandler`:
it keeps the link of each connected session (``linked``/``unlinked``) and
moves sent messages forward on their receipts. One drain task per session
with work, started by :meth:`Sender.wake` (the API rings after it queues a
message) or by the session's link coming up, and ending when the session is
not connected (its next link starts it again). A drain sends the oldest
queued message, waits out the session's pacing, and repeats until the queue
is empty, then sleeps until woken.

Every message carries the WhatsApp id chosen when it was queued, so sending it
again after a crash between the send and our ``sent`` write is the same
message to WhatsApp (which drops the duplicate): exactly once across kill -9.
Outcomes:

- sent → ``sent`` (``message.sent``); receipts then move it on (``message.ack``);
  each event is written in the transaction of the status it reports;
- a transient failure (connection lost, timeout) → stays ``queued``, retried
  after a backoff or as soon as the session reconnects;
- a permanent one (the engine refuses the message, the media is gone, or
  ``send_max_attempts`` attempts were made) → ``failed`` (``message.failed``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from wagate.backoff import Backoff
from wagate.clock import Clock
from wagate.domain.audit import AuditEvent
from wagate.domain.lease import Fences
from wagate.domain.message import Message, Outgoing, SendResult
from wagate.engine.base import Link, ReceiptEvent
from wagate.errors import RequestError, StaleLease
from wagate.lifecycle import Service
from wagate.outbound import queue
from wagate.settings import SendSettings
from wagate.storage.repos.audit import AuditRepo
from wagate.storage.repos.outbound import OutboundRepo
from wagate.storage.sanitize import clean
from wagate.storage.spool import MediaSpool, SpoolError
from wagate.webhooks.events import Event, message_status

log = logging.getLogger(__name__)

# last touches before the engine gets a message (a text's link preview); must not raise
Prepare = Callable[[Outgoing], Awaitable[Outgoing]]
LOOP_ERROR_PAUSE_S = 5.0
ORPHAN_AGE_S = 3600.0  # spooled files older than this with no queued row are leftovers


@dataclass(frozen=True, slots=True)
class SendPolicy:
    """Pacing and retries, per session."""

    interval_s: float = 1.0
    jitter_s: float = 0.25
    max_attempts: int = 10
    retry_max_s: float = 60.0
    poll_s: float = 10.0  # an idle drain looks at its queue again after this long (0: never)

    @classmethod
    def of(cls, settings: SendSettings) -> SendPolicy:
        return cls(
            interval_s=settings.interval_s,
            jitter_s=settings.jitter_s,
            max_attempts=settings.max_attempts,
            retry_max_s=settings.retry_max_s,
            poll_s=settings.poll_s,
        )

    def gap(self, rng: random.Random) -> float:
        """The pause between two sends of one session (none when the interval is 0)."""
        if self.interval_s <= 0:
            return 0.0
        return self.interval_s + rng.uniform(0, self.jitter_s)

    def retry_delay(self, attempts: int) -> float:
        """1 s after the first failed attempt, doubling up to ``retry_max_s``."""
        return Backoff(1.0, self.retry_max_s).core(attempts - 1)


@dataclass(slots=True)
class _Drain:
    bell: asyncio.Event = field(default_factory=asyncio.Event)  # anything new
    connected: asyncio.Event = field(default_factory=asyncio.Event)  # the session came back
    task: asyncio.Task[Any] | None = None
    last_send: float | None = None


class Sender(Service):
    """Sends queued messages for the sessions connected on this worker; see the module doc.

    Enter it before the worker, so it stops after it. ``prepare`` gives each
    message its last touches just before the engine gets it (a text's link
    preview, fetched at send time so the API never waits for a web page).
    """

    def __init__(
        self,
        outbound: OutboundRepo,
        spool: MediaSpool,
        *,
        clock: Clock,
        policy: SendPolicy | None = None,
        rng: random.Random | None = None,
        prepare: Prepare | None = None,
        audit: AuditRepo | None = None,
        fences: Fences | None = None,
    ) -> None:
        super().__init__("sender")
        self._fences = fences  # in a fleet: nothing is sent for a session whose lease lapsed
        self.outbound = outbound
        self.spool = spool
        self.clock = clock
        self.audit = audit
        self.policy = policy or SendPolicy()
        self._links: dict[str, Link] = {}
        self._prepare = prepare
        self._rng = rng or random.Random()
        self._drains: dict[str, _Drain] = {}
        self._open = False

    async def open(self) -> None:
        self._open = True
        for session_id in await self.outbound.sessions_with_queue():
            self.wake(session_id)  # a drain ends at once for a session not connected yet
        self.tasks.spawn(self._sweep_orphans(), "orphans")

    async def stop_intake(self) -> None:
        self._open = False

    async def close(self) -> None:
        # a send that was in flight was cancelled with its drain: its message stays queued
        self._drains.clear()

    # --- doorbells -----------------------------------------------------------------

    def wake(self, session_id: str) -> None:
        """Something was queued for ``session_id``, or it came online: drain its queue."""
        drain = self._drains.get(session_id)
        if drain is None:
            if not self._open:
                return
            drain = self._drains[session_id] = _Drain()
            drain.task = self.tasks.spawn(self._drain(session_id, drain), session_id)
        drain.bell.set()

    # --- the worker's OutboundHandler ---------------------------------------------

    async def linked(self, session_id: str, link: Link) -> None:
        """The session is connected over ``link``: drain its queue."""
        self._links[session_id] = link
        drain = self._drains.get(session_id)
        if drain is not None:
            drain.connected.set()
        self.wake(session_id)

    async def unlinked(self, session_id: str) -> None:
        self._links.pop(session_id, None)

    async def receipt(self, session_id: str, event: ReceiptEvent) -> None:
        """Move our messages forward (never back) and tell the webhooks.

        Never raises into the session's loop: a receipt that cannot be applied
        is written to ``audit_log('error')``, where an operator sees it.
        """
        announce = message_status(
            Event.MESSAGE_ACK, self.clock.now(), at=event.timestamp.isoformat(), by=event.by
        )
        try:
            await self.outbound.apply_receipt(
                session_id, list(event.message_ids), event.status.value, event.timestamp, announce
            )
        except Exception as exc:
            await self._receipt_failed(session_id, event, exc)

    async def _receipt_failed(self, session_id: str, event: ReceiptEvent, exc: Exception) -> None:
        log.error("session %s: could not apply a receipt", session_id, exc_info=exc)
        data = {
            "code": "EVENT_FAILED",
            "msg": f"ReceiptEvent: {type(exc).__name__}: {exc}"[:300],
            "ctx": {"wa_msg_id": event.message_ids[0] if event.message_ids else None},
        }
        if self.audit is None:
            return
        try:
            await self.audit.add(session_id, AuditEvent.ERROR, clean(data))
        except Exception:
            log.exception("session %s: could not write audit_log error", session_id)

    def draining(self) -> list[str]:
        """Sessions with a drain task right now (for health and tests)."""
        return list(self._drains)

    # --- the drain loop ------------------------------------------------------------

    async def _drain(self, session_id: str, drain: _Drain) -> None:
        try:
            while await self._step(session_id, drain):
                pass
        finally:
            if self._drains.get(session_id) is drain:
                del self._drains[session_id]

    async def _step(self, session_id: str, drain: _Drain) -> bool:
        """One message, or one wait; False when the session is not connected."""
        drain.bell.clear()  # cleared before looking, so a ring after the look is not lost
        if session_id not in self._links:
            return False
        try:
            message = await self.outbound.next_queued(session_id)
            if message is None:
                await self._idle(drain)
                return True
            await self._pace(drain)
            link = self._links.get(session_id)
            if link is None:
                return False
            drain.last_send = self.clock.monotonic()
            if not await self._send(link, message):
                await self._nap(drain, self.policy.retry_delay(message.attempts + 1))
        except StaleLease as exc:  # another process owns the session now: its sender sends
            log.warning("session %s: not the owner any more, sending stops: %s", session_id, exc)
            return False
        except Exception:  # a storage outage or a bug: keep the loop, slow down
            log.exception("session %s: send loop failed", session_id)
            await self._nap(drain, min(LOOP_ERROR_PAUSE_S, self.policy.retry_max_s))
        return True

    async def _pace(self, drain: _Drain) -> None:
        if drain.last_send is None:
            return
        wait = self.policy.gap(self._rng) - (self.clock.monotonic() - drain.last_send)
        if wait > 0:
            await self.clock.sleep(wait)

    async def _nap(self, drain: _Drain, seconds: float) -> None:
        """Sleep ``seconds``, or less if the session reconnects meanwhile."""
        drain.connected.clear()
        await self.clock.wait(drain.connected, seconds)

    async def _idle(self, drain: _Drain) -> None:
        """Wait to be rung; look again anyway after ``poll_s`` (a row another process queued)."""
        if self.policy.poll_s <= 0:
            await drain.bell.wait()
        else:
            await self.clock.wait(drain.bell, self.policy.poll_s)

    # --- one message ---------------------------------------------------------------

    async def _send(self, link: Link, message: Message) -> bool:
        """Try to send ``message``; False if it stays queued for a later try."""
        slog = log.getChild(message.session_id)
        if message.attempts >= self.policy.max_attempts:
            await self._fail(message, f"gave up after {message.attempts} attempts: {message.error}")
            return True
        try:
            outgoing = await self._outgoing(message)
        except (SpoolError, ValueError, KeyError, TypeError) as exc:
            await self._fail(message, f"the queued message cannot be read: {exc}")
            return True
        await self.outbound.begin_attempt(message.id)
        if self._prepare is not None:
            outgoing = await self._prepare(outgoing)
        self._check_owner(message.session_id)  # a pause may have let the lease lapse meanwhile
        try:
            result = await link.send(outgoing)
        except RequestError as exc:  # the engine says this message can never be sent
            await self._fail(message, exc.message)
            return True
        except Exception as exc:  # every other failure is worth a retry
            reason = getattr(exc, "message", None) or type(exc).__name__
            slog.warning("message %s not sent (%s); it stays queued", message.id, reason)
            await self.outbound.requeue(message.id, str(reason))
            return False
        await self._sent(message, result)
        return True

    def _check_owner(self, session_id: str) -> None:
        if self._fences is not None and self._fences.fence_for(session_id) is None:
            raise StaleLease(f"session {session_id!r}: this process no longer holds its lease")

    async def _outgoing(self, message: Message) -> Outgoing:
        ref = queue.media_of(message.payload)
        data = await self.spool.load(ref) if ref else None
        return queue.outgoing(message.payload or {}, id=message.wa_msg_id, media_data=data)

    async def _sent(self, message: Message, result: SendResult) -> None:
        await self.outbound.mark_sent(
            message.id,
            wa_msg_id=result.id,
            at=result.timestamp,
            payload=_stripped(message),
            announce=message_status(Event.MESSAGE_SENT, self.clock.now()),
        )
        await self._drop_media(message)

    async def _fail(self, message: Message, error: str) -> None:
        log.getChild(message.session_id).warning("message %s failed: %s", message.id, error)
        await self.outbound.mark_failed(
            message.id,
            error,
            _stripped(message),
            announce=message_status(Event.MESSAGE_FAILED, self.clock.now(), error=error),
        )
        await self._drop_media(message)

    async def _drop_media(self, message: Message) -> None:
        ref = queue.media_of(message.payload)
        if ref:
            await self.spool.discard(ref)

    async def _sweep_orphans(self) -> None:
        for session_id, wa_id, path in await self.spool.files_older_than(ORPHAN_AGE_S):
            if not await self.outbound.is_queued(session_id, wa_id):
                with contextlib.suppress(OSError):
                    await asyncio.to_thread(path.unlink)
                log.info("removed a leftover outbox file of session %s", session_id)


def _stripped(message: Message) -> dict[str, Any] | None:
    """The payload without media bytes: what the row keeps once the send is settled."""
    ref = queue.media_of(message.payload)
    return queue.settled(message.payload, MediaSpool.stripped(ref) if ref else None)
