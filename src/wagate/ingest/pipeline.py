"""The inbound pipeline (seed 003 §7): guard → route → persist → media → link → webhook.

One message at a time per session, in arrival order (the runner calls
:meth:`IngestPipeline.handle` from the session's event loop). A failure of
one step never stops the stream: transient storage and database errors are
retried once after 500–1000 ms, then written to ``audit_log('error', …)``
and the pipeline moves on.
"""

from __future__ import annotations

import logging
import random
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from datetime import timedelta
from typing import Any, TypeVar

from sqlalchemy.exc import InterfaceError, OperationalError

from wagate.clock import Clock
from wagate.engine.base import Link, MessageEvent
from wagate.engine.messages import MEDIA_KINDS
from wagate.errors import TransientError
from wagate.events import Event, EventSink
from wagate.ingest.media import MediaMeta, MediaRejected, MediaStore
from wagate.storage.repos.audit import AuditEvent, AuditRepo
from wagate.storage.repos.groups import GroupRepo
from wagate.storage.repos.messages import Message, MessageRepo

log = logging.getLogger(__name__)

T = TypeVar("T")
# what is worth one retry: storage hiccups and lost database connections, not bad rows
TRANSIENT = (TransientError, OperationalError, InterfaceError, OSError, TimeoutError)


@dataclass(frozen=True, slots=True)
class IngestPolicy:
    live_window: timedelta
    link_window: timedelta
    ingest_direct: bool
    ingest_from_me: bool
    retry_min_s: float
    retry_max_s: float


class StepFailed(Exception):
    """A step failed after its retry; already audited."""


class IngestPipeline:
    """Turns engine message events into ``messages`` and ``media`` rows."""

    def __init__(
        self,
        *,
        policy: IngestPolicy,
        messages: MessageRepo,
        groups: GroupRepo,
        media: MediaStore,
        audit: AuditRepo,
        sink: EventSink,
        clock: Clock,
        link_for: Callable[[str], Link | None],
        rng: random.Random | None = None,
    ) -> None:
        self.policy = policy
        self.messages = messages
        self.groups = groups
        self.media = media
        self.audit = audit
        self.sink = sink
        self.clock = clock
        self.link_for = link_for
        self.rng = rng or random.Random()
        self.stats: dict[str, Counter[str]] = {}

    def count(self, session_id: str, what: str) -> None:
        self.stats.setdefault(session_id, Counter())[what] += 1

    async def handle(self, session_id: str, event: MessageEvent) -> Message | None:
        """Ingest one message; returns the stored row, or None when it was not stored."""
        self.count(session_id, "seen")
        try:
            return await self._handle(session_id, event)
        except StepFailed:
            self.count(session_id, "errors")
            return None

    async def _handle(self, session_id: str, event: MessageEvent) -> Message | None:
        if not self._wanted(session_id, event):
            return None
        keep, group_id = await self._route(session_id, event)
        if not keep:
            return None
        values = _row(session_id, event, group_id)
        ctx = {"session_id": session_id, "wa_msg_id": event.id}
        message = await self._step("DB_INSERT_FAILED", ctx, self.messages.insert_inbound, values)
        if message is None:
            self.count(session_id, "duplicates")
            message = await self._step(
                "DB_READ_FAILED", ctx, self.messages.by_wa_id, session_id, event.id
            )
            if message is None or not _unfinished(message):
                return message  # seen and fully handled before: nothing is stored twice
        else:
            self.count(session_id, "stored")
        if event.media is not None and message.media_id is None:
            message = await self._attach_media(session_id, event, message)
        if message.parent_id is None:
            message = await self._link_parent(message)
        if message.notified_at is None:
            await self._notify(session_id, message, event)
        return message

    def _wanted(self, session_id: str, event: MessageEvent) -> bool:
        oldest = self.clock.now() - self.policy.live_window
        if event.timestamp < oldest:  # live-only: history and late replays are not ingested
            self.count(session_id, "dropped_old")
            return False
        if event.from_me and not self.policy.ingest_from_me:
            self.count(session_id, "dropped_from_me")
            return False
        if not event.is_group and not self.policy.ingest_direct:
            self.count(session_id, "dropped_direct")
            return False
        return True

    async def _route(self, session_id: str, event: MessageEvent) -> tuple[bool, int | None]:
        """Whether to keep it, and its group's row id (None for a direct chat)."""
        if not event.is_group:
            return True, None
        ctx = {"session_id": session_id, "wa_msg_id": event.id}
        group = await self._step("DB_READ_FAILED", ctx, self.groups.get, session_id, event.chat)
        if group is None or not group.monitor:
            self.count(session_id, "dropped_unmonitored")
            return False, None
        return True, group.id

    async def _attach_media(
        self, session_id: str, event: MessageEvent, message: Message
    ) -> Message:
        ref = event.media
        assert ref is not None
        ctx = {"session_id": session_id, "wa_msg_id": event.id}
        link = self.link_for(session_id)
        if link is None:
            await self._audit_error("MEDIA_UNAVAILABLE", "session is not connected", ctx)
            return message
        meta = MediaMeta(
            ref.mimetype, ref.filename, ref.size, ref.width, ref.height, ref.duration_s
        )
        try:
            stored = await self._step(
                "MEDIA_STORE_FAILED", ctx, lambda: self.media.store(link.download(ref), meta)
            )
        except MediaRejected as exc:
            self.count(session_id, "media_rejected")
            await self._audit_error(exc.code, exc.message, ctx)
            return message
        self.count(session_id, "media_deduped" if stored.deduped else "media_stored")
        await self._step(
            "DB_UPDATE_FAILED", ctx, self.messages.set_media, message.id, stored.media.id
        )
        updated = await self.messages.get(message.id)
        return updated or message

    async def _link_parent(self, message: Message) -> Message:
        """Link ``message`` to its text↔media partner; returns it with its ``parent_id``."""
        ctx = {"session_id": message.session_id, "wa_msg_id": message.wa_msg_id}
        partner = await self._step(
            "DB_READ_FAILED", ctx, self.messages.link_partner, message, self.policy.link_window
        )
        if partner is None:
            return message
        earlier, later = (partner, message) if partner.ts <= message.ts else (message, partner)
        await self._step("DB_UPDATE_FAILED", ctx, self.messages.set_parent, later.id, earlier.id)
        return replace(message, parent_id=earlier.id) if later is message else message

    async def _notify(self, session_id: str, message: Message, event: MessageEvent) -> None:
        """``message.received`` into the outbox, atomically with the row's ``notified_at``."""
        data = message_payload(message, event)

        async def record(conn: Any) -> None:
            await self.sink.emit_in(conn, Event.MESSAGE_RECEIVED, session_id, data)

        ctx = {"session_id": session_id, "wa_msg_id": message.wa_msg_id}
        await self._step("WEBHOOK_EMIT_FAILED", ctx, self.messages.notify, message.id, record)

    async def _step(
        self, code: str, ctx: dict[str, Any], fn: Callable[..., Awaitable[T]], *args: Any
    ) -> T:
        """Run ``fn``; on a transient error retry once after 500–1000 ms, then audit and fail."""
        try:
            return await fn(*args)
        except TRANSIENT as first:
            delay = self.rng.uniform(self.policy.retry_min_s, self.policy.retry_max_s)
            log.warning("%s (%s); retrying in %.2fs", code, first, delay)
            await self.clock.sleep(delay)
        try:
            return await fn(*args)
        except TRANSIENT as exc:
            await self._audit_error(code, str(exc)[:300], ctx)
            raise StepFailed(code) from exc

    async def _audit_error(self, code: str, msg: str, ctx: dict[str, Any]) -> None:
        data = {"code": code, "msg": msg, "ctx": {"wa_msg_id": ctx.get("wa_msg_id")}}
        try:
            await self.audit.add(ctx.get("session_id"), AuditEvent.ERROR, data)
        except Exception:
            log.exception("could not write audit_log error %s", code)


def _unfinished(message: Message) -> bool:
    """A received row whose media or event did not make it (the process died midway)."""
    missing_media = message.is_media and message.media_id is None
    return message.direction == "in" and (missing_media or message.notified_at is None)


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
    }


def message_payload(message: Message, event: MessageEvent | None = None) -> dict[str, Any]:
    """The webhook ``data`` of ``message.received``."""
    data: dict[str, Any] = {
        "id": message.id,
        "waMessageId": message.wa_msg_id,
        "chat": message.chat_id,
        "isGroup": message.chat_id.endswith("@g.us"),
        "sender": message.sender,
        "senderPhone": message.sender_pn,
        "senderLid": message.sender_lid,
        "pushName": message.push_name,
        "fromMe": message.direction == "out",
        "type": message.kind,
        "text": message.text,
        "quotedId": message.quoted_id,
        "parentId": message.parent_id,
        "timestamp": message.ts.isoformat(),
        "media": None,
    }
    if message.media_id is not None:
        data["media"] = {"id": message.media_id, "url": f"/api/media/{message.media_id}"}
    if event is not None and event.kind in MEDIA_KINDS and event.media is not None:
        data["media"] = {
            **(data["media"] or {}),
            "mimetype": event.media.mimetype,
            "filename": event.media.filename,
            "size": event.media.size,
        }
    return data
