"""A session process's seed 004 events: signed, in order, retried, never blocking the session."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import httpx
import pytest

from wagate.backoff import Backoff
from wagate.clock import ManualClock
from wagate.domain.reports import EventType
from wagate.domain.session import ChangeKind, SessionChange, SessionState
from wagate.testing import eventually, until
from wagate.uplinks.reporting import Report, ReportQueue
from wagate.uplinks.seed004 import EventReporter, seed004_event
from wagate.webhooks.seed004_signing import check_event_signature

from ..api.reports_rig import SECRET
from .conftest import Control

PHONE = "6281234567890"
BACKOFF = Backoff(1.0, 8.0)


def change(
    kind: ChangeKind,
    state: SessionState,
    at: datetime,
    data: dict[str, Any] | None = None,
    session_id: str = "s1",
) -> SessionChange:
    return SessionChange(session_id, state, kind, at, data or {})


def qr(at: datetime, code: str = "2@abc") -> SessionChange:
    return change(ChangeKind.QR, SessionState.QR, at, {"qr": code, "expires_at": None})


def connected(at: datetime) -> SessionChange:
    return change(ChangeKind.CONNECTED, SessionState.CONNECTED, at, {"phone": PHONE, "jid": "j"})


def lost(at: datetime, kind: str | None = "connection_lost", reason: str = "down") -> SessionChange:
    state = SessionState.RECONNECTING if kind else SessionState.STOPPED
    return change(ChangeKind.DISCONNECTED, state, at, {"kind": kind, "reason": reason})


# --- what each change becomes ----------------------------------------------------------


def stopped(at: datetime) -> SessionChange:
    state = SessionState.STOPPED
    return change(ChangeKind.STATE, state, at, {"kind": None, "reason": "stopped by you"})


def _lost(kind: str) -> Callable[[datetime], SessionChange]:
    return lambda at: lost(at, kind)


DISCONNECTED = EventType.DISCONNECTED


@pytest.mark.parametrize(
    ("made", "expected"),
    [
        (qr, (EventType.QR_CODE, {"qr": "2@abc"})),
        (connected, (EventType.CONNECTED, {"phoneNumber": PHONE})),
        (_lost("connection_lost"), (DISCONNECTED, {"reason": "down", "code": "connection_lost"})),
        (_lost("banned"), (DISCONNECTED, {"reason": "down", "code": "banned"})),
        (_lost("logged_out"), (EventType.AUTH_FAILURE, {"reason": "down"})),
        (_lost("proxy_error"), (EventType.PROXY_ERROR, {"error": "down"})),
        (stopped, (DISCONNECTED, {"reason": "stopped by you", "code": None})),
        (lambda at: change(ChangeKind.STATE, SessionState.CONNECTING, at), None),
        (lambda at: change(ChangeKind.PAIR_CODE, SessionState.CONNECTING, at, {"code": "A"}), None),
    ],
)
def test_each_change_becomes_its_seed_004_event(
    made: Callable[[datetime], SessionChange], expected: Any, clock: ManualClock
) -> None:
    assert seed004_event(made(clock.now())) == expected


# --- against the real control plane ----------------------------------------------------


async def test_events_reach_the_control_plane_which_verifies_and_applies_them(
    control: Control, client: httpx.AsyncClient, clock: ManualClock
) -> None:
    sessions = control.gateway.sessions
    reporter = EventReporter(
        f"{control.url}/webhook", SECRET, "s1", client=client, clock=clock, ping_interval_s=15
    )
    async with reporter:
        await clock.advance(1)
        await reporter.on_change(qr(clock.now()))
        await reporter.on_change(connected(clock.now()))  # the same second: still in order
        await clock.advance(1)
        await reporter.on_change(lost(clock.now(), "banned", "account banned"))

        async def settled() -> bool:
            return (await sessions.require("s1")).status is SessionState.FAILED

        await until(settled)
    assert reporter.sent == 4 and reporter.given_up == []  # a PING at start, three events
    row = await sessions.require("s1")
    assert (row.phone_number, row.disconnect_reason) == (PHONE, "account banned")
    assert row.last_ping_at == clock.now() - timedelta(seconds=2)
    states = [e["state"] for e in control.outbox.of("session.status")]
    assert states == ["connected", "failed"]
    assert [e["qr"] for e in control.outbox.of("session.qr")] == ["2@abc"]


async def test_an_event_the_control_plane_refuses_is_not_retried(
    control: Control, client: httpx.AsyncClient, clock: ManualClock
) -> None:
    backoff = Backoff(0.123, 1.0)  # a delay no other sleeper on this clock asks for
    url = f"{control.url}/webhook"
    reporter = EventReporter(
        url, "wrong-secret", "s1", client=client, clock=clock, ping_interval_s=15, backoff=backoff
    )
    async with reporter:
        await eventually(lambda: len(reporter.given_up) == 1)  # its first PING: 401
    assert reporter.sent == 0 and 0.123 not in clock.sleeps


# --- the queue and the retries, over a scripted transport --------------------------------


@dataclass
class Script:
    """A transport answering from a list (then 200), recording what it was sent."""

    answers: list[int | type[Exception]] = field(default_factory=list)
    seen: list[httpx.Request] = field(default_factory=list)
    gate: asyncio.Event = field(default_factory=asyncio.Event)

    def __post_init__(self) -> None:
        self.gate.set()

    async def __call__(self, request: httpx.Request) -> httpx.Response:
        await self.gate.wait()
        self.seen.append(request)
        answer = self.answers.pop(0) if self.answers else 200
        if isinstance(answer, int):
            return httpx.Response(answer, json={})
        raise answer("scripted", request=request)

    def events(self) -> list[dict[str, Any]]:
        return [json.loads(r.content) for r in self.seen]


Make = Callable[..., Awaitable[EventReporter]]


@pytest.fixture
async def reporters(clock: ManualClock) -> AsyncIterator[tuple[Script, Make]]:
    script = Script()
    async with httpx.AsyncClient(transport=httpx.MockTransport(script)) as client:
        made: list[EventReporter] = []

        async def make(**kw: Any) -> EventReporter:
            options: dict[str, Any] = {
                "client": client,
                "clock": clock,
                "ping_interval_s": 15,
                "backoff": BACKOFF,
                "max_attempts": 3,
                "stop_timeout_s": 0.5,
            } | kw
            reporter = EventReporter("http://control/webhook", SECRET, "s1", **options)
            made.append(await reporter.__aenter__())
            return reporter

        yield script, make
        script.gate.set()
        for reporter in made:
            await reporter.__aexit__(None, None, None)


async def test_the_body_and_signature_are_what_the_receiver_checks(
    reporters: tuple[Script, Make], clock: ManualClock
) -> None:
    script, make = reporters
    reporter = await make()
    await clock.advance(0.75)
    await reporter.on_change(qr(clock.now()))
    await eventually(lambda: reporter.sent == 2)
    ping, event = script.seen
    for request in (ping, event):
        stamp = check_event_signature(
            SECRET, request.headers, request.content, now=clock.now().timestamp(), tolerance_s=1
        )
        assert stamp == int(clock.now().timestamp())
    assert json.loads(event.content) == {
        "type": "QR_CODE",
        "sessionId": "s1",
        "data": {"qr": "2@abc"},
    }
    assert event.headers["x-wagate-event"] == "QR_CODE"
    start_ms = round((clock.now() - timedelta(seconds=0.75)).timestamp() * 1000)
    assert json.loads(ping.content) == {
        "type": "PING",
        "sessionId": "s1",
        "data": {"timestamp": start_ms},
    }


async def test_a_ping_every_interval(reporters: tuple[Script, Make], clock: ManualClock) -> None:
    script, make = reporters
    reporter = await make()
    await eventually(lambda: reporter.sent == 1)
    await clock.advance(15)
    await eventually(lambda: reporter.sent == 2)
    await clock.advance(14)
    assert reporter.sent == 2
    await clock.advance(1)
    await eventually(lambda: reporter.sent == 3)
    assert [e["type"] for e in script.events()] == ["PING"] * 3


async def test_other_sessions_changes_are_not_reported(
    reporters: tuple[Script, Make], clock: ManualClock
) -> None:
    script, make = reporters
    reporter = await make()
    await reporter.on_change(change(ChangeKind.QR, SessionState.QR, clock.now(), {"qr": "x"}, "s2"))
    await eventually(lambda: reporter.sent == 1)
    assert len(reporter.queue) == 0 and [e["type"] for e in script.events()] == ["PING"]


async def test_failures_are_retried_with_backoff_in_order(
    reporters: tuple[Script, Make], clock: ManualClock
) -> None:
    script, make = reporters
    script.answers = [200, 503, httpx.ConnectError]  # the PING passes, the QR fails twice
    reporter = await make()
    await reporter.on_change(qr(clock.now()))
    await reporter.on_change(connected(clock.now()))
    await clock.wait_for_sleepers(2)  # the ping loop, and the first backoff
    await clock.advance(1)
    await clock.wait_for_sleepers(2)
    await clock.advance(2)
    await eventually(lambda: reporter.sent == 3)
    assert [e["type"] for e in script.events()] == [
        "PING",
        "QR_CODE",
        "QR_CODE",
        "QR_CODE",
        "CONNECTED",
    ]
    assert clock.sleeps.count(1.0) == 1 and clock.sleeps.count(2.0) == 1
    # every retry is the very same signed request
    assert len({r.headers["x-wagate-signature"] for r in script.seen[1:4]}) == 1


async def test_after_the_last_try_it_gives_up_and_goes_on(
    reporters: tuple[Script, Make], clock: ManualClock
) -> None:
    script, make = reporters
    script.answers = [200, 500, 500, 500]
    reporter = await make()
    await reporter.on_change(qr(clock.now()))
    await reporter.on_change(connected(clock.now()))
    for _ in range(2):
        await clock.wait_for_sleepers(2)
        await clock.advance(2)
    await eventually(lambda: reporter.sent == 2)
    assert [r.name for r in reporter.given_up] == ["QR_CODE"]
    assert [e["type"] for e in script.events()] == ["PING"] + ["QR_CODE"] * 3 + ["CONNECTED"]


async def test_a_refusal_is_final(reporters: tuple[Script, Make], clock: ManualClock) -> None:
    script, make = reporters
    script.answers = [200, 401, 404]
    reporter = await make()
    await reporter.on_change(qr(clock.now()))
    await reporter.on_change(connected(clock.now()))
    await eventually(lambda: len(reporter.given_up) == 2)
    assert len(script.seen) == 3 and clock.sleeps == [15]  # only the ping loop slept


async def test_reporting_never_blocks_and_the_queue_is_bounded(
    reporters: tuple[Script, Make], clock: ManualClock
) -> None:
    script, make = reporters
    script.gate.clear()  # the control plane hangs: nothing gets through
    reporter = await make(max_queued=4)
    await eventually(lambda: len(reporter.queue) == 0)  # the first PING is in flight, stuck
    await reporter.ping()
    await reporter.on_change(qr(clock.now(), "2@one"))
    await reporter.ping()
    await reporter.on_change(qr(clock.now(), "2@two"))
    # full: the oldest PING goes first, then the other, and a new PING goes rather than an event
    await reporter.on_change(qr(clock.now(), "2@three"))
    await reporter.on_change(connected(clock.now()))
    await reporter.ping()
    assert [r.name for r in reporter.queue.dropped] == ["PING", "PING", "PING"]
    # only a queue full of events loses one, the oldest
    await reporter.on_change(lost(clock.now()))
    assert json.loads(reporter.queue.dropped[-1].body)["data"]["qr"] == "2@one"
    script.gate.set()
    await eventually(lambda: reporter.sent == 5)
    names = [e["type"] for e in script.events()]
    assert names == ["PING", "QR_CODE", "QR_CODE", "CONNECTED", "DISCONNECTED"]
    assert [e["data"].get("qr") for e in script.events()[1:3]] == ["2@two", "2@three"]


def test_the_queue_alone_keeps_state_reports_over_keep_alives() -> None:
    queue = ReportQueue(limit=2)
    state = [Report("s1", f"E{i}", b"") for i in range(3)]
    ping = Report("s1", "PING", b"", droppable=True)
    queue.put(ping)
    queue.put(state[0])
    queue.put(state[1])  # evicts the ping
    queue.put(ping)  # dropped: the queue holds only state
    assert queue.dropped == [ping, ping] and len(queue) == 2
