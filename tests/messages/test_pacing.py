"""Per-session pacing: a minimum interval (plus jitter) between two sends, on the injected clock."""

from __future__ import annotations

import asyncio

from tests.messages.conftest import Rig, RigFactory
from wagate.clock import ManualClock
from wagate.testing import eventually


async def paced(make_rig: RigFactory, interval_ms: int, jitter_ms: int) -> tuple[Rig, ManualClock]:
    """A rig whose sender alone runs on a manual clock (other services sleep on their own)."""
    rig = await make_rig(send_interval_ms=interval_ms, send_jitter_ms=jitter_ms, send_poll_ms=0)
    clock = ManualClock()
    rig.gateway.sender.clock = clock
    return rig, clock


async def test_sends_are_spaced_by_the_interval(make_rig: RigFactory) -> None:
    rig, clock = await paced(make_rig, 1000, 0)
    link = await rig.connect()
    for i in range(3):
        assert (await rig.send(text=f"m{i}")).status_code == 201
    await eventually(lambda: len(link.sent) == 1)  # the first goes at once
    await clock.wait_for_sleepers(1)
    await clock.advance(0.9)
    await asyncio.sleep(0.05)
    assert len(link.sent) == 1
    await clock.advance(0.1)
    await eventually(lambda: len(link.sent) == 2)
    await clock.wait_for_sleepers(1)
    await clock.advance(1.0)
    await eventually(lambda: len(link.sent) == 3)
    pauses = clock.sleeps
    assert len(pauses) == 2 and all(0.99 <= p <= 1.0 for p in pauses)
    assert [m.text for m in link.sent] == ["m0", "m1", "m2"]


async def test_jitter_adds_up_to_its_bound(make_rig: RigFactory) -> None:
    rig, clock = await paced(make_rig, 500, 200)
    link = await rig.connect()
    for i in range(6):
        await rig.send(text=f"m{i}")
    for sent in range(1, 6):
        await eventually(lambda sent=sent: len(link.sent) == sent)
        await clock.wait_for_sleepers(1)
        await clock.advance(clock.sleeps[-1])  # exactly: no overshoot to shorten the next one
    await eventually(lambda: len(link.sent) == 6)
    pauses = clock.sleeps
    assert len(pauses) == 5 and all(0.5 <= p <= 0.7 for p in pauses)
    assert len(set(pauses)) > 1


async def test_time_already_passed_counts_toward_the_interval(make_rig: RigFactory) -> None:
    rig, clock = await paced(make_rig, 1000, 0)
    link = await rig.connect()
    await rig.send(text="first")
    await eventually(lambda: len(link.sent) == 1)
    await clock.advance(5)  # long after: the next one needs no pause
    await rig.send(text="second")
    await eventually(lambda: len(link.sent) == 2)
    assert clock.sleeps == []


async def test_sessions_are_paced_separately(make_rig: RigFactory) -> None:
    rig, clock = await paced(make_rig, 1000, 0)
    a = await rig.connect("a")
    b = await rig.connect("b")
    for sid in ("a", "b"):
        await rig.send(sid, text="one")
        await rig.send(sid, text="two")
    await eventually(lambda: len(a.sent) == 1 and len(b.sent) == 1)
    await clock.wait_for_sleepers(2)
    await clock.advance(1)
    await eventually(lambda: len(a.sent) == 2 and len(b.sent) == 2)


async def test_no_pacing_when_the_interval_is_zero(make_rig: RigFactory) -> None:
    rig, clock = await paced(make_rig, 0, 300)
    link = await rig.connect()
    for i in range(10):
        await rig.send(text=f"m{i}")
    await eventually(lambda: len(link.sent) == 10)
    assert clock.sleeps == []
