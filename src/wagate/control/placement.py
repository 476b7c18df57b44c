"""Where unplaced sessions go: a pure function of the sessions and the workers' room.

The scheduler reads the sessions that should run but have no live lease, and
the live, not draining workers with their capacity and live leases; it asks
:func:`place` for an assignment, then takes each lease with a compare-and-set
(which may lose to another replica: the next round places what is left).

The rules (``docs/cluster.md``, "Placement"): a session keeps its worker while
that worker lives (and has room); the others go to the least loaded worker
(load over capacity, ties by worker id), counting the sessions placed so far;
a session that fits nowhere waits for the next round.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction


@dataclass(frozen=True, slots=True)
class Candidate:
    """A worker that may take sessions: its capacity and its live leases (``load``)."""

    worker_id: str
    capacity: int
    load: int


class _Room:
    """The candidates' load as sessions are placed."""

    def __init__(self, candidates: Sequence[Candidate]) -> None:
        self._capacity = {c.worker_id: c.capacity for c in candidates}
        self._load = {c.worker_id: c.load for c in candidates}

    def has_room(self, worker_id: str) -> bool:
        capacity = self._capacity.get(worker_id, 0)
        return self._load[worker_id] < capacity if capacity > 0 else False

    def least_loaded(self) -> str | None:
        open_ = [w for w in self._capacity if self.has_room(w)]
        if not open_:
            return None
        return min(open_, key=lambda w: (Fraction(self._load[w], self._capacity[w]), w))

    def take(self, worker_id: str) -> None:
        self._load[worker_id] += 1


def place(
    unplaced: Sequence[tuple[str, str | None]], candidates: Sequence[Candidate]
) -> dict[str, str]:
    """``session_id -> worker_id`` for every session that fits, never over a capacity.

    ``unplaced`` is ``(session_id, previous worker or None)``, oldest first. Sessions
    going back to their previous worker are placed first (so a newcomer cannot take
    the last slot of a worker its own session is waiting for); the others follow in
    the given order, so when room runs out, the oldest are the ones placed.
    """
    room = _Room(candidates)
    placed: dict[str, str] = {}
    for session_id, previous in unplaced:
        if session_id not in placed and previous is not None and room.has_room(previous):
            placed[session_id] = previous
            room.take(previous)
    for session_id, _ in unplaced:
        if session_id in placed:
            continue
        target = room.least_loaded()
        if target is None:
            break
        placed[session_id] = target
        room.take(target)
    return placed
