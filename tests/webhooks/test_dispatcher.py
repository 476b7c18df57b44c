"""The dispatcher against a real HTTP receiver on 127.0.0.1; backoff on a manual clock."""

from __future__ import annotations

import asyncio
import json
import logging
import socket
from typing import Any

import pytest

from wagate import __version__
from wagate.clock import ManualClock
from wagate.domain.webhook import Delivery, Subscription
from wagate.settings import Settings
from wagate.storage.db import Database, create_engine
from wagate.testing import until
from wagate.webhooks import verify_signature
from wagate.webhooks.events import Event

from .conftest import Hooks, HooksFactory, Receiver, Reply, running_hooks

SECRET = "whsec_dispatcher-test"


async def subscribe(hooks: Hooks, url: str, **kw: object) -> Subscription:
    saved = await hooks.admin.create(url=url, events=["*"], secret=SECRET, **kw)  # type: ignore[arg-type]
    return saved.subscription


async def emit(hooks: Hooks, text: str = "hi") -> None:
    await hooks.emit(Event.MESSAGE_RECEIVED, "s1", {"text": text})


async def only(hooks: Hooks) -> Delivery:
    (delivery,) = await hooks.deliveries.find()
    return delivery


async def settled(hooks: Hooks, attempts: int) -> Delivery:
    """The single delivery once its ``attempts``-th try is recorded."""
    assert hooks.dispatcher is not None
    dispatcher = hooks.dispatcher

    async def check() -> bool:
        d = await only(hooks)
        return (
            d.attempts == attempts and dispatcher.in_flight == 0 and d.last_attempt_at is not None
        )

    await until(check)
    return await only(hooks)


async def idle(hooks: Hooks, clock: ManualClock) -> None:
    """Wait until the dispatcher has nothing in flight and sleeps on its poll interval."""
    assert hooks.dispatcher is not None
    dispatcher = hooks.dispatcher

    async def check() -> bool:
        return dispatcher.in_flight == 0 and clock.sleeping >= 1

    await until(check)


async def tick(hooks: Hooks, clock: ManualClock, seconds: float) -> None:
    """Advance the clock once the dispatcher is idle; return once it is idle again.

    Whatever the advance made due has then been attempted and its outcome
    recorded, so "nothing was sent" is checked after the fact, not raced.
    """
    await idle(hooks, clock)
    await clock.advance(seconds)
    await idle(hooks, clock)


def gap(d: Delivery) -> float:
    assert d.last_attempt_at is not None
    return (d.next_attempt_at - d.last_attempt_at).total_seconds()


async def test_an_event_is_delivered_signed_right_away(
    make_hooks: HooksFactory, receiver: Receiver, clock: ManualClock
) -> None:
    hooks = await make_hooks()
    await subscribe(hooks, receiver.url, headers={"Authorization": "Bearer rx-token"})
    await emit(hooks)  # no clock advance: the emit wakes the dispatcher
    delivery = await settled(hooks, 1)
    assert (delivery.status, delivery.last_status) == ("delivered", 200)
    assert delivery.delivered_at == clock.now()

    (request,) = receiver.requests
    assert (request.method, request.path) == ("POST", "/hook")
    assert verify_signature(SECRET, request.headers, request.body, now=clock.now().timestamp())
    assert not verify_signature("not-the-secret", request.headers, request.body)
    assert json.loads(request.body) == delivery.payload
    assert request.headers["content-type"] == "application/json"
    assert request.headers["user-agent"] == f"wagate/{__version__}"
    assert request.headers["x-wagate-event"] == "message.received"
    assert request.delivery_id == str(delivery.id)
    assert request.headers["authorization"] == "Bearer rx-token"


async def test_a_receiver_that_is_down_gets_it_later_exactly_once(
    make_hooks: HooksFactory, clock: ManualClock
) -> None:
    receiver = Receiver()  # not listening yet: connection refused
    hooks = await make_hooks()
    await subscribe(hooks, receiver.url)
    await emit(hooks)
    gaps = []
    for attempt in (1, 2, 3):
        failed = await settled(hooks, attempt)
        assert failed.status == "pending"
        assert failed.last_status is None and failed.last_error
        gaps.append(gap(failed))
        if attempt < 3:
            await tick(hooks, clock, gaps[-1])
    assert gaps[0] < gaps[1] < gaps[2]
    for n, seconds in enumerate(gaps):
        assert 2**n <= seconds <= 2**n * 1.1  # base 1 s doubling, up to 10 % jitter

    await receiver.start()
    try:
        await tick(hooks, clock, gaps[-1])
        assert (await settled(hooks, 4)).status == "delivered"
        await tick(hooks, clock, 600)
        await tick(hooks, clock, 600)
        assert len(receiver.requests) == 1
    finally:
        await receiver.stop()


@pytest.mark.parametrize("status", [400, 401, 404, 410, 422])
async def test_a_client_error_is_final(
    make_hooks: HooksFactory, receiver: Receiver, clock: ManualClock, status: int
) -> None:
    receiver.default = Reply(status, body=b"no such hook")
    hooks = await make_hooks()
    await subscribe(hooks, receiver.url)
    await emit(hooks)
    dead = await settled(hooks, 1)
    assert (dead.status, dead.last_status) == ("dead", status)
    assert dead.last_error == f"HTTP {status}: no such hook"
    await tick(hooks, clock, 3600)
    assert len(receiver.requests) == 1


@pytest.mark.parametrize("status", [500, 502, 503, 408, 429])
async def test_server_errors_timeouts_and_throttling_are_retried(
    make_hooks: HooksFactory, receiver: Receiver, clock: ManualClock, status: int
) -> None:
    receiver.replies.append(Reply(status))
    hooks = await make_hooks()
    await subscribe(hooks, receiver.url)
    await emit(hooks)
    failed = await settled(hooks, 1)
    assert (failed.status, failed.last_status) == ("pending", status)
    await tick(hooks, clock, gap(failed))
    assert (await settled(hooks, 2)).status == "delivered"
    assert [r.delivery_id for r in receiver.requests] == [str(failed.id)] * 2


async def test_retry_after_is_honoured_up_to_the_maximum(
    make_hooks: HooksFactory, receiver: Receiver, clock: ManualClock
) -> None:
    receiver.replies.append(Reply(429, {"Retry-After": "7"}))
    receiver.replies.append(Reply(503, {"Retry-After": "86400"}))
    hooks = await make_hooks()
    await subscribe(hooks, receiver.url)
    await emit(hooks)
    throttled = await settled(hooks, 1)
    assert gap(throttled) == 7
    await tick(hooks, clock, 6)
    assert len(receiver.requests) == 1  # not before the receiver asked
    await tick(hooks, clock, 1)
    unavailable = await settled(hooks, 2)
    assert gap(unavailable) == 60  # the configured maximum, not a day
    await tick(hooks, clock, 60)
    assert (await settled(hooks, 3)).status == "delivered"


async def test_a_slow_receiver_times_out_and_is_retried(
    make_hooks: HooksFactory, receiver: Receiver, hook_settings: Settings, clock: ManualClock
) -> None:
    receiver.replies.append(Reply(200, delay_s=30))  # answers long after the deadline
    # the deadline is real time (a network wait): long enough for the prompt second answer
    # on a loaded machine
    hooks = await make_hooks(settings=hook_settings.model_copy(update={"webhook_timeout_ms": 1500}))
    await subscribe(hooks, receiver.url)
    await emit(hooks)
    failed = await settled(hooks, 1)
    assert failed.status == "pending"
    assert failed.last_error == "timed out after 1.5 s"
    await tick(hooks, clock, gap(failed))
    assert (await settled(hooks, 2)).status == "delivered"


async def test_after_the_last_attempt_it_is_dead_and_a_replay_delivers_it(
    make_hooks: HooksFactory, receiver: Receiver, clock: ManualClock
) -> None:
    receiver.default = Reply(500, body=b"boom")
    hooks = await make_hooks()  # five attempts in all
    await subscribe(hooks, receiver.url)
    await emit(hooks)
    for attempt in range(1, 5):
        await tick(hooks, clock, gap(await settled(hooks, attempt)))
    dead = await settled(hooks, 5)
    assert (dead.status, dead.last_status, dead.last_error) == ("dead", 500, "HTTP 500: boom")
    await tick(hooks, clock, 3600)
    assert len(receiver.requests) == 5

    receiver.default = Reply(204, body=b"")
    replayed = await hooks.admin.replay(dead.id)
    assert (replayed.status, replayed.attempts) == ("pending", 0)
    delivered = await settled(hooks, 1)
    assert (delivered.status, delivered.last_status) == ("delivered", 204)
    assert len({r.delivery_id for r in receiver.requests}) == 1


async def test_a_disabled_subscription_holds_its_deliveries_until_enabled(
    make_hooks: HooksFactory, receiver: Receiver, clock: ManualClock
) -> None:
    recorder = await make_hooks(dispatch=False)
    sub = await subscribe(recorder, receiver.url)
    await emit(recorder)
    await recorder.admin.update(sub.id, enabled=False)
    hooks = await make_hooks()
    await tick(hooks, clock, 60)
    await tick(hooks, clock, 60)
    assert receiver.requests == []
    await hooks.admin.update(sub.id, enabled=True)  # wakes the dispatcher
    assert (await settled(hooks, 1)).status == "delivered"


async def test_the_url_guard_is_applied_again_at_delivery(
    make_hooks: HooksFactory, receiver: Receiver, hook_settings: Settings
) -> None:
    strict = hook_settings.model_copy(update={"allow_private_urls": False})
    hooks = await make_hooks(settings=strict)
    # written past the API's check, as if DNS changed after the subscription was made
    await hooks.subscriptions.create(
        "wh_internal", url=receiver.url, events=["*"], secret=SECRET, headers={}
    )
    await emit(hooks)
    refused = await settled(hooks, 1)
    assert refused.status == "pending"
    assert refused.last_error is not None and "internal address" in refused.last_error
    assert receiver.requests == []


class RebindingResolver:
    """DNS that answers a public address to the first lookup of a name, 127.0.0.1 after."""

    def __init__(self, loop: asyncio.AbstractEventLoop, name: str) -> None:
        self._real = loop.getaddrinfo
        self.name = name
        self.lookups = 0

    async def __call__(self, host: Any, port: Any, *args: Any, **kw: Any) -> Any:
        name = host.decode() if isinstance(host, bytes) else host  # anyio passes bytes
        if name != self.name:
            return await self._real(host, port, *args, **kw)
        self.lookups += 1
        address = "93.184.216.34" if self.lookups == 1 else "127.0.0.1"
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (address, int(port)))]


async def test_a_name_that_rebinds_to_an_internal_address_is_refused_on_connect(
    make_hooks: HooksFactory,
    receiver: Receiver,
    hook_settings: Settings,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    loop = asyncio.get_running_loop()
    resolver = RebindingResolver(loop, "hooks.example.com")
    monkeypatch.setattr(loop, "getaddrinfo", resolver)
    strict = hook_settings.model_copy(update={"allow_private_urls": False})
    hooks = await make_hooks(settings=strict)
    url = f"http://hooks.example.com:{receiver.port}/hook"
    await hooks.subscriptions.create("wh_rebind", url=url, events=["*"], secret=SECRET, headers={})
    await emit(hooks)
    refused = await settled(hooks, 1)
    assert resolver.lookups == 2  # the guard saw a public address; the connection did not
    assert refused.status == "pending"
    assert refused.last_error is not None and "internal address (127.0.0.1)" in refused.last_error
    assert receiver.requests == []


async def test_pending_deliveries_survive_a_restart(
    hook_settings: Settings, db: Database, clock: ManualClock
) -> None:
    receiver = Receiver()
    async with running_hooks(hook_settings, db, clock) as first:
        await subscribe(first, receiver.url)
        await emit(first)
        failed = await settled(first, 1)
    await receiver.start()
    try:
        second_db = Database(create_engine(hook_settings.sqlalchemy_url))
        try:
            async with running_hooks(hook_settings, second_db, clock) as second:
                await tick(second, clock, gap(failed))
                assert (await settled(second, 2)).status == "delivered"
        finally:
            await second_db.aclose()
        assert len(receiver.requests) == 1
    finally:
        await receiver.stop()


async def test_a_delivery_cut_off_by_a_stop_is_sent_again_after_its_lease(
    hook_settings: Settings, db: Database, clock: ManualClock, receiver: Receiver
) -> None:
    receiver.replies.append(Reply(200, delay_s=30))  # answers only after the process is gone
    quick_stop = hook_settings.model_copy(update={"stop_timeout_ms": 100})
    async with running_hooks(quick_stop, db, clock) as first:
        await subscribe(first, receiver.url)
        await emit(first)
        await until(lambda: _received(receiver, 1))
    leased = (await first.deliveries.find())[0]
    assert (leased.status, leased.attempts) == ("pending", 1)
    lease = gap(leased)
    assert lease > quick_stop.webhook_timeout_ms / 1000

    async with running_hooks(quick_stop, db, clock) as second:
        await tick(second, clock, lease - 1)
        assert len(receiver.requests) == 1  # still leased
        await tick(second, clock, 1)
        assert (await settled(second, 2)).status == "delivered"
    ids = [r.delivery_id for r in receiver.requests]
    assert ids == [str(leased.id)] * 2  # the same id: the receiver can drop the repeat


async def _received(receiver: Receiver, count: int) -> bool:
    return len(receiver.requests) >= count


async def test_no_secret_or_signature_reaches_the_logs(
    make_hooks: HooksFactory, caplog: pytest.LogCaptureFixture, clock: ManualClock
) -> None:
    caplog.set_level(logging.DEBUG)
    receiver = Receiver()
    hooks = await make_hooks()
    await subscribe(hooks, receiver.url + "?token=url-token", headers={"X-Token": "hdr-token"})
    await emit(hooks)
    await tick(hooks, clock, gap(await settled(hooks, 1)))  # a logged retry
    second = await settled(hooks, 2)
    await receiver.start()
    try:
        await tick(hooks, clock, gap(second))
        assert (await settled(hooks, 3)).status == "delivered"
    finally:
        await receiver.stop()
    signature = receiver.requests[0].headers["x-wagate-signature"]
    wagate_logs = "\n".join(r.getMessage() for r in caplog.records if r.name.startswith("wagate"))
    assert "attempt 1 failed" in wagate_logs
    for secret in (SECRET, signature, "hdr-token", "url-token"):
        assert secret not in wagate_logs
