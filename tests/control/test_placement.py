"""Placement: sticky while the previous worker has room, else the least loaded; never over."""

from __future__ import annotations

import random
from collections import Counter

import pytest

from wagate.control.placement import Candidate, place


def sessions(
    n: int, previous: str | None = None, prefix: str = "s"
) -> list[tuple[str, str | None]]:
    return [(f"{prefix}{i:03d}", previous) for i in range(n)]


def loads(placed: dict[str, str]) -> dict[str, int]:
    return dict(Counter(placed.values()))


def test_thirty_sessions_spread_evenly_over_three_workers() -> None:
    workers = [Candidate(w, capacity=20, load=0) for w in ("w1", "w2", "w3")]
    placed = place(sessions(30), workers)
    assert len(placed) == 30
    assert loads(placed) == {"w1": 10, "w2": 10, "w3": 10}


def test_a_session_goes_back_to_its_previous_worker() -> None:
    workers = [Candidate("busy", 10, 9), Candidate("idle", 10, 0)]
    assert place([("s1", "busy")], workers) == {"s1": "busy"}  # sticky beats least loaded


def test_a_full_or_gone_previous_worker_is_replaced_by_the_least_loaded() -> None:
    workers = [Candidate("full", 5, 5), Candidate("a", 10, 3), Candidate("b", 10, 1)]
    assert place([("s1", "full"), ("s2", "dead")], workers) == {"s1": "b", "s2": "b"}


def test_a_previous_worker_with_no_capacity_takes_nothing() -> None:
    workers = [Candidate("zero", 0, 0), Candidate("a", 1, 0)]
    assert place([("s1", "zero"), ("s2", None)], workers) == {"s1": "a"}


def test_load_is_measured_against_capacity() -> None:
    small, big = Candidate("small", capacity=10, load=5), Candidate("big", capacity=100, load=20)
    # big (20/100) takes sessions until it reaches small's 5/10; at the tie, the lower id wins
    assert loads(place(sessions(30), [small, big])) == {"big": 30}
    assert loads(place(sessions(31), [small, big])) == {"big": 31}
    assert loads(place(sessions(32), [small, big])) == {"big": 31, "small": 1}


def test_ties_go_to_the_lower_worker_id() -> None:
    workers = [Candidate("w2", 4, 0), Candidate("w1", 4, 0), Candidate("w3", 4, 0)]
    placed = place(sessions(4), workers)
    assert [placed[s] for s, _ in sessions(4)] == ["w1", "w2", "w3", "w1"]


def test_sessions_that_fit_nowhere_are_left_out_oldest_placed_first() -> None:
    workers = [Candidate("a", 2, 1), Candidate("b", 2, 0)]
    placed = place(sessions(5), workers)
    assert placed == {"s000": "b", "s001": "a", "s002": "b"}


def test_sticky_sessions_keep_their_slot_against_older_newcomers() -> None:
    workers = [Candidate("a", 2, 1), Candidate("b", 1, 1)]
    placed = place([("new", None), ("back", "a")], workers)
    assert placed == {"back": "a"}


def test_nothing_to_place_or_nowhere_to_place() -> None:
    assert place([], [Candidate("a", 5, 0)]) == {}
    assert place(sessions(3), []) == {}
    assert place(sessions(3), [Candidate("a", 5, 5), Candidate("b", 3, 7)]) == {}


def test_a_session_listed_twice_is_placed_once() -> None:
    workers = [Candidate("a", 5, 0), Candidate("b", 5, 0)]
    placed = place([("s1", "a"), ("s1", "a"), ("s2", None), ("s2", None)], workers)
    assert placed == {"s1": "a", "s2": "b"}


# --- properties, over many random fleets --------------------------------------------


def _fleet(rng: random.Random) -> list[Candidate]:
    names = rng.sample([f"w{i}" for i in range(12)], rng.randint(0, 8))
    fleet = []
    for name in names:
        capacity = rng.randint(0, 30)
        fleet.append(Candidate(name, capacity, rng.randint(0, capacity + 3)))
    return fleet


def _unplaced(rng: random.Random) -> list[tuple[str, str | None]]:
    workers = [None, None, *(f"w{i}" for i in range(14))]  # some previous workers are gone
    return [(f"s{i}", rng.choice(workers)) for i in range(rng.randint(0, 120))]


@pytest.mark.parametrize("seed", range(300))
def test_placement_properties(seed: int) -> None:
    rng = random.Random(seed)
    fleet, unplaced = _fleet(rng), _unplaced(rng)
    placed = place(unplaced, fleet)
    by_id = {c.worker_id: c for c in fleet}
    final = {c.worker_id: c.load + loads(placed).get(c.worker_id, 0) for c in fleet}
    free = sum(max(0, c.capacity - c.load) for c in fleet)

    assert set(placed) <= {s for s, _ in unplaced}
    assert set(placed.values()) <= set(by_id)
    for worker_id in loads(placed):  # never over capacity
        assert final[worker_id] <= by_id[worker_id].capacity
    assert len(placed) == min(len(unplaced), free)  # everything that fits is placed
    for session_id, previous in unplaced:  # sticky whenever the previous worker had room
        if previous in by_id and placed.get(session_id) != previous:
            assert final[previous] >= by_id[previous].capacity


@pytest.mark.parametrize("seed", range(100))
def test_fresh_sessions_spread_evenly(seed: int) -> None:
    rng = random.Random(seed)
    workers = [Candidate(f"w{i}", capacity=rng.choice([10, 20, 40]), load=0) for i in range(5)]
    placed = place(sessions(rng.randint(1, 60)), workers)
    ratios = [loads(placed).get(c.worker_id, 0) / c.capacity for c in workers]
    step = max(1 / c.capacity for c in workers)
    assert max(ratios) - min(ratios) <= step + 1e-9  # nobody more than one session ahead
