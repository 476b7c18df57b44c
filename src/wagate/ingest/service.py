"""The inbound side of a worker, composed: pipeline, group sync, flag watcher, event routing."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Awaitable, Callable
from datetime import timedelta
from types import TracebackType
from typing import Any, Self

from wagate.clock import Clock
from wagate.control.flags import FlagWatcher
from wagate.domain.audit import AuditEvent
from wagate.engine.base import EngineEvent, GroupEvent, MessageEvent, ReceiptEvent
from wagate.ingest.groups import GroupSync
from wagate.ingest.media import MediaStore
from wagate.ingest.pipeline import IngestPipeline, IngestPolicy
from wagate.ingest.sanitize import clean
from wagate.settings import Settings
from wagate.storage.blobs import BlobStore
from wagate.storage.db import Database
from wagate.storage.repos.audit import AuditRepo
from wagate.storage.repos.flags import FlagRepo
from wagate.storage.repos.groups import GroupRepo
from wagate.storage.repos.media import MediaRepo
from wagate.storage.repos.messages import MessageRepo
from wagate.tasks import TaskSet
from wagate.webhooks.events import EventSink
from wagate.worker.host import Worker
from wagate.worker.runner import SessionChange

log = logging.getLogger(__name__)

ReceiptHandler = Callable[[str, ReceiptEvent], Awaitable[None]]
_MB = 1024 * 1024


class Ingest:
    """Entering starts the flag watcher; engine events reach it through :meth:`on_event`."""

    def __init__(
        self,
        settings: Settings,
        *,
        db: Database,
        clock: Clock,
        worker: Worker,
        audit: AuditRepo,
        sink: EventSink,
        blobs: BlobStore,
    ) -> None:
        self.worker = worker
        self.audit = audit
        self.messages = MessageRepo(db, clock)
        self.groups = GroupRepo(db, clock)
        self.media_repo = MediaRepo(db, clock)
        self.flags = FlagRepo(db, clock)
        self.blobs = blobs
        self.media = MediaStore(
            self.media_repo,
            blobs,
            max_bytes=int(settings.max_media_mb * _MB),
            other_max_bytes=int(settings.other_media_max_mb * _MB),
            prefix=settings.media_prefix,
            spool_dir=settings.data_dir / "spool",
        )
        self.pipeline = IngestPipeline(
            policy=policy_of(settings),
            messages=self.messages,
            groups=self.groups,
            media=self.media,
            audit=audit,
            sink=sink,
            clock=clock,
            link_for=worker.link,
        )
        self.group_sync = GroupSync(self.groups, audit, sink)
        self.watcher = FlagWatcher(
            self.flags,
            worker,
            audit,
            clock,
            interval_s=settings.worker_poll_ms / 1000,
            discover=self.discover,
        )
        self.on_receipt: ReceiptHandler | None = None
        self._discovered: set[str] = set()
        self._tasks = TaskSet("ingest")
        self._stack = contextlib.AsyncExitStack()

    async def __aenter__(self) -> Self:
        self.worker.route_events(self.on_event)
        self.worker.subscribe(self.on_change)
        await self._stack.enter_async_context(self._tasks)
        await self._stack.enter_async_context(self.watcher)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self._stack.aclose()

    async def on_event(self, session_id: str, event: EngineEvent) -> None:
        """Route one engine event; never raises into the session's loop.

        The pipeline audits its own failures; anything else that fails here
        is written to ``audit_log('error')`` too, so no event is lost unseen.
        """
        try:
            if isinstance(event, MessageEvent):
                await self.pipeline.handle(session_id, event)
            elif isinstance(event, GroupEvent):
                await self.group_sync.on_event(session_id, event)
            elif isinstance(event, ReceiptEvent) and self.on_receipt is not None:
                await self.on_receipt(session_id, event)
        except Exception as exc:
            kind = type(event).__name__
            log.exception("session %s: could not handle %s", session_id, kind)
            await self._audit_failure(session_id, event, exc)

    async def _audit_failure(self, session_id: str, event: EngineEvent, exc: Exception) -> None:
        data = {
            "code": "EVENT_FAILED",
            "msg": f"{type(event).__name__}: {type(exc).__name__}: {exc}"[:300],
            "ctx": _ctx_of(event),
        }
        try:
            await self.audit.add(session_id, AuditEvent.ERROR, clean(data))
        except Exception:
            log.exception("session %s: could not write audit_log error", session_id)

    async def on_change(self, change: SessionChange) -> None:
        """Discover groups on a session's first connection in this process (seed 003 §6)."""
        if change.event == "connected" and change.session_id not in self._discovered:
            self._discovered.add(change.session_id)
            self._tasks.spawn(self._discover_quietly(change.session_id), change.session_id)

    async def _discover_quietly(self, session_id: str) -> None:
        try:
            await self.discover(session_id)
        except Exception:
            self._discovered.discard(session_id)
            log.exception("session %s: group discovery failed", session_id)

    async def discover(self, session_id: str) -> int:
        link = self.worker.link(session_id)
        if link is None:
            return 0
        return await self.group_sync.discover(session_id, link)


def _ctx_of(event: EngineEvent) -> dict[str, Any]:
    if isinstance(event, MessageEvent):
        return {"wa_msg_id": event.id}
    if isinstance(event, ReceiptEvent):
        return {"wa_msg_id": event.message_ids[0] if event.message_ids else None}
    if isinstance(event, GroupEvent):
        return {"wa_group_id": event.jid}
    return {}


def policy_of(settings: Settings) -> IngestPolicy:
    return IngestPolicy(
        live_window=timedelta(milliseconds=settings.live_window_ms),
        link_window=timedelta(milliseconds=settings.link_window_ms),
        ingest_direct=settings.ingest_direct,
        ingest_from_me=settings.ingest_from_me,
        retry_min_s=settings.retry_min_ms / 1000,
        retry_max_s=max(settings.retry_min_ms, settings.retry_max_ms) / 1000,
    )
