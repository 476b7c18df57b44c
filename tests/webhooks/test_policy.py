from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import pytest

from wagate.settings import load_settings
from wagate.webhooks.policy import (
    RetryPolicy,
    Verdict,
    encode,
    parse_retry_after,
    verdict,
)

NOW = datetime(2026, 1, 1, tzinfo=UTC)


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        (200, Verdict.DELIVERED),
        (204, Verdict.DELIVERED),
        (500, Verdict.RETRY),
        (503, Verdict.RETRY),
        (408, Verdict.RETRY),
        (429, Verdict.RETRY),
        (302, Verdict.RETRY),
        (400, Verdict.DEAD),
        (401, Verdict.DEAD),
        (404, Verdict.DEAD),
        (410, Verdict.DEAD),
    ],
)
def test_what_a_status_means(status: int, expected: Verdict) -> None:
    assert verdict(status) is expected


def test_delays_double_up_to_the_maximum_with_bounded_jitter() -> None:
    policy = RetryPolicy(base_s=10, max_s=100, max_attempts=10, jitter_ratio=0.1)
    rng = random.Random(7)
    for attempts, core in [(1, 10), (2, 20), (3, 40), (4, 80), (5, 100), (9, 100)]:
        delay = policy.delay(attempts, rng)
        assert core <= delay <= core * 1.1
    assert policy.schedule() == [10, 20, 40, 80, 100, 100, 100, 100, 100]


def test_the_budget_counts_every_try_and_retry_after_is_capped() -> None:
    policy = RetryPolicy(base_s=10, max_s=100, max_attempts=3, jitter_ratio=0)
    rng = random.Random(1)
    assert policy.next_delay(1, rng) == 10
    assert policy.next_delay(2, rng) == 20
    assert policy.next_delay(3, rng) is None
    assert policy.next_delay(1, rng, retry_after_s=42) == 42
    assert policy.next_delay(1, rng, retry_after_s=4200) == 100


def test_the_default_schedule_spans_about_a_day() -> None:
    view = load_settings().webhooks
    policy = RetryPolicy(view.backoff_base_s, view.backoff_max_s, view.max_attempts)
    total_h = sum(policy.schedule()) / 3600
    assert 20 <= total_h <= 30
    assert 8 <= view.max_attempts <= 15


def test_retry_after_in_seconds_or_as_a_date() -> None:
    assert parse_retry_after("120", NOW) == 120
    date = (NOW + timedelta(seconds=90)).strftime("%a, %d %b %Y %H:%M:%S GMT")
    assert parse_retry_after(date, NOW) == 90
    assert parse_retry_after("yesterday-ish", NOW) is None
    assert parse_retry_after(None, NOW) is None


def test_the_body_is_compact_utf8_json() -> None:
    assert encode({"t": "שלום"}) == '{"t":"שלום"}'.encode()
