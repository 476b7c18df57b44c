"""The inbound pipeline (seed 003 §7): guard → route → persist → media → link → webhook.

One message at a time per session, in arrival order: :meth:`IngestPipeline.receive`
runs on the session's event path and returns once the row is stored, so the
engine's event is acknowledged only after that. What may be slow (the media
download, up to 25 MB) runs after it: :meth:`IngestPipeline.complete` stores
the media, links the text↔media pair and announces ``message.received``.
The row remembers its media reference until then, so an unfinished row
(the process died, or the link dropped, midway) is completed later.

A failure of one step never stops the stream, nor the steps after it:
transient storage errors are retried once after 500–1000 ms; a failure that
remains (of any kind) is written to ``audit_log('error', {code, msg, ctx})``
and the pipeline goes on. A stored message is linked and announced even when
its media could not be stored; the event then says why (``mediaError``).
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import asdict, replace
from datetime import datetime
from typing import Any, Protocol, TypeVar

from wagate.clock import Clock
from wagate.domain.audit import AuditEvent
from wagate.domain.message import IN, MediaRef, Message, MessageKind
from wagate.engine.base import MessageEvent
from wagate.errors import StorageUnavailable, TransientError, WagateError
from wagate.ingest.media import MediaMeta, MediaRejected, MediaStore, Stored
from wagate.settings import IngestSettings
from wagate.storage.repos.audit import AuditRepo
from wagate.storage.repos.groups import GroupRepo
from wagate.storage.repos.messages import MessageRepo
from wagate.storage.sanitize import clean
from wagate.webhooks.events import message_received

log = logging.getLogger(__name__)

T = TypeVar("T")
# what is worth one retry: storage hiccups and lost connections, not bad rows
TRANSIENT = (TransientError, StorageUnavailable, OSError, TimeoutError)
_MSG_MAX = 300  # characters of an error message kept in the audit log

# ``{"code", "msg"}`` of a failed step, as audited (and as ``mediaError`` in the event)
Failure = dict[str, str]


class Downloader(Protocol):
    """What :meth:`IngestPipeline.complete` needs of a link: a received media's bytes.

    A :class:`~wagate.engine.base.Link` is one; so is the inline media of a
    message an edge worker posts (seed 001's ``/inbound``).
    """

    def download(self, media: MediaRef) -> AsyncIterator[bytes]: ...


class LinkGone(WagateError):
    """The link a download went over is down: the message waits for the next link."""

    code = "link_gone"


class StepFailed(Exception):
    """A step failed after its retry; already audited as ``failure``."""

    def __init__(self, failure: Failure) -> None:
        super().__init__(failure["code"])
        self.failure = failure


class IngestPipeline:
    """Turns engine message events into ``messages`` and ``media`` rows."""

    def __init__(
        self,
        settings: IngestSettings,
        *,
        messages: MessageRepo,
        groups: GroupRepo,
        media: MediaStore,
        audit: AuditRepo,
        clock: Clock,
        rng: random.Random | None = None,
    ) -> None:
        self.settings = settings
        self.messages = messages
        self.groups = groups
        self.media = media
        self.audit = audit
        self.clock = clock
        self.rng = rng or random.Random()
        self.stats: dict[str, Counter[str]] = {}

    def count(self, session_id: str, what: str) -> None:
        self.stats.setdefault(session_id, Counter())[what] += 1

    async def receive(
        self, session_id: str, event: MessageEvent, *, received_at: datetime | None = None
    ) -> Message | None:
        """Guard, route and store one message; the row when it still needs :meth:`complete`.

        None when the message is not ingested (too old, unmonitored, …), could
        not be stored (audited), or was seen and fully handled before.
        ``received_at``: when it reached the worker, if not just now (an edge
        worker's spool may have held it through an outage of its uplink): the
        live window is counted to then.
        """
        self.count(session_id, "seen")
        try:
            return await self._receive(session_id, event, received_at)
        except StepFailed:
            self.count(session_id, "errors")
            return None

    async def _receive(
        self, session_id: str, event: MessageEvent, received_at: datetime | None
    ) -> Message | None:
        if not self._wanted(session_id, event, received_at):
            return None
        keep, group_id = await self._route(session_id, event)
        if not keep:
            return None
        message, done = await self._persist(session_id, clean(_row(session_id, event, group_id)))
        return None if done else message  # seen and fully handled before: nothing is twice

    def _wanted(
        self, session_id: str, event: MessageEvent, received_at: datetime | None = None
    ) -> bool:
        now = self.clock.now()
        heard = min(received_at, now) if received_at is not None else now
        oldest = heard - self.settings.live_window
        if event.timestamp < oldest:  # live-only: history and late replays are not ingested
            self.count(session_id, "dropped_old")
            return False
        if event.from_me and not self.settings.ingest_from_me:
            self.count(session_id, "dropped_from_me")
            return False
        if not event.is_group and not self.settings.ingest_direct:
            self.count(session_id, "dropped_direct")
            return False
        return True

    async def _route(self, session_id: str, event: MessageEvent) -> tuple[bool, int | None]:
        """Whether to keep it, and its group's row id (None for a direct chat)."""
        if not event.is_group:
            return True, None
        ctx = _ctx(session_id, event.id)
        group = await self._step("DB_READ_FAILED", ctx, self.groups.get, session_id, event.chat)
        if group is None or not group.monitor:
            self.count(session_id, "dropped_unmonitored")
            return False, None
        return True, group.id

    async def _persist(
        self, session_id: str, values: dict[str, Any]
    ) -> tuple[Message | None, bool]:
        """The row (new, or stored before) and whether it was already fully handled."""
        ctx = _ctx(session_id, values["wa_msg_id"])
        message = await self._step("DB_INSERT_FAILED", ctx, self.messages.insert_inbound, values)
        if message is not None:
            self.count(session_id, "stored")
            return message, False
        self.count(session_id, "duplicates")
        message = await self._step(
            "DB_READ_FAILED", ctx, self.messages.by_wa_id, session_id, values["wa_msg_id"]
        )
        if message is None or not unfinished(message):
            return message, True
        if media_ref(message) is None and values["payload"] is not None:
            # announced without its media (the reference went with the mark): the
            # redelivered event brings the reference again, so the media can be filled in
            message = replace(message, payload=values["payload"])
        return message, False

    async def complete(
        self,
        session_id: str,
        link: Downloader | None,
        message: Message,
        *,
        gone: asyncio.Event | None = None,
    ) -> Message:
        """Media, parent link and event; a failed step is audited and the next one still runs.

        ``link`` downloads the media (None: the session is not connected, and
        a media message is left unfinished, to be completed when it is).
        ``gone`` is set when that link goes down: a download in progress stops
        and the message is left unfinished, for the next link to complete.
        """
        media_error: Failure | None = None
        ref = media_ref(message)
        if message.is_media and message.media_id is None:
            if link is None:
                return message  # completed on the next connection
            if ref is None:  # stored by an older version, without its reference
                media_error = await self._fail(
                    "MEDIA_UNAVAILABLE", "the media reference was not kept", _ctx_of(message)
                )
            else:
                try:
                    message, media_error = await self._attach_media(
                        session_id, link, ref, message, gone
                    )
                except LinkGone:
                    self.count(session_id, "media_deferred")
                    return message  # completed on the next connection
        try:
            if message.parent_id is None:
                message = await self._link_parent(message)
        except StepFailed:
            self.count(session_id, "errors")
        try:
            if message.notified_at is None:
                await self._notify(message, ref, media_error)
        except StepFailed:  # the row stays un-notified: the next completion retries
            self.count(session_id, "errors")
        return message

    async def _attach_media(
        self,
        session_id: str,
        link: Downloader,
        ref: MediaRef,
        message: Message,
        gone: asyncio.Event | None,
    ) -> tuple[Message, Failure | None]:
        """The message with its media stored and linked, or unchanged and why not."""
        ctx = _ctx_of(message)
        try:
            store = self._store_media
            stored = await self._step("MEDIA_STORE_FAILED", ctx, store, link, ref, gone)
            if isinstance(stored, MediaRejected):
                self.count(session_id, "media_rejected")
                return message, await self._fail(stored.code, stored.message, ctx)
            self.count(session_id, "media_deduped" if stored.deduped else "media_stored")
            media_id = stored.media.id
            await self._step("DB_UPDATE_FAILED", ctx, self.messages.set_media, message.id, media_id)
        except StepFailed as failed:
            self.count(session_id, "errors")
            return message, failed.failure
        return replace(message, media_id=media_id), None

    async def _store_media(
        self, link: Downloader, ref: MediaRef, gone: asyncio.Event | None
    ) -> Stored | MediaRejected:
        """Download and store; a refusal (too large, not allowed) is returned, not retried."""
        meta = MediaMeta(
            ref.mimetype, ref.filename, ref.size, ref.width, ref.height, ref.duration_s
        )
        chunks = link.download(ref)
        if gone is not None:
            chunks = _until(gone, chunks)
        try:
            return await self.media.store(chunks, meta)
        except MediaRejected as exc:
            return exc

    async def _link_parent(self, message: Message) -> Message:
        """Link ``message`` to its text↔media partner; returns it with its ``parent_id``."""
        ctx = _ctx_of(message)
        window = self.settings.link_window
        partner = await self._step(
            "DB_READ_FAILED", ctx, self.messages.link_partner, message, window
        )
        if partner is None:
            return message
        earlier, later = (partner, message) if partner.ts <= message.ts else (message, partner)
        await self._step("DB_UPDATE_FAILED", ctx, self.messages.set_parent, later.id, earlier.id)
        return replace(message, parent_id=earlier.id) if later is message else message

    async def _notify(
        self, message: Message, ref: MediaRef | None, media_error: Failure | None
    ) -> None:
        """``message.received`` into the outbox, atomically with the row's ``notified_at``."""
        event = message_received(message, self.clock.now(), media=ref, media_error=media_error)
        ctx = _ctx_of(message)
        await self._step(
            "WEBHOOK_EMIT_FAILED", ctx, self.messages.mark_notified, message.id, [event]
        )

    async def _step(
        self, code: str, ctx: dict[str, Any], fn: Callable[..., Awaitable[T]], *args: Any
    ) -> T:
        """Run ``fn``; retry a transient error once after 500–1000 ms; audit what remains."""
        try:
            return await fn(*args)
        except LinkGone:
            raise  # not a failure: the work waits for the next link
        except TRANSIENT as first:
            delay = self.rng.uniform(self.settings.retry_min_s, self.settings.retry_max_s)
            log.warning("%s (%s); retrying in %.2fs", code, _describe(first), delay)
            await self.clock.sleep(delay)
        except Exception as exc:  # not worth a retry, but never lost: audited below
            log.warning("%s: %s", code, _describe(exc), exc_info=not isinstance(exc, WagateError))
            raise StepFailed(await self._fail(code, _describe(exc), ctx)) from exc
        try:
            return await fn(*args)
        except Exception as exc:
            raise StepFailed(await self._fail(code, _describe(exc), ctx)) from exc

    async def _fail(self, code: str, msg: str, ctx: dict[str, Any]) -> Failure:
        """Write ``audit_log('error', {code, msg, ctx: {wa_msg_id}})``; the failure."""
        failure = {"code": code, "msg": msg[:_MSG_MAX]}
        data = clean({**failure, "ctx": {"wa_msg_id": ctx.get("wa_msg_id")}})
        try:
            await self.audit.add(ctx.get("session_id"), AuditEvent.ERROR, data)
        except Exception:
            log.exception("could not write audit_log error %s", code)
        return failure


def _ctx(session_id: str, wa_msg_id: str) -> dict[str, Any]:
    return {"session_id": session_id, "wa_msg_id": wa_msg_id}


def _describe(exc: BaseException) -> str:
    """A short, single-line reason: ours as written, a driver's error without the SQL."""
    if isinstance(exc, WagateError):
        return exc.message
    cause = getattr(exc, "orig", None) or exc  # SQLAlchemy wraps the driver's error
    text = str(cause).strip().splitlines()
    return f"{type(cause).__name__}: {text[0]}" if text else type(cause).__name__


async def _until(gone: asyncio.Event, chunks: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    """``chunks``, until ``gone`` is set (then :class:`LinkGone`, even mid-wait)."""
    waiting_gone = asyncio.ensure_future(gone.wait())
    try:
        while True:
            step = asyncio.ensure_future(anext(chunks))
            await asyncio.wait({step, waiting_gone}, return_when=asyncio.FIRST_COMPLETED)
            if not step.done():
                step.cancel()
                await asyncio.gather(step, return_exceptions=True)
                raise LinkGone("the session's link went down during the download")
            try:
                chunk = step.result()
            except StopAsyncIteration:
                return
            yield chunk
    finally:
        waiting_gone.cancel()
        await asyncio.gather(waiting_gone, return_exceptions=True)


def _ctx_of(message: Message) -> dict[str, Any]:
    return _ctx(message.session_id, message.wa_msg_id)


def unfinished(message: Message) -> bool:
    """A received row whose media or event did not make it (yet, or the process died midway)."""
    missing_media = message.is_media and message.media_id is None
    return message.direction == IN and (missing_media or message.notified_at is None)


def media_ref(message: Message) -> MediaRef | None:
    """The engine's reference to the message's media, kept in the row until it is stored."""
    kept = (message.payload or {}).get("media")
    if not isinstance(kept, dict):
        return None
    try:
        return MediaRef(**{**kept, "kind": MessageKind(kept["kind"])})
    except (KeyError, TypeError, ValueError):
        return None


def _row(session_id: str, event: MessageEvent, group_id: int | None) -> dict[str, Any]:
    raw = dict(event.raw)
    if event.location is not None:
        raw.setdefault(
            "location",
            {
                "lat": event.location.latitude,
                "lng": event.location.longitude,
                "name": event.location.name,
            },
        )
    if event.mentions:
        raw.setdefault("mentions", list(event.mentions))
    if event.react_to:
        raw.setdefault("reactTo", event.react_to)
    if event.media is not None:
        raw.setdefault(
            "media",
            {
                "mimetype": event.media.mimetype,
                "size": event.media.size,
                "filename": event.media.filename,
            },
        )
    return {
        "session_id": session_id,
        "wa_msg_id": event.id,
        "direction": "out" if event.from_me else "in",
        "status": "sent" if event.from_me else "received",
        "chat_id": event.chat,
        "sender": event.sender,
        "sender_pn": event.sender_pn,
        "sender_lid": event.sender_lid,
        "push_name": event.push_name,
        "kind": event.kind.value,
        "text": event.text,
        "raw": raw,
        "group_id": group_id,
        "quoted_id": event.quoted_id,
        "ts": event.timestamp,
        # until the media is stored: what the engine needs to download it again
        "payload": {"media": asdict(event.media)} if event.media is not None else None,
    }
