"""Owner-only writes carry the lease's token: a stale one writes nothing and raises StaleLease.

Every fenced write of :class:`SessionRepo` and :class:`OutboundRepo` is tried
with each way a token goes stale (an older epoch, another worker's name, a
released lease, no lease at all): the row and the webhook outbox must be
exactly as before. With a valid token they write as usual, and without fencing
(``fences=None``, the all-in-one gateway) nothing changes.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import pytest
import sqlalchemy as sa

from wagate.clock import ManualClock
from wagate.domain.lease import Fence
from wagate.domain.message import Message
from wagate.domain.session import ChangeKind, DisconnectKind, SessionChange, SessionState
from wagate.errors import StaleLease
from wagate.storage.db import Database, create_engine
from wagate.storage.outbox import Outbox
from wagate.storage.repos.leases import SessionLeaseRepo
from wagate.storage.repos.messages import MessageRepo
from wagate.storage.repos.outbound import NewOutbound, OutboundRepo
from wagate.storage.repos.sessions import SessionRepo
from wagate.storage.repos.webhooks import DeliveryRepo, SubscriptionRepo
from wagate.testing import until
from wagate.webhooks.events import Event, message_status, session_events

from ..conftest import PG_URL

TTL = timedelta(seconds=30)
ALICE = "6281111111111@s.whatsapp.net"


@dataclass
class HeldFences:
    """This process's fences, as a worker's lease keeper would hand them out."""

    held: dict[str, Fence] = field(default_factory=dict)

    def fence_for(self, session_id: str) -> Fence | None:
        return self.held.get(session_id)


@dataclass
class World:
    db: Database
    clock: ManualClock
    fences: HeldFences
    leases: SessionLeaseRepo
    sessions: SessionRepo
    outbound: OutboundRepo
    messages: MessageRepo
    deliveries: DeliveryRepo

    async def own(self, session_id: str, worker_id: str = "w1") -> Fence:
        lease = await self.leases.assign(session_id, worker_id, TTL)
        assert lease is not None
        fence = Fence(session_id, worker_id, lease.epoch)
        self.fences.held[session_id] = fence
        return fence

    async def queued(self, wa_msg_id: str, session_id: str = "s1") -> Message:
        new = NewOutbound(session_id, wa_msg_id, ALICE, "text", "hi", payload={"text": "hi"})
        message, _ = await self.outbound.enqueue(new)
        return message

    async def message(self, message_id: int) -> Message:
        found = await self.messages.get(message_id)
        assert found is not None
        return found

    async def event_count(self) -> int:
        return len(await self.deliveries.find())


@pytest.fixture
async def world(db: Database, clock: ManualClock) -> World:
    await SubscriptionRepo(db, clock).create(
        "all", url="http://127.0.0.1/h", events=["*"], secret="s" * 16, headers={}
    )
    fences = HeldFences()
    outbox = Outbox(db, clock)
    sessions = SessionRepo(db, clock, outbox=outbox, announce=session_events, fences=fences)
    world = World(
        db=db,
        clock=clock,
        fences=fences,
        leases=SessionLeaseRepo(db, clock),
        sessions=sessions,
        outbound=OutboundRepo(db, clock, outbox=outbox, fences=fences),
        messages=MessageRepo(db, clock),
        deliveries=DeliveryRepo(db, clock),
    )
    await sessions.create("s1", engine="sandbox")
    return world


def change(state: SessionState, world: World, session_id: str = "s1") -> SessionChange:
    return SessionChange(session_id, state, ChangeKind.STATE, world.clock.now())


# --- the ways a token goes stale ----------------------------------------------------


async def stale_epoch(world: World, fence: Fence) -> None:
    await world.leases.bump_all(fence.worker_id)  # another process took the worker id over


async def another_worker(world: World, fence: Fence) -> None:
    world.fences.held["s1"] = Fence("s1", "w2", fence.epoch)


async def taken_over(world: World, fence: Fence) -> None:
    await world.clock.advance(TTL.total_seconds())
    assert await world.leases.assign("s1", "w2", TTL) is not None


async def released(world: World, fence: Fence) -> None:
    assert await world.leases.release(fence)


async def no_fence(world: World, fence: Fence) -> None:
    del world.fences.held["s1"]


STALE = [stale_epoch, another_worker, taken_over, released, no_fence]
Write = Callable[[World], Awaitable[Any]]


async def record(world: World) -> None:
    await world.sessions.record(change(SessionState.CONNECTING, world))


async def record_qr(world: World) -> None:
    now = world.clock.now()
    qr = SessionChange("s1", SessionState.QR, ChangeKind.QR, now, {"qr": "2@x"})
    await world.sessions.record_qr(qr, "2@x", now, now + timedelta(seconds=60))


async def record_connected(world: World) -> None:
    await world.sessions.record_connected(
        change(SessionState.CONNECTED, world),
        phone_number="6281",
        jid="6281:3@s.whatsapp.net",
        wa_name="Ann",
        device_name="wagate",
        lid=None,
    )


async def record_disconnected(world: World) -> None:
    await world.sessions.record_disconnected(
        change(SessionState.RECONNECTING, world), DisconnectKind.CONNECTION_LOST, "lost", attempts=2
    )


SESSION_WRITES = [record, record_qr, record_connected, record_disconnected]


@pytest.mark.parametrize("go_stale", STALE)
@pytest.mark.parametrize("write", SESSION_WRITES)
async def test_a_stale_session_write_changes_nothing(
    world: World, write: Write, go_stale: Callable[[World, Fence], Awaitable[None]]
) -> None:
    fence = await world.own("s1")
    await go_stale(world, fence)
    before = await world.sessions.get("s1")
    await world.clock.advance(1)
    with pytest.raises(StaleLease) as raised:
        await write(world)
    assert "'s1'" in raised.value.message
    assert await world.sessions.get("s1") == before
    assert await world.event_count() == 0


@pytest.mark.parametrize("write", SESSION_WRITES)
async def test_a_valid_fence_writes_the_session_and_its_events(world: World, write: Write) -> None:
    await world.own("s1")
    await world.clock.advance(1)
    await write(world)
    after = await world.sessions.get("s1")
    assert after is not None and after.updated_at == world.clock.now()
    assert after.status is not SessionState.CREATED
    assert await world.event_count() == 1


async def test_a_fenced_write_of_a_missing_session_is_no_error(world: World) -> None:
    await world.own("ghost")
    await world.sessions.record(change(SessionState.CONNECTING, world, "ghost"))
    assert await world.sessions.get("ghost") is None
    assert await world.event_count() == 0


async def test_operator_writes_are_never_fenced(world: World) -> None:
    assert world.fences.fence_for("s1") is None
    await world.sessions.update("s1", proxy="socks5://p:1080")
    await world.sessions.create("s2", engine="sandbox")
    assert await world.sessions.delete("s2") is True
    found = await world.sessions.get("s1")
    assert found is not None and found.proxy == "socks5://p:1080"


async def test_the_refusal_names_the_session_and_the_epoch(world: World) -> None:
    fence = await world.own("s1")
    await world.leases.bump_all("w1")
    with pytest.raises(StaleLease, match=rf"'s1'.*epoch {fence.epoch}"):
        await record(world)
    del world.fences.held["s1"]
    with pytest.raises(StaleLease, match="no lease on session 's1'"):
        await record(world)


# --- outbound --------------------------------------------------------------------


async def begin_attempt(world: World, message: Message) -> None:
    await world.outbound.begin_attempt(message.id)


async def requeue(world: World, message: Message) -> None:
    await world.outbound.requeue(message.id, "timeout")


async def mark_sent(world: World, message: Message) -> None:
    sent = message_status(Event.MESSAGE_SENT, world.clock.now())
    at = world.clock.now()
    await world.outbound.mark_sent(
        message.id, wa_msg_id=message.wa_msg_id, at=at, payload=None, announce=sent
    )


async def mark_failed(world: World, message: Message) -> None:
    failed = message_status(Event.MESSAGE_FAILED, world.clock.now(), error="invalid")
    await world.outbound.mark_failed(message.id, "invalid", None, announce=failed)


async def apply_receipt(world: World, message: Message) -> None:
    ack = message_status(Event.MESSAGE_ACK, world.clock.now(), at="x", by=None)
    at = world.clock.now()
    await world.outbound.apply_receipt("s1", [message.wa_msg_id], "delivered", at, ack)


OUTBOUND_WRITES = [begin_attempt, requeue, mark_sent, mark_failed, apply_receipt]
OutboundWrite = Callable[[World, Message], Awaitable[None]]


@pytest.mark.parametrize("go_stale", STALE)
@pytest.mark.parametrize("write", OUTBOUND_WRITES)
async def test_a_stale_outbound_write_changes_nothing(
    world: World, write: OutboundWrite, go_stale: Callable[[World, Fence], Awaitable[None]]
) -> None:
    fence = await world.own("s1")
    message = await world.queued("3EB0A")
    await go_stale(world, fence)
    await world.clock.advance(1)
    with pytest.raises(StaleLease):
        await write(world, message)
    assert await world.message(message.id) == message
    assert await world.event_count() == 0


async def test_a_valid_fence_moves_a_message_along_with_its_events(world: World) -> None:
    await world.own("s1")
    message = await world.queued("3EB0B")
    await begin_attempt(world, message)
    await requeue(world, message)
    queued = await world.message(message.id)
    assert (queued.status, queued.attempts, queued.error) == ("queued", 1, "timeout")
    await mark_sent(world, message)
    await apply_receipt(world, message)
    assert (await world.message(message.id)).status == "delivered"
    failing = await world.queued("3EB0C")
    await mark_failed(world, failing)
    assert (await world.message(failing.id)).status == "failed"
    assert await world.event_count() == 3  # sent, ack, failed


async def test_fenced_outbound_writes_that_match_nothing_are_no_error(world: World) -> None:
    await world.own("s1")
    message = await world.queued("3EB0D")
    await mark_sent(world, message)
    sent = await world.message(message.id)
    await requeue(world, message)  # no longer queued
    await mark_failed(world, message)
    assert await world.outbound.mark_sent(10**9, wa_msg_id="X", at=sent.ts, payload=None) is None
    await world.outbound.begin_attempt(10**9)
    await world.outbound.apply_receipt("s1", ["unknown"], "read", sent.ts)
    assert await world.message(message.id) == sent
    assert await world.event_count() == 1  # the send's


async def test_a_stale_fence_is_refused_even_when_nothing_would_match(world: World) -> None:
    fence = await world.own("s1")
    await world.leases.release(fence)
    with pytest.raises(StaleLease):
        await world.outbound.apply_receipt("s1", ["unknown"], "read", world.clock.now())


async def test_each_session_carries_its_own_fence(world: World) -> None:
    await world.sessions.create("s2", engine="sandbox")
    await world.own("s1")
    other = await world.queued("3EB0E", session_id="s2")
    with pytest.raises(StaleLease, match="'s2'"):
        await begin_attempt(world, other)
    await world.own("s2", worker_id="w1")
    await begin_attempt(world, other)
    assert (await world.message(other.id)).attempts == 1


async def test_without_fences_nothing_is_fenced(db: Database, clock: ManualClock) -> None:
    sessions, outbound = SessionRepo(db, clock), OutboundRepo(db, clock)
    await sessions.create("s1", engine="sandbox")  # no lease anywhere
    await sessions.record(
        SessionChange("s1", SessionState.CONNECTING, ChangeKind.STATE, clock.now())
    )
    new = NewOutbound("s1", "3EB0F", ALICE, "text", "hi", payload={"text": "hi"})
    message, _ = await outbound.enqueue(new)
    await outbound.begin_attempt(message.id)
    sent = await outbound.mark_sent(message.id, wa_msg_id="3EB0F", at=clock.now(), payload=None)
    assert sent is not None and (sent.status, sent.attempts) == ("sent", 1)
    found = await sessions.get("s1")
    assert found is not None and found.status is SessionState.CONNECTING


# --- a change of owner in flight (PostgreSQL) ---------------------------------------


@pytest.mark.postgres
@pytest.mark.skipif(
    not PG_URL,
    reason="row locks between connections need PostgreSQL (set WAGATE_TEST_DATABASE_URL)",
)
async def test_a_write_racing_a_change_of_owner_waits_and_is_refused(world: World) -> None:
    """The takeover has locked the lease but not committed: the write must not slip past it."""
    fence = await world.own("s1")
    other = Database(create_engine(world.db.engine.url.render_as_string(hide_password=False)))
    try:
        async with other.engine.begin() as takeover:
            await takeover.execute(
                sa.text(
                    "UPDATE session_leases SET worker_id = 'w2', epoch = epoch + 1 "
                    "WHERE session_id = 's1'"
                )
            )
            write = asyncio.ensure_future(record(world))
            await until(lambda: _waiting_on_a_lock(other))
            assert not write.done()
        with pytest.raises(StaleLease, match=f"epoch {fence.epoch}"):
            await write
    finally:
        await other.aclose()
    found = await world.sessions.get("s1")
    assert found is not None and found.status is SessionState.CREATED
    assert await world.event_count() == 0


async def _waiting_on_a_lock(db: Database) -> bool:
    query = (
        "SELECT count(*) FROM pg_stat_activity "
        "WHERE datname = current_database() AND wait_event_type = 'Lock'"
    )
    async with db.engine.connect() as conn:
        return bool(await conn.scalar(sa.text(query)))
