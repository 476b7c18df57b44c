"""Which subscriptions an event reaches, and that it is recorded with its producer's data."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
import sqlalchemy as sa

from wagate.clock import ManualClock
from wagate.domain.session import ChangeKind, SessionChange, SessionState
from wagate.settings import Settings
from wagate.storage.db import Database
from wagate.storage.outbox import Outbox
from wagate.storage.repos.webhooks import DeliveryRepo, SubscriptionRepo
from wagate.storage.tables import audit_log
from wagate.testing import RecordingOutbox, ScriptedEngine, eventually
from wagate.webhooks import verify_signature
from wagate.webhooks.events import Event, outbox_event

from ..conftest import GatewayFactory
from .conftest import Receiver


@pytest.fixture
def subs(db: Database, clock: ManualClock) -> SubscriptionRepo:
    return SubscriptionRepo(db, clock)


@pytest.fixture
def deliveries(db: Database, clock: ManualClock) -> DeliveryRepo:
    return DeliveryRepo(db, clock)


@pytest.fixture
def doorbell() -> asyncio.Event:
    """What the outbox rings when deliveries commit (the dispatcher's wake-up, in a gateway)."""
    return asyncio.Event()


@pytest.fixture
def outbox(db: Database, clock: ManualClock, doorbell: asyncio.Event) -> Outbox:
    return Outbox(db, clock, on_commit=doorbell.set)


async def emit(outbox: Outbox, name: Event, session_id: str | None, data: dict[str, Any]) -> int:
    """One event in a transaction of its own, at the manual clock's start."""
    return await outbox.emit([outbox_event(name, session_id, data, ManualClock().now())])


async def subscribe(subs: SubscriptionRepo, sid: str, events: list[str], **kw: Any) -> None:
    values = {"url": f"http://127.0.0.1/{sid}", "secret": "s3cret-s3cret", "headers": {}}
    await subs.create(sid, events=events, **(values | kw))


async def targets(deliveries: DeliveryRepo, event: str | None = None) -> list[str]:
    return sorted(d.subscription_id for d in await deliveries.find(event=event))


async def test_the_recording_outbox_keeps_what_it_writes_and_can_fail_once(
    db: Database, subs: SubscriptionRepo, deliveries: DeliveryRepo, clock: ManualClock
) -> None:
    outbox = RecordingOutbox(db, clock)
    await subscribe(subs, "all", ["*"])
    assert await emit(outbox, Event.MESSAGE_SENT, "s1", {"n": 1}) == 1
    assert outbox.of("message.sent") == [{"n": 1}]
    assert await targets(deliveries) == ["all"]  # written as the real outbox writes

    outbox.fail_next = RuntimeError("the database went away")
    with pytest.raises(RuntimeError):
        await emit(outbox, Event.MESSAGE_SENT, "s1", {"n": 2})
    assert outbox.of("message.sent") == [{"n": 1}]
    assert len(await deliveries.find()) == 1
    await emit(outbox, Event.MESSAGE_SENT, "s1", {"n": 3})  # once only
    assert outbox.of("message.sent") == [{"n": 1}, {"n": 3}]


async def test_what_postgresql_cannot_store_is_cleaned(
    subs: SubscriptionRepo, deliveries: DeliveryRepo, outbox: Outbox
) -> None:
    await subscribe(subs, "all", ["*"])
    await emit(outbox, Event.MESSAGE_RECEIVED, "s1", {"text": "a\x00b", "k\x00": "\ud800"})
    (delivery,) = await deliveries.find()
    assert delivery.payload["data"] == {"text": "ab", "k": "\ufffd"}


async def test_only_subscriptions_to_the_event_get_it(
    subs: SubscriptionRepo, deliveries: DeliveryRepo, outbox: Outbox
) -> None:
    await subscribe(subs, "messages", ["message.received", "message.sent"])
    await subscribe(subs, "status", ["session.status"])
    await subscribe(subs, "all", ["*"])
    await emit(outbox, Event.MESSAGE_RECEIVED, "s1", {"text": "hi"})
    await emit(outbox, Event.SESSION_STATUS, "s1", {"status": "connected"})
    await emit(outbox, Event.GROUP_RENAMED, "s1", {})
    assert await targets(deliveries, "message.received") == ["all", "messages"]
    assert await targets(deliveries, "session.status") == ["all", "status"]
    assert await targets(deliveries, "group.renamed") == ["all"]


async def test_a_session_subscription_gets_only_its_session_and_a_global_one_all(
    subs: SubscriptionRepo, deliveries: DeliveryRepo, outbox: Outbox
) -> None:
    await subscribe(subs, "only-s1", ["*"], session_id="s1")
    await subscribe(subs, "global", ["*"])
    await emit(outbox, Event.MESSAGE_RECEIVED, "s2", {})
    assert await targets(deliveries) == ["global"]
    await emit(outbox, Event.MESSAGE_SENT, "s1", {})
    assert await targets(deliveries, "message.sent") == ["global", "only-s1"]
    await emit(outbox, Event.GROUP_DISCOVERED, None, {})
    assert await targets(deliveries, "group.discovered") == ["global"]


async def test_a_disabled_subscription_gets_nothing(
    subs: SubscriptionRepo, deliveries: DeliveryRepo, outbox: Outbox, doorbell: asyncio.Event
) -> None:
    await subscribe(subs, "off", ["*"], enabled=False)
    await emit(outbox, Event.MESSAGE_RECEIVED, "s1", {})
    assert await targets(deliveries) == []
    assert not doorbell.is_set()


async def test_each_delivery_holds_the_full_envelope_due_now(
    subs: SubscriptionRepo,
    deliveries: DeliveryRepo,
    outbox: Outbox,
    doorbell: asyncio.Event,
    clock: ManualClock,
) -> None:
    await subscribe(subs, "a", ["*"])
    await subscribe(subs, "b", ["*"])
    await emit(outbox, Event.MESSAGE_RECEIVED, "s1", {"text": "hi", "at": clock.now()})
    assert doorbell.is_set()
    a, b = await deliveries.find()
    assert a.payload == b.payload  # one event: the same id for every subscriber
    assert a.payload["event"] == "message.received"
    assert a.payload["sessionId"] == "s1"
    assert a.payload["timestamp"] == "2026-01-01T00:00:00.000Z"
    assert a.payload["data"] == {"text": "hi", "at": "2026-01-01T00:00:00.000Z"}
    assert (a.status, a.attempts, a.next_attempt_at) == ("pending", 0, clock.now())


async def test_write_in_commits_or_rolls_back_with_the_producer(
    db: Database,
    subs: SubscriptionRepo,
    deliveries: DeliveryRepo,
    outbox: Outbox,
    doorbell: asyncio.Event,
    clock: ManualClock,
) -> None:
    await subscribe(subs, "a", ["*"])
    audit = {"session_id": "s1", "event": "ingest", "data": {}, "created_at": clock.now()}
    received = outbox_event(Event.MESSAGE_RECEIVED, "s1", {}, clock.now())
    with pytest.raises(RuntimeError):
        async with db.begin() as conn:
            await conn.execute(audit_log.insert().values(**audit))
            assert await outbox.write_in(conn, [received]) == 1
            raise RuntimeError("the producer failed after recording")
    assert await targets(deliveries) == []
    assert not doorbell.is_set()

    async with db.begin() as conn:
        await conn.execute(audit_log.insert().values(**audit))
        await outbox.write_in(conn, [received])
        assert not doorbell.is_set()  # nothing to see before the commit
    assert doorbell.is_set()
    assert await targets(deliveries) == ["a"]
    async with db.begin() as conn:
        assert await conn.scalar(sa.select(sa.func.count()).select_from(audit_log)) == 1


async def test_deleting_a_subscription_deletes_its_deliveries(
    subs: SubscriptionRepo, deliveries: DeliveryRepo, outbox: Outbox
) -> None:
    await subscribe(subs, "a", ["*"])
    await subscribe(subs, "b", ["*"])
    await emit(outbox, Event.MESSAGE_RECEIVED, "s1", {})
    assert await subs.delete("a")
    assert await targets(deliveries) == ["b"]
    assert not await subs.delete("a")


async def test_the_gateway_wakes_its_dispatcher_when_a_state_and_its_event_commit(
    gateways: GatewayFactory, hook_settings: Settings, clock: ManualClock, receiver: Receiver
) -> None:
    # a poll interval no other part of the gateway sleeps for: its sleeps tell the dispatcher's
    poll_s = 4321.0
    slow_poll = hook_settings.model_copy(update={"webhook_poll_ms": int(poll_s * 1000)})
    gateway = await gateways(slow_poll, engine=ScriptedEngine(), clock=clock)
    await gateway.webhooks.create(url=receiver.url, events=["*"], secret="s3cret-s3cret")
    await gateway.sessions.create("s1", engine="scripted")
    await eventually(lambda: poll_s in clock.sleeps)  # it found nothing and went to sleep

    change = SessionChange("s1", SessionState.CONNECTING, ChangeKind.STATE, clock.now())
    await gateway.sessions.record(change)
    # delivered with the clock standing still: the commit rang the dispatcher's doorbell
    await eventually(lambda: len(receiver.requests) == 1)
    (request,) = receiver.requests
    assert request.headers["x-wagate-event"] == "session.status"
    assert verify_signature(
        "s3cret-s3cret", request.headers, request.body, now=clock.now().timestamp()
    )
