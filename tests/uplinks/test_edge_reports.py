"""What an edge worker tells its worker-proxy: spooled posts (Courier) and status reports."""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest

from wagate.backoff import Backoff
from wagate.clock import ManualClock
from wagate.domain.audit import AuditEvent
from wagate.storage.edge_spool import MARK_SENT, EdgeSpool
from wagate.testing import eventually, until
from wagate.uplinks.edge import EdgeClient
from wagate.uplinks.edge_reports import Courier, StatusReports
from wagate.worker.record import MemoryRecord

from .edge_rig import BASE_URL, SECRET, Proxy, Refusals

INBOUND = "/inbound"
STATUS = "/update-status"
RETRY = Backoff(1.0, 4.0)  # no jitter: the n-th retry waits min(4, 2**n) s


def failing(times: int, status: int = 503) -> Iterator[int]:
    """``status`` for the first ``times`` requests, then 204."""
    yield from [status] * times
    while True:
        yield 204


def replies(statuses: Iterator[int]) -> httpx.Response:
    return httpx.Response(next(statuses))


@pytest.fixture
def proxy() -> Proxy:
    return Proxy()


@pytest.fixture
async def edge(proxy: Proxy) -> AsyncIterator[EdgeClient]:
    async with httpx.AsyncClient(transport=httpx.MockTransport(proxy.handle)) as http:
        yield EdgeClient(BASE_URL, SECRET, "w1", client=http)


@pytest.fixture
def spool_path(tmp_path: Path) -> Path:
    return tmp_path / "edge-spool.sqlite3"


@pytest.fixture
async def spool(spool_path: Path) -> AsyncIterator[EdgeSpool]:
    async with EdgeSpool(spool_path) as opened:
        yield opened


@pytest.fixture
def record(clock: ManualClock) -> MemoryRecord:
    return MemoryRecord(clock)


def courier_of(
    spool: EdgeSpool, edge: EdgeClient, record: MemoryRecord, clock: ManualClock
) -> Courier:
    return Courier(spool, edge, audit=record, clock=clock, retry=RETRY, rng=random.Random(1))


async def add(spool: EdgeSpool, instance: str, path: str, *keys: str) -> None:
    for key in keys:
        await spool.add_post(instance, path, {"instanceId": instance, "messageId": key}, key=key)


def keys(proxy: Proxy, path: str) -> list[str]:
    return [body["messageId"] for body in proxy.bodies(path)]


# --- Courier -------------------------------------------------------------------------------


async def test_posts_of_one_lane_go_in_order_even_across_a_retry(
    proxy: Proxy, edge: EdgeClient, spool: EdgeSpool, record: MemoryRecord, clock: ManualClock
) -> None:
    b_fails = failing(1)
    proxy.routes[INBOUND] = lambda request: httpx.Response(
        next(b_fails) if json.loads(request.content)["messageId"] == "b" else 204
    )
    await add(spool, "i1", INBOUND, "a", "b", "c")
    async with courier_of(spool, edge, record, clock) as courier:
        courier.wake("i1", INBOUND)
        await clock.wait_for_sleepers()  # b was not taken: its backoff
        assert keys(proxy, INBOUND) == ["a", "b"]
        waiting = await spool.oldest("i1", INBOUND)
        assert waiting is not None and (waiting.key, waiting.attempts) == ("b", 1)

        await clock.advance(1.0)
        await until(lambda: pending_is(spool, 0))
        assert keys(proxy, INBOUND) == ["a", "b", "b", "c"]  # c never before b
        assert (courier.delivered, courier.dropped) == (3, 0)


async def pending_is(spool: EdgeSpool, count: int, instance: str | None = None) -> bool:
    return await spool.pending(instance) == count


async def test_a_failing_path_holds_up_no_other_lane_of_the_instance(
    proxy: Proxy, edge: EdgeClient, spool: EdgeSpool, record: MemoryRecord, clock: ManualClock
) -> None:
    mark_down = True
    proxy.routes[MARK_SENT] = lambda _r: httpx.Response(500 if mark_down else 200)
    await add(spool, "i1", MARK_SENT, "m1")
    await add(spool, "i1", INBOUND, "a", "b")
    async with courier_of(spool, edge, record, clock) as courier:
        courier.wake("i1", MARK_SENT)
        courier.wake("i1", INBOUND)
        await until(lambda: pending_is(spool, 1))
        await clock.wait_for_sleepers()
        assert keys(proxy, INBOUND) == ["a", "b"]  # taken while /mark-sent keeps failing
        stuck = await spool.oldest("i1", MARK_SENT)
        assert stuck is not None and stuck.key == "m1" and stuck.attempts >= 1

        mark_down = False
        await clock.advance(RETRY.max_s)
        await until(lambda: pending_is(spool, 0))
        assert keys(proxy, MARK_SENT)[-1] == "m1"
        assert courier.delivered == 3


async def test_a_5xx_is_retried_with_backoff_and_the_post_leaves_the_spool_only_once_taken(
    proxy: Proxy, edge: EdgeClient, spool: EdgeSpool, record: MemoryRecord, clock: ManualClock
) -> None:
    statuses = failing(3, status=500)
    proxy.routes[INBOUND] = lambda _r: replies(statuses)
    await add(spool, "i1", INBOUND, "a")
    async with courier_of(spool, edge, record, clock) as courier:
        courier.wake("i1", INBOUND)
        for tries in (1, 2, 3):
            await clock.wait_for_sleepers()
            post = await spool.oldest("i1", INBOUND)
            assert post is not None and post.attempts == tries  # still on disk
            assert courier.delivered == 0
            await clock.advance(RETRY.max_s)
        await until(lambda: pending_is(spool, 0))
        assert keys(proxy, INBOUND) == ["a"] * 4
        assert clock.sleeps == [1.0, 2.0, 4.0]
        assert (courier.delivered, courier.dropped) == (1, 0)


async def test_a_refused_post_is_dropped_counted_and_audited_and_the_lane_goes_on(
    proxy: Proxy, edge: EdgeClient, spool: EdgeSpool, record: MemoryRecord, clock: ManualClock
) -> None:
    proxy.routes[INBOUND] = lambda request: (
        httpx.Response(422, json={"error": "bad body"})
        if json.loads(request.content)["messageId"] == "a"
        else httpx.Response(204)
    )
    await add(spool, "i1", INBOUND, "a", "b")
    async with courier_of(spool, edge, record, clock) as courier:
        courier.wake("i1", INBOUND)
        await until(lambda: pending_is(spool, 0))
        assert keys(proxy, INBOUND) == ["a", "b"]  # a tried once: it would be refused forever
        assert (courier.delivered, courier.dropped) == (1, 1)
    assert list(record.audit) == [
        (
            "i1",
            AuditEvent.ERROR,
            {"code": "EDGE_REFUSED", "path": INBOUND, "key": "a", "msg": "422: /inbound: bad body"},
        )
    ]
    assert clock.sleeps == []  # no backoff for a refusal


async def test_posts_left_in_the_spool_from_before_are_delivered_at_open(
    proxy: Proxy, edge: EdgeClient, spool_path: Path, record: MemoryRecord, clock: ManualClock
) -> None:
    proxy.answer(INBOUND, 503)
    proxy.answer(MARK_SENT, 503)
    async with EdgeSpool(spool_path) as spool:
        async with courier_of(spool, edge, record, clock) as courier:
            await add(spool, "i1", INBOUND, "a", "b")
            await add(spool, "i2", MARK_SENT, "m1")
            courier.wake("i1", INBOUND)
            courier.wake("i2", MARK_SENT)
            await clock.wait_for_sleepers(2)
        assert await spool.pending() == 3  # stopped mid-backoff: nothing lost
    proxy.requests.clear()
    proxy.routes.clear()

    async with EdgeSpool(spool_path) as spool:  # a restarted worker
        async with courier_of(spool, edge, record, clock) as courier:
            await until(lambda: pending_is(spool, 0))  # nobody woke it: open did
            assert courier.delivered == 3
    assert keys(proxy, INBOUND) == ["a", "b"]
    assert keys(proxy, MARK_SENT) == ["m1"]


# --- StatusReports -------------------------------------------------------------------------


class Sent:
    def __init__(self) -> None:
        self.instances: list[str] = []

    def __call__(self, instance: str) -> None:
        self.instances.append(instance)


def reports_of(
    edge: EdgeClient, clock: ManualClock, refusals: Refusals, sent: Sent
) -> StatusReports:
    return StatusReports(
        edge, clock=clock, retry=RETRY, on_refused=refusals, on_sent=sent, rng=random.Random(1)
    )


async def test_reports_made_while_one_is_retried_coalesce_into_the_latest(
    proxy: Proxy, edge: EdgeClient, clock: ManualClock
) -> None:
    down = True
    proxy.routes[STATUS] = lambda _r: httpx.Response(503 if down else 200)
    refusals, sent = Refusals(), Sent()
    async with reports_of(edge, clock, refusals, sent) as reports:
        reports.report("i1", {"instanceId": "i1", "status": "CONNECTING", "qr": "QR1"})
        await clock.wait_for_sleepers()
        reports.report("i1", {"instanceId": "i1", "status": "CONNECTING", "qr": "QR2"})
        reports.report("i1", {"instanceId": "i1", "status": "CONNECTED", "phone": "628"})
        assert reports.waiting() == 1
        assert sent.instances == []

        down = False
        await clock.advance(RETRY.max_s)
        await eventually(lambda: reports.waiting() == 0)
    assert proxy.bodies(STATUS) == [
        {"instanceId": "i1", "status": "CONNECTING", "qr": "QR1"},
        {"instanceId": "i1", "status": "CONNECTED", "phone": "628"},
    ]  # QR2 never reached the worker-proxy
    assert sent.instances == ["i1"]
    assert refusals.calls == []


async def test_a_report_made_while_one_is_in_flight_is_sent_after_it(
    proxy: Proxy, edge: EdgeClient, clock: ManualClock
) -> None:
    refusals, sent = Refusals(), Sent()
    reports = reports_of(edge, clock, refusals, sent)

    def answer(request: httpx.Request) -> httpx.Response:
        if len(proxy.to(STATUS)) == 1:  # the QR is on its way: the phone scans it
            reports.report("i1", {"instanceId": "i1", "status": "CONNECTED"})
        return httpx.Response(200)

    proxy.routes[STATUS] = answer
    async with reports:
        reports.report("i1", {"instanceId": "i1", "status": "CONNECTING", "qr": "QR1"})
        await eventually(lambda: len(sent.instances) == 2)
        assert reports.waiting() == 0
    assert [b["status"] for b in proxy.bodies(STATUS)] == ["CONNECTING", "CONNECTED"]
    assert clock.sleeps == []


async def test_reports_of_two_instances_do_not_replace_each_other(
    proxy: Proxy, edge: EdgeClient, clock: ManualClock
) -> None:
    refusals, sent = Refusals(), Sent()
    async with reports_of(edge, clock, refusals, sent) as reports:
        reports.report("i1", {"instanceId": "i1", "status": "CONNECTED"})
        reports.report("i2", {"instanceId": "i2", "status": "CONNECTING"})
        await eventually(lambda: len(sent.instances) == 2)
    assert sorted(b["instanceId"] for b in proxy.bodies(STATUS)) == ["i1", "i2"]
    assert sorted(sent.instances) == ["i1", "i2"]


@pytest.mark.parametrize("status", [404, 409, 410])
async def test_a_report_about_an_instance_not_ours_calls_on_refused_once(
    proxy: Proxy, edge: EdgeClient, clock: ManualClock, status: int
) -> None:
    proxy.answer(STATUS, status, json={"error": "claimed by w2"})
    refusals, sent = Refusals(), Sent()
    async with reports_of(edge, clock, refusals, sent) as reports:
        reports.report("i1", {"instanceId": "i1", "status": "CONNECTED"})
        await asyncio.wait_for(refusals.heard.wait(), 10)
        await eventually(lambda: reports.waiting() == 0)
        await clock.advance(RETRY.max_s * 4)
    [(instance, exc)] = refusals.calls
    assert (instance, exc.status) == ("i1", status)
    assert "claimed by w2" in exc.message
    assert len(proxy.to(STATUS)) == 1  # never tried again
    assert sent.instances == []


async def test_another_refusal_drops_the_report_without_letting_go(
    proxy: Proxy, edge: EdgeClient, clock: ManualClock
) -> None:
    proxy.answer(STATUS, 422, json={"error": "unknown status"})
    refusals, sent = Refusals(), Sent()
    async with reports_of(edge, clock, refusals, sent) as reports:
        reports.report("i1", {"instanceId": "i1", "status": "WEIRD"})
        await eventually(lambda: len(proxy.to(STATUS)) == 1 and reports.waiting() == 0)
    assert refusals.calls == []
    assert sent.instances == []


async def test_a_stopping_worker_gives_a_waiting_report_one_last_try(
    proxy: Proxy, edge: EdgeClient, clock: ManualClock
) -> None:
    proxy.answer(STATUS, 503)
    refusals, sent = Refusals(), Sent()
    reports = reports_of(edge, clock, refusals, sent)
    async with reports:
        reports.report("i1", {"instanceId": "i1", "status": "DISCONNECTED"})
        await clock.wait_for_sleepers()
    # leaving did not wait out the backoff: the report had its last try, then was let be
    assert len(proxy.to(STATUS)) == 2
    assert reports.waiting() == 0


async def test_a_report_made_as_the_previous_one_is_answered_is_still_sent(
    edge: EdgeClient, proxy: Proxy, clock: ManualClock
) -> None:
    """A session changes (a runner task wakes) in the loop turn the worker-proxy's answer
    arrives: the change must reach the worker-proxy all the same."""
    changed = asyncio.Event()

    def answer(_request: httpx.Request) -> httpx.Response:
        changed.set()
        return httpx.Response(204)

    proxy.routes[STATUS] = answer
    refusals, sent = Refusals(), Sent()
    async with reports_of(edge, clock, refusals, sent) as reports:

        async def runner() -> None:
            await changed.wait()
            reports.report("i1", {"instanceId": "i1", "status": "CONNECTED"})

        running = asyncio.create_task(runner())
        reports.report("i1", {"instanceId": "i1", "status": "CONNECTING"})
        await asyncio.wait_for(running, 10)
        with contextlib.suppress(TimeoutError):
            await eventually(lambda: len(proxy.to(STATUS)) == 2, limit_s=3)
        assert [b["status"] for b in proxy.bodies(STATUS)] == ["CONNECTING", "CONNECTED"]
        assert reports.waiting() == 0
