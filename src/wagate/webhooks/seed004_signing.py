"""Seed 004's events, signed: how a session process signs them, how the control plane checks them.

The scheme is the one every wagate webhook uses (:mod:`wagate.webhooks.signing`),
so a receiver verifies both with the same code::

    X-Wagate-Timestamp: 1767225600      (unix seconds: when the event happened)
    X-Wagate-Signature: v1=<hex>        (HMAC-SHA256 with WEBHOOK_SECRET over "<timestamp>." + body)
    X-Wagate-Event:     QR_CODE         (the event's type, also in the body)

An event is signed once, when it happens, and resent unchanged on retries: the
signed timestamp is the event's time, which the control plane compares with
the session's row. The receiver refuses (401) a request that is unsigned or
wrongly signed, one whose timestamp is more than ``EVENT_TOLERANCE_MS`` from
its clock (stale), and one it already accepted inside that window: a replay
repeats the timestamp and the body, hence the signature, which identifies
the event. Seen signatures are kept until their timestamp leaves the window,
at most ``EVENT_REPLAY_MAX`` of them.
"""

from __future__ import annotations

import logging
import math
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Protocol

from wagate.clock import Clock
from wagate.errors import Unauthorized
from wagate.webhooks.signing import (
    EVENT_HEADER,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    _header,
    sign,
    signature_header,
    verify_signature,
)

log = logging.getLogger(__name__)

DEFAULT_SEEN_MAX = 100_000


def event_headers(secret: str, timestamp: int, body: bytes, event_type: str) -> dict[str, str]:
    """The headers of one signed seed 004 event (``body`` is the exact bytes sent)."""
    return {
        "Content-Type": "application/json",
        EVENT_HEADER: event_type,
        TIMESTAMP_HEADER: str(int(timestamp)),
        SIGNATURE_HEADER: signature_header(int(timestamp), body, secret),
    }


def check_event_signature(
    secret: str, headers: Mapping[str, str], body: bytes, *, now: float, tolerance_s: float
) -> int:
    """The signed timestamp of a well-signed, fresh event; :class:`Unauthorized` saying why not."""
    stamp = _header(headers, TIMESTAMP_HEADER)
    if _header(headers, SIGNATURE_HEADER) is None or stamp is None:
        raise Unauthorized(f"unsigned event: send {TIMESTAMP_HEADER} and {SIGNATURE_HEADER}")
    stamp = stamp.strip()
    if not (stamp.isascii() and stamp.isdigit()) or len(stamp) > 12:
        raise Unauthorized(f"invalid signature: {TIMESTAMP_HEADER} must be unix seconds")
    timestamp = int(stamp)
    if abs(now - timestamp) > tolerance_s:
        raise Unauthorized(
            f"stale event: signed {round(now - timestamp)} s from now, "
            f"more than EVENT_TOLERANCE_MS ({round(tolerance_s * 1000)} ms)"
        )
    # freshness was checked above, with the float tolerance: only the HMAC is left to check
    if not verify_signature(secret, headers, body, tolerance_s=math.ceil(tolerance_s), now=now):
        raise Unauthorized("invalid signature")
    return timestamp


class SeenEvents(Protocol):
    """Which events were already accepted: one store per control plane (memory, or Redis)."""

    async def remember(self, key: str, now: float, until: float) -> bool:
        """Keep ``key`` until ``until`` (unix seconds); False when it is already kept."""
        ...

    async def forget(self, key: str) -> None:
        """Drop ``key`` (its event was refused after all: a retry may come)."""
        ...


class MemorySeenEvents:
    """:class:`SeenEvents` in this process's memory, at most ``limit`` keys.

    Past the limit the oldest key goes first (logged): its replay would then
    pass, so the limit is set well above the events a window holds.
    """

    def __init__(self, limit: int = DEFAULT_SEEN_MAX) -> None:
        self.limit = limit
        self.evicted = 0
        self._until: OrderedDict[str, float] = OrderedDict()

    def __len__(self) -> int:
        return len(self._until)

    async def remember(self, key: str, now: float, until: float) -> bool:
        self._prune(now)
        kept = self._until.get(key)
        if kept is not None and kept >= now:
            return False
        self._until[key] = until
        self._until.move_to_end(key)
        while len(self._until) > self.limit:
            self._until.popitem(last=False)
            self.evicted += 1
            if self.evicted % 1000 == 1:
                log.warning(
                    "replay memory full (EVENT_REPLAY_MAX=%d): %d unexpired event(s) forgotten",
                    self.limit,
                    self.evicted,
                )
        return True

    async def forget(self, key: str) -> None:
        self._until.pop(key, None)

    def _prune(self, now: float) -> None:
        # oldest first; an entry that outlives one behind it waits its turn (the limit bounds it)
        while self._until:
            key, until = next(iter(self._until.items()))
            if until >= now:
                return
            del self._until[key]


@dataclass(frozen=True, slots=True)
class SignedEvent:
    """An event whose signature was accepted."""

    key: str  # its signature: what a replay repeats
    at: datetime  # the signed timestamp: when the event happened


class EventVerifier:
    """Checks seed 004's signed events: the signature, the timestamp's freshness, replays."""

    def __init__(
        self,
        secret: str,
        *,
        tolerance_s: float,
        clock: Clock,
        seen: SeenEvents | None = None,
    ) -> None:
        self._secret = secret
        self.tolerance_s = tolerance_s
        self._clock = clock
        self._seen: SeenEvents = seen if seen is not None else MemorySeenEvents()

    async def verify(self, headers: Mapping[str, str], body: bytes) -> SignedEvent:
        """The accepted event; :class:`Unauthorized` when unsigned, forged, stale or replayed."""
        now = self._clock.now().timestamp()
        timestamp = check_event_signature(
            self._secret, headers, body, now=now, tolerance_s=self.tolerance_s
        )
        key = sign(self._secret, timestamp, body)
        if not await self._seen.remember(key, now, timestamp + self.tolerance_s):
            raise Unauthorized("replayed event: this signature was already accepted")
        return SignedEvent(key, datetime.fromtimestamp(timestamp, UTC))

    async def forget(self, event: SignedEvent) -> None:
        """Accept ``event`` again: it was not applied (bad body, storage down), a retry may come."""
        await self._seen.forget(event.key)
