"""An edge worker's sends: each connected instance polls ``/queued-messages`` and sends each once.

Per connected instance, every ``MSG_POLL_MS``: ``GET /queued-messages``, then
each message in order, paced as the fleet's sender paces (``SEND_INTERVAL_MS``
plus jitter). A message's id is its idempotency key, kept in the edge spool
(``storage/edge_spool.py``)::

    unknown      → "sending" (on disk) → the engine sends it → "sent"/"failed"
                   and its /mark-sent post, in one transaction
    sent/failed  → not sent again; acknowledged again if no /mark-sent is waiting
    sending      → a send that did not finish (a crash, a dropped link): sent
                   again with the same id (an engine that takes chosen ids,
                   the sandbox, makes that a no-op; neonize cannot, see
                   docs/edge.md), at most SEND_MAX_ATTEMPTS times

So a lost ``/mark-sent`` never makes a message go out twice: the ack is
spooled and retried, and a message handed out again is only acknowledged.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import random
import re
from collections.abc import Awaitable, Callable
from typing import Any

from wagate.clock import Clock
from wagate.domain.message import Outgoing, OutgoingMedia
from wagate.engine.base import Link
from wagate.errors import InvalidInput, RequestError, StorageError
from wagate.outbound.media_fetch import MediaFetcher
from wagate.outbound.sender import SendPolicy
from wagate.storage.edge_spool import FAILED, MARK_SENT, SENT, EdgeSpool
from wagate.uplinks.edge import EdgeClient, EdgeRefused, EdgeUnavailable, QueuedMessage
from wagate.uplinks.edge_reports import NOT_OURS, Courier

log = logging.getLogger(__name__)

_CHOSEN_ID = re.compile(r"^[A-Za-z0-9_.:-]{1,128}$")  # what an engine may take as the message id

Refused = Callable[[str, EdgeRefused], Awaitable[None]]


def mark_body(
    instance: str, message_id: str, *, sent: bool, wa_id: str | None, error: str | None
) -> dict[str, Any]:
    return {
        "instanceId": instance,
        "messageId": message_id,
        "waMessageId": wa_id,
        "status": "sent" if sent else "failed",
        "error": error,
    }


class Sends:
    """The message polls of the connected instances; see the module docstring."""

    def __init__(
        self,
        client: EdgeClient,
        spool: EdgeSpool,
        courier: Courier,
        *,
        clock: Clock,
        poll_s: float,
        policy: SendPolicy,
        fetcher: MediaFetcher,
        on_refused: Refused,
        on_renewed: Callable[[str, float], None],
        spawn: Callable[[Any, str], asyncio.Task[Any]],
        rng: random.Random | None = None,
    ) -> None:
        self._client = client
        self._spool = spool
        self._courier = courier
        self._clock = clock
        self._poll_s = poll_s
        self._policy = policy
        self._fetcher = fetcher
        self._on_refused = on_refused
        self._on_renewed = on_renewed  # a call about the instance was taken (its claim renewed)
        self._spawn = spawn
        self._rng = rng or random.Random()
        self._polls: dict[str, tuple[Link, asyncio.Event, asyncio.Task[Any]]] = {}
        self._in_flight: set[tuple[str, str]] = set()  # (instance, message id) being sent
        self.sent = 0
        self.failed = 0

    def linked(self, instance: str, link: Link) -> None:
        self.unlinked(instance)
        gone = asyncio.Event()
        task = self._spawn(self._poll(instance, link, gone), f"sends:{instance}")
        self._polls[instance] = (link, gone, task)

    def unlinked(self, instance: str) -> None:
        entry = self._polls.pop(instance, None)
        if entry is not None:
            entry[1].set()  # the poll ends after the message in hand (its outcome is recorded)

    def polling(self) -> list[str]:
        return list(self._polls)

    async def _poll(self, instance: str, link: Link, gone: asyncio.Event) -> None:
        last_send: float | None = None
        while not gone.is_set():
            asked = self._clock.monotonic()
            try:
                queued = await self._client.queued(instance)
                self._on_renewed(instance, asked)
            except EdgeRefused as exc:
                log.warning("queued messages of %s refused: %s", instance, exc.message)
                if exc.status in NOT_OURS:
                    await self._on_refused(instance, exc)
                    return
                queued = []
            except EdgeUnavailable as exc:
                log.warning("queued messages of %s: %s", instance, exc.message)
                queued = []
            except Exception:  # a bug must not end the poll
                log.exception("queued messages of %s", instance)
                queued = []
            for message in queued:
                if gone.is_set():
                    break
                try:
                    last_send = await self._one(instance, link, message, last_send)
                except StorageError as exc:  # the spool: nothing sent without its record
                    log.error("edge spool: %s; sends of %s wait", exc.message, instance)
                    break
                except Exception:  # a bug must not end the poll: the next one tries again
                    log.exception("message %s of %s", message.id, instance)
                    break
            await self._clock.wait(gone, self._poll_s)

    async def _one(
        self, instance: str, link: Link, message: QueuedMessage, last_send: float | None
    ) -> float | None:
        """Send ``message`` unless it was; the time of the send (or ``last_send``)."""
        key = (instance, message.id)
        if key in self._in_flight:  # a poll of a link that dropped still holds it: its outcome
            return last_send  # is recorded there, and acknowledged
        self._in_flight.add(key)
        try:
            return await self._send_once(instance, link, message, last_send)
        finally:
            self._in_flight.discard(key)

    async def _send_once(
        self, instance: str, link: Link, message: QueuedMessage, last_send: float | None
    ) -> float | None:
        record = await self._spool.send_of(instance, message.id)
        if record is not None and record.settled:
            await self._spool.touch_send(instance, message.id)
            if not await self._spool.has_post(instance, MARK_SENT, message.id):
                log.info("message %s of %s was %s already: acknowledged again",
                         message.id, instance, record.state)  # fmt: skip
                body = mark_body(
                    instance,
                    message.id,
                    sent=record.state == SENT,
                    wa_id=record.wa_message_id,
                    error=record.error,
                )
                await self._spool.add_post(instance, MARK_SENT, body, key=message.id)
                self._courier.wake(instance, MARK_SENT)
            return last_send
        if message.outgoing is None:
            await self._settle(instance, message.id, None, message.problem or "cannot be read")
            return last_send
        attempts = await self._spool.begin_send(instance, message.id)
        if attempts > self._policy.max_attempts:
            error = f"gave up after {attempts - 1} attempts"
            await self._settle(instance, message.id, None, error)
            return last_send
        try:
            outgoing = await self._prepared(message)
        except InvalidInput as exc:
            await self._settle(instance, message.id, None, exc.message)
            return last_send
        await self._pace(last_send)
        sent_at = self._clock.monotonic()
        try:
            result = await link.send(outgoing)
        except RequestError as exc:  # the engine says it can never be sent as it is
            await self._settle(instance, message.id, None, exc.message)
            return sent_at
        except Exception as exc:  # not sent now: tried again at a later poll, with the same id
            reason = getattr(exc, "message", None) or type(exc).__name__
            log.warning("message %s of %s not sent (%s); tried again later", message.id,
                        instance, reason)  # fmt: skip
            return sent_at
        await self._settle(instance, message.id, result.id, None)
        return sent_at

    async def _prepared(self, message: QueuedMessage) -> Outgoing:
        assert message.outgoing is not None
        outgoing = message.outgoing
        if _CHOSEN_ID.match(message.id):
            outgoing = dataclasses.replace(outgoing, id=message.id)
        if message.media_url and outgoing.media is None:
            fetched = await self._fetcher.fetch(message.media_url, "mediaUrl")
            media = OutgoingMedia(fetched.data, fetched.mimetype or "application/octet-stream")
            outgoing = dataclasses.replace(outgoing, media=media)
        return outgoing

    async def _pace(self, last_send: float | None) -> None:
        if last_send is None:
            return
        wait = self._policy.gap(self._rng) - (self._clock.monotonic() - last_send)
        if wait > 0:
            await self._clock.sleep(wait)

    async def _settle(
        self, instance: str, message_id: str, wa_id: str | None, error: str | None
    ) -> None:
        sent = error is None
        if sent:
            self.sent += 1
        else:
            self.failed += 1
            log.warning("message %s of %s failed: %s", message_id, instance, error)
        body = mark_body(instance, message_id, sent=sent, wa_id=wa_id, error=error)
        await self._spool.settle_send(
            instance,
            message_id,
            state=SENT if sent else FAILED,
            wa_message_id=wa_id,
            error=error,
            mark=body,
            path=MARK_SENT,
        )
        self._courier.wake(instance, MARK_SENT)
