"""Pure webhook delivery rules: the body, what a response means, when to try again.

No I/O here, so the rules are tested without a network or a clock.
"""

from __future__ import annotations

import enum
import json
import random
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import urlsplit

from wagate.backoff import Backoff


def encode(payload: dict[str, Any]) -> bytes:
    """The request body: compact UTF-8 JSON. These exact bytes are signed and sent."""
    return json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode()


@dataclass(frozen=True, slots=True)
class Outcome:
    """One attempt's result: the HTTP status (None when no response came) and why it failed."""

    http_status: int | None
    error: str | None = None
    retry_after_s: float | None = None


class Verdict(enum.Enum):
    DELIVERED = "delivered"
    RETRY = "retry"
    DEAD = "dead"


RETRYABLE_4XX = frozenset({408, 429})
RETRY_AFTER_STATUSES = frozenset({429, 503})


def verdict(http_status: int) -> Verdict:
    """2xx delivered; 408, 429 and 5xx (and anything unexpected) retry; other 4xx are final."""
    if 200 <= http_status < 300:
        return Verdict.DELIVERED
    if 400 <= http_status < 500 and http_status not in RETRYABLE_4XX:
        return Verdict.DEAD
    return Verdict.RETRY


def parse_retry_after(value: str | None, now: datetime) -> float | None:
    """Seconds from a ``Retry-After`` header (delta seconds or an HTTP date), or None."""
    if value is None:
        return None
    text = value.strip()
    if text.isdigit():
        return float(text)
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - now).total_seconds())


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """``min(max, base·2^(attempts-1)) + jitter`` after the ``attempts``-th failed try.

    Jitter is a random fraction (up to ``jitter_ratio``) of the delay, so
    deliveries that failed together spread out. ``max_attempts`` counts
    every try, the first included.
    """

    base_s: float
    max_s: float
    max_attempts: int
    jitter_ratio: float = 0.1

    @property
    def backoff(self) -> Backoff:
        return Backoff(self.base_s, self.max_s, jitter_ratio=self.jitter_ratio)

    def delay(self, attempts: int, rng: random.Random) -> float:
        return self.backoff.delay(attempts - 1, rng)

    def next_delay(
        self, attempts: int, rng: random.Random, retry_after_s: float | None = None
    ) -> float | None:
        """Seconds until the next try, or None when ``attempts`` used up the budget.

        A receiver's ``Retry-After`` replaces the computed delay, capped at ``max_s``.
        """
        if attempts >= self.max_attempts:
            return None
        if retry_after_s is not None:
            return min(max(retry_after_s, 0.0), self.max_s)
        return self.delay(attempts, rng)

    def schedule(self) -> list[float]:
        """The delays between tries without jitter (for docs and tests)."""
        return [self.backoff.core(n - 1) for n in range(1, self.max_attempts)]


def log_host(url: str) -> str:
    """The URL's host, for logs: its path or query may carry a token."""
    try:
        return urlsplit(url).hostname or "?"
    except ValueError:
        return "?"


def short_reason(status: int | None, error: str) -> str:
    return f"HTTP {status}" if status is not None else error.split(":", 1)[0]
