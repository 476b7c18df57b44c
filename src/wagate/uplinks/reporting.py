"""A worker's reports to its control plane: queued, sent in order, retried, never blocking.

Both reporters (seed 002's status updates, seed 004's signed events) hand
ready-made requests to a :class:`Reporter`. Whoever reports (a session's
listener) never waits: :meth:`Reporter.send` only queues. One task sends the
queue in order, so a session's reports arrive in the order they were made;
each is tried up to ``max_attempts`` times, ``backoff`` apart on the injected
clock, then given up (logged). A 2xx is done; a network error, a 5xx, 408 or
429 is tried again; any other answer is final (the request itself was wrong:
bad credentials, an unknown session, a replay of one already taken).

The queue holds at most ``max_queued`` reports, so a control plane that is
away for long costs bounded memory. When it is full the oldest keep-alive
(PING) goes first; a new keep-alive is dropped rather than a state report;
only a queue full of state reports loses its oldest one (logged as an
error: it waited behind ``max_queued`` others, and a signed event that old
is past the receiver's tolerance anyway).
"""

from __future__ import annotations

import asyncio
import enum
import logging
import random
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field

import httpx

from wagate.backoff import Backoff
from wagate.clock import Clock
from wagate.lifecycle import Service

log = logging.getLogger(__name__)

DEFAULT_BACKOFF = Backoff(0.5, 30.0, jitter_ratio=0.1)  # REPORT_BACKOFF_BASE_MS / _MAX_MS
DEFAULT_MAX_ATTEMPTS = 6  # REPORT_MAX_ATTEMPTS
DEFAULT_MAX_QUEUED = 1_000  # REPORT_QUEUE_MAX
_RETRY_STATUSES = frozenset({408, 429})


@dataclass(frozen=True, slots=True)
class Report:
    """One request, ready to send as it is on every try."""

    session_id: str
    name: str  # what it reports, for the logs: "QR_CODE", "connected"
    body: bytes
    headers: Mapping[str, str] = field(default_factory=dict)
    droppable: bool = False  # a keep-alive: the first to go when the queue is full


class ReportQueue:
    """A bounded FIFO of reports with the drop rule of the module's docstring."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.dropped: list[Report] = []  # what the rule threw away, oldest first (bounded)
        self._items: deque[Report] = deque()
        self._ready = asyncio.Event()

    def __len__(self) -> int:
        return len(self._items)

    def put(self, report: Report) -> None:
        if len(self._items) >= self.limit:
            victim = self._victim(report)
            self._drop(victim)
            if victim is report:
                return
            self._items.remove(victim)
        self._items.append(report)
        self._ready.set()

    async def get(self) -> Report:
        while not self._items:
            self._ready.clear()
            await self._ready.wait()
        return self._items.popleft()

    def _victim(self, new: Report) -> Report:
        oldest_droppable = next((r for r in self._items if r.droppable), None)
        if oldest_droppable is not None:
            return oldest_droppable
        if new.droppable:
            return new
        return self._items[0]

    def _drop(self, report: Report) -> None:
        if report.droppable:
            log.warning("report queue full: dropped a %s of %s", report.name, report.session_id)
        else:
            log.error(
                "report queue full of state reports (REPORT_QUEUE_MAX=%d): dropped %s of %s",
                self.limit,
                report.name,
                report.session_id,
            )
        self.dropped.append(report)
        del self.dropped[: -self.limit]


class _Outcome(enum.Enum):
    DONE = "done"
    RETRY = "retry"
    REFUSED = "refused"


class Reporter(Service):
    """Sends queued :class:`Report` s to ``url`` with ``client``, one at a time, in order."""

    def __init__(
        self,
        name: str,
        url: str,
        *,
        client: httpx.AsyncClient,
        clock: Clock,
        backoff: Backoff = DEFAULT_BACKOFF,
        max_attempts: int = DEFAULT_MAX_ATTEMPTS,
        max_queued: int = DEFAULT_MAX_QUEUED,
        rng: random.Random | None = None,
        stop_timeout_s: float = 10.0,
    ) -> None:
        super().__init__(name, stop_timeout_s=stop_timeout_s)
        self.url = url
        self._client = client
        self._clock = clock
        self._backoff = backoff
        self._max_attempts = max_attempts
        self._rng = rng or random.Random()
        self.queue = ReportQueue(max_queued)
        self.sent = 0
        self.given_up: list[Report] = []  # refused or out of tries (bounded like the queue)
        self._idle = asyncio.Event()
        self._idle.set()

    def send(self, report: Report) -> None:
        """Queue ``report``; returns at once."""
        self._idle.clear()
        self.queue.put(report)

    async def open(self) -> None:
        self.tasks.spawn(self._run(), "send")

    async def drain(self) -> None:
        await self._idle.wait()

    async def close(self) -> None:
        if self.queue:
            log.warning("%s: %d report(s) not sent at shutdown", self.name, len(self.queue))

    async def _run(self) -> None:
        while True:
            if not self.queue:
                self._idle.set()
            report = await self.queue.get()
            self._idle.clear()
            try:
                await self._deliver(report)
            except Exception:  # one bad report must not end the reporting of all the others
                log.exception("%s of %s could not be sent", report.name, report.session_id)
                self.given_up.append(report)

    async def _deliver(self, report: Report) -> None:
        for attempt in range(self._max_attempts):
            outcome, why = await self._post(report)
            if outcome is _Outcome.DONE:
                self.sent += 1
                return
            if outcome is _Outcome.REFUSED:
                log.warning("%s of %s refused: %s", report.name, report.session_id, why)
                break
            if attempt + 1 < self._max_attempts:
                delay = self._backoff.delay(attempt, self._rng)
                log.info("%s of %s: %s; again in %.1fs", report.name, report.session_id, why, delay)
                await self._clock.sleep(delay)
        else:
            tries = self._max_attempts
            log.error("%s of %s not delivered in %d tries", report.name, report.session_id, tries)
        self.given_up.append(report)
        del self.given_up[: -self.queue.limit]

    async def _post(self, report: Report) -> tuple[_Outcome, str]:
        try:
            answer = await self._client.post(self.url, content=report.body, headers=report.headers)
        except httpx.HTTPError as exc:
            return _Outcome.RETRY, type(exc).__name__
        status = answer.status_code
        if 200 <= status < 300:
            return _Outcome.DONE, ""
        if status >= 500 or status in _RETRY_STATUSES:
            return _Outcome.RETRY, f"HTTP {status}"
        return _Outcome.REFUSED, f"HTTP {status}"
