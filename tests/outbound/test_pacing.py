"""Per-session pacing: a minimum interval (plus jitter) between two sends, on the injected clock.

The whole gateway runs on a manual clock. Its other timers (the webhook
poll, the runtime-flag poll, the QR sweep) are set an hour apart, so nothing
else wakes while a test runs: every sleep the clock records from the mark
on is a pause of the sender.
"""

from __future__ import annotations

from dataclasses import dataclass

from tests.outbound.conftest import Rig, RigFactory
from wagate.clock import ManualClock
from wagate.testing import ScriptedLink, eventually

HOUR_MS = 3_600_000


@dataclass
class Paced:
    rig: Rig
    clock: ManualClock
    mark: int = 0  # sleeps before this index are not the sender's pauses
    idle: int = 0  # tasks asleep on the clock while no send waits

    async def connect(self, session_id: str = "s1") -> ScriptedLink:
        link = await self.rig.connect(session_id)
        self.mark, self.idle = len(self.clock.sleeps), self.clock.sleeping
        return link

    @property
    def pauses(self) -> list[float]:
        return self.clock.sleeps[self.mark :]

    async def pausing(self, sessions: int = 1) -> None:
        """Wait (bounded) until ``sessions`` drains are asleep in their pause."""
        await self.clock.wait_for_sleepers(self.idle + sessions)


async def paced(make_rig: RigFactory, interval_ms: int, jitter_ms: int) -> Paced:
    clock = ManualClock()
    rig = await make_rig(
        clock=clock,
        send_interval_ms=interval_ms,
        send_jitter_ms=jitter_ms,
        send_poll_ms=0,  # an idle drain waits for its doorbell, not on the clock
        webhook_poll_ms=HOUR_MS,
        worker_poll_ms=HOUR_MS,
        proxy_check_interval_ms=HOUR_MS,  # the proxy pool's checks stay off the clock
        proxy_recheck_base_ms=HOUR_MS,
        qr_sweep_interval_ms=HOUR_MS,
    )
    return Paced(rig, clock)


async def test_sends_are_spaced_by_the_interval(make_rig: RigFactory) -> None:
    p = await paced(make_rig, 1000, 0)
    link = await p.connect()
    for i in range(3):
        assert (await p.rig.send(text=f"m{i}")).status_code == 201
    await eventually(lambda: len(link.sent) == 1)  # the first goes at once
    await p.pausing()
    await p.clock.advance(0.9)
    assert p.clock.sleeping == p.idle + 1  # still in its pause: nothing can have been sent
    assert len(link.sent) == 1
    await p.clock.advance(0.1)
    await eventually(lambda: len(link.sent) == 2)
    await p.pausing()
    await p.clock.advance(1.0)
    await eventually(lambda: len(link.sent) == 3)
    assert len(p.pauses) == 2 and all(0.99 <= s <= 1.0 for s in p.pauses)
    assert [m.text for m in link.sent] == ["m0", "m1", "m2"]


async def test_jitter_adds_up_to_its_bound(make_rig: RigFactory) -> None:
    p = await paced(make_rig, 500, 200)
    link = await p.connect()
    for i in range(6):
        await p.rig.send(text=f"m{i}")
    for sent in range(1, 6):
        await eventually(lambda sent=sent: len(link.sent) == sent)
        await p.pausing()
        await p.clock.advance(p.pauses[-1])  # exactly: no overshoot to shorten the next one
    await eventually(lambda: len(link.sent) == 6)
    assert len(p.pauses) == 5 and all(0.5 <= s <= 0.7 for s in p.pauses)
    assert len(set(p.pauses)) > 1


async def test_time_already_passed_counts_toward_the_interval(make_rig: RigFactory) -> None:
    p = await paced(make_rig, 1000, 0)
    link = await p.connect()
    await p.rig.send(text="first")
    await eventually(lambda: len(link.sent) == 1)
    await p.clock.advance(5)  # long after: the next one needs no pause
    await p.rig.send(text="second")
    await eventually(lambda: len(link.sent) == 2)
    assert p.pauses == []


async def test_sessions_are_paced_separately(make_rig: RigFactory) -> None:
    p = await paced(make_rig, 1000, 0)
    a = await p.rig.connect("a")
    b = await p.connect("b")
    for sid in ("a", "b"):
        await p.rig.send(sid, text="one")
        await p.rig.send(sid, text="two")
    await eventually(lambda: len(a.sent) == 1 and len(b.sent) == 1)
    await p.pausing(sessions=2)
    await p.clock.advance(1)
    await eventually(lambda: len(a.sent) == 2 and len(b.sent) == 2)
    assert p.pauses == [1.0, 1.0]


async def test_no_pacing_when_the_interval_is_zero(make_rig: RigFactory) -> None:
    p = await paced(make_rig, 0, 300)
    link = await p.connect()
    for i in range(10):
        await p.rig.send(text=f"m{i}")
    await eventually(lambda: len(link.sent) == 10)
    assert p.pauses == []
