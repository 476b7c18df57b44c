"""Seed 004's signed events: accepted when well signed and fresh, once; refused otherwise."""

from __future__ import annotations

import hashlib
import hmac
from datetime import UTC, datetime

import pytest

from wagate.clock import ManualClock
from wagate.errors import Unauthorized
from wagate.webhooks import verify_signature
from wagate.webhooks.seed004_signing import (
    EventVerifier,
    MemorySeenEvents,
    check_event_signature,
    event_headers,
)

SECRET = "the-webhook-secret"
BODY = b'{"type":"QR_CODE","sessionId":"s1","data":{"qr":"2@abc"}}'
START = datetime(2026, 1, 1, tzinfo=UTC)
NOW = int(START.timestamp())
TOLERANCE_S = 300.0


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(START)


@pytest.fixture
def verifier(clock: ManualClock) -> EventVerifier:
    return EventVerifier(SECRET, tolerance_s=TOLERANCE_S, clock=clock)


def test_the_headers_are_wagates_webhook_signature_over_timestamp_dot_body() -> None:
    headers = event_headers(SECRET, NOW, BODY, "QR_CODE")
    expected = hmac.new(SECRET.encode(), f"{NOW}.".encode() + BODY, hashlib.sha256).hexdigest()
    assert headers == {
        "Content-Type": "application/json",
        "X-Wagate-Event": "QR_CODE",
        "X-Wagate-Timestamp": str(NOW),
        "X-Wagate-Signature": f"v1={expected}",
    }
    # a receiver of wagate's webhooks verifies these with the function it already has
    assert verify_signature(SECRET, headers, BODY, now=NOW)


async def test_a_well_signed_fresh_event_is_accepted_with_its_time(
    verifier: EventVerifier, clock: ManualClock
) -> None:
    await clock.advance(42)  # sent a little after it was signed
    event = await verifier.verify(event_headers(SECRET, NOW, BODY, "QR_CODE"), BODY)
    assert event.at == START


@pytest.mark.parametrize(
    ("headers", "why"),
    [
        ({}, "unsigned"),
        ({"X-Wagate-Timestamp": str(NOW)}, "unsigned"),
        ({"X-Wagate-Signature": "v1=00"}, "unsigned"),
        ({"X-Wagate-Timestamp": "soon", "X-Wagate-Signature": "v1=00"}, "invalid signature"),
        ({"X-Wagate-Timestamp": str(NOW), "X-Wagate-Signature": "v1=00"}, "invalid signature"),
        ({"X-Wagate-Timestamp": str(NOW), "X-Wagate-Signature": ""}, "invalid signature"),
    ],
)
async def test_unsigned_or_malformed_signatures_are_refused(
    verifier: EventVerifier, headers: dict[str, str], why: str
) -> None:
    with pytest.raises(Unauthorized, match=why):
        await verifier.verify(headers, BODY)


async def test_a_forged_signature_is_refused(verifier: EventVerifier) -> None:
    with pytest.raises(Unauthorized, match="invalid signature"):
        await verifier.verify(event_headers("another-secret", NOW, BODY, "QR_CODE"), BODY)


async def test_a_tampered_body_is_refused(verifier: EventVerifier) -> None:
    headers = event_headers(SECRET, NOW, BODY, "QR_CODE")
    with pytest.raises(Unauthorized, match="invalid signature"):
        await verifier.verify(headers, BODY.replace(b"2@abc", b"2@xyz"))


async def test_a_moved_timestamp_is_refused(verifier: EventVerifier) -> None:
    headers = event_headers(SECRET, NOW, BODY, "QR_CODE")
    headers["X-Wagate-Timestamp"] = str(NOW + 1)
    with pytest.raises(Unauthorized, match="invalid signature"):
        await verifier.verify(headers, BODY)


@pytest.mark.parametrize("offset_s", [-301, 301, -(10**9)])
async def test_a_timestamp_outside_the_tolerance_is_stale(
    verifier: EventVerifier, offset_s: int
) -> None:
    headers = event_headers(SECRET, NOW + offset_s, BODY, "QR_CODE")
    with pytest.raises(Unauthorized, match="stale"):
        await verifier.verify(headers, BODY)


@pytest.mark.parametrize("offset_s", [-300, 300])
async def test_the_tolerance_is_inclusive(verifier: EventVerifier, offset_s: int) -> None:
    await verifier.verify(event_headers(SECRET, NOW + offset_s, BODY, "QR_CODE"), BODY)


async def test_a_replay_inside_the_window_is_refused(
    verifier: EventVerifier, clock: ManualClock
) -> None:
    headers = event_headers(SECRET, NOW, BODY, "QR_CODE")
    await verifier.verify(headers, BODY)
    await clock.advance(TOLERANCE_S - 1)
    with pytest.raises(Unauthorized, match="replayed"):
        await verifier.verify(headers, BODY)
    # past the window the same request is stale: refused either way
    await clock.advance(2)
    with pytest.raises(Unauthorized, match="stale"):
        await verifier.verify(headers, BODY)


async def test_the_same_body_signed_at_another_second_is_another_event(
    verifier: EventVerifier,
) -> None:
    await verifier.verify(event_headers(SECRET, NOW, BODY, "QR_CODE"), BODY)
    await verifier.verify(event_headers(SECRET, NOW + 1, BODY, "QR_CODE"), BODY)


async def test_a_forgotten_event_is_accepted_again(verifier: EventVerifier) -> None:
    headers = event_headers(SECRET, NOW, BODY, "QR_CODE")
    event = await verifier.verify(headers, BODY)
    await verifier.forget(event)
    assert await verifier.verify(headers, BODY) == event


def test_check_names_the_tolerance_variable() -> None:
    with pytest.raises(Unauthorized, match="EVENT_TOLERANCE_MS"):
        check_event_signature(
            SECRET, event_headers(SECRET, NOW, BODY, "PING"), BODY, now=NOW + 10, tolerance_s=5
        )


async def test_header_names_are_case_insensitive(verifier: EventVerifier) -> None:
    headers = {k.lower(): v for k, v in event_headers(SECRET, NOW, BODY, "PING").items()}
    await verifier.verify(headers, BODY)


# --- the memory of seen events -----------------------------------------------------------


async def test_seen_events_expire_with_their_window() -> None:
    seen = MemorySeenEvents()
    assert await seen.remember("a", now=0, until=10)
    assert not await seen.remember("a", now=10, until=20)
    assert await seen.remember("a", now=10.5, until=20)  # its window passed: a new event
    assert await seen.remember("b", now=30, until=40)
    assert len(seen) == 1  # "a" was pruned on the way


async def test_seen_events_are_bounded_the_oldest_going_first(
    caplog: pytest.LogCaptureFixture,
) -> None:
    seen = MemorySeenEvents(limit=3)
    for key in "abcd":
        assert await seen.remember(key, now=0, until=100)
    assert len(seen) == 3 and seen.evicted == 1
    assert await seen.remember("a", now=1, until=100)  # forgotten: accepted again
    assert not await seen.remember("d", now=1, until=100)
    assert "EVENT_REPLAY_MAX" in caplog.text
