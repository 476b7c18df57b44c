"""Session operations the API and CLI offer: provision, connect, QR, status, restart, delete.

Validation happens here, once, whatever door (seed 004's paths, seed 002's
paths, the CLI) the request came through. A session hosted by seed 001's edge
workers (``uplink`` edge) never reaches the runtime: starting it records that
it should run (an edge worker is offered it), stopping it records the stop.
"""

from __future__ import annotations

import contextlib
import logging

from wagate.clock import Clock
from wagate.control.proxy_pool import ProxyPool
from wagate.control.runtime import SessionRuntime
from wagate.domain.audit import AuditEntry
from wagate.domain.proxy import parse_proxy
from wagate.domain.session import ChangeKind, Session, SessionChange, SessionState, Unlink, Uplink
from wagate.errors import Conflict, InvalidInput
from wagate.ids import check_session_id, new_session_id, normalize_phone
from wagate.storage.repos.audit import AuditRepo
from wagate.storage.repos.sessions import SessionRepo, phone_full

log = logging.getLogger(__name__)


class SessionService:
    def __init__(
        self,
        sessions: SessionRepo,
        runtime: SessionRuntime,
        audit: AuditRepo,
        clock: Clock,
        *,
        engine: str,
        worker_id: str | None,
        connect_wait_s: float,
        proxy_pool: ProxyPool | None = None,
        max_sessions_per_phone: int = 1,
    ) -> None:
        self.sessions = sessions
        self.max_sessions_per_phone = max_sessions_per_phone  # MAX_SESSIONS_PER_PHONE
        self.proxy_pool = proxy_pool  # seed 004's: the proxy a new session leaves through
        self.runtime = runtime
        self.audit = audit
        self.clock = clock
        self.engine = engine
        self.worker_id = worker_id
        self.connect_wait_s = connect_wait_s

    async def get(self, session_id: str) -> Session:
        return await self.sessions.require(session_id)

    async def audit_log(
        self, session_id: str, *, event: str | None, limit: int, before_id: int | None
    ) -> list[AuditEntry]:
        """What happened to the session, newest first."""
        await self.get(session_id)
        return await self.audit.recent(session_id, event=event, limit=limit, before_id=before_id)

    async def list(self) -> list[Session]:
        return await self.sessions.find()

    async def create(
        self,
        session_id: str | None = None,
        *,
        phone: str | None = None,
        proxy: str | None = None,
        user_id: str | None = None,
        session_name: str | None = None,
        uplink: Uplink = Uplink.FLEET,
    ) -> Session:
        """Record a session without connecting it (seed 002's ``/session/create``).

        ``uplink``: who hosts it, the fleet or seed 001's edge workers (never both).
        """
        sid = check_session_id(session_id) if session_id else new_session_id()
        digits = normalize_phone(phone) if phone else None
        if proxy is not None:
            parse_proxy(proxy)
        if digits is not None:  # checked again with the insert, for provisions that race
            holders = await self.sessions.sessions_of_phone(digits)
            if len(holders) >= self.max_sessions_per_phone:
                raise phone_full(digits, self.max_sessions_per_phone, holders)
        pool = self.proxy_pool if uplink is Uplink.FLEET else None
        async with pool.placing() if pool is not None else contextlib.nullcontext():
            if pool is not None:
                proxy = await pool.choose(digits, proxy)
            return await self.sessions.create(
                sid,
                engine=self.engine,
                worker_id=self.worker_id,
                phone=digits,
                proxy=proxy,
                user_id=user_id,
                session_name=session_name,
                uplink=uplink,
                phone_limit=self.max_sessions_per_phone,
            )

    async def provision(
        self,
        session_id: str | None = None,
        *,
        phone: str | None = None,
        proxy: str | None = None,
        pair: bool = False,
        uplink: Uplink = Uplink.FLEET,
    ) -> Session:
        """Create and start at once (seed 004's ``/api/sessions/provision``)."""
        if pair and not phone:
            raise InvalidInput("phone", "a pairing code needs the phone number to pair")
        if pair and uplink is Uplink.EDGE:
            raise InvalidInput("pairingCode", "an edge session links by QR only")
        session = await self.create(session_id, phone=phone, proxy=proxy, uplink=uplink)
        if session.uplink is Uplink.EDGE:
            return await self._want(session, "provisioned")
        await self.runtime.start(session.id, pair_phone=session.phone if pair else None)
        return await self.get(session.id)

    async def connect(self, session_id: str, *, wait: bool = True) -> Session:
        """Start the session if it is not running and wait briefly for a QR or the connection.

        An edge session is only recorded as wanted: its edge worker answers later.
        """
        session = await self.get(session_id)
        if session.uplink is Uplink.EDGE:
            return await self._want(session, "started by operator")
        running = await self.runtime.state(session_id) is not None
        if session.status is SessionState.CONNECTED and running:
            return session
        await self.runtime.start(session_id)
        if wait:
            await self._await_answer(session_id)
        return await self.get(session_id)

    async def _await_answer(self, session_id: str) -> None:
        """Wait (bounded) for what the runner makes of the start: a QR, connected, or a rest."""
        await self.runtime.await_answer(session_id, self.connect_wait_s)

    async def qr(self, session_id: str) -> Session:
        """The session, if it has a QR that is still valid; else a Conflict saying why not."""
        session = await self.get(session_id)
        if session.qr_valid_at(self.clock.now()):
            return session
        if session.uplink is Uplink.EDGE:
            running = session.status.is_running
        else:
            running = await self.runtime.state(session_id) is not None
        raise Conflict(_why_no_qr(session, running), code="no_qr")

    async def restart(self, session_id: str) -> Session:
        """Stop and start again; waits like :meth:`connect` for what the new runner does.

        An edge session cannot be restarted from here: like :meth:`connect`, it
        is recorded as wanted when it is not running.
        """
        session = await self.get(session_id)
        if session.uplink is Uplink.EDGE:
            return await self._want(session, "restarted by operator")
        await self.runtime.restart(session_id)
        await self._await_answer(session_id)
        return await self.get(session_id)

    async def stop(self, session_id: str) -> Session:
        session = await self.get(session_id)
        if session.uplink is Uplink.EDGE:
            await self._record(session_id, SessionState.STOPPED, "stopped by operator")
        else:
            await self.runtime.stop(session_id)
        return await self.get(session_id)

    async def _want(self, session: Session, reason: str) -> Session:
        """An edge session should run: CONNECTING (its change and webhook) unless it runs."""
        if not session.status.is_running:
            await self._record(session.id, SessionState.CONNECTING, reason)
        return await self.get(session.id)

    async def _record(self, session_id: str, state: SessionState, reason: str) -> None:
        data = {"kind": None, "reason": reason}
        change = SessionChange(session_id, state, ChangeKind.STATE, self.clock.now(), data)
        if state is SessionState.STOPPED:
            await self.sessions.record_disconnected(change, None, reason)
        else:
            await self.sessions.record(change)

    async def delete(self, session_id: str) -> Unlink:
        """Log the device out, stop, delete its credentials and its row.

        The device is logged out over a new link when the session is not
        connected; when that fails within the bound the session is deleted
        all the same, and the outcome says so.
        """
        session = await self.get(session_id)
        if session.uplink is Uplink.EDGE:
            # its credentials live on the edge worker, which this process cannot reach
            await self.sessions.delete(session_id)
            log.warning("edge session %s deleted; its device may still be linked", session_id)
            return Unlink.FAILED
        outcome = await self.runtime.logout(session_id)
        await self.sessions.delete(session_id)
        # a runner started between the logout and the row's delete goes too
        await self.runtime.stop(session_id)
        if outcome.unlinked:
            log.info("session %s deleted", session_id)
        else:
            log.warning("session %s deleted; its device may still be linked", session_id)
        return outcome


def _why_no_qr(session: Session, running: bool) -> str:
    state = session.status
    if state is SessionState.CONNECTED:
        return "the session is already connected; no QR is needed"
    if not running:
        return f"the session is not running (status {state}); start it with connect or restart"
    if state is SessionState.QR:
        return "the QR expired; a new one is coming, retry in a moment"
    return f"no QR yet (status {state}); retry in a moment"
