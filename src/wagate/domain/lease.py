"""Who owns a session: a lease with a fencing token.

Exactly one process may hold a session's connection. A worker owns a session
while it holds a live lease on it; every change of owner increments the
lease's ``epoch``, the fencing token, and every write that only the owner may
make carries the token it was given: a write with a stale token is refused,
so a paused or partitioned old owner can never overwrite the new one's state.
An owner that cannot renew its lease drops its connections *before* the lease
can expire (``expires_at - margin``); a new owner connects only after it did.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol

# seed 001's edge workers hold sessions under ``edge:<their id>``: no fleet worker has that id
EDGE_HOLDER_PREFIX = "edge:"
WORKER_HEADER = "X-Wagate-Worker"  # how a wagate edge worker names itself to a worker-proxy
CLAIM_TTL_HEADER = "X-Wagate-Claim-Ttl-Ms"  # how long wagate's worker-proxy keeps a claim
ERROR_CODE_HEADER = "X-Wagate-Error"  # which refusal a worker-proxy's error is


def edge_holder(worker: str) -> str:
    """The lease holder an edge worker's claims are made under."""
    return EDGE_HOLDER_PREFIX + worker


@dataclass(frozen=True, slots=True)
class Lease:
    session_id: str
    worker_id: str
    epoch: int  # the fencing token: grows on every change of owner
    expires_at: datetime

    def live_at(self, now: datetime) -> bool:
        return now < self.expires_at

    def must_stop_at(self, margin: timedelta) -> datetime:
        """When an owner that could not renew must have dropped its connection."""
        return self.expires_at - margin


@dataclass(frozen=True, slots=True)
class Fence:
    """What an owner-only write carries: the session, its owner, and the owner's token."""

    session_id: str
    worker_id: str
    epoch: int


class Fences(Protocol):
    """Where a repository finds the token of an owner-only write (the worker's lease keeper)."""

    def fence_for(self, session_id: str) -> Fence | None:
        """The fence this process holds for the session, None when it holds none (then every
        owner-only write is refused)."""
        ...
