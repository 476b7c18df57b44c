"""A worker: hosts many session runners in one process, at most one per session id.

Entering the worker resumes the sessions it owns that were running when the
process last stopped (or died); leaving it stops every runner within a
deadline. A periodic sweep clears expired QRs (seed 000).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Awaitable, Callable
from datetime import timedelta
from pathlib import Path
from types import TracebackType
from typing import Self

from wagate.clock import Clock
from wagate.domain.session import Session, SessionState
from wagate.engine.base import AuthStore, Engine, FileAuthStore, Link
from wagate.errors import Conflict, NotFound
from wagate.settings import Settings
from wagate.storage.repos.audit import AuditEvent, AuditRepo
from wagate.storage.repos.sessions import SessionRepo
from wagate.worker.backoff import Backoff
from wagate.worker.qr import QRTracker
from wagate.worker.runner import (
    EventSink,
    ProxyFailover,
    RunnerDeps,
    SessionChange,
    SessionRunner,
)

log = logging.getLogger(__name__)

Listener = Callable[[SessionChange], Awaitable[None]]
AuthFactory = Callable[[str], AuthStore]


class Worker:
    """Runs sessions on this process; the API reaches it through :mod:`wagate.control`."""

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
    ) -> None:
        self.settings = settings
        self.worker_id = settings.worker_id
        self.engine = engine
        self.sessions = sessions
        self.audit = audit
        self.clock = clock
        root = settings.auth_root
        self._auth_factory = auth_factory or (lambda sid: FileAuthStore(Path(root), sid))
        self._listeners: list[Listener] = []
        self._runners: dict[str, SessionRunner] = {}
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._changed = asyncio.Condition()
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
        resumed = []
        for session in await self.sessions.find(worker_id=self.worker_id, states=running):
            # the process that ran it is gone: from the runner's view the link was lost
            await self._launch(session, SessionState.RECONNECTING)
            resumed.append(session.id)
        if resumed:
            log.info("resumed %d session(s)", len(resumed))
        return resumed

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
        runner = self._runners.get(session_id)
        return runner.state if runner else None

    async def start(self, session_id: str, *, pair_phone: str | None = None) -> bool:
        """Start the session's runner; False if it already runs here (seed 000: once per id)."""
        if session_id in self._tasks:
            return False
        session = await self.sessions.get(session_id)
        if session is None:
            raise NotFound(f"session {session_id!r} not found")
        await self._launch(session, session.status, pair_phone=pair_phone)
        return True

    async def stop(self, session_id: str, *, reason: str = "stopped by operator") -> None:
        """Stop the runner (if any) and record the session as stopped."""
        await self._cancel(session_id)
        if await self.sessions.get(session_id) is not None:
            await self.sessions.record_disconnected(session_id, SessionState.STOPPED, None, reason)
            await self._publish(
                SessionChange(session_id, SessionState.STOPPED, "state", self.clock.now())
            )

    async def logout(self, session_id: str) -> None:
        """Unlink the device from WhatsApp (when online), stop, and delete its credentials."""
        runner = self._runners.get(session_id)
        task = self._tasks.get(session_id)
        if runner is not None and task is not None and await runner.logout():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(task), self.settings.stop_timeout_ms / 1000)
        await self._cancel(session_id)
        self._auth_factory(session_id).clear()
        await self.audit.add(session_id, AuditEvent.LOGOUT, {})

    async def restart(self, session_id: str) -> None:
        await self.stop(session_id, reason="restarted by operator")
        await self.start(session_id)

    def auth(self, session_id: str) -> AuthStore:
        return self._auth_factory(session_id)

    # --- listening -----------------------------------------------------------------

    def route_events(self, handler: EventSink) -> None:
        """Where message, receipt and group events of every session go."""
        self._deps.on_event = handler

    def subscribe(self, listener: Listener) -> None:
        self._listeners.append(listener)

    async def wait_for(self, check: Callable[[], Awaitable[bool]], within_s: float) -> bool:
        """Wait until ``check()`` holds, re-checking after every session change."""

        async def _wait() -> None:
            async with self._changed:
                while not await check():
                    await self._changed.wait()

        try:
            await asyncio.wait_for(_wait(), within_s)
        except TimeoutError:
            return False
        return True

    async def _publish(self, change: SessionChange) -> None:
        async with self._changed:
            self._changed.notify_all()
        for listener in self._listeners:
            try:
                await listener(change)
            except Exception:
                log.exception("listener failed on %s of %s", change.event, change.session_id)

    # --- runners -------------------------------------------------------------------

    async def _launch(
        self, session: Session, state: SessionState, *, pair_phone: str | None = None
    ) -> None:
        if self._closing:
            raise Conflict("the worker is shutting down", code="worker_closing")
        if len(self._tasks) >= self.settings.worker_max_sessions:
            raise Conflict(
                f"this worker runs its maximum of {self.settings.worker_max_sessions} sessions",
                code="worker_full",
            )
        if session.worker_id != self.worker_id:
            await self.sessions.update(session.id, worker_id=self.worker_id)
        runner = SessionRunner(
            session.id,
            self._auth_factory(session.id),
            self._deps,
            state=state,
            proxy=session.proxy,
            pair_phone=pair_phone,
            attempt=session.reconnect_attempts if state is SessionState.RECONNECTING else 0,
        )
        self._runners[session.id] = runner
        self._tasks[session.id] = asyncio.create_task(
            self._run(runner), name=f"session:{session.id}"
        )

    async def _run(self, runner: SessionRunner) -> None:
        try:
            resting = await runner.run()
            runner.log.info("session rests in %s", resting)
        except asyncio.CancelledError:
            raise
        except Exception:
            runner.log.exception("session runner crashed")
        finally:
            if self._runners.get(runner.session_id) is runner:
                del self._runners[runner.session_id]
                self._tasks.pop(runner.session_id, None)

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
