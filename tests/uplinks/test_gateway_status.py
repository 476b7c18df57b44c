"""A worker's seed 002 status updates: seed 002's body, the worker token, in order, retried."""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any

import httpx
import pytest

from wagate.backoff import Backoff
from wagate.clock import ManualClock
from wagate.domain.session import ChangeKind, SessionChange, SessionState
from wagate.testing import eventually, until
from wagate.uplinks.gateway import StatusReporter, seed002_status

from ..api.reports_rig import TOKEN
from .conftest import Control

PHONE = "6281234567890"


def change(
    kind: ChangeKind, state: SessionState, at: datetime, data: dict[str, Any] | None = None
) -> SessionChange:
    return SessionChange("s1", state, kind, at, data or {})


def test_the_body_is_seed_002s(clock: ManualClock) -> None:
    at = clock.now()
    connected = change(ChangeKind.CONNECTED, SessionState.CONNECTED, at, {"phone": PHONE})
    assert seed002_status(connected) == {
        "sessionId": "s1",
        "status": "connected",
        "phoneNumber": f"+{PHONE}",
        "timestamp": "2026-01-01T00:00:00.000Z",
    }
    qr = seed002_status(change(ChangeKind.QR, SessionState.QR, at, {"qr": "2@abc"}))
    assert qr is not None
    assert (qr["status"], qr["phoneNumber"]) == ("qr_required", None)
    png = base64.b64decode(qr["qrCode"].removeprefix("data:image/png;base64,"))
    assert png.startswith(b"\x89PNG")
    stopped = change(ChangeKind.STATE, SessionState.STOPPED, at, {"kind": None, "reason": "x"})
    assert seed002_status(stopped) == {
        "sessionId": "s1",
        "status": "disconnected",
        "phoneNumber": None,
        "timestamp": "2026-01-01T00:00:00.000Z",
    }
    assert seed002_status(change(ChangeKind.PAIR_CODE, SessionState.CONNECTING, at)) is None


# --- against the real control plane ----------------------------------------------------


async def test_status_updates_reach_the_control_plane_and_drive_a_stale_row(
    control: Control, client: httpx.AsyncClient, clock: ManualClock
) -> None:
    sessions = control.gateway.sessions
    async with StatusReporter(control.url, TOKEN, client=client, clock=clock) as reporter:
        await clock.advance(1)
        at = clock.now()
        await reporter.on_change(change(ChangeKind.STATE, SessionState.CONNECTING, at))
        await reporter.on_change(change(ChangeKind.QR, SessionState.QR, at, {"qr": "2@abc"}))
        connected = change(ChangeKind.CONNECTED, SessionState.CONNECTED, at, {"phone": PHONE})
        await reporter.on_change(connected)

        async def settled() -> bool:
            return (await sessions.require("s1")).status is SessionState.CONNECTED

        await until(settled)
        await eventually(lambda: reporter.sent == 3)
    row = await sessions.require("s1")
    assert row.phone_number == PHONE and reporter.given_up == []
    states = [e["state"] for e in control.outbox.of("session.status")]
    assert states == ["connecting", "qr", "connected"]


async def test_a_wrong_token_is_refused_and_not_retried(
    control: Control, client: httpx.AsyncClient, clock: ManualClock
) -> None:
    reporter = StatusReporter(control.url + "/", "not-the-token", client=client, clock=clock)
    async with reporter:
        await reporter.on_change(change(ChangeKind.STATE, SessionState.CONNECTING, clock.now()))
        await eventually(lambda: len(reporter.given_up) == 1)
    assert reporter.sent == 0


# --- over a scripted transport ---------------------------------------------------------


class Recorder:
    def __init__(self) -> None:
        self.answers: list[int] = []
        self.seen: list[httpx.Request] = []

    async def __call__(self, request: httpx.Request) -> httpx.Response:
        self.seen.append(request)
        return httpx.Response(self.answers.pop(0) if self.answers else 200, json={})

    def statuses(self) -> list[str]:
        return [json.loads(r.content)["status"] for r in self.seen]


@pytest.fixture
async def scripted(clock: ManualClock) -> AsyncIterator[tuple[Recorder, StatusReporter]]:
    recorder = Recorder()
    async with httpx.AsyncClient(transport=httpx.MockTransport(recorder)) as client:
        reporter = StatusReporter(
            "http://backend:8000/",
            TOKEN,
            client=client,
            clock=clock,
            backoff=Backoff(1.0, 8.0),
            max_attempts=3,
            stop_timeout_s=0.5,
        )
        async with reporter:
            yield recorder, reporter


async def test_the_request_is_seed_002s(
    scripted: tuple[Recorder, StatusReporter], clock: ManualClock
) -> None:
    recorder, reporter = scripted
    await reporter.on_change(change(ChangeKind.STATE, SessionState.CONNECTING, clock.now()))
    await eventually(lambda: reporter.sent == 1)
    [request] = recorder.seen
    assert request.method == "POST"
    assert str(request.url) == "http://backend:8000/api/webhooks/session-status"
    assert request.headers["authorization"] == f"Bearer {TOKEN}"
    assert request.headers["content-type"] == "application/json"
    assert json.loads(request.content)["status"] == "connecting"


async def test_only_what_seed_002_can_tell_apart_is_sent(
    scripted: tuple[Recorder, StatusReporter], clock: ManualClock
) -> None:
    recorder, reporter = scripted
    at = clock.now()
    for made in [
        change(ChangeKind.STATE, SessionState.CONNECTING, at),
        change(ChangeKind.STATE, SessionState.RECONNECTING, at),  # "connecting" again
        change(ChangeKind.QR, SessionState.QR, at, {"qr": "2@one"}),
        change(ChangeKind.QR, SessionState.QR, at, {"qr": "2@one"}),  # the same QR
        change(ChangeKind.QR, SessionState.QR, at, {"qr": "2@two"}),  # a new one
        change(ChangeKind.PAIR_CODE, SessionState.QR, at, {"code": "ABCD"}),
        change(ChangeKind.CONNECTED, SessionState.CONNECTED, at, {"phone": PHONE}),
    ]:
        await reporter.on_change(made)
    await eventually(lambda: reporter.sent == 4)
    assert recorder.statuses() == ["connecting", "qr_required", "qr_required", "connected"]


async def test_a_failed_update_is_retried_and_order_kept(
    scripted: tuple[Recorder, StatusReporter], clock: ManualClock
) -> None:
    recorder, reporter = scripted
    recorder.answers = [503]
    at = clock.now()
    await reporter.on_change(change(ChangeKind.STATE, SessionState.CONNECTING, at))
    connected = change(ChangeKind.CONNECTED, SessionState.CONNECTED, at, {"phone": PHONE})
    await reporter.on_change(connected)
    await clock.wait_for_sleepers()
    assert len(recorder.seen) == 1  # the next one waits behind the retry
    await clock.advance(1)
    await eventually(lambda: reporter.sent == 2)
    assert recorder.statuses() == ["connecting", "connecting", "connected"]


async def test_it_gives_up_after_the_last_try(
    scripted: tuple[Recorder, StatusReporter], clock: ManualClock
) -> None:
    recorder, reporter = scripted
    recorder.answers = [500, 500, 500]
    await reporter.on_change(change(ChangeKind.STATE, SessionState.CONNECTING, clock.now()))
    for _ in range(2):
        await clock.wait_for_sleepers()
        await clock.advance(2)
    await eventually(lambda: len(reporter.given_up) == 1)
    assert len(recorder.seen) == 3 and reporter.sent == 0


async def test_the_queue_is_bounded(clock: ManualClock) -> None:
    async with httpx.AsyncClient(transport=httpx.MockTransport(Recorder())) as client:
        reporter = StatusReporter("http://b", TOKEN, client=client, clock=clock, max_queued=2)
        # not entered: nothing sends, so everything queues
        for i in range(3):
            qr = change(ChangeKind.QR, SessionState.QR, clock.now(), {"qr": f"2@{i}"})
            await reporter.on_change(qr)
        assert len(reporter.queue) == 2
        assert [json.loads(r.body)["status"] for r in reporter.queue.dropped] == ["qr_required"]
