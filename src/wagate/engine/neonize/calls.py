"""Every call a neonize client makes into Go, routed through the gate.

neonize's ``NewAClient`` sends each FFI call through one attribute,
``self.__client`` (an ``aioze.client.GoCode`` that runs the ctypes function in
``asyncio.to_thread``). We give each client a :class:`GoCalls` instead, so
whichever neonize method we use, the call:

- is refused unless its client is in a state where Go will not panic
  (``GetMe``, ``GetLIDFromPN``, the contact store… dereference a client that
  may not exist: :meth:`CallOwner.check`);
- waits its turn at the process-wide :class:`~.gate.Gate`: a start
  (``Neonize``) or a stop (``Stop``) alone, everything else together;
- runs where it cannot starve anything: a client's ``Neonize`` call blocks
  for the client's whole life, and ``Stop``/``Disconnect`` can block behind a
  stuck dial forever, so those run on their own daemon threads; ordinary
  calls use a pool of daemon threads sized to the worker's sessions
  (:class:`~.pool.DaemonPool`). No thread that runs Go is ever joined, so a
  call stuck in Go never holds the process's exit;
- is bounded in time: a stop that does not return is reported as stuck and
  the gate is released so the other sessions go on.

The FFI object itself is looked up at call time (``aioze.client.gocode``), so
a test can replace exactly that boundary.

Go also reads its maps on its own threads, outside any call: when a client's
QR loop ends, its goroutine reads them again. Python gets control on that
thread just before (the login-status callback), and :meth:`Runtime.hold_for_go_reads`
makes it wait there for a shared hold of the gate.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import functools
import logging
import threading
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol

from wagate.engine.neonize import _loader as nz
from wagate.engine.neonize.gate import Gate, Hold
from wagate.engine.neonize.pool import DaemonPool
from wagate.errors import TransientError

log = logging.getLogger(__name__)

# Go reads its client map at the top of each exported function (goneonize's
# ``clients[C.GoString(id)]``); a call that has been running this long is past it.
READ_MARGIN_S = 0.25


class CallOwner(Protocol):
    """The client a :class:`GoCalls` works for."""

    def check(self, name: str) -> None:
        """Raise if calling ``name`` now could make Go panic."""
        ...

    def starting(self, hold: Hold) -> None:
        """The client's start holds ``hold``; release it at the first sign of life."""
        ...

    def stop_stuck(self) -> None: ...


@dataclass(slots=True)
class CallStats:
    calls: int = 0
    starts: int = 0
    stops: int = 0
    stuck_stops: int = 0
    stuck_disconnects: int = 0
    timed_out_calls: int = 0
    go_reads: int = 0  # Go threads held until they could read their maps safely
    unguarded_reads: int = 0


class Runtime:
    """What every client of one engine shares: the loop, the gate, the executor, the limits."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        *,
        executor_size: int,
        start_window_s: float,
        stop_timeout_s: float,
        call_timeout_s: float,
    ) -> None:
        self.loop = loop
        self.gate = Gate()
        self.executor = DaemonPool(executor_size, "neonize-call")
        self.executor_size = executor_size
        self.start_window_s = start_window_s
        self.stop_timeout_s = stop_timeout_s
        self.call_timeout_s = call_timeout_s
        self.stats = CallStats()

    @staticmethod
    def ffi() -> Any:
        """neonize's ctypes library object (``neonize.aioze.client.gocode``)."""
        return nz.aioze_client.gocode

    def hold_for_go_reads(self, granted_to: Callable[[Hold], None]) -> None:
        """On a Go thread about to read its maps: wait for a shared hold of the gate.

        The hold is taken on the loop, handed to ``granted_to`` (which may release
        it as soon as it knows Go has read) and released :data:`READ_MARGIN_S`
        after it was granted in any case: time enough for Go's reads right after
        this callback returns. The wait is bounded (a start or a stop holds the
        gate alone only so long); if the loop is gone nobody is left to race with.
        """
        if asyncio._get_running_loop() is self.loop:
            return  # never on the loop itself: it is what grants the hold
        bound = self.start_window_s + self.stop_timeout_s + READ_MARGIN_S
        try:
            granted = asyncio.run_coroutine_threadsafe(self._read_hold(granted_to), self.loop)
        except RuntimeError:  # the loop is closed
            return
        try:
            granted.result(timeout=bound)
        except (concurrent.futures.TimeoutError, concurrent.futures.CancelledError):
            granted.cancel()
            self.stats.unguarded_reads += 1
            log.warning("neonize: a Go thread waited %.0fs for the gate; it goes on", bound)

    async def _read_hold(self, granted_to: Callable[[Hold], None]) -> None:
        hold = await self.gate.shared()
        self.stats.go_reads += 1
        self.loop.call_later(READ_MARGIN_S, hold.release)
        granted_to(hold)


class GoCalls:
    """Stands in for ``NewAClient.__client``: ``await calls.SendMessage(...)`` and so on."""

    def __init__(self, runtime: Runtime, owner: CallOwner, label: str) -> None:
        self._runtime = runtime
        self._owner = owner
        self._label = label

    def __getattr__(self, name: str) -> Callable[..., Awaitable[Any]]:
        if name.startswith("_"):
            raise AttributeError(name)
        return functools.partial(self.call, name)

    async def call(self, name: str, *args: Any) -> Any:
        if name == "Neonize":
            return await self._start(args)
        if name == "Stop":
            return await self._stop(args)
        self._owner.check(name)
        if name == "Disconnect":
            return await self._disconnect(args)
        return await self._ordinary(name, args)

    # --- a client's start and stop: alone at the gate ----------------------------------

    async def _start(self, args: tuple[Any, ...]) -> Any:
        rt = self._runtime
        try:
            hold = await rt.gate.exclusive()
        except asyncio.CancelledError:
            return _swallow_cancel()
        rt.stats.starts += 1
        self._owner.starting(hold)
        timer = rt.loop.call_later(rt.start_window_s, hold.release)
        fn = rt.ffi().Neonize
        try:
            return await asyncio.shield(_on_thread(rt.loop, fn, args, f"neonize:{self._label}"))
        except asyncio.CancelledError:
            # Only asyncio.run's teardown cancels this task. Letting the error reach
            # neonize would make it call Go's Stop on the loop thread, outside the gate.
            return _swallow_cancel()
        finally:
            timer.cancel()
            hold.release()

    async def _stop(self, args: tuple[Any, ...]) -> None:
        rt = self._runtime
        hold = await rt.gate.exclusive()
        rt.stats.stops += 1
        try:
            done = _on_thread(rt.loop, rt.ffi().Stop, args, f"neonize-stop:{self._label}")
            await asyncio.wait_for(asyncio.shield(done), rt.stop_timeout_s)
        except TimeoutError:
            rt.stats.stuck_stops += 1
            log.error(
                "neonize: stopping %s did not return within %.0fs (a dial is stuck in Go); "
                "the other sessions go on, but restart this worker soon",
                self._label,
                rt.stop_timeout_s,
            )
            self._owner.stop_stuck()
        finally:
            hold.release()

    async def _disconnect(self, args: tuple[Any, ...]) -> None:
        rt = self._runtime
        hold = await rt.gate.shared()
        try:
            done = _on_thread(rt.loop, rt.ffi().Disconnect, args, f"neonize-disc:{self._label}")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(done), READ_MARGIN_S)
            hold.release()
            await asyncio.wait_for(asyncio.shield(done), rt.stop_timeout_s)
        except TimeoutError:
            rt.stats.stuck_disconnects += 1
            log.warning("neonize: disconnecting %s is stuck behind a dial", self._label)
        finally:
            hold.release()

    # --- everything else: together ----------------------------------------------------

    async def _ordinary(self, name: str, args: tuple[Any, ...]) -> Any:
        rt = self._runtime
        fn = getattr(rt.ffi(), name)
        hold = await rt.gate.shared()
        rt.stats.calls += 1
        begun: asyncio.Future[None] = rt.loop.create_future()
        job = rt.executor.submit(_marked, rt.loop, begun, fn, args)
        result = asyncio.wrap_future(job, loop=rt.loop)
        deadline = rt.loop.time() + rt.call_timeout_s
        try:
            await asyncio.wait(
                {begun, result}, timeout=rt.call_timeout_s, return_when=asyncio.FIRST_COMPLETED
            )
            if not begun.done() and job.cancel():
                rt.stats.timed_out_calls += 1
                raise TransientError(f"neonize call {name} found no free thread in time")
            # Keep the gate until Go has surely read its client map, not for the whole call:
            # a slow upload must not keep every start (and every call behind it) waiting.
            await asyncio.wait({result}, timeout=READ_MARGIN_S)
            hold.release()
            return await asyncio.wait_for(asyncio.shield(result), deadline - rt.loop.time())
        except TimeoutError:
            rt.stats.timed_out_calls += 1
            raise TransientError(
                f"neonize call {name} did not return within {rt.call_timeout_s:.0f}s"
            ) from None
        finally:
            if not hold.released:
                rt.loop.call_later(READ_MARGIN_S, hold.release)


def _marked(
    loop: asyncio.AbstractEventLoop,
    begun: asyncio.Future[None],
    fn: Callable[..., Any],
    args: tuple[Any, ...],
) -> Any:
    with contextlib.suppress(RuntimeError):  # the loop is gone: the result has no reader
        loop.call_soon_threadsafe(_settle, begun, None)
    return fn(*args)


def _settle(future: asyncio.Future[Any], result: Any) -> None:
    if not future.done():
        future.set_result(result)


def _swallow_cancel() -> bytes:
    """Go's "no error": the connect task then ends quietly instead of neonize stopping Go."""
    task = asyncio.current_task()
    if task is not None:
        task.uncancel()
    return b""


def _on_thread(
    loop: asyncio.AbstractEventLoop, fn: Callable[..., Any], args: tuple[Any, ...], name: str
) -> asyncio.Future[Any]:
    """Run ``fn(*args)`` on a new daemon thread; the future settles on ``loop``."""
    future: asyncio.Future[Any] = loop.create_future()

    def settle(result: Any, error: BaseException | None) -> None:
        if future.done():
            return
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(result)

    def run() -> None:
        try:
            result, error = fn(*args), None
        except BaseException as exc:  # handed to the awaiting side
            result, error = None, exc
        with contextlib.suppress(RuntimeError):  # the loop is closed: nobody waits any more
            loop.call_soon_threadsafe(settle, result, error)

    threading.Thread(target=run, name=name, daemon=True).start()
    return future
