"""How every long-running part of wagate starts and stops: services, periodic jobs, a process.

A :class:`Service` is an async context manager. Entering it returns when it
is ready; leaving it stops it in one order, whatever the service:

1. stop intake (take no new work),
2. drain what is in flight, within a deadline,
3. cancel whatever is still running (every task is owned by the service),
4. close (connections, files), last.

:class:`Periodic` runs one job every interval on the injected clock (the QR
sweep, seed 003's flag poll, and every future heartbeat, watchdog, keep-alive
or backup). :func:`run_services` runs a process's services in order until it
is told to stop, then leaves them in the reverse order (arq's ``worker.py``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import AbstractAsyncContextManager
from types import TracebackType
from typing import Any, Self

from wagate.clock import Clock
from wagate.tasks import TaskSet

log = logging.getLogger(__name__)


class Service:
    """Base of a service: override :meth:`open`, :meth:`stop_intake`, :meth:`drain`, :meth:`close`.

    ``tasks`` owns every background task the service spawns; whatever is
    still running after the drain deadline (``stop_timeout_s``) is cancelled.
    """

    def __init__(self, name: str, *, stop_timeout_s: float = 10.0) -> None:
        self.name = name
        self.tasks = TaskSet(name)
        self.stop_timeout_s = stop_timeout_s

    async def __aenter__(self) -> Self:
        try:
            await self.open()
        except BaseException:
            await self._shutdown()
            raise
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self._shutdown()

    async def open(self) -> None:
        """Become ready (entering the context waits for it)."""

    async def stop_intake(self) -> None:
        """Take no new work."""

    async def drain(self) -> None:
        """Let the work in flight finish (bounded by ``stop_timeout_s``)."""

    async def close(self) -> None:
        """Release what the service holds; runs last, after its tasks ended."""

    async def _shutdown(self) -> None:
        await self.stop_intake()
        try:
            async with asyncio.timeout(self.stop_timeout_s):
                await self.drain()
        except TimeoutError:
            stop_s = self.stop_timeout_s
            log.warning("%s: work still in flight after %.1fs; cancelled", self.name, stop_s)
        await self.tasks.aclose()
        await self.close()


Job = Callable[[], Awaitable[object]]


class Periodic(Service):
    """Runs ``job()`` every ``interval_s`` seconds on ``clock`` until stopped.

    The first run is one interval after entering (``at_start=True``: at once).
    A failing run is logged and the next one comes on time; a run in
    progress at shutdown is allowed to finish within the drain deadline.
    """

    def __init__(
        self,
        name: str,
        job: Job,
        interval_s: float,
        clock: Clock,
        *,
        at_start: bool = False,
        stop_timeout_s: float = 10.0,
    ) -> None:
        super().__init__(name, stop_timeout_s=stop_timeout_s)
        self._job = job
        self._interval_s = interval_s
        self._clock = clock
        self._at_start = at_start
        self._stopping = asyncio.Event()
        self._loop: asyncio.Task[Any] | None = None
        self.runs = 0

    async def open(self) -> None:
        self._loop = self.tasks.spawn(self._run(), "loop")

    async def stop_intake(self) -> None:
        self._stopping.set()

    async def drain(self) -> None:
        if self._loop is not None:
            await asyncio.wait({self._loop})

    async def _run(self) -> None:
        if not self._at_start and await self._clock.wait(self._stopping, self._interval_s):
            return
        while not self._stopping.is_set():
            await self.run_once()
            if await self._clock.wait(self._stopping, self._interval_s):
                return

    async def run_once(self) -> None:
        """One run of the job now; a failure is logged, never raised."""
        self.runs += 1
        try:
            await self._job()
        except Exception:
            log.exception("%s failed", self.name)


async def run_services(
    services: Sequence[AbstractAsyncContextManager[Any]],
    *,
    until: Awaitable[object] | None = None,
    handle_signals: bool = True,
) -> None:
    """Enter ``services`` in order; run until ``until`` ends (or SIGINT/SIGTERM); leave in reverse.

    With ``handle_signals=False`` the caller's main task (an HTTP server that
    handles signals itself) decides when to stop by ending ``until``.
    """
    async with contextlib.AsyncExitStack() as stack:
        for service in services:
            await stack.enter_async_context(service)
        async with _stop_signals(handle_signals) as stopped:
            waits: list[asyncio.Future[Any]] = [asyncio.ensure_future(stopped.wait())]
            if until is not None:
                waits.append(asyncio.ensure_future(until))
            try:
                done, _ = await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for waiting in waits:
                    waiting.cancel()
                await asyncio.gather(*waits, return_exceptions=True)
            for finished in done:
                error = None if finished.cancelled() else finished.exception()
                if error is not None:
                    raise error


@contextlib.asynccontextmanager
async def _stop_signals(enabled: bool) -> AsyncIterator[asyncio.Event]:
    stopped = asyncio.Event()
    loop = asyncio.get_running_loop()
    signals = (signal.SIGINT, signal.SIGTERM) if enabled else ()
    for sig in signals:
        loop.add_signal_handler(sig, stopped.set)
    try:
        yield stopped
    finally:
        for sig in signals:
            loop.remove_signal_handler(sig)
