"""Seed 001's worker-proxy, served by wagate: what edge workers ask and report.

An *edge worker* (seed 001's ``wa-worker``, or a wagate worker started with
``--uplink edge``) hosts sessions on its own: it polls for instances to
connect, reports their status, fetches their queued messages, says which it
sent and posts what it received. Here an instance is a session, and each
verb goes through the path the fleet's own workers use: status reports
through :class:`~wagate.control.session_reports.SessionReports` (never
rolling back a fresher row, with the usual ``session.*`` webhooks), sends
through the outbound queue (``message.sent``/``message.failed``), received
messages through the ingest pipeline (dedupe by id, media store,
``message.received``).

Never two connections on one account: handing an instance to worker W
claims it for W in ``session_leases`` under ``edge:<W>`` for the claim TTL,
renewed by each of W's calls about it; another edge worker is not offered it
meanwhile, and the fleet never places an edge session. Each queued message
handed out is claimed the same way (``messages.claimed_until``), so two polls
never get one message. See ``docs/edge.md``.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from typing import Any

from wagate.clock import Clock
from wagate.control.edge_bodies import (
    STATUSES,
    Handed,
    InlineDownloader,
    Received,
    SentReport,
    StatusReport,
    checked_data_url,
    jid_of,
    kind_of,
)
from wagate.control.session_reports import SessionReports
from wagate.domain.lease import edge_holder
from wagate.domain.message import MEDIA_KINDS, MediaRef, Message, MessageKind, Outgoing
from wagate.domain.reports import disconnect_kind, state_after
from wagate.domain.session import SEED_001, Session, SessionState, Uplink
from wagate.engine.base import MessageEvent
from wagate.errors import Conflict, InvalidInput, NotConfigured, NotFound, Unauthorized
from wagate.ids import phone_of_jid
from wagate.ingest.pipeline import IngestPipeline
from wagate.outbound import queue
from wagate.storage.repos.groups import GroupRepo
from wagate.storage.repos.leases import SessionLeaseRepo
from wagate.storage.repos.outbound import OutboundRepo
from wagate.storage.repos.sessions import SessionRepo
from wagate.storage.spool import MediaSpool, SpoolError
from wagate.webhooks.events import Event, group_changes, message_status

log = logging.getLogger(__name__)

FleetIdle = Callable[[], Awaitable[bool]]
"""True while no fleet worker lives: edge workers are then offered fleet sessions too."""

# seed 001 offers instances whose status is DISCONNECTED or CONNECTING; of those, the ones
# that should run (a stopped or logged-out session waits for an operator's connect), and a
# CONNECTED one whose claim lapsed (the worker that ran it is gone)
_OFFERED = frozenset(s for s in SessionState if s.is_running and SEED_001[s] != "CONNECTED")
FOREIGN_WORKER = "edge"  # a worker that does not name itself (X-Wagate-Worker); all share it
_DISCONNECTED = "the edge worker reported the session disconnected"


class EdgeBackend:
    """The five verbs of seed 001's worker-proxy; see the module docstring.

    ``secret``: ``WORKER_SECRET`` (None: unset, every call is refused 503).
    ``fleet_idle``: None in ``wagate serve`` (its embedded worker hosts every
    fleet session); in ``wagate control``, whether no fleet worker lives.
    ``max_attempts``: hand-outs of one message before it is failed.
    ``prefix``: where the HTTP layer serves the verbs.
    """

    def __init__(
        self,
        *,
        sessions: SessionRepo,
        leases: SessionLeaseRepo,
        outbound: OutboundRepo,
        spool: MediaSpool,
        reports: SessionReports,
        pipeline: IngestPipeline,
        clock: Clock,
        secret: str | None,
        groups: GroupRepo | None = None,
        claim_ttl: timedelta,
        max_attempts: int = 10,
        fleet_idle: FleetIdle | None = None,
        prefix: str = "/worker-proxy",
        max_media_bytes: int = 25 * 1024 * 1024,
    ) -> None:
        self._sessions = sessions
        self._leases = leases
        self._outbound = outbound
        self._spool = spool
        self._reports = reports
        self._pipeline = pipeline
        self._groups = groups
        self._clock = clock
        self._secret = secret
        self._ttl = claim_ttl
        self._max_attempts = max_attempts
        self._fleet_idle = fleet_idle
        self.prefix = prefix
        self.max_media_bytes = max_media_bytes

    # --- who may call --------------------------------------------------------------

    def check_secret(self, given: str | None) -> None:
        """``Authorization: Bearer <WORKER_SECRET>``, compared in constant time."""
        if self._secret is None:
            raise NotConfigured("WORKER_SECRET is not set: the worker-proxy is off")
        if not given:
            raise Unauthorized("missing worker secret: send Authorization: Bearer")
        if not hmac.compare_digest(given.encode(), self._secret.encode()):
            raise Unauthorized("wrong worker secret")

    # --- GET /disconnected-instances -----------------------------------------------

    @property
    def claim_ttl_ms(self) -> int:
        return int(self._ttl.total_seconds() * 1000)

    async def disconnected(self, worker: str, *, limit: int | None = None) -> list[str]:
        """The instances ``worker`` should connect, each claimed for it now.

        Those it holds already are listed again (their claims renewed) beside
        at most ``limit`` new ones (None: no limit). A connected instance is
        offered once its claim lapsed (the worker that ran it is gone); to a
        wagate worker (one that names itself), also while it holds it.
        """
        holder = edge_holder(worker)
        uplinks = {Uplink.EDGE}
        if self._fleet_idle is not None and await self._fleet_idle():
            uplinks.add(Uplink.FLEET)  # no fleet worker lives: the edge may host them all
        held = {lease.session_id for lease in await self._leases.held_by(holder)}
        waiting = await self._leases.claimable(holder, uplinks, _OFFERED)
        connected = await self._leases.claimable(holder, uplinks, {SessionState.CONNECTED})
        if worker == FOREIGN_WORKER:  # seed 001's own worker: not those it runs connected
            connected = [sid for sid in connected if sid not in held]
        offered, new = [], 0
        for session_id in [*waiting, *connected]:
            mine = session_id in held
            if not mine and limit is not None and new >= limit:
                continue
            if await self._leases.claim(session_id, holder, self._ttl) is not None:
                offered.append(session_id)
                new += not mine
        return offered

    # --- POST /update-status -------------------------------------------------------

    async def update_status(self, worker: str, report: StatusReport) -> None:
        session = await self._hold(worker, report.instance_id)
        sid, at = session.id, self._clock.now()
        match report.status:
            case "CONNECTING":
                qr = report.qr or checked_data_url(report.qr_code)
                if qr:
                    await self._reports.qr_code(sid, qr, at)
                else:
                    await self._reports.connecting(sid, at)
            case "CONNECTED":
                if report.phone:
                    await self._reports.connected(sid, report.phone, at, field="phone")
                else:
                    await self._reports.status(sid, "connected", None, at)
            case "DISCONNECTED":
                await self._disconnected(session, report.reason, at)
            case _:
                words = ", ".join(STATUSES)
                raise InvalidInput("status", f"unknown status {report.status[:40]!r}: use {words}")

    async def _disconnected(self, session: Session, reason: str | None, at: datetime) -> None:
        """Reconnecting, or where ``reason`` leads (logged out, banned, …)."""
        code = reason or "connection_lost"
        if (
            session.status is SessionState.RECONNECTING
            and not state_after(disconnect_kind(code)).needs_operator
        ):
            return  # it says so already
        text = f"{_DISCONNECTED}: {reason}" if reason else _DISCONNECTED
        await self._reports.disconnected(session.id, text[:1000], code, at)

    # --- GET /queued-messages ------------------------------------------------------

    async def queued(self, worker: str, instance_id: str) -> list[Handed]:
        """The instance's queued messages, oldest first, each claimed for ``worker``."""
        session = await self._hold(worker, instance_id)
        claimed = await self._outbound.claim_queued(session.id, edge_holder(worker), self._ttl)
        handed = []
        for message in claimed:
            outgoing = await self._outgoing(message)
            if outgoing is not None:
                handed.append(Handed(message, outgoing))
        return handed

    async def _outgoing(self, message: Message) -> Outgoing | None:
        """What to send; None when the message can never be sent (it is failed, as the
        fleet's sender fails it)."""
        if message.attempts > self._max_attempts:
            await self._fail(message, f"gave up after {message.attempts - 1} hand-outs")
            return None
        ref = queue.media_of(message.payload)
        try:
            data = await self._spool.load(ref) if ref else None
            return queue.outgoing(message.payload or {}, id=message.wa_msg_id, media_data=data)
        except (SpoolError, ValueError, KeyError, TypeError) as exc:
            await self._fail(message, f"the queued message cannot be read: {exc}")
            return None

    # --- POST /mark-sent -----------------------------------------------------------

    async def mark_sent(self, worker: str, report: SentReport) -> None:
        """Sent or failed, with the usual event; a repeat changes nothing."""
        session = await self._touch(worker, report.instance_id)
        message = await self._outbound.outbound(session.id, report.message_id)
        if message is None and report.wa_message_id:  # a repeat: it carries WhatsApp's id now
            message = await self._outbound.outbound(session.id, report.wa_message_id)
        if message is None:
            raise NotFound(f"message {report.message_id[:128]!r} of {session.id!r} not found")
        if message.status != "queued":
            return  # settled already (a repeat, or a receipt overtook it)
        if report.sent:
            await self._sent(message, report.wa_message_id)
        else:
            await self._fail(message, report.error or "the edge worker could not send it")

    async def _sent(self, message: Message, wa_message_id: str | None) -> None:
        wa_id = message.wa_msg_id
        if wa_message_id and wa_message_id != wa_id:
            # WhatsApp's id, unless another row of the session has it (an echo posted first)
            if await self._outbound.outbound(message.session_id, wa_message_id) is None:
                wa_id = wa_message_id
        await self._outbound.mark_sent(
            message.id,
            wa_msg_id=wa_id,
            at=self._clock.now(),
            payload=_stripped(message),
            announce=message_status(Event.MESSAGE_SENT, self._clock.now()),
            only_queued=True,
        )
        await self._drop_media(message)

    async def _fail(self, message: Message, error: str) -> None:
        log.getChild(message.session_id).warning("message %s failed: %s", message.id, error)
        await self._outbound.mark_failed(
            message.id,
            error,
            _stripped(message),
            announce=message_status(Event.MESSAGE_FAILED, self._clock.now(), error=error),
        )
        await self._drop_media(message)

    async def _drop_media(self, message: Message) -> None:
        ref = queue.media_of(message.payload)
        if ref:
            await self._spool.discard(ref)

    # --- POST /inbound -------------------------------------------------------------

    async def inbound(self, worker: str, received: Received) -> None:
        """Through the ingest pipeline, as an engine's message event is: stored once."""
        session = await self._touch(worker, received.instance_id)
        event = self._event(received)
        if event.is_group:
            await self._learn_group(session.id, event.chat)
        message = await self._pipeline.receive(session.id, event, received_at=received.received_at)
        if message is not None:
            media = received.media.data if received.media else None
            downloader = InlineDownloader(media, received.media_error)
            await self._pipeline.complete(session.id, downloader, message)

    async def _learn_group(self, session_id: str, jid: str) -> None:
        """An edge session's groups are learned from their messages (no link to list them
        on): a group first heard of is recorded, not monitored, for an operator to monitor."""
        if self._groups is not None and await self._groups.get(session_id, jid) is None:
            await self._groups.upsert(
                session_id, jid, None, announce=group_changes(self._clock.now())
            )

    def _event(self, r: Received) -> MessageEvent:
        sender = jid_of(r.sender, "from")
        chat = jid_of(r.chat, "chat") if r.chat else sender
        kind = kind_of(r.kind, r.media)
        media = None
        if kind in MEDIA_KINDS:
            data = r.media.data if r.media else b""
            media = MediaRef(
                kind=kind,
                mimetype=r.media.mimetype if r.media else None,
                size=len(data) if r.media else None,
                filename=r.media.filename if r.media else None,
                sha256=hashlib.sha256(data).hexdigest() if r.media else None,
            )
            if media.size is not None and media.size > self.max_media_bytes:
                raise InvalidInput("media", f"media larger than {self.max_media_bytes} bytes")
        return MessageEvent(
            id=r.message_id,
            chat=chat,
            sender=sender,
            timestamp=r.timestamp or self._clock.now(),
            kind=kind,
            text=r.text,
            from_me=r.from_me,
            sender_pn=sender if phone_of_jid(sender) else None,
            sender_lid=r.sender_lid,
            push_name=r.push_name,
            media=media,
            location=r.location if kind is MessageKind.LOCATION else None,
            contact=r.contact if kind is MessageKind.CONTACT else None,
            quoted_id=r.quoted_id,
            react_to=r.react_to if kind is MessageKind.REACTION else None,
            raw={"edge": True},
        )

    # --- claims --------------------------------------------------------------------

    async def _hold(self, worker: str, instance_id: str) -> Session:
        """The instance, claimed (or its claim renewed) for ``worker``; 409 when it is not
        the edge's to host, or another live edge worker holds it."""
        session = await self._sessions.require(instance_id)
        if not await self._hosts(session):
            raise Conflict(
                f"instance {session.id!r} is hosted by the fleet, not by edge workers",
                code="instance_on_fleet",
            )
        if not session.status.is_running:  # stopped by an operator, or logged out: let it go
            raise Conflict(
                f"instance {session.id!r} is {session.status.value}: it waits for an "
                "operator's connect",
                code="instance_at_rest",
            )
        if await self._leases.claim(session.id, edge_holder(worker), self._ttl) is None:
            raise Conflict(
                f"instance {session.id!r} is held by another worker", code="instance_claimed"
            )
        return session

    async def _touch(self, worker: str, instance_id: str) -> Session:
        """The instance; its claim renewed when it can be. What was received or sent is
        recorded whoever holds the instance now: it happened."""
        session = await self._sessions.require(instance_id)
        if await self._hosts(session):
            await self._leases.claim(session.id, edge_holder(worker), self._ttl)
        return session

    async def _hosts(self, session: Session) -> bool:
        if session.uplink is Uplink.EDGE:
            return True
        return self._fleet_idle is not None and await self._fleet_idle()


def _stripped(message: Message) -> dict[str, Any] | None:
    """The payload without media bytes: what the row keeps once the send is settled."""
    ref = queue.media_of(message.payload)
    return queue.settled(message.payload, MediaSpool.stripped(ref) if ref else None)
