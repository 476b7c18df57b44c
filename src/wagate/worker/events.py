"""Where a session's engine events go: the :class:`EventHandler` a worker is given.

A runner hands every event to its worker's handler together with the link it
came from, on the session's own event path: the next event is read only once
the handler returned (the engine acknowledges nothing a handler has not seen
through). The all-in-one process routes them with :class:`EventRoutes`::

    message, group  ─► the inbound side (ingest: store, media, webhooks)
    receipt         ─► the outbound side (the sender: statuses, webhooks)
    linked/unlinked ─► both (the sender drains its queue while linked;
                        ingest discovers groups and downloads media over the link)
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable
from typing import Protocol

from wagate.engine.base import GroupEvent, Link, MessageEvent, ReceiptEvent

log = logging.getLogger(__name__)


class InboundHandler(Protocol):
    """What is received: messages and group changes."""

    async def linked(self, session_id: str, link: Link) -> None:
        """The session is connected over ``link`` (until :meth:`unlinked`)."""
        ...

    async def unlinked(self, session_id: str) -> None: ...

    async def message(self, session_id: str, link: Link, event: MessageEvent) -> None: ...

    async def group(self, session_id: str, link: Link, event: GroupEvent) -> None: ...


class OutboundHandler(Protocol):
    """What is sent: the link to send over, and receipts of what was sent."""

    async def linked(self, session_id: str, link: Link) -> None: ...

    async def unlinked(self, session_id: str) -> None: ...

    async def receipt(self, session_id: str, event: ReceiptEvent) -> None: ...


class EventHandler(InboundHandler, OutboundHandler, Protocol):
    """Every event a runner passes on. A handler never raises into the session's loop."""


class EventRoutes:
    """An :class:`EventHandler` that routes to the inbound and the outbound side.

    A failure of either side is logged here and goes no further: one bad
    event must not end the session's stream. (Each side audits its own
    failures where an operator should see them.)
    """

    def __init__(self, inbound: InboundHandler, outbound: OutboundHandler) -> None:
        self.inbound = inbound
        self.outbound = outbound

    async def linked(self, session_id: str, link: Link) -> None:
        await _quietly(self.outbound.linked(session_id, link), session_id, "linked")
        await _quietly(self.inbound.linked(session_id, link), session_id, "linked")

    async def unlinked(self, session_id: str) -> None:
        await _quietly(self.outbound.unlinked(session_id), session_id, "unlinked")
        await _quietly(self.inbound.unlinked(session_id), session_id, "unlinked")

    async def message(self, session_id: str, link: Link, event: MessageEvent) -> None:
        await _quietly(self.inbound.message(session_id, link, event), session_id, "message")

    async def group(self, session_id: str, link: Link, event: GroupEvent) -> None:
        await _quietly(self.inbound.group(session_id, link, event), session_id, "group")

    async def receipt(self, session_id: str, event: ReceiptEvent) -> None:
        await _quietly(self.outbound.receipt(session_id, event), session_id, "receipt")


class NoEvents:
    """Drops every event: a worker with nothing wired (tools, some tests)."""

    async def linked(self, session_id: str, link: Link) -> None:
        return None

    async def unlinked(self, session_id: str) -> None:
        return None

    async def message(self, session_id: str, link: Link, event: MessageEvent) -> None:
        return None

    async def group(self, session_id: str, link: Link, event: GroupEvent) -> None:
        return None

    async def receipt(self, session_id: str, event: ReceiptEvent) -> None:
        return None


async def _quietly(step: Awaitable[None], session_id: str, what: str) -> None:
    try:
        await step
    except Exception:
        log.exception("session %s: the %s handler failed", session_id, what)
