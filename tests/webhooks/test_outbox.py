"""Which subscriptions an event reaches, and that it is recorded with its producer's data."""

from __future__ import annotations

from typing import Any

import pytest
import sqlalchemy as sa

from wagate.clock import ManualClock
from wagate.storage.db import Database
from wagate.storage.repos.webhooks import DeliveryRepo, SubscriptionRepo
from wagate.storage.tables import audit_log
from wagate.webhooks.events import Event, EventSink
from wagate.webhooks.outbox import Outbox

from .conftest import HooksFactory


@pytest.fixture
def subs(db: Database, clock: ManualClock) -> SubscriptionRepo:
    return SubscriptionRepo(db, clock)


@pytest.fixture
def deliveries(db: Database, clock: ManualClock) -> DeliveryRepo:
    return DeliveryRepo(db, clock)


@pytest.fixture
def outbox(db: Database, clock: ManualClock) -> Outbox:
    return Outbox(db, clock)


async def subscribe(subs: SubscriptionRepo, sid: str, events: list[str], **kw: Any) -> None:
    values = {"url": f"http://127.0.0.1/{sid}", "secret": "s3cret-s3cret", "headers": {}}
    await subs.create(sid, events=events, **(values | kw))


async def targets(deliveries: DeliveryRepo, event: str | None = None) -> list[str]:
    return sorted(d.subscription_id for d in await deliveries.find(event=event))


def test_the_outbox_is_an_event_sink(outbox: Outbox) -> None:
    sink: EventSink = outbox
    assert sink is outbox


async def test_only_subscriptions_to_the_event_get_it(
    subs: SubscriptionRepo, deliveries: DeliveryRepo, outbox: Outbox
) -> None:
    await subscribe(subs, "messages", ["message.received", "message.sent"])
    await subscribe(subs, "status", ["session.status"])
    await subscribe(subs, "all", ["*"])
    await outbox.emit(Event.MESSAGE_RECEIVED, "s1", {"text": "hi"})
    await outbox.emit(Event.SESSION_STATUS, "s1", {"status": "connected"})
    await outbox.emit(Event.GROUP_RENAMED, "s1", {})
    assert await targets(deliveries, "message.received") == ["all", "messages"]
    assert await targets(deliveries, "session.status") == ["all", "status"]
    assert await targets(deliveries, "group.renamed") == ["all"]


async def test_a_session_subscription_gets_only_its_session_and_a_global_one_all(
    subs: SubscriptionRepo, deliveries: DeliveryRepo, outbox: Outbox
) -> None:
    await subscribe(subs, "only-s1", ["*"], session_id="s1")
    await subscribe(subs, "global", ["*"])
    await outbox.emit(Event.MESSAGE_RECEIVED, "s2", {})
    assert await targets(deliveries) == ["global"]
    await outbox.emit(Event.MESSAGE_SENT, "s1", {})
    assert await targets(deliveries, "message.sent") == ["global", "only-s1"]
    await outbox.emit(Event.GROUP_DISCOVERED, None, {})
    assert await targets(deliveries, "group.discovered") == ["global"]


async def test_a_disabled_subscription_gets_nothing(
    subs: SubscriptionRepo, deliveries: DeliveryRepo, outbox: Outbox
) -> None:
    await subscribe(subs, "off", ["*"], enabled=False)
    await outbox.emit(Event.MESSAGE_RECEIVED, "s1", {})
    assert await targets(deliveries) == []
    assert not outbox.wakeup.is_set()


async def test_each_delivery_holds_the_full_envelope_due_now(
    subs: SubscriptionRepo, deliveries: DeliveryRepo, outbox: Outbox, clock: ManualClock
) -> None:
    await subscribe(subs, "a", ["*"])
    await subscribe(subs, "b", ["*"])
    await outbox.emit(Event.MESSAGE_RECEIVED, "s1", {"text": "hi", "at": clock.now()})
    assert outbox.wakeup.is_set()
    a, b = await deliveries.find()
    assert a.payload == b.payload  # one event: the same id for every subscriber
    assert a.payload["event"] == "message.received"
    assert a.payload["sessionId"] == "s1"
    assert a.payload["timestamp"] == "2026-01-01T00:00:00.000Z"
    assert a.payload["data"] == {"text": "hi", "at": "2026-01-01T00:00:00.000Z"}
    assert (a.status, a.attempts, a.next_attempt_at) == ("pending", 0, clock.now())


async def test_emit_in_commits_or_rolls_back_with_the_producer(
    db: Database,
    subs: SubscriptionRepo,
    deliveries: DeliveryRepo,
    outbox: Outbox,
    clock: ManualClock,
) -> None:
    await subscribe(subs, "a", ["*"])
    audit = {"session_id": "s1", "event": "ingest", "data": {}, "created_at": clock.now()}
    with pytest.raises(RuntimeError):
        async with db.begin() as conn:
            await conn.execute(audit_log.insert().values(**audit))
            assert await outbox.emit_in(conn, Event.MESSAGE_RECEIVED, "s1", {}) == 1
            raise RuntimeError("the producer failed after recording")
    assert await targets(deliveries) == []
    assert not outbox.wakeup.is_set()

    async with db.begin() as conn:
        await conn.execute(audit_log.insert().values(**audit))
        await outbox.emit_in(conn, Event.MESSAGE_RECEIVED, "s1", {})
        assert not outbox.wakeup.is_set()  # nothing to see before the commit
    assert outbox.wakeup.is_set()
    assert await targets(deliveries) == ["a"]
    async with db.begin() as conn:
        assert await conn.scalar(sa.select(sa.func.count()).select_from(audit_log)) == 1


async def test_deleting_a_subscription_deletes_its_deliveries(
    subs: SubscriptionRepo, deliveries: DeliveryRepo, outbox: Outbox
) -> None:
    await subscribe(subs, "a", ["*"])
    await subscribe(subs, "b", ["*"])
    await outbox.emit(Event.MESSAGE_RECEIVED, "s1", {})
    assert await subs.delete("a")
    assert await targets(deliveries) == ["b"]
    assert not await subs.delete("a")


async def test_the_service_wires_the_outbox_to_its_dispatcher(make_hooks: HooksFactory) -> None:
    hooks = await make_hooks()
    assert hooks.dispatcher is not None
    assert hooks.dispatcher._wakeup is hooks.outbox.wakeup
    assert (await make_hooks(dispatch=False)).dispatcher is None
