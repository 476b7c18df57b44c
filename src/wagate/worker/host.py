"""A worker: hosts many session runners in one process, at most one per session id.

Entering the worker resumes the sessions it owns that were running when the
process last stopped (or died); leaving it stops every runner within a
deadline. A periodic sweep clears expired QRs (seed 000).

Start, stop, restart and logout of one session id are serialised by a lock
per id, and a runner is registered before its first await, so concurrent
calls never run two runners for one id. Each runner runs under a supervisor:
one that ends with an unexpected exception is logged, audited and started
again after a backoff delay; one that rests (stopped, logged out, failed) is
not.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import timedelta
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from wagate.backoff import Backoff
from wagate.clock import Clock
from wagate.domain.audit import AuditEvent
from wagate.domain.session import Session, SessionState, Unlink
from wagate.engine.base import AuthStore, Engine, Link, LinkOptions
from wagate.errors import Conflict, NotFound
from wagate.settings import Settings
from wagate.storage.auth_state import FileAuthStore
from wagate.storage.repos.audit import AuditRepo
from wagate.storage.repos.sessions import SessionRepo
from wagate.worker.qr import QRTracker
from wagate.worker.runner import (
    EventSink,
    ProxyFailover,
    RunnerDeps,
    SessionChange,
    SessionRunner,
)
from wagate.worker.unlink import unlink

log = logging.getLogger(__name__)

Listener = Callable[[SessionChange], Awaitable[None]]
AuthFactory = Callable[[str], AuthStore]


class _Locks:
    """One lock per session id, dropped when nobody holds or awaits it."""

    def __init__(self) -> None:
        self._locks: dict[str, asyncio.Lock] = {}
        self._users: dict[str, int] = {}

    @contextlib.asynccontextmanager
    async def hold(self, key: str) -> AsyncIterator[None]:
        lock = self._locks.setdefault(key, asyncio.Lock())
        self._users[key] = self._users.get(key, 0) + 1
        try:
            async with lock:
                yield
        finally:
            self._users[key] -= 1
            if not self._users[key]:
                del self._users[key], self._locks[key]


class Worker:
    """Runs sessions on this process; the API reaches it through :mod:`wagate.control`.

    ``only_worker`` says this worker is the only one there is (``wagate serve``):
    then every session is its own, whatever worker id its row records, so a
    changed ``WORKER_ID`` does not strand linked sessions. Among several
    workers it resumes only the sessions recorded under its own id.
    """

    def __init__(
        self,
        settings: Settings,
        *,
        engine: Engine,
        sessions: SessionRepo,
        audit: AuditRepo,
        clock: Clock,
        rng: random.Random | None = None,
        auth_factory: AuthFactory | None = None,
        proxy_failover: ProxyFailover | None = None,
        only_worker: bool = False,
    ) -> None:
        self.settings = settings
        self.worker_id = settings.worker_id
        self.only_worker = only_worker
        self.engine = engine
        self.sessions = sessions
        self.audit = audit
        self.clock = clock
        root = settings.auth_root
        self._auth_factory = auth_factory or (lambda sid: FileAuthStore(Path(root), sid))
        self._listeners: list[Listener] = []
        self._runners: dict[str, SessionRunner] = {}
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._locks = _Locks()
        self._changed = asyncio.Event()
        self._closing = False
        self._sweeper: asyncio.Task[None] | None = None
        self._deps = RunnerDeps(
            engine=engine,
            sessions=sessions,
            audit=audit,
            clock=clock,
            rng=rng or random.Random(),
            backoff=Backoff(
                settings.backoff_base_ms / 1000,
                settings.backoff_max_ms / 1000,
                settings.backoff_jitter_ms / 1000,
            ),
            qr=QRTracker(timedelta(milliseconds=settings.qr_expiry_ms)),
            reset_after_s=settings.backoff_reset_after_ms / 1000,
            notify=self._publish,
            proxy_failover=proxy_failover,
        )

    # --- service lifecycle ---------------------------------------------------------

    async def __aenter__(self) -> Self:
        self._sweeper = asyncio.create_task(self._sweep_qrs(), name="qr-sweeper")
        await self.resume()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._closing = True
        if self._sweeper is not None:
            self._sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeper
        await self._cancel_all()

    async def resume(self) -> list[str]:
        """Start every session this worker owns that was running when it last stopped."""
        running = [s for s in SessionState if s.is_running]
        owner = None if self.only_worker else self.worker_id
        found = await self.sessions.find(worker_id=owner, states=running)
        self._log_adopted([s for s in found if s.worker_id != self.worker_id])
        resumed = []
        for session in found:
            async with self._locks.hold(session.id):
                if session.id in self._tasks:
                    continue
                # the process that ran it is gone: from the runner's view the link was lost
                self._launch(session, SessionState.RECONNECTING)
                resumed.append(session.id)
        if resumed:
            log.info("resumed %d session(s)", len(resumed))
        return resumed

    def _log_adopted(self, adopted: list[Session]) -> None:
        if not adopted:
            return
        others = sorted({s.worker_id or "none" for s in adopted})
        log.warning(
            "worker %s adopts %d session(s) recorded under worker id(s) %s",
            self.worker_id,
            len(adopted),
            ", ".join(others),
        )

    # --- what the control plane asks -----------------------------------------------

    def is_running(self, session_id: str) -> bool:
        return session_id in self._tasks

    def running(self) -> list[str]:
        return list(self._tasks)

    def link(self, session_id: str) -> Link | None:
        """The session's live link when it is connected here, else None."""
        runner = self._runners.get(session_id)
        return runner.link if runner else None

    def runner_state(self, session_id: str) -> SessionState | None:
        """The state of the session's runner here, None when none runs it."""
        runner = self._runners.get(session_id)
        return runner.state if runner else None

    async def start(self, session_id: str, *, pair_phone: str | None = None) -> bool:
        """Start the session's runner; False if it already runs here (seed 000: once per id)."""
        async with self._locks.hold(session_id):
            return await self._start(session_id, pair_phone)

    async def stop(self, session_id: str, *, reason: str = "stopped by operator") -> None:
        """Stop the runner (if any) and record the session as stopped."""
        async with self._locks.hold(session_id):
            await self._stop(session_id, reason)

    async def restart(self, session_id: str) -> None:
        """Stop and start again, with no other verb on the session in between."""
        async with self._locks.hold(session_id):
            await self._stop(session_id, "restarted by operator")
            await self._start(session_id, None)

    async def refresh_qr(self, session_id: str) -> bool:
        """Restart the link of a session waiting for a scan; False when it is not waiting.

        The check is made under the session's lock, so a scan that lands while
        another verb holds it is never cut off by a restart meant for a QR.
        """
        async with self._locks.hold(session_id):
            if self.runner_state(session_id) not in (SessionState.QR, SessionState.CONNECTING):
                return False
            await self._stop(session_id, "new QR requested")
            await self._start(session_id, None)
            return True

    async def logout(self, session_id: str) -> Unlink:
        """Unlink the device from WhatsApp, stop the runner, and delete its credentials.

        Over the live link when the session is connected here; else, when
        credentials exist, over a link opened with them (within
        ``STOP_TIMEOUT_MS``). The credentials go in every case.
        """
        async with self._locks.hold(session_id):
            outcome = await self._logout_live(session_id)
            await self._cancel(session_id)
            if outcome is None:
                outcome = await self._unlink(session_id)
            await self._auth_factory(session_id).clear()
            await self._audit_logout(session_id, outcome)
            return outcome

    def auth(self, session_id: str) -> AuthStore:
        return self._auth_factory(session_id)

    # --- listening -----------------------------------------------------------------

    def route_events(self, handler: EventSink) -> None:
        """Where message, receipt and group events of every session go."""
        self._deps.on_event = handler

    def subscribe(self, listener: Listener) -> None:
        self._listeners.append(listener)

    async def wait_for(self, check: Callable[[], Awaitable[bool]], within_s: float) -> bool:
        """Wait until ``check()`` holds, re-checking after every session change.

        Changes are state reports and runners that end.
        """

        async def _wait() -> None:
            while True:
                changed = self._changed  # taken before the check: a change during it wakes us
                if await check():
                    return
                await changed.wait()

        try:
            await asyncio.wait_for(_wait(), within_s)
        except TimeoutError:
            return False
        return True

    def _wake(self) -> None:
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()

    async def _publish(self, change: SessionChange) -> None:
        self._wake()
        for listener in self._listeners:
            try:
                await listener(change)
            except Exception:
                log.exception("listener failed on %s of %s", change.event, change.session_id)

    # --- verbs, under the session's lock -------------------------------------------

    async def _start(self, session_id: str, pair_phone: str | None) -> bool:
        if session_id in self._tasks:
            return False
        session = await self.sessions.get(session_id)
        if session is None:
            raise NotFound(f"session {session_id!r} not found")
        self._launch(session, _starting_state(session.status), pair_phone=pair_phone)
        return True

    async def _stop(self, session_id: str, reason: str) -> None:
        await self._cancel(session_id)
        if await self.sessions.get(session_id) is not None:
            await self.sessions.record_disconnected(session_id, SessionState.STOPPED, None, reason)
            await self._publish(
                SessionChange(session_id, SessionState.STOPPED, "state", self.clock.now())
            )

    async def _logout_live(self, session_id: str) -> Unlink | None:
        """Log out over the running link; None when there is none (or it failed)."""
        runner, task = self._runners.get(session_id), self._tasks.get(session_id)
        if runner is None or task is None:
            return None
        try:
            if not await runner.logout():
                return None
        except Exception as exc:  # the link broke under us: try again over a new one
            runner.log.warning("logout over the live link failed: %s", exc)
            return None
        # the runner records the logout and rests: give it its stop deadline to do so
        await asyncio.wait({task}, timeout=self.settings.stop_timeout_ms / 1000)
        return Unlink.LIVE

    async def _unlink(self, session_id: str) -> Unlink:
        session = await self.sessions.get(session_id)
        options = LinkOptions(proxy=session.proxy if session else None)
        within_s = self.settings.stop_timeout_ms / 1000
        auth = self._auth_factory(session_id)
        return await unlink(self.engine, auth, options, self.clock, within_s)

    async def _audit_logout(self, session_id: str, outcome: Unlink) -> None:
        await self.audit.add(session_id, AuditEvent.LOGOUT, {"via": outcome.value})
        if not outcome.unlinked:
            msg = "the device could not be logged out; remove it on the phone"
            await self.audit.add(
                session_id, AuditEvent.ERROR, {"code": "LOGOUT_FAILED", "msg": msg}
            )

    # --- runners -------------------------------------------------------------------

    def _launch(
        self, session: Session, state: SessionState, *, pair_phone: str | None = None
    ) -> None:
        """Register the session's runner and its task, with no await in between."""
        if self._closing:
            raise Conflict("the worker is shutting down", code="worker_closing")
        if len(self._tasks) >= self.settings.worker_max_sessions:
            raise Conflict(
                f"this worker runs its maximum of {self.settings.worker_max_sessions} sessions",
                code="worker_full",
            )
        attempt = session.reconnect_attempts if state is SessionState.RECONNECTING else 0
        runner = self._runner(
            session.id, state, proxy=session.proxy, pair_phone=pair_phone, attempt=attempt
        )
        self._runners[session.id] = runner
        claim = session.worker_id != self.worker_id
        self._tasks[session.id] = asyncio.create_task(
            self._supervise(runner, claim=claim), name=f"session:{session.id}"
        )

    def _runner(self, session_id: str, state: SessionState, **kw: Any) -> SessionRunner:
        return SessionRunner(
            session_id, self._auth_factory(session_id), self._deps, state=state, **kw
        )

    async def _supervise(self, runner: SessionRunner, *, claim: bool) -> None:
        """Run the session until it rests, starting a new runner after each crash."""
        me = asyncio.current_task()
        try:
            while True:
                try:
                    if claim:
                        await self.sessions.update(runner.session_id, worker_id=self.worker_id)
                        claim = False
                    resting = await runner.run()
                except Exception as exc:
                    runner = await self._after_crash(runner, exc)
                    continue
                runner.log.info("session rests in %s", resting)
                return
        finally:
            if self._tasks.get(runner.session_id) is me:
                del self._tasks[runner.session_id]
                self._runners.pop(runner.session_id, None)
            self._wake()

    async def _after_crash(self, crashed: SessionRunner, exc: Exception) -> SessionRunner:
        """Log and audit a crash, back off, and hand back the runner to start next."""
        sid = crashed.session_id
        delay = self._deps.backoff.delay(crashed.attempt, self._deps.rng)
        crashed.log.error("session runner crashed; restarting in %.2fs", delay, exc_info=exc)
        data = {
            "code": "RUNNER_CRASHED",
            "msg": str(exc)[:300],
            "restart_in_ms": round(delay * 1000),
        }
        with contextlib.suppress(Exception):  # the database may be what failed
            await self.audit.add(sid, AuditEvent.ERROR, data)
        await self.clock.sleep(delay)
        runner = self._runner(
            sid,
            SessionState.RECONNECTING,
            proxy=crashed.proxy,
            pair_phone=crashed.pair_phone,
            attempt=crashed.attempt + 1,
        )
        self._runners[sid] = runner
        return runner

    async def _cancel(self, session_id: str) -> None:
        task = self._tasks.pop(session_id, None)
        self._runners.pop(session_id, None)
        if task is None:
            return
        task.cancel()
        done, _ = await asyncio.wait({task}, timeout=self.settings.stop_timeout_ms / 1000)
        if not done:
            log.error("session %s did not stop within the deadline", session_id)

    async def _cancel_all(self) -> None:
        await asyncio.gather(*(self._cancel(sid) for sid in list(self._tasks)))

    async def _sweep_qrs(self) -> None:
        interval = self.settings.qr_sweep_interval_ms / 1000
        while True:
            await self.clock.sleep(interval)
            try:
                expired = await self.sessions.expire_qrs(self.clock.now())
            except Exception:
                log.exception("QR sweep failed")
                continue
            if expired:
                log.info("cleared %d expired QR(s)", len(expired))


def _starting_state(status: SessionState) -> SessionState:
    """The state a new runner starts from: a "running" row with no runner here lost its link."""
    return SessionState.RECONNECTING if status.is_running else status
