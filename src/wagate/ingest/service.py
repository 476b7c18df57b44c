"""The inbound side of a worker: what its sessions receive goes into the database.

:class:`Ingest` is the worker's :class:`~wagate.worker.events.InboundHandler`.
On a session's event path it only stores: a message's row (the engine
acknowledges the event once that returns), a group's change. The rest of a
message, above all its media download, runs in a task the session owns,
so a slow object store never delays the session's next event, its receipts
or its disconnect. Those tasks end with the session's link; a row they left
unfinished is completed when the session is linked again, as is any left by
a crash (seed 003: nothing acknowledged is lost).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from wagate.domain.audit import AuditEvent
from wagate.domain.message import Message
from wagate.engine.base import EngineEvent, GroupEvent, Link, MessageEvent, ReceiptEvent
from wagate.ingest.groups import GroupSync
from wagate.ingest.pipeline import IngestPipeline
from wagate.lifecycle import Service
from wagate.storage.repos.audit import AuditRepo
from wagate.storage.repos.messages import MessageRepo
from wagate.storage.sanitize import clean

log = logging.getLogger(__name__)


class Ingest(Service):
    """Stores what sessions receive; see the module docstring."""

    def __init__(
        self,
        *,
        pipeline: IngestPipeline,
        groups: GroupSync,
        messages: MessageRepo,
        audit: AuditRepo,
        stop_timeout_s: float = 10.0,
    ) -> None:
        super().__init__("ingest", stop_timeout_s=stop_timeout_s)
        self.pipeline = pipeline
        self.groups = groups
        self.messages = messages
        self.audit = audit
        self._links: dict[str, Link] = {}
        self._gone: dict[str, asyncio.Event] = {}  # per session: set when its link goes down
        self._work: dict[str, set[asyncio.Task[Any]]] = {}  # per session: completions
        self._discovered: set[str] = set()

    async def drain(self) -> None:
        pending = [task for tasks in self._work.values() for task in tasks]
        if pending:
            await asyncio.wait(pending)

    # --- the worker's InboundHandler -------------------------------------------------

    async def linked(self, session_id: str, link: Link) -> None:
        """Complete what an earlier link left unfinished; discover groups the first time."""
        self._links[session_id] = link
        self._gone[session_id] = asyncio.Event()
        self._spawn(session_id, self._recover(session_id, link), "recover")
        if session_id not in self._discovered:  # seed 003 §6: on the first connection
            self._discovered.add(session_id)
            self._spawn(session_id, self._discover_quietly(session_id, link), "discover")

    async def unlinked(self, session_id: str) -> None:
        """The link is gone: downloads over it stop; their messages wait for the next link.

        Nothing is cancelled midway through a database write: each task
        finishes its step, and a download stops between two chunks.
        """
        self._links.pop(session_id, None)
        gone = self._gone.pop(session_id, None)
        if gone is not None:
            gone.set()

    async def message(self, session_id: str, link: Link, event: MessageEvent) -> None:
        """Store the row now; download, link and announce in the session's own task."""
        try:
            message = await self.pipeline.receive(session_id, event)
            if message is None:
                return
            if message.is_media and message.media_id is None:
                self._spawn(
                    session_id, self._complete(session_id, link, message), message.wa_msg_id
                )
            else:
                await self.pipeline.complete(session_id, link, message)
        except Exception as exc:
            await self._event_failed(session_id, event, exc)

    async def group(self, session_id: str, link: Link, event: GroupEvent) -> None:
        try:
            await self.groups.on_event(session_id, event)
        except Exception as exc:
            await self._event_failed(session_id, event, exc)

    # --- asked by operators (seed 003's fetch-groups flag) -----------------------------

    async def discover(self, session_id: str) -> int:
        """Discover the session's groups now; 0 when it is not connected here."""
        link = self._links.get(session_id)
        if link is None:
            return 0
        return await self.groups.discover(session_id, link)

    # --- the session's own tasks ---------------------------------------------------------

    def _spawn(self, session_id: str, work: Any, name: str) -> None:
        task = self.tasks.spawn(work, f"{session_id}:{name}")
        tasks = self._work.setdefault(session_id, set())
        tasks.add(task)
        task.add_done_callback(tasks.discard)

    async def _complete(self, session_id: str, link: Link, message: Message) -> None:
        gone = self._gone.get(session_id)
        if gone is None or self._links.get(session_id) is not link:
            return  # that link is down already: the next one completes the message
        try:
            await self.pipeline.complete(session_id, link, message, gone=gone)
        except Exception:  # the pipeline audits its steps; this is a bug, and the row waits
            log.exception("session %s: could not complete message %s", session_id, message.id)

    async def _recover(self, session_id: str, link: Link) -> None:
        try:
            found = await self.messages.unfinished(session_id, before=self.pipeline.clock.now())
        except Exception:
            log.exception("session %s: could not look for unfinished messages", session_id)
            return
        if found:
            log.info("session %s: completing %d unfinished message(s)", session_id, len(found))
        for message in found:
            await self._complete(session_id, link, message)

    async def _discover_quietly(self, session_id: str, link: Link) -> None:
        try:
            await self.groups.discover(session_id, link)
        except Exception:
            self._discovered.discard(session_id)
            log.exception("session %s: group discovery failed", session_id)

    async def _event_failed(self, session_id: str, event: EngineEvent, exc: Exception) -> None:
        """Never raise into the session's loop: the failure goes to ``audit_log('error')``."""
        kind = type(event).__name__
        log.error("session %s: could not handle %s", session_id, kind, exc_info=exc)
        data = {
            "code": "EVENT_FAILED",
            "msg": f"{kind}: {type(exc).__name__}: {exc}"[:300],
            "ctx": _ctx_of(event),
        }
        try:
            await self.audit.add(session_id, AuditEvent.ERROR, clean(data))
        except Exception:
            log.exception("session %s: could not write audit_log error", session_id)


def _ctx_of(event: EngineEvent) -> dict[str, Any]:
    if isinstance(event, MessageEvent):
        return {"wa_msg_id": event.id}
    if isinstance(event, ReceiptEvent):
        return {"wa_msg_id": event.message_ids[0] if event.message_ids else None}
    if isinstance(event, GroupEvent):
        return {"wa_group_id": event.jid}
    return {}
