"""Time, injected: the system clock in production, a manual clock in tests.

Everything that waits or timestamps takes a :class:`Clock`, so tests advance
time instead of sleeping through it (the habit of trio's ``MockClock``).
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
import time
from datetime import UTC, datetime, timedelta
from typing import Protocol


class Clock(Protocol):
    def now(self) -> datetime:
        """Aware UTC wall time."""
        ...

    def monotonic(self) -> float: ...

    async def sleep(self, seconds: float) -> None: ...

    async def wait(self, event: asyncio.Event, seconds: float) -> bool:
        """Wait until ``event`` is set or ``seconds`` pass; whether it is set."""
        ...


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(UTC)

    def monotonic(self) -> float:
        return time.monotonic()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(max(0.0, seconds))

    async def wait(self, event: asyncio.Event, seconds: float) -> bool:
        if not event.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(event.wait(), max(0.0, seconds))
        return event.is_set()


class ManualClock:
    """A clock that moves only when told; sleepers wake as time passes them.

    ``await clock.advance(s)`` moves time forward and lets every sleeper whose
    deadline passed run. ``sleeps`` records every requested duration, so tests
    can check a backoff policy without waiting for it.
    """

    def __init__(self, start: datetime | None = None) -> None:
        self._wall = start or datetime(2026, 1, 1, tzinfo=UTC)
        self._mono = 0.0
        self._sleepers: list[tuple[float, int, asyncio.Future[None]]] = []
        self._seq = itertools.count()
        self.sleeps: list[float] = []

    def now(self) -> datetime:
        return self._wall + timedelta(seconds=self._mono)

    def monotonic(self) -> float:
        return self._mono

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._sleepers, (self._mono + max(0.0, seconds), next(self._seq), fut))
        await fut

    async def wait(self, event: asyncio.Event, seconds: float) -> bool:
        """Wait until ``event`` is set or ``seconds`` pass on this clock."""
        if event.is_set():
            return True
        waiter = asyncio.ensure_future(event.wait())
        sleeper = asyncio.ensure_future(self.sleep(seconds))
        try:
            await asyncio.wait({waiter, sleeper}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (waiter, sleeper):
                task.cancel()
            await asyncio.gather(waiter, sleeper, return_exceptions=True)
        return event.is_set()

    @property
    def sleeping(self) -> int:
        return sum(1 for *_, fut in self._sleepers if not fut.done())

    async def advance(self, seconds: float) -> None:
        target = self._mono + seconds
        while self._sleepers and self._sleepers[0][0] <= target:
            deadline, _, fut = heapq.heappop(self._sleepers)
            self._mono = max(self._mono, deadline)
            if not fut.done():
                fut.set_result(None)
            await _settle()
        self._mono = target
        await _settle()

    async def wait_for_sleepers(self, count: int = 1, limit_s: float = 5.0) -> None:
        """Yield until at least ``count`` tasks sleep on this clock (real-time bounded)."""
        deadline = time.monotonic() + limit_s
        while self.sleeping < count:
            if time.monotonic() > deadline:
                raise TimeoutError(f"expected {count} sleeper(s), have {self.sleeping}")
            await asyncio.sleep(0.001)


async def _settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)
