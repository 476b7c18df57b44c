"""What workers report about their sessions: seed 002's status updates and seed 004's events.

The record is the truth, and a report never rolls back a fresher row. A
worker of ours records each change in the database *before* it reports it,
so its report finds the row already saying it and changes nothing; a
foreign worker's report is what drives the row. A report is applied only
when it is not older than the row's ``updated_at`` and says something the
row does not; applied, it is written as a runner's change is, with the same
webhook events in the same transaction (``SessionRepo.record_report``).

Times: seed 004's events carry the second they were signed (``at``), seed
002's reports their ``timestamp``; either is taken no later than now, so a
worker's clock running ahead cannot pin a row.
"""

from __future__ import annotations

import contextlib
import hmac
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Collection, Mapping
from datetime import datetime, timedelta
from typing import Any

from wagate.clock import Clock
from wagate.domain.audit import AuditEvent
from wagate.domain.reports import (
    SEED_002_REPORTED,
    disconnect_kind,
    seed_002_states,
    state_after,
)
from wagate.domain.session import ChangeKind, DisconnectKind, SessionChange, SessionState
from wagate.errors import InvalidInput, NotConfigured, NotFound, Unauthorized
from wagate.ids import normalize_phone, user_jid
from wagate.storage.repos.audit import AuditRepo
from wagate.storage.repos.sessions import SessionRepo
from wagate.webhooks.seed004_signing import EventVerifier

log = logging.getLogger(__name__)

PingCallback = Callable[[str, int], Awaitable[None]]
"""``on_ping(session_id, at_ms)``: told of every ping recorded (seed 004's ``lastPing``)."""

_CLEAR_QR: dict[str, Any] = {"qr": None, "qr_generated_at": None, "qr_expires_at": None}
_STOPPED_REASON = "the worker reported the session disconnected"


class SessionReports:
    """Applies workers' reports of their sessions to the record, and checks who sends them.

    ``verifier`` checks seed 004's signed events (None: ``WEBHOOK_SECRET`` is
    unset and they are refused); ``worker_token`` is seed 002's Bearer token
    (None: ``WORKER_AUTH_TOKEN`` is unset). ``qr_expiry``: how long a
    reported QR is shown (``QR_EXPIRY_MS``).
    """

    def __init__(
        self,
        sessions: SessionRepo,
        audit: AuditRepo,
        clock: Clock,
        on_ping: PingCallback | None = None,
        *,
        verifier: EventVerifier | None = None,
        worker_token: str | None = None,
        qr_expiry: timedelta = timedelta(minutes=5),
    ) -> None:
        self._sessions = sessions
        self._audit = audit
        self._clock = clock
        self._on_ping = on_ping
        self._verifier = verifier
        self._worker_token = worker_token
        self._qr_expiry = qr_expiry

    # --- who may report ----------------------------------------------------------------

    def check_worker_token(self, given: str | None) -> None:
        """Seed 002's ``Authorization: Bearer <WORKER_AUTH_TOKEN>``, compared in constant time."""
        if self._worker_token is None:
            raise NotConfigured("WORKER_AUTH_TOKEN is not set: workers' status reports are off")
        if not given:
            raise Unauthorized("missing worker token: send Authorization: Bearer")
        if not hmac.compare_digest(given.encode(), self._worker_token.encode()):
            raise Unauthorized("wrong worker token")

    @contextlib.asynccontextmanager
    async def signed_event(
        self, headers: Mapping[str, str], body: bytes
    ) -> AsyncIterator[datetime]:
        """Check a seed 004 event's signature; yields the time it was signed.

        An event that fails inside the block (a bad body, the database down)
        is not remembered as seen, so its retry is not taken for a replay.
        """
        if self._verifier is None:
            raise NotConfigured("WEBHOOK_SECRET is not set: seed 004 events are off")
        event = await self._verifier.verify(headers, body)
        try:
            yield event.at
        except BaseException:
            await self._verifier.forget(event)
            raise

    # --- seed 004's events -------------------------------------------------------------

    async def qr_code(self, session_id: str, qr: str, at: datetime) -> bool:
        at = self._not_after_now(at)
        expires_at = at + self._qr_expiry
        data = {"qr": qr, "expires_at": expires_at.isoformat()}
        change = SessionChange(session_id, SessionState.QR, ChangeKind.QR, at, data)
        columns = {"qr": qr, "qr_generated_at": at, "qr_expires_at": expires_at, "pair_code": None}
        return await self._apply(change, {SessionState.QR}, {"qr": qr}, columns)

    async def connected(
        self, session_id: str, phone_number: str, at: datetime, *, field: str = "data.phoneNumber"
    ) -> bool:
        """``field``: the phone's name in the request, for the 422 of a malformed one."""
        phone = normalize_phone(phone_number, field)
        at = self._not_after_now(at)
        data = {"phone": phone, "jid": user_jid(phone), "push_name": None}
        change = SessionChange(session_id, SessionState.CONNECTED, ChangeKind.CONNECTED, at, data)
        columns = _connected(at) | {"phone_number": phone, "jid": user_jid(phone)}
        return await self._apply(change, {SessionState.CONNECTED}, {"phone_number": phone}, columns)

    async def connecting(self, session_id: str, at: datetime) -> bool:
        """Linking, no QR yet (seed 001's ``CONNECTING``): a row with a QR says it already."""
        at = self._not_after_now(at)
        change = SessionChange(session_id, SessionState.CONNECTING, ChangeKind.STATE, at, {})
        columns = {**_CLEAR_QR, "pair_code": None}
        return await self._apply(change, {SessionState.CONNECTING, SessionState.QR}, {}, columns)

    async def disconnected(
        self, session_id: str, reason: str, code: int | str | None, at: datetime
    ) -> bool:
        return await self._disconnect(session_id, disconnect_kind(code), reason, at)

    async def proxy_error(self, session_id: str, error: str, at: datetime) -> bool:
        """Audited whether or not the row changes (the proxy pool may act on it)."""
        kind = DisconnectKind.PROXY_ERROR
        return await self._disconnect(session_id, kind, error, at, audit="PROXY_ERROR")

    async def auth_failure(self, session_id: str, reason: str, at: datetime) -> bool:
        """Audited whether or not the row changes."""
        kind = DisconnectKind.LOGGED_OUT
        return await self._disconnect(session_id, kind, reason, at, audit="AUTH_FAILURE")

    async def ping(self, session_id: str, at: datetime) -> None:
        """Seed 004's keep-alive: ``sessions.last_ping_at`` (forward only), then ``on_ping``."""
        at = self._not_after_now(at)
        if not await self._sessions.set_last_ping(session_id, at):
            raise NotFound(f"session {session_id!r} not found")
        if self._on_ping is not None:
            await self._on_ping(session_id, round(at.timestamp() * 1000))

    # --- seed 002's status updates -----------------------------------------------------

    async def status(
        self, session_id: str, status: str, phone_number: str | None, at: datetime
    ) -> bool:
        """``POST /api/webhooks/session-status``: a status word of seed 002, at ``at``."""
        state = SEED_002_REPORTED.get(status)
        if state is None:
            words = ", ".join(SEED_002_REPORTED)
            raise InvalidInput("status", f"unknown status {status[:40]!r}: use one of {words}")
        if state is SessionState.CONNECTED and phone_number:
            return await self.connected(session_id, phone_number, at, field="phoneNumber")
        at = self._not_after_now(at)
        kind, data, columns = ChangeKind.STATE, {}, {}
        if state is SessionState.STOPPED:
            data = {"kind": None, "reason": _STOPPED_REASON}
            columns = _disconnected(at, None, _STOPPED_REASON)
        elif state is SessionState.CONNECTED:
            kind, columns = ChangeKind.CONNECTED, _connected(at)
        elif state is SessionState.CONNECTING:
            columns = {**_CLEAR_QR, "pair_code": None}
        # qr_required: the state only (its PNG is not WhatsApp's QR text, which the row keeps)
        change = SessionChange(session_id, state, kind, at, data)
        return await self._apply(change, seed_002_states(status), {}, columns)

    # --- the rule ----------------------------------------------------------------------

    async def _disconnect(
        self,
        session_id: str,
        kind: DisconnectKind | None,
        reason: str,
        at: datetime,
        *,
        audit: str | None = None,
    ) -> bool:
        at = self._not_after_now(at)
        state = state_after(kind)
        data = {"kind": kind.value if kind else None, "reason": reason}
        change = SessionChange(session_id, state, ChangeKind.DISCONNECTED, at, data)
        match = {"disconnect_kind": kind.value if kind else None}
        columns = _disconnected(at, kind, reason)
        return await self._apply(change, {state}, match, columns, audit=audit)

    async def _apply(
        self,
        change: SessionChange,
        same: Collection[SessionState],
        match: dict[str, Any],
        columns: dict[str, Any],
        *,
        audit: str | None = None,
    ) -> bool:
        """Write ``change`` unless the row is fresher or says it already (the module's rule)."""
        await self._sessions.require(change.session_id)
        if audit is not None:
            entry = {"code": audit, "msg": change.data.get("reason"), "reported": True}
            await self._audit.add(change.session_id, AuditEvent.ERROR, entry)
        applied = await self._sessions.record_report(change, same=same, match=match, **columns)
        if applied:
            log.info("session %s: reported %s applied", change.session_id, change.state)
        return applied

    def _not_after_now(self, at: datetime) -> datetime:
        return min(at, self._clock.now())


def _connected(at: datetime) -> dict[str, Any]:
    return {
        "last_connected_at": at,
        "last_activity_at": at,
        "pair_code": None,
        "reconnect_attempts": 0,
        **_CLEAR_QR,
    }


def _disconnected(at: datetime, kind: DisconnectKind | None, reason: str) -> dict[str, Any]:
    return {
        "disconnect_kind": kind.value if kind is not None else None,
        "disconnect_reason": reason,
        "last_disconnected_at": at,
        "pair_code": None,
        **_CLEAR_QR,
    }
