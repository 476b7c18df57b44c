"""A link's event stream: what it queued, the intake place each event holds, and its end.

Events from Go's channel hold a place in their client's :class:`~.intake.Intake`
(bounded: Go waits for room beyond it); the link's own signals (QR codes, the
pairing code, an end it decides) hold none and are few. A place is given back
when the consumer asks for the next event, so "handled" means whatever the
consumer did with the event before asking (the worker stores it).

The stream ends after the one :class:`~wagate.engine.base.Disconnected`, when
the link closes, or, once intake has stopped (:meth:`EventStream.stop_intake`),
when everything received has been handled. neonize cannot tell when Go's
channel is empty (it exposes neither the channel nor a marker that would
follow the last event in it): the stream takes it to be once Go has handed
nothing over for ``settle_s`` while Python had room for it, or at once when
no goroutine hands events over (the client is still dialing or pairing, or
its connect task has ended).
"""

from __future__ import annotations

import asyncio
import collections
from collections.abc import AsyncIterator, Callable

from wagate.clock import Clock
from wagate.engine.base import Disconnected, EngineEvent
from wagate.engine.neonize.intake import Intake

_Queued = tuple[EngineEvent, Intake | None]


class EventStream:
    """One link's queue of events and the rules of its end (see the module docstring).

    ``pumping`` tells which intake Go still hands events over through, or None
    when no goroutine does.
    """

    def __init__(self, clock: Clock, settle_s: float, pumping: Callable[[], Intake | None]) -> None:
        self._clock = clock
        self._settle_s = settle_s
        self._pumping = pumping
        self._queue: collections.deque[_Queued] = collections.deque()
        self._changed = asyncio.Event()  # the queue or the intake moved: look again
        self._finished = asyncio.Event()  # the iteration ended, or the stream closed
        self.ended = False  # the one Disconnected is queued
        self.closed = False
        self.draining = False

    def push(self, event: EngineEvent | None, held: Intake | None = None) -> None:
        """Queue ``event``; with nothing to queue (or after the end) give its place back."""
        if event is None or self.ended or self.closed:
            if held is not None:
                held.release()
            self._changed.set()
            return
        if isinstance(event, Disconnected):
            self.ended = True
        self._queue.append((event, held))
        self._changed.set()

    def stop_intake(self) -> None:
        """Nothing new comes in from now on: end once what is queued or in Go is handled."""
        self.draining = True
        self._changed.set()

    def moved(self) -> None:
        """Something the end depends on changed (Go's connect task ended)."""
        self._changed.set()

    def close(self) -> int:
        """End the stream at once; the number of events from Go dropped unhandled."""
        self.closed = True
        dropped = sum(1 for _, held in self._queue if held is not None)
        self._queue.clear()
        self._changed.set()
        self._finished.set()
        return dropped

    async def finished(self) -> None:
        await self._finished.wait()

    async def __aiter__(self) -> AsyncIterator[EngineEvent]:
        try:
            while (item := await self._next()) is not None:
                event, held = item
                try:
                    yield event
                finally:  # the consumer asked for the next one (or stopped asking)
                    if held is not None:
                        held.release()
                if isinstance(event, Disconnected):
                    return
        finally:
            self._finished.set()

    async def _next(self) -> _Queued | None:
        while not self._queue:
            if self.closed or self.ended:
                return None
            self._changed.clear()
            if not self.draining:
                await self._changed.wait()
            elif await self._drained():
                return None
        return self._queue.popleft()

    async def _drained(self) -> bool:
        """Draining with nothing queued: whether Go has nothing more to hand over."""
        intake = self._pumping()
        if intake is None:
            return True
        if await self._clock.wait(self._changed, self._settle_s):
            return False  # something moved: look again
        return intake.held == 0 and not self._queue  # none on its way to the queue
