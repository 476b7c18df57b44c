"""The neonize engine: wagate's :class:`~wagate.engine.base.Engine` over neonize's ``aioze`` client.

One engine per process (neonize's Go side is process-global). It owns the
gate and executor every client shares (:class:`~.calls.Runtime`), one
:class:`~.session.SessionClient` per session for the life of the process,
and the background work of stopping clients set aside earlier.

Health: :meth:`NeonizeEngine.health` reports what a supervisor needs to
recycle the process in time: open descriptors against a bound (every
connect leaks one in Go), stops that never returned, clients whose Go
goroutine could not be stopped (each keeps a thread, a goroutine and a
descriptor for the life of the process) against a bound of their own; and
``unstoredEvents``, what a ``kill -9`` would lose from Python right now.

Closing: :meth:`NeonizeEngine.aclose` first drains every open link (see
:meth:`~.link.NeonizeLink.drain`), then stops the clients.

Time: the waits that are the adapter's own policy (the spacing of failed
dials, a dial's deadline, the reconnect grace, a drain's settle and its
deadline) run on the injected :class:`~wagate.clock.Clock`. The bounds on
Go's own threads (a start's window at the gate, a stop's or a call's
timeout) stay on the event loop's clock: Go does not run on an injected one.
"""

from __future__ import annotations

import asyncio
import logging
import random
import resource
from collections.abc import Coroutine
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import psutil

from wagate.backoff import Backoff
from wagate.clock import Clock, SystemClock
from wagate.engine.base import AuthStore, LinkOptions
from wagate.engine.neonize import _loader as nz
from wagate.engine.neonize.calls import Runtime
from wagate.engine.neonize.client import Sink
from wagate.engine.neonize.link import NeonizeLink
from wagate.engine.neonize.session import SessionClient

if TYPE_CHECKING:
    from wagate.settings import NeonizeSettings

log = logging.getLogger(__name__)

EXECUTOR_HEADROOM = 32  # ordinary calls beyond one per session (uploads, downloads, queries)


@dataclass(frozen=True, slots=True)
class NeonizeConfig:
    """How the neonize engine behaves; :meth:`from_settings` reads wagate's settings.

    ``inbound_bound``: events Go hands to Python that nobody has handled yet, at
    most (Go waits for room beyond that). ``drain_settle_s``: how long a drain
    waits for Go to hand over anything more before it takes Go's channel to be
    empty (neonize cannot tell).
    """

    database_url: str | None = None  # PostgreSQL for whatsmeow's stores; None: SQLite per session
    device_name: str = "wagate"  # shown in the phone's list of linked devices
    max_sessions: int = 500
    start_window_s: float = 2.0
    db_start_window_s: float = 10.0  # the start window when database_url is set
    dial_deadline_s: float = 30.0
    stop_timeout_s: float = 10.0
    call_timeout_s: float = 120.0
    connect_backoff_base_s: float = 2.0
    connect_backoff_max_s: float = 300.0
    reconnect_grace_s: float = 15.0
    max_open_files: int = 0  # 0: 80% of the process's soft RLIMIT_NOFILE
    max_set_aside: int = 20  # clients set aside past which the process asks for a restart
    log_level: str = "warning"
    capture_stdout: bool = False
    inbound_bound: int = 4
    drain_settle_s: float = 1.0

    @classmethod
    def from_settings(cls, settings: NeonizeSettings, max_sessions: int) -> NeonizeConfig:
        """From the engine's settings view; ``max_sessions`` is the worker's (one thread each)."""
        s = settings
        return cls(
            database_url=s.database_url,
            device_name=s.device_name,
            max_sessions=max_sessions,
            start_window_s=s.start_window_s,
            db_start_window_s=s.db_start_window_s,
            dial_deadline_s=s.dial_deadline_s,
            stop_timeout_s=s.stop_timeout_s,
            call_timeout_s=s.call_timeout_s,
            connect_backoff_base_s=s.connect_backoff_base_s,
            connect_backoff_max_s=s.connect_backoff_max_s,
            reconnect_grace_s=s.reconnect_grace_s,
            max_open_files=s.max_open_files,
            max_set_aside=s.max_set_aside,
            log_level=s.log_level,
            capture_stdout=s.capture_stdout,
        )

    def start_window(self) -> float:
        """How long a start holds the gate alone: Go opens a PostgreSQL store inside it."""
        return self.db_start_window_s if self.database_url else self.start_window_s

    def fd_bound(self) -> int:
        if self.max_open_files > 0:
            return self.max_open_files
        soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
        return int(soft * 0.8) if soft > 0 else 8192


class NeonizeEngine:
    """Links sessions to WhatsApp through neonize (whatsmeow in a Go shared library)."""

    name = "neonize"

    def __init__(
        self,
        config: NeonizeConfig | None = None,
        *,
        clock: Clock | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.config = config or NeonizeConfig()
        self.clock = clock or SystemClock()
        self.rng = rng or random.Random()
        self.device_name = self.config.device_name
        self.database_url = self.config.database_url
        self.stop_timeout_s = self.config.stop_timeout_s
        self.inbound_bound = self.config.inbound_bound
        # no jitter: the spacing only keeps a failing session from leaking descriptors fast
        self.connect_backoff = Backoff(
            self.config.connect_backoff_base_s, self.config.connect_backoff_max_s, 0.0
        )
        self.sessions: dict[str, SessionClient] = {}
        self._runtime: Runtime | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._fd_bound = self.config.fd_bound()
        self._over_bound = False
        self._process = psutil.Process()
        nz.set_log_level(self.config.log_level)

    @property
    def runtime(self) -> Runtime:
        """The loop-bound shared state, made on first use inside the running loop."""
        loop = asyncio.get_running_loop()
        if self._runtime is None:
            self._runtime = self._start_runtime(loop)
        elif self._runtime.loop is not loop:
            raise RuntimeError("a NeonizeEngine serves one event loop")
        return self._runtime

    def _start_runtime(self, loop: asyncio.AbstractEventLoop) -> Runtime:
        c = self.config
        runtime = Runtime(
            loop,
            executor_size=c.max_sessions + EXECUTOR_HEADROOM,
            start_window_s=c.start_window(),
            stop_timeout_s=c.stop_timeout_s,
            call_timeout_s=c.call_timeout_s,
        )
        # neonize dispatches Go's callbacks to a module-global loop it sets only once;
        # make it this one. (Every call into Go goes through the runtime's own daemon
        # threads, never the loop's default executor, which asyncio.run joins at exit.)
        nz.aioze_events.event_global_loop = loop
        if c.capture_stdout:
            nz.capture_go_output()
        return runtime

    def link(self, auth: AuthStore, options: LinkOptions) -> NeonizeLink:
        self._check_descriptors()
        session = self.sessions.get(auth.session_id)
        if session is None:
            session = self.sessions[auth.session_id] = SessionClient(auth.session_id, self)
        return NeonizeLink(
            session,
            auth,
            options,
            device_name=self.device_name,
            reconnect_grace_s=self.config.reconnect_grace_s,
            dial_deadline_s=self.config.dial_deadline_s,
            drain_settle_s=self.config.drain_settle_s,
            clock=self.clock,
        )

    def spawn(self, coro: Coroutine[Any, Any, None], name: str) -> None:
        task = asyncio.get_running_loop().create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error(
                "neonize background task %s failed", task.get_name(), exc_info=task.exception()
            )

    async def aclose(self) -> None:
        """Drain the open links, then stop every client that can be stopped safely; report the rest.

        The drain takes at most ``stop_timeout_s`` (each link's owner keeps
        consuming its events until they run out, then leaves its context);
        after it nothing waits on Go past ``2 × stop_timeout_s``: a stop stuck
        in Go, or a call that never returns, ends with the process (no thread
        running Go is ever joined).
        """
        if self._runtime is None:
            return
        await self._drain_links()
        bound = 2 * self.config.stop_timeout_s
        try:
            async with asyncio.timeout(bound):
                await asyncio.gather(*(self._close(s) for s in list(self.sessions.values())))
                if self._tasks:
                    await asyncio.wait(set(self._tasks))
        except TimeoutError:
            log.warning("stopping neonize's clients took over %.0fs; leaving the rest", bound)
        left = sum(session.running() for session in self.sessions.values())
        if left:
            log.warning("%d neonize client(s) still run in Go; they end with the process", left)

    async def _drain_links(self) -> None:
        sinks = [s.sink for s in self.sessions.values() if s.sink is not None]
        if not sinks:
            return
        drained = asyncio.Event()

        async def drain_all() -> None:
            await asyncio.gather(*(_drain(sink) for sink in sinks))
            drained.set()

        task = asyncio.get_running_loop().create_task(drain_all(), name="neonize-drain")
        try:
            if not await self.clock.wait(drained, self.config.stop_timeout_s):
                log.warning(
                    "draining neonize's links took over %.0fs; stopping their clients anyway "
                    "(%d event(s) received and not handled are lost)",
                    self.config.stop_timeout_s,
                    sum(session.unstored() for session in self.sessions.values()),
                )
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    @staticmethod
    async def _close(session: SessionClient) -> None:
        try:
            await session.aclose()
        except Exception:
            log.exception("could not stop neonize session %s", session.session_id)

    # --- health -------------------------------------------------------------------------

    def open_files(self) -> int:
        return int(self._process.num_fds())

    def _check_descriptors(self) -> None:
        fds = self.open_files()
        over = fds > self._fd_bound
        if over and not self._over_bound:
            log.error(
                "this process holds %d open descriptors, past its bound of %d: neonize leaks "
                "one per connect; restart this worker (its sessions resume)",
                fds,
                self._fd_bound,
            )
        self._over_bound = over

    def health(self) -> dict[str, Any]:
        """Figures for ``/health`` and for a supervisor deciding to recycle the process."""
        self._check_descriptors()
        stats = self._runtime.stats if self._runtime is not None else None
        stuck = stats.stuck_stops if stats is not None else 0
        abandoned = sum(len(s.abandoned) for s in self.sessions.values())
        stuck_sessions = sorted(sid for sid, s in self.sessions.items() if s.stuck())
        too_many_aside = abandoned > self.config.max_set_aside
        return {
            "engine": self.name,
            "sessions": len(self.sessions),
            "clientsRunning": sum(s.running() for s in self.sessions.values()),
            "clientsSetAside": abandoned,
            "maxClientsSetAside": self.config.max_set_aside,
            "stuckStops": stuck,
            "stuckSessions": stuck_sessions[:50],
            "openFiles": self.open_files(),
            "maxOpenFiles": self._fd_bound,
            "overOpenFilesBound": self._over_bound,
            "needsRestart": self._over_bound or stuck > 0 or too_many_aside,
            "executorThreads": self._runtime.executor_size if self._runtime else 0,
            "gateWaiting": self._runtime.gate.waiting if self._runtime else 0,
            "unguardedGoReads": stats.unguarded_reads if stats is not None else 0,
            # Events Go handed to Python that no consumer has handled (stored) yet: what a
            # kill -9 would lose from Python now. Each client's Go channel holds up to 100
            # more, acknowledged too, that neonize gives no way to count.
            "unstoredEvents": sum(s.unstored() for s in self.sessions.values()),
        }


async def _drain(sink: Sink) -> None:
    try:
        await sink.drain()
        await sink.finished()
    except Exception:
        log.exception("could not drain a neonize link")
