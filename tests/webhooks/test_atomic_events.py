"""Every event commits in the transaction of the state it reports: both or neither.

Each test writes through the repository method that records a state with its
events, and makes the event write fail where, before, a crash or a database
outage between the state write and the event write lost the event: before the
delivery rows are written, and after they are written but before the commit.
Observed in the database: the state's row and the delivery rows.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

import pytest

from wagate.clock import ManualClock
from wagate.domain.event import OutboxEvent
from wagate.domain.group import GroupInfo
from wagate.domain.message import Message
from wagate.domain.session import ChangeKind, DisconnectKind, SessionChange, SessionState
from wagate.engine.base import LinkOptions
from wagate.ingest.groups import GroupSync
from wagate.storage.auth_state import MemoryAuthStore
from wagate.storage.db import Database
from wagate.storage.repos.audit import AuditRepo
from wagate.storage.repos.groups import GroupRepo
from wagate.storage.repos.messages import MessageRepo
from wagate.storage.repos.outbound import NewOutbound, OutboundRepo
from wagate.storage.repos.sessions import SessionRepo
from wagate.storage.repos.webhooks import DeliveryRepo, SubscriptionRepo
from wagate.testing import RecordingOutbox, ScriptedLink
from wagate.webhooks.events import Event, message_received, message_status, session_events

ALICE = "6281111111111@s.whatsapp.net"


class Outage(Exception):
    """The database went away in the middle of a transaction."""


class LateFailingOutbox(RecordingOutbox):
    """``fail_next`` strikes after the delivery rows are written, before the commit."""

    async def write_in(self, conn: Any, events: Sequence[OutboxEvent]) -> int:
        error, self.fail_next = self.fail_next, None
        count = await super().write_in(conn, events)
        if error is not None:
            raise error
        return count


@pytest.fixture(params=["before the deliveries", "after the deliveries"])
def outbox(request: pytest.FixtureRequest, db: Database, clock: ManualClock) -> RecordingOutbox:
    """The real outbox (recording); where its ``fail_next`` strikes is the parameter."""
    if request.param == "before the deliveries":
        return RecordingOutbox(db, clock)
    return LateFailingOutbox(db, clock)


@pytest.fixture
async def deliveries(db: Database, clock: ManualClock) -> DeliveryRepo:
    subs = SubscriptionRepo(db, clock)
    await subs.create("all", url="http://127.0.0.1/h", events=["*"], secret="s" * 16, headers={})
    return DeliveryRepo(db, clock)


async def events(deliveries: DeliveryRepo) -> list[tuple[str, dict[str, Any]]]:
    """What was committed to the outbox, oldest first: ``(event, data)``."""
    found = sorted(await deliveries.find(), key=lambda d: d.id)
    return [(d.event, d.payload["data"]) for d in found]


def change(
    state: SessionState, kind: ChangeKind, at: datetime, data: dict[str, Any] | None = None
) -> SessionChange:
    return SessionChange("s1", state, kind, at, data or {})


# --- sessions ----------------------------------------------------------------------------


async def test_a_session_state_and_its_event_commit_together(
    db: Database, clock: ManualClock, outbox: RecordingOutbox, deliveries: DeliveryRepo
) -> None:
    sessions = SessionRepo(db, clock, outbox=outbox, announce=session_events)
    await sessions.create("s1", engine="sandbox")
    linked = {"phone": "628", "jid": "628:1@s.whatsapp.net", "push_name": "Me"}
    await sessions.record_connected(
        change(SessionState.CONNECTED, ChangeKind.CONNECTED, clock.now(), linked),
        phone_number="628",
        jid="628:1@s.whatsapp.net",
        wa_name="Me",
        device_name=None,
        lid=None,
    )
    # recorded by the write itself: no listener, no second write was needed
    ((name, data),) = await events(deliveries)
    assert name == "session.status"
    assert (data["state"], data["status"], data["phone"], data["pushName"]) == (
        "connected",
        "connected",
        "628",
        "Me",
    )
    await sessions.update("s1", proxy="socks5://p:1")  # not a lifecycle change: no event
    assert len(await events(deliveries)) == 1

    lost = change(
        SessionState.RECONNECTING,
        ChangeKind.DISCONNECTED,
        clock.now(),
        {"kind": "connection_lost", "reason": "network down"},
    )
    outbox.fail_next = Outage("connection lost while recording the disconnect")
    with pytest.raises(Outage):
        await sessions.record_disconnected(lost, DisconnectKind.CONNECTION_LOST, "network down")
    session = await sessions.get("s1")
    assert session is not None and session.status is SessionState.CONNECTED  # neither was kept
    assert session.disconnect_reason is None and session.is_connected
    assert len(await events(deliveries)) == 1

    await sessions.record_disconnected(lost, DisconnectKind.CONNECTION_LOST, "network down")
    name, data = (await events(deliveries))[-1]
    assert (name, data["state"], data["disconnectKind"], data["reason"]) == (
        "session.status",
        "reconnecting",
        "connection_lost",
        "network down",
    )

    stopped = change(SessionState.STOPPED, ChangeKind.STATE, clock.now())
    outbox.fail_next = Outage("connection lost while recording the stop")
    with pytest.raises(Outage):
        await sessions.record(stopped)
    session = await sessions.get("s1")
    assert session is not None and session.status is SessionState.RECONNECTING
    assert len(await events(deliveries)) == 2
    await sessions.record(stopped)
    name, data = (await events(deliveries))[-1]
    assert (name, data["state"]) == ("session.status", "stopped")


async def test_a_qr_and_its_event_commit_together(
    db: Database, clock: ManualClock, outbox: RecordingOutbox, deliveries: DeliveryRepo
) -> None:
    sessions = SessionRepo(db, clock, outbox=outbox, announce=session_events)
    await sessions.create("s1", engine="sandbox")
    now, expires = clock.now(), clock.now() + timedelta(seconds=60)
    shown = {"qr": "2@abc", "expires_at": expires.isoformat()}
    qr = change(SessionState.QR, ChangeKind.QR, now, shown)
    outbox.fail_next = Outage("connection lost while recording the QR")
    with pytest.raises(Outage):
        await sessions.record_qr(qr, "2@abc", now, expires)
    session = await sessions.get("s1")
    assert session is not None and (session.status, session.qr) == (SessionState.CREATED, None)
    assert await events(deliveries) == []

    await sessions.record_qr(qr, "2@abc", now, expires)
    # a pairing code is a change the runner records too (``update`` writes no event)
    code = change(SessionState.QR, ChangeKind.PAIR_CODE, now, {"code": "ABCD-EFGH"})
    await sessions.record(code, pair_code="ABCD-EFGH")
    await sessions.update("s1", worker_id="w-2")
    (qr_name, qr_data), (pair, pair_data) = await events(deliveries)
    assert (qr_name, qr_data["qr"], qr_data["expiresAt"]) == (
        "session.qr",
        "2@abc",
        expires.isoformat(),
    )
    assert (pair, pair_data["pairCode"]) == ("session.qr", "ABCD-EFGH")
    session = await sessions.get("s1")
    assert session is not None and (session.qr, session.pair_code) == ("2@abc", "ABCD-EFGH")


# --- message statuses ----------------------------------------------------------------------


async def _queued(outbound: OutboundRepo, wa_msg_id: str) -> Message:
    new = NewOutbound("s1", wa_msg_id, ALICE, "text", "hi", payload={"text": "hi"})
    message, created = await outbound.enqueue(new)
    assert created and message.status == "queued"
    return message


async def _status(messages: MessageRepo, message: Message) -> str:
    found = await messages.get(message.id)
    assert found is not None
    return found.status


async def test_a_send_and_its_event_commit_together(
    db: Database, clock: ManualClock, outbox: RecordingOutbox, deliveries: DeliveryRepo
) -> None:
    outbound, messages = OutboundRepo(db, clock, outbox=outbox), MessageRepo(db, clock)
    message = await _queued(outbound, "3EB0SENT")
    sent = message_status(Event.MESSAGE_SENT, clock.now())
    outbox.fail_next = Outage("connection lost while recording the send")
    with pytest.raises(Outage):
        await outbound.mark_sent(
            message.id, wa_msg_id="3EB0SENT", at=clock.now(), payload=None, announce=sent
        )
    assert await _status(messages, message) == "queued"  # sent again, not lost
    assert await events(deliveries) == []

    marked = await outbound.mark_sent(
        message.id, wa_msg_id="3EB0SENT", at=clock.now(), payload=None, announce=sent
    )
    assert marked is not None and marked.status == "sent"
    ((name, data),) = await events(deliveries)
    assert (name, data["id"], data["messageId"], data["status"]) == (
        "message.sent",
        message.id,
        "3EB0SENT",
        "sent",
    )


async def test_a_receipt_and_its_event_commit_together(
    db: Database, clock: ManualClock, outbox: RecordingOutbox, deliveries: DeliveryRepo
) -> None:
    outbound, messages = OutboundRepo(db, clock, outbox=outbox), MessageRepo(db, clock)
    message = await _queued(outbound, "3EB0ACK")
    await outbound.mark_sent(message.id, wa_msg_id="3EB0ACK", at=clock.now(), payload=None)
    at = clock.now()
    ack = message_status(Event.MESSAGE_ACK, clock.now(), at=at.isoformat(), by=None)
    outbox.fail_next = Outage("connection lost while recording the receipt")
    with pytest.raises(Outage):
        await outbound.apply_receipt("s1", ["3EB0ACK"], "delivered", at, ack)
    assert await _status(messages, message) == "sent"
    assert await events(deliveries) == []

    (moved,) = await outbound.apply_receipt("s1", ["3EB0ACK"], "delivered", at, ack)
    assert moved.status == "delivered"
    ((name, data),) = await events(deliveries)
    assert (name, data["messageId"], data["status"], data["at"]) == (
        "message.ack",
        "3EB0ACK",
        "delivered",
        at.isoformat(),
    )
    # a receipt that moves nothing announces nothing
    assert await outbound.apply_receipt("s1", ["3EB0ACK"], "delivered", at, ack) == []
    assert len(await events(deliveries)) == 1


async def test_a_failure_and_its_event_commit_together(
    db: Database, clock: ManualClock, outbox: RecordingOutbox, deliveries: DeliveryRepo
) -> None:
    outbound, messages = OutboundRepo(db, clock, outbox=outbox), MessageRepo(db, clock)
    message = await _queued(outbound, "3EB0FAIL")
    await outbound.begin_attempt(message.id)
    failed = message_status(Event.MESSAGE_FAILED, clock.now(), error="invalid recipient")
    outbox.fail_next = Outage("connection lost while recording the failure")
    with pytest.raises(Outage):
        await outbound.mark_failed(message.id, "invalid recipient", None, announce=failed)
    assert await _status(messages, message) == "queued"
    assert await events(deliveries) == []

    marked = await outbound.mark_failed(message.id, "invalid recipient", None, announce=failed)
    assert marked is not None and marked.status == "failed"
    ((name, data),) = await events(deliveries)
    assert (name, data["status"], data["error"], data["attempts"]) == (
        "message.failed",
        "failed",
        "invalid recipient",
        1,
    )


# --- received messages ---------------------------------------------------------------------


async def test_a_received_message_is_marked_notified_with_its_event_only(
    db: Database, clock: ManualClock, outbox: RecordingOutbox, deliveries: DeliveryRepo
) -> None:
    messages = MessageRepo(db, clock, outbox=outbox)
    stored = await messages.insert_inbound(
        {
            "session_id": "s1",
            "wa_msg_id": "3EB0IN",
            "chat_id": ALICE,
            "sender": ALICE,
            "kind": "text",
            "text": "ping",
            "ts": clock.now(),
        }
    )
    assert stored is not None
    received = [message_received(stored, clock.now())]
    later = clock.now() + timedelta(seconds=1)
    outbox.fail_next = Outage("connection lost while recording message.received")
    with pytest.raises(Outage):
        await messages.mark_notified(stored.id, received)
    # still unfinished: completed (and announced) again when the session links
    assert [m.id for m in await messages.unfinished("s1", before=later)] == [stored.id]
    assert await events(deliveries) == []

    await messages.mark_notified(stored.id, received)
    assert await messages.unfinished("s1", before=later) == []
    ((name, data),) = await events(deliveries)
    assert (name, data["id"], data["waMessageId"], data["text"]) == (
        "message.received",
        stored.id,
        "3EB0IN",
        "ping",
    )
    await messages.mark_notified(stored.id, received)  # a racing second completion
    assert len(await events(deliveries)) == 1  # announced once


# --- groups --------------------------------------------------------------------------------


async def test_a_group_row_and_its_event_commit_together(
    db: Database, clock: ManualClock, outbox: RecordingOutbox, deliveries: DeliveryRepo
) -> None:
    groups, audit = GroupRepo(db, clock, outbox=outbox), AuditRepo(db, clock)
    sync = GroupSync(groups, audit, clock)
    link = ScriptedLink([], MemoryAuthStore("s1"), LinkOptions())
    link.group_list = [GroupInfo("1@g.us", "Team", 3)]
    outbox.fail_next = Outage("connection lost while recording group.discovered")
    with pytest.raises(Outage):
        await sync.discover("s1", link)
    assert await groups.get("s1", "1@g.us") is None  # no row without its group.discovered
    assert await events(deliveries) == []

    assert await sync.discover("s1", link) == 1
    link.group_list = [GroupInfo("1@g.us", "Team HQ", 3)]
    outbox.fail_next = Outage("connection lost while recording group.renamed")
    with pytest.raises(Outage):
        await sync.discover("s1", link)
    group = await groups.get("s1", "1@g.us")
    assert group is not None and group.name == "Team"  # no rename without its event
    assert await audit.recent("s1", event="group_rename") == []

    await sync.discover("s1", link)
    assert [name for name, _ in await events(deliveries)] == ["group.discovered", "group.renamed"]
    (rename,) = await audit.recent("s1", event="group_rename")
    assert rename.data == {"from": "Team", "to": "Team HQ", "wa_group_id": "1@g.us"}
