"""Several dispatchers on one PostgreSQL database never send one delivery twice."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest

from wagate.clock import SystemClock
from wagate.settings import Settings
from wagate.storage.db import Database, create_engine
from wagate.storage.repos.webhooks import DeliveryRepo
from wagate.testing import until
from wagate.webhooks.events import Event

from ..conftest import PG_URL
from .conftest import HooksFactory, Receiver, Reply

pytestmark = [
    pytest.mark.postgres,
    pytest.mark.skipif(
        not PG_URL,
        reason="claiming with FOR UPDATE SKIP LOCKED needs PostgreSQL; SQLite runs one "
        "dispatcher process (set WAGATE_TEST_DATABASE_URL to run this)",
    ),
]

EVENTS = 40


async def test_two_dispatchers_deliver_each_row_once(
    make_hooks: HooksFactory, hook_settings: Settings, receiver: Receiver
) -> None:
    receiver.default = Reply(200, delay_s=0.01)
    fast = hook_settings.model_copy(update={"webhook_poll_ms": 20})
    recorder = await make_hooks(dispatch=False)
    await recorder.admin.create(url=receiver.url, events=["*"], secret="s3cret-s3cret")
    for n in range(EVENTS):
        await recorder.emit(Event.MESSAGE_RECEIVED, "s1", {"n": n})
    one = await make_hooks(settings=fast, clock=SystemClock(), own_db=True)
    two = await make_hooks(settings=fast, clock=SystemClock(), own_db=True)

    async def all_delivered() -> bool:
        counts = await recorder.deliveries.counts()
        return counts["delivered"] == EVENTS

    await until(all_delivered, limit_s=30)
    ids = [r.delivery_id for r in receiver.requests]
    assert len(ids) == EVENTS and len(set(ids)) == EVENTS
    assert one.dispatcher is not None and two.dispatcher is not None


async def test_concurrent_claims_never_overlap(
    make_hooks: HooksFactory, hook_settings: Settings
) -> None:
    recorder = await make_hooks(dispatch=False)
    await recorder.admin.create(url="http://127.0.0.1:9/x", events=["*"], secret="s3cret-s3cret")
    for n in range(60):
        await recorder.emit(Event.MESSAGE_RECEIVED, "s1", {"n": n})
    engines = [Database(create_engine(hook_settings.sqlalchemy_url)) for _ in range(3)]
    try:
        repos = [DeliveryRepo(db, SystemClock()) for db in engines]
        batches = await asyncio.gather(
            *(repos[n % 3].claim_due(5, timedelta(minutes=1)) for n in range(15))
        )
    finally:
        for db in engines:
            await db.aclose()
    claimed = [c.delivery.id for batch in batches for c in batch]
    assert len(claimed) == len(set(claimed))
    assert len(claimed) >= 30  # skipped rows go to the other claimers, not lost
