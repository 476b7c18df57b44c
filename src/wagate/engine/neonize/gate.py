"""A FIFO readers/writer gate on the event loop, in front of every call into neonize's Go side.

Why: neonize keeps every client in plain Go maps with no lock (``clients``,
``StopSignal``, ``eventChannel`` in goneonize's ``main.go``). Starting a
client (``Neonize``) and stopping one (``Stop``) write those maps; every
other call reads them. Go aborts the whole process on a concurrent write
(``fatal error: concurrent map writes`` / ``concurrent map read and map
write``), and nothing in Python can catch that. So ordinary calls share the
gate and a start or a stop holds it alone.

Waiting happens on the event loop (no thread blocks on a lock), in arrival
order: a writer is never starved by a stream of readers, and readers that
arrive after a waiting writer queue behind it. A hold can be released from
anywhere on the loop (a callback, a timer), which is how a client's start
keeps the gate only until its first sign of life.
"""

from __future__ import annotations

import asyncio
import collections
import time
from dataclasses import dataclass, field


class Hold:
    """One admission through the gate; :meth:`release` is idempotent."""

    __slots__ = ("_gate", "_released", "exclusive", "since")

    def __init__(self, gate: Gate, exclusive: bool) -> None:
        self._gate = gate
        self._released = False
        self.exclusive = exclusive
        self.since = time.monotonic()

    @property
    def released(self) -> bool:
        return self._released

    def release(self) -> None:
        if not self._released:
            self._released = True
            self._gate._leave(self.exclusive)


@dataclass(slots=True)
class _Waiter:
    exclusive: bool
    future: asyncio.Future[None]


@dataclass(slots=True)
class GateStats:
    """What the gate has seen: for health output and for tests."""

    shared: int = 0
    exclusive: int = 0
    max_wait_s: float = 0.0
    max_readers: int = 0
    waits: collections.Counter[str] = field(default_factory=collections.Counter)


class Gate:
    """Process-wide FIFO readers/writer gate (see the module docstring)."""

    def __init__(self) -> None:
        self._readers = 0
        self._writer = False
        self._waiters: collections.deque[_Waiter] = collections.deque()
        self.stats = GateStats()

    @property
    def readers(self) -> int:
        return self._readers

    @property
    def writer(self) -> bool:
        return self._writer

    @property
    def waiting(self) -> int:
        return len(self._waiters)

    async def shared(self) -> Hold:
        return await self._acquire(exclusive=False)

    async def exclusive(self) -> Hold:
        return await self._acquire(exclusive=True)

    async def _acquire(self, exclusive: bool) -> Hold:
        started = time.monotonic()
        if not self._waiters and self._fits(exclusive):
            self._enter(exclusive)
            return Hold(self, exclusive)
        waiter = _Waiter(exclusive, asyncio.get_running_loop().create_future())
        self._waiters.append(waiter)
        try:
            await waiter.future
        except asyncio.CancelledError:
            self._abandon(waiter)
            raise
        waited = time.monotonic() - started
        self.stats.max_wait_s = max(self.stats.max_wait_s, waited)
        self.stats.waits["exclusive" if exclusive else "shared"] += 1
        return Hold(self, exclusive)

    def _abandon(self, waiter: _Waiter) -> None:
        if waiter.future.done() and not waiter.future.cancelled():
            self._leave(waiter.exclusive)  # admitted just as we were cancelled: give it back
        else:
            waiter.future.cancel()
            if waiter in self._waiters:
                self._waiters.remove(waiter)
            self._admit()  # a cancelled writer at the head may have been holding readers back

    def _fits(self, exclusive: bool) -> bool:
        if exclusive:
            return not self._writer and self._readers == 0
        return not self._writer

    def _enter(self, exclusive: bool) -> None:
        if exclusive:
            self._writer = True
            self.stats.exclusive += 1
        else:
            self._readers += 1
            self.stats.shared += 1
            self.stats.max_readers = max(self.stats.max_readers, self._readers)

    def _leave(self, exclusive: bool) -> None:
        if exclusive:
            self._writer = False
        else:
            self._readers -= 1
        self._admit()

    def _admit(self) -> None:
        while self._waiters:
            head = self._waiters[0]
            if head.future.done():
                self._waiters.popleft()
                continue
            if not self._fits(head.exclusive):
                return
            self._waiters.popleft()
            self._enter(head.exclusive)
            head.future.set_result(None)
