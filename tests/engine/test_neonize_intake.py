"""What Go hands over and nobody stored yet: back-pressure, the graceful drain, the count.

whatsmeow acknowledges an event to WhatsApp as soon as goneonize's handler
has pushed it into Go's channel (capacity 100), so an acknowledged event that
never reaches the consumer is lost for good. These tests run on the fake FFI
(tests/contract/neonize_fake.py), which models that channel, the handler
blocking on it and the acknowledgement after it; they wait on conditions
(bounded), never on time, and drive the drain's settle on a manual clock.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from tests.contract import neonize_go as go
from tests.contract.neonize_driver import NeonizeDriver, settle
from tests.contract.neonize_fake import CHANNEL_CAPACITY, FakeClient, FakeGo, patch_ffi
from wagate.clock import ManualClock
from wagate.domain.session import DisconnectKind
from wagate.engine.base import Connected, Disconnected, EngineEvent, Link, LinkOptions, QRCode
from wagate.engine.base import MessageEvent as Message
from wagate.engine.neonize import NeonizeConfig, NeonizeLink
from wagate.engine.neonize.intake import Intake
from wagate.testing import Events

PHONE, PEER = "15550001111", "15550002222"
BURST = 300  # more than Python's bound, Go's channel and whatsmeow's handler together
CONFIG = NeonizeConfig(
    reconnect_grace_s=0,
    connect_backoff_base_s=0.01,
    connect_backoff_max_s=0.05,
    start_window_s=0.5,
    stop_timeout_s=5.0,  # also the engine's drain deadline, on the manual clock
)


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> Any:
    made = FakeGo()
    patch_ffi(made, monkeypatch.setattr)
    yield made
    made.close()


@pytest.fixture
async def world(fake: FakeGo, tmp_path: Path) -> AsyncIterator[NeonizeDriver]:
    driver = NeonizeDriver(fake, tmp_path, CONFIG, clock=ManualClock())
    yield driver
    await settle(fake, driver.engine)
    await driver.aclose()
    assert fake.violations == [], "calls Go would have crashed on"


def manual(world: NeonizeDriver) -> ManualClock:
    clock = world.engine.clock
    assert isinstance(clock, ManualClock)
    return clock


async def link_up(world: NeonizeDriver, link: Link) -> Events:
    events = Events(link)
    qr = await events.expect(QRCode)
    await world.scan(qr.code, PHONE, push_name="Alice")
    await events.first(Connected)
    return events


async def burst(world: NeonizeDriver, count: int = BURST) -> list[str]:
    return [await world.phone_send(PEER, PHONE, text=f"m{i}") for i in range(count)]


async def until(condition: Callable[[], bool], why: str, within_s: float = 10.0) -> None:
    try:
        async with asyncio.timeout(within_s):
            while not condition():  # noqa: ASYNC110 - the state lives in the engine and the fake
                await asyncio.sleep(0.005)
    except TimeoutError:
        raise AssertionError(f"not within {within_s}s: {why}") from None


def held_back(world: NeonizeDriver, client: FakeClient) -> Callable[[], bool]:
    """Python holds its bound, so Go's thread waits in the callback, the channel is full and
    whatsmeow's handler waits for room: a state that lasts until the consumer moves."""
    bound = world.engine.config.inbound_bound
    return lambda: world.engine.health()["unstoredEvents"] == bound and client.stalled()


def ids(events: list[EngineEvent]) -> list[str]:
    return [event.id for event in events if isinstance(event, Message)]


def acked_ids(client: FakeClient) -> list[str]:
    with client.cv:
        return [m.Info.ID for m in client.acked if m.DESCRIPTOR.name == "Message"]


def unread(client: FakeClient) -> int:
    with client.cv:
        return len(client.wire)


async def run_out(
    world: NeonizeDriver, client: FakeClient, task: asyncio.Future[Any], sleepers: int = 1
) -> Any:
    """Let a draining stream end: once Go has nothing left to hand over and the link waits
    out its settle on the manual clock, move the clock past it (as often as it takes).
    ``sleepers``: the clock's sleepers then (the link's settle, and any other)."""
    clock, settle_s = manual(world), world.engine.config.drain_settle_s

    def settling() -> bool:
        return task.done() or (client.idle() and clock.sleeping >= sleepers)

    async with asyncio.timeout(20):
        while not task.done():
            await until(settling, "Go idle, the link waiting out its settle")
            if not task.done():
                await clock.advance(settle_s)
    return task.result()


# --- back-pressure ------------------------------------------------------------------------


async def test_a_slow_consumer_holds_go_back_and_whatsmeow_acknowledges_no_more(
    world: NeonizeDriver, fake: FakeGo
) -> None:
    async with world.engine.link(world.auth("s1"), LinkOptions()) as link:
        events = await link_up(world, link)
        client = fake.client("s1")
        sent = await burst(world)
        await until(held_back(world, client), "Python holds its bound and Go waits for room")
        bound = world.engine.config.inbound_bound
        with client.cv:
            handed, in_channel = len(client.handed), len(client.channel)
        # Python's bound (Connected, which the consumer still handles, among them), then the
        # one Go's thread holds while it waits for room
        assert handed == bound + 1
        assert in_channel == CHANNEL_CAPACITY
        taken = acked_ids(client)
        assert taken == sent[: bound + CHANNEL_CAPACITY], "all but the handler's: acknowledged"
        assert unread(client) == BURST - len(taken) - 1
        got = [await events.next() for _ in range(BURST)]
    assert ids(got) == sent, "every message, once, in order"


async def test_leaving_while_go_is_held_back_releases_it_and_stops_the_client(
    world: NeonizeDriver, fake: FakeGo
) -> None:
    async with asyncio.timeout(15):
        async with world.engine.link(world.auth("s1"), LinkOptions()) as link:
            await link_up(world, link)
            await burst(world)
            await until(held_back(world, fake.client("s1")), "Go is held back")
        session = world.engine.sessions["s1"]
        await until(lambda: session.running() == 0, "the held goroutine ended with its Stop")
    assert world.engine.health()["unstoredEvents"] == 0
    assert ("Stop", "s1") in fake.calls


# --- the graceful drain -------------------------------------------------------------------


async def test_a_drain_mid_burst_yields_every_acknowledged_event_and_takes_no_more(
    world: NeonizeDriver, fake: FakeGo
) -> None:
    async with world.engine.link(world.auth("s1"), LinkOptions()) as link:
        events = await link_up(world, link)
        client = fake.client("s1")
        sent = await burst(world)
        first = [await events.next() for _ in range(10)]
        assert isinstance(link, NeonizeLink)
        await link.drain()
        taken, waiting = acked_ids(client), unread(client)
        assert waiting > 0, "mid-burst: WhatsApp still held messages for this device"
        rest = await run_out(world, client, asyncio.ensure_future(events.rest(within_s=30)))
        assert acked_ids(client) == taken, "nothing more acknowledged after the drain"
        assert unread(client) == waiting, "nothing more read from WhatsApp after the drain"
    got = ids(first + rest)
    assert got[: len(taken)] == taken, "every acknowledged message was yielded, in order"
    assert len(got) - len(taken) in (0, 1), "plus at most the one the handler held, unacked"
    assert got == sent[: len(got)]
    assert not any(isinstance(event, Disconnected) for event in rest)


async def test_an_event_that_ends_the_link_still_ends_a_drained_stream(
    world: NeonizeDriver, fake: FakeGo
) -> None:
    async with world.engine.link(world.auth("s1"), LinkOptions()) as link:
        events = await link_up(world, link)
        client = fake.client("s1")
        sent = await burst(world, 3)
        fake.emit(client, 6, go.logged_out("LOGGED_OUT"))  # queued in Go behind the messages
        await until(lambda: len(client.acked) == 4, "whatsmeow took all four")
        assert isinstance(link, NeonizeLink)
        await link.drain()
        rest = await run_out(world, client, asyncio.ensure_future(events.rest(within_s=30)))
    assert ids(rest) == sent
    assert isinstance(rest[-1], Disconnected) and rest[-1].kind is DisconnectKind.LOGGED_OUT


async def test_a_drain_before_login_ends_the_stream_once_python_has_nothing_left(
    world: NeonizeDriver, fake: FakeGo
) -> None:
    async with world.engine.link(world.auth("s1"), LinkOptions()) as link:
        events = Events(link)
        await events.expect(QRCode)
        assert isinstance(link, NeonizeLink)
        await link.drain()
        assert await events.rest(within_s=5) == []
    assert ("Disconnect", "s1") in fake.calls and ("Stop", "s1") not in fake.calls


async def test_closing_the_engine_drains_open_links_before_stopping_their_clients(
    world: NeonizeDriver, fake: FakeGo
) -> None:
    held, consume = asyncio.Event(), asyncio.Event()

    async def session() -> list[EngineEvent]:
        async with world.engine.link(world.auth("s1"), LinkOptions()) as link:
            events = await link_up(world, link)
            await burst(world)
            await until(held_back(world, fake.client("s1")), "Go is held back")
            held.set()
            await consume.wait()
            return await events.rest(within_s=30)

    running = asyncio.ensure_future(session())
    await asyncio.wait_for(held.wait(), 15)
    client = fake.client("s1")
    closing = asyncio.ensure_future(world.engine.aclose())
    await until(lambda: client.disconnected, "the engine stopped the link's intake first")
    taken = acked_ids(client)
    assert ("Stop", "s1") not in fake.calls, "no client is stopped before its link drained"
    consume.set()
    got = ids(await run_out(world, client, running, sleepers=2))  # and the close's deadline
    await asyncio.wait_for(closing, 15)
    assert acked_ids(client) == taken
    assert got[: len(taken)] == taken and len(got) - len(taken) in (0, 1)
    assert world.engine.sessions["s1"].running() == 0


# --- the intake itself --------------------------------------------------------------------


def eventually(condition: Callable[[], bool], within_s: float = 5.0) -> bool:
    deadline = time.monotonic() + within_s
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.001)
    return True


def test_the_intake_holds_a_go_thread_at_its_bound_until_one_is_released() -> None:
    intake = Intake(2)
    assert intake.admit() and intake.admit()
    admitted = threading.Event()
    thread = threading.Thread(target=lambda: intake.admit() and admitted.set(), daemon=True)
    thread.start()
    assert eventually(lambda: intake.waiting == 1)
    assert not admitted.is_set() and intake.held == 2
    intake.release()
    assert admitted.wait(5) and intake.held == 2


def test_closing_the_intake_lets_every_waiter_through_uncounted() -> None:
    intake = Intake(1)
    assert intake.admit()
    results: list[bool] = []
    threads = [threading.Thread(target=lambda: results.append(intake.admit())) for _ in range(3)]
    for thread in threads:
        thread.start()
    assert eventually(lambda: intake.waiting == 3)
    intake.close()
    for thread in threads:
        thread.join(5)
    assert results == [False, False, False] and intake.held == 0
    assert intake.admit() is False, "a closed intake counts nothing more"


async def test_the_intake_never_holds_the_event_loop_thread() -> None:
    intake = Intake(1)
    assert intake.admit(wait=False) and intake.admit(wait=False)  # counted, never waits
    assert intake.held == 2
