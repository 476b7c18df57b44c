from __future__ import annotations

import random

import pytest

from wagate.backoff import Backoff


def test_formula_min_max_base_times_two_to_the_n_plus_jitter() -> None:
    policy = Backoff(base_s=1.0, max_s=30.0, jitter_s=0.5)
    rng = random.Random(7)
    for attempt, low in enumerate([1, 2, 4, 8, 16, 30, 30, 30]):
        delay = policy.delay(attempt, rng)
        assert low <= delay <= low + 0.5
        assert policy.bounds(attempt) == (low, low + 0.5)


def test_jitter_spreads_delays() -> None:
    policy = Backoff(base_s=1.0, max_s=30.0, jitter_s=0.5)
    rng = random.Random(1)
    assert len({round(policy.delay(3, rng), 6) for _ in range(20)}) > 10


@pytest.mark.parametrize("attempt", [-3, 10_000])
def test_extreme_attempts_stay_bounded(attempt: int) -> None:
    policy = Backoff(base_s=1.0, max_s=30.0, jitter_s=0.0)
    assert policy.delay(attempt, random.Random()) in (1.0, 30.0)
