"""A worker: hosts many session runners in one process, at most one per session id.

Entering the worker resumes the sessions it owns that were running when the
process last stopped (or died), as many as it may run; then its QR sweep
starts (seed 000). Leaving it stops every runner gracefully: each live link
is drained (every event the engine already received is handled) within
``stop_timeout_s``, then whatever is left is cancelled.

Start, stop, restart and logout of one session id are serialised by a lock
per id; the runners themselves are kept by a :class:`~wagate.worker.supervisor.Supervisor`
(one per id, restarted after a crash, stopped gracefully). A runner that does
not stop within its deadline stays registered as stopping until it really
ended: a start of that id waits for it, or answers 409 ``session_stopping`` —
two live sockets on one account get it logged out.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence

from wagate.clock import Clock
from wagate.domain.audit import AuditEvent
from wagate.domain.session import (
    ChangeKind,
    Session,
    SessionChange,
    SessionState,
    Unlink,
    Uplink,
)
from wagate.engine.base import AuthStore, Engine, LinkOptions
from wagate.errors import Conflict, NotFound
from wagate.lifecycle import Periodic, Service
from wagate.settings import WorkerSettings
from wagate.worker.events import EventHandler
from wagate.worker.qr import QRTracker
from wagate.worker.record import AuditLog, SessionRecord
from wagate.worker.runner import ProxyFailover, RunnerDeps
from wagate.worker.supervisor import AuthFactory, Supervisor
from wagate.worker.unlink import unlink

log = logging.getLogger(__name__)

Listener = Callable[[SessionChange], Awaitable[None]]


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


class Worker(Service):
    """Runs sessions on this process; the control plane reaches it through a runtime.

    ``only_worker`` says this worker is the only one there is (``wagate serve``):
    then every session is its own, whatever worker id its row records, so a
    changed ``WORKER_ID`` does not strand linked sessions. Among several
    workers it resumes only the sessions recorded under its own id.
    """

    def __init__(
        self,
        settings: WorkerSettings,
        *,
        engine: Engine,
        sessions: SessionRecord,
        audit: AuditLog,
        clock: Clock,
        handler: EventHandler,
        auth: AuthFactory,
        rng: random.Random | None = None,
        proxy_failover: ProxyFailover | None = None,
        only_worker: bool = False,
        resume: bool = True,
        listeners: Sequence[Listener] = (),
    ) -> None:
        super().__init__("worker", stop_timeout_s=settings.stop_timeout_s)
        self.settings = settings
        self.worker_id = settings.worker_id
        self.only_worker = only_worker
        self._resume_at_open = resume  # False in a fleet: sessions start from their leases
        self.engine = engine
        self.sessions = sessions
        self.audit = audit
        self.clock = clock
        self._auth = auth
        self._listeners = list(listeners)
        self._locks = _Locks()
        self._changed = asyncio.Event()
        self._closing = False
        self._deps = RunnerDeps(
            engine=engine,
            sessions=sessions,
            audit=audit,
            clock=clock,
            rng=rng or random.Random(),
            backoff=settings.backoff,
            qr=QRTracker(settings.qr_expiry),
            reset_after_s=settings.backoff_reset_after_s,
            notify=self._publish,
            handler=handler,
            proxy_failover=proxy_failover,
        )
        self._runners = Supervisor(
            self._deps,
            auth=auth,
            sessions=sessions,
            audit=audit,
            clock=clock,
            worker_id=settings.worker_id,
            stop_timeout_s=settings.stop_timeout_s,
            on_end=self._wake,
        )
        self._sweep = Periodic("qr-sweep", self.sweep_qrs, settings.qr_sweep_interval_s, clock)

    # --- service lifecycle ---------------------------------------------------------

    async def open(self) -> None:
        if self._resume_at_open:
            await self.resume()
        # after the resume: a resume that fails leaves no sweeper behind
        await self._sweep.__aenter__()

    async def stop_intake(self) -> None:
        self._closing = True

    async def drain(self) -> None:
        await self._sweep.__aexit__(None, None, None)
        await self._runners.stop_all()

    async def resume(self) -> list[str]:
        """Start every session this worker owns that was running when it last stopped.

        At most ``max_sessions``: the rest is recorded as stopped, with why,
        and audited, so an operator sees it (and start-up goes on).
        """
        running = [s for s in SessionState if s.is_running]
        owner = None if self.only_worker else self.worker_id
        # an edge session is hosted by seed 001's edge workers, never here
        found = await self.sessions.find(worker_id=owner, states=running, uplink=Uplink.FLEET)
        self._log_adopted([s for s in found if s.worker_id != self.worker_id])
        resumed: list[str] = []
        for session in found:
            if len(self._runners) >= self.settings.max_sessions:
                await self._not_resumed(session)
                continue
            async with self._locks.hold(session.id):
                if session.id not in self._runners:
                    # the process that ran it is gone: from the runner's view the link was lost
                    self._launch(session, SessionState.RECONNECTING)
                    resumed.append(session.id)
        if resumed:
            log.info("resumed %d session(s)", len(resumed))
        return resumed

    async def _not_resumed(self, session: Session) -> None:
        limit = self.settings.max_sessions
        reason = f"not resumed: this worker runs its maximum of {limit} sessions"
        log.error("session %s %s (WORKER_MAX_SESSIONS)", session.id, reason)
        change = self._change(session.id, SessionState.STOPPED, reason)
        await self.sessions.record_disconnected(change, None, reason)
        data = {"code": "WORKER_FULL", "msg": reason}
        await self.audit.add(session.id, AuditEvent.ERROR, data)
        await self._publish(change)

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
        return session_id in self._runners

    def running(self) -> dict[str, SessionState]:
        """Each session with a runner here, and the runner's state."""
        return self._runners.states()

    def runner_state(self, session_id: str) -> SessionState | None:
        """The state of the session's runner here, None when none runs it."""
        runner = self._runners.runner(session_id)
        return runner.state if runner else None

    async def start(self, session_id: str, *, pair_phone: str | None = None) -> bool:
        """Start the session's runner; False if it already runs here (seed 000: once per id)."""
        async with self._locks.hold(session_id):
            return await self._start(session_id, pair_phone)

    async def stop(self, session_id: str, *, reason: str = "stopped by operator") -> None:
        """Stop the runner (if any) gracefully and record the session as stopped."""
        async with self._locks.hold(session_id):
            await self._stop(session_id, reason)

    async def adopt(self, session_id: str) -> bool:
        """Start the session as a resume would, if its row says it should run; False if not.

        True when it runs here (already, or now). A fleet's worker starts the
        sessions it was given a lease on this way.
        """
        async with self._locks.hold(session_id):
            if session_id in self._runners:
                return True
            if not await self._runners.await_stopped(session_id):
                return False  # the previous runner has not let go of its link yet
            session = await self.sessions.get(session_id)
            if session is None or not session.status.is_running:
                return False
            if session.uplink is Uplink.EDGE:
                return False  # seed 001's edge workers host it
            self._launch(session, SessionState.RECONNECTING)
            return True

    async def hand_over(self, session_id: str) -> None:
        """Stop the session's runner here without recording a state: it goes on elsewhere."""
        async with self._locks.hold(session_id):
            await self._runners.stop(session_id)

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
        ``stop_timeout_s``). The credentials go in every case.
        """
        async with self._locks.hold(session_id):
            outcome = await self._logout_live(session_id)
            await self._runners.stop(session_id)
            if outcome is None:
                outcome = await self._unlink(session_id)
            await self._auth(session_id).clear()
            await self._audit_logout(session_id, outcome)
            return outcome

    def auth(self, session_id: str) -> AuthStore:
        return self._auth(session_id)

    async def await_answer(self, session_id: str, within_s: float) -> None:
        """Wait (at most ``within_s``) until the session's runner has something to show.

        A QR, a pairing code or the connection; or the runner ended (its row
        holds the rest it came to). Returns at once when that is already so.
        """
        await self._wait_until(lambda: self._answered(session_id), within_s)

    def _answered(self, session_id: str) -> bool:
        runner = self._runners.runner(session_id)
        return runner is None or runner.answered

    async def _wait_until(self, check: Callable[[], bool], within_s: float) -> bool:
        """Wait until ``check()`` holds, re-checked after every change and every runner's end."""
        deadline = self.clock.monotonic() + within_s
        while not check():
            left = deadline - self.clock.monotonic()
            if left <= 0:
                return False
            await self.clock.wait(self._changed, left)
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
                log.exception("listener failed on %s of %s", change.kind, change.session_id)

    def _change(self, session_id: str, state: SessionState, reason: str) -> SessionChange:
        data = {"kind": None, "reason": reason}
        return SessionChange(session_id, state, ChangeKind.STATE, self.clock.now(), data)

    # --- verbs, under the session's lock -------------------------------------------

    async def _start(self, session_id: str, pair_phone: str | None) -> bool:
        if not await self._runners.await_stopped(session_id):
            raise Conflict(
                f"session {session_id!r} is still stopping (its link has not closed yet); "
                "try again in a moment",
                code="session_stopping",
            )
        if session_id in self._runners:
            return False
        session = await self.sessions.get(session_id)
        if session is None:
            raise NotFound(f"session {session_id!r} not found")
        self._launch(session, _starting_state(session.status), pair_phone=pair_phone)
        return True

    async def _stop(self, session_id: str, reason: str) -> None:
        await self._runners.stop(session_id)
        if await self.sessions.get(session_id) is not None:
            change = self._change(session_id, SessionState.STOPPED, reason)
            await self.sessions.record_disconnected(change, None, reason)
            await self._publish(change)

    async def _logout_live(self, session_id: str) -> Unlink | None:
        """Log out over the running link; None when there is none (or it failed)."""
        runner = self._runners.runner(session_id)
        if runner is None:
            return None
        try:
            if not await runner.logout():
                return None
        except Exception as exc:  # the link broke under us: try again over a new one
            runner.log.warning("logout over the live link failed: %s", exc)
            return None
        # the runner records the logout and rests: give it its stop deadline to do so
        await self._runners.wait_ended(session_id, self.settings.stop_timeout_s)
        return Unlink.LIVE

    async def _unlink(self, session_id: str) -> Unlink:
        session = await self.sessions.get(session_id)
        options = LinkOptions(proxy=session.proxy if session else None)
        auth = self._auth(session_id)
        return await unlink(self.engine, auth, options, self.clock, self.settings.stop_timeout_s)

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
        if session.uplink is Uplink.EDGE:  # never both: its edge worker holds the link
            raise Conflict(
                f"session {session.id!r} is hosted by edge workers (uplink edge)",
                code="session_on_edge",
            )
        if self._closing:
            raise Conflict("the worker is shutting down", code="worker_closing")
        if len(self._runners) >= self.settings.max_sessions:
            raise Conflict(
                f"this worker runs its maximum of {self.settings.max_sessions} sessions",
                code="worker_full",
            )
        attempt = session.reconnect_attempts if state is SessionState.RECONNECTING else 0
        self._runners.launch(
            session.id,
            state,
            claim=session.worker_id != self.worker_id,
            proxy=session.proxy,
            pair_phone=pair_phone,
            attempt=attempt,
        )

    async def sweep_qrs(self) -> None:
        """Seed 000's sweep: clear every QR whose validity ran out."""
        expired = await self.sessions.expire_qrs(self.clock.now())
        if expired:
            log.info("cleared %d expired QR(s)", len(expired))


def _starting_state(status: SessionState) -> SessionState:
    """The state a new runner starts from: a "running" row with no runner here lost its link."""
    return SessionState.RECONNECTING if status.is_running else status
