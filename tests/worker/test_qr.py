from __future__ import annotations

from datetime import UTC, datetime, timedelta

from wagate.worker.qr import QRTracker

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def test_seed_000_rules() -> None:
    tracker = QRTracker(timedelta(minutes=5))
    assert tracker.should_update("s", "2@a", T0)  # first QR
    tracker.updated("s", "2@a", T0, tracker.expiry(T0, 60))
    assert not tracker.should_update("s", "2@a", T0 + timedelta(seconds=30))  # same, valid
    assert tracker.should_update("s", "2@b", T0 + timedelta(seconds=30))  # changed
    assert tracker.should_update("s", "2@a", T0 + timedelta(seconds=60))  # expired
    tracker.forget("s")
    assert tracker.should_update("s", "2@a", T0)


def test_expiry_is_the_engine_ttl_capped_by_the_setting() -> None:
    tracker = QRTracker(timedelta(minutes=5))
    assert tracker.expiry(T0, 20) == T0 + timedelta(seconds=20)
    assert tracker.expiry(T0, 3600) == T0 + timedelta(minutes=5)
    assert tracker.expiry(T0, None) == T0 + timedelta(minutes=5)
