"""Webhook subscriptions and deliveries, as stored (the outbox's rows and their states).

A delivery's life::

    pending ──2xx──▶ delivered
       │  ▲
       │  └── network error, 5xx, 408, 429: attempts < max → pending, later
       └──── other 4xx, or the last attempt failed ──▶ dead ──replay──▶ pending
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

PENDING = "pending"


DELIVERED = "delivered"


DEAD = "dead"


STATUSES = (PENDING, DELIVERED, DEAD)


ALL_EVENTS = "*"


@dataclass(frozen=True, slots=True)
class Subscription:
    id: str
    url: str
    events: list[str]
    secret: str
    session_id: str | None
    headers: dict[str, str]
    enabled: bool
    description: str | None
    created_at: datetime
    updated_at: datetime

    def wants(self, event: str, session_id: str | None) -> bool:
        """True when this subscription receives ``event`` from ``session_id``."""
        if not self.enabled or (self.session_id is not None and self.session_id != session_id):
            return False
        return ALL_EVENTS in self.events or event in self.events


@dataclass(frozen=True, slots=True)
class Delivery:
    id: int
    subscription_id: str
    event: str
    session_id: str | None
    payload: dict[str, Any]
    status: str
    attempts: int
    next_attempt_at: datetime
    last_attempt_at: datetime | None
    last_status: int | None
    last_error: str | None
    created_at: datetime
    delivered_at: datetime | None


@dataclass(frozen=True, slots=True)
class Claim:
    """A leased delivery and the subscription it goes to (as it was when claimed)."""

    delivery: Delivery
    subscription: Subscription
