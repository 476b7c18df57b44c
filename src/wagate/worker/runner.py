"""One session's life on a worker: connect → events → disconnect → recover → connect.

The runner owns the session's link to the engine and is the only writer of
its runtime columns. Each change is one :class:`~wagate.domain.session.SessionChange`:
recorded with its webhook events in one transaction, then told to the worker.
What happens after a disconnect is decided by the pure
:func:`wagate.domain.session.recovery_for`; delays come from
:class:`~wagate.backoff.Backoff` and are waited out on the injected clock.

Events are handed to the worker's :class:`~wagate.worker.events.EventHandler`
with the link they came from, one at a time: the next event is read only
when the handler is done with this one. A graceful stop drains the link:
intake stops, every event the engine already received is still handled, and
only then is the link closed.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from wagate.backoff import Backoff
from wagate.clock import Clock
from wagate.domain.audit import AuditEvent
from wagate.domain.session import (
    ChangeKind,
    DisconnectKind,
    Recovery,
    SessionChange,
    SessionState,
    can_transition,
    recovery_for,
)
from wagate.engine.base import (
    AuthStore,
    Connected,
    Disconnected,
    Engine,
    EngineEvent,
    GroupEvent,
    Link,
    LinkOptions,
    MessageEvent,
    PairCode,
    QRCode,
    ReceiptEvent,
)
from wagate.errors import (
    AccountBlocked,
    ProxyFailure,
    RelinkRequired,
    StaleLease,
    TransientError,
)
from wagate.worker.events import EventHandler
from wagate.worker.qr import QRTracker
from wagate.worker.record import AuditLog, SessionRecord

log = logging.getLogger(__name__)

Notify = Callable[[SessionChange], Awaitable[None]]
ProxyFailover = Callable[[str, str | None, str], Awaitable[str | None]]


@dataclass(slots=True)
class RunnerDeps:
    """What every runner of a worker shares."""

    engine: Engine
    sessions: SessionRecord
    audit: AuditLog
    clock: Clock
    rng: random.Random
    backoff: Backoff
    qr: QRTracker
    reset_after_s: float
    notify: Notify
    handler: EventHandler
    proxy_failover: ProxyFailover | None = None


class SessionRunner:
    """Keeps one session linked until it rests (stopped, logged out or failed)."""

    def __init__(
        self,
        session_id: str,
        auth: AuthStore,
        deps: RunnerDeps,
        *,
        state: SessionState,
        proxy: str | None = None,
        pair_phone: str | None = None,
        attempt: int = 0,
    ) -> None:
        self.session_id = session_id
        self.auth = auth
        self.state = state
        self.proxy = proxy
        self.pair_phone = pair_phone
        self.attempt = attempt
        self.answered = False  # this link showed a QR or pairing code, or connected
        self._deps = deps
        self._link: Link | None = None
        self._connected_since: float | None = None
        self._qr_count = 0
        self._linked = False  # the handler heard ``linked`` for the current link
        self._stopping = asyncio.Event()
        self._draining = False
        self.log = log.getChild(session_id)

    # --- the loop ------------------------------------------------------------------

    async def run(self) -> SessionState:
        """Run until the session rests (or a graceful stop drained it); the resting state.

        A write refused for a stale lease ends the run at once, whatever the
        state: another process owns the session now, and this one must let go
        of its connection without a word more to the database.
        """
        try:
            while not self._stopping.is_set():
                disconnected = await self._connect_once()
                if self._stopping.is_set():
                    break
                resting = await self._recover(disconnected)
                if resting is not None:
                    return resting
        except StaleLease as exc:
            self.log.warning("no longer this session's owner: %s", exc.message)
            self._stopping.set()
            return self.state
        return SessionState.STOPPED

    async def _connect_once(self) -> Disconnected:
        options = LinkOptions(proxy=self.proxy, pair_phone=self.pair_phone)
        try:
            await self._enter_connecting()
            async with self._deps.engine.link(self.auth, options) as link:
                self._link = link
                try:
                    return await self._follow(link)
                finally:
                    self._link = None
                    if self._linked:
                        self._linked = False
                        await self._deps.handler.unlinked(self.session_id)
        except ProxyFailure as exc:
            return Disconnected(DisconnectKind.PROXY_ERROR, exc.message)
        except TransientError as exc:
            return Disconnected(DisconnectKind.CONNECTION_LOST, exc.message)
        except RelinkRequired as exc:
            return Disconnected(DisconnectKind.LOGGED_OUT, exc.message)
        except AccountBlocked as exc:
            return Disconnected(DisconnectKind.BANNED, exc.message)
        except StaleLease:
            raise  # the session is another process's now: the run ends (see run)
        except Exception as exc:  # a bug or a storage outage: recover like a lost connection
            self.log.exception("session loop failed")
            await self._audit_quietly(AuditEvent.ERROR, {"code": "RUNNER_ERROR", "msg": str(exc)})
            return Disconnected(DisconnectKind.CONNECTION_LOST, f"internal error: {exc}"[:300])

    async def _follow(self, link: Link) -> Disconnected:
        """Handle the link's events until its one ``Disconnected`` (or the end of a drain)."""
        if self._stopping.is_set():
            await self._drain(link)
        async for event in link.events():
            if isinstance(event, Disconnected):
                return event
            await self._handle(link, event)
        return Disconnected(DisconnectKind.CONNECTION_LOST, "stream ended")

    async def _enter_connecting(self) -> None:
        # a new link shows its own QRs: the one remembered as shown goes with the cleared columns
        self._deps.qr.forget(self.session_id)
        self.answered = False
        await self._record(
            SessionState.CONNECTING,
            ChangeKind.STATE,
            qr=None,
            qr_generated_at=None,
            qr_expires_at=None,
            pair_code=None,
        )

    async def _recover(self, disconnected: Disconnected) -> SessionState | None:
        recovery, state = recovery_for(disconnected.kind)
        if self._healthy_long_enough():
            self.attempt = 0
        self._connected_since = None
        if recovery is Recovery.RELINK:
            # the credential goes before the row says so: whoever reads "logged out"
            # (an API caller, a restart) never finds a stale credential behind it
            await self.auth.clear()
        if recovery is Recovery.RECONNECT_NEW_PROXY:
            disconnected = await self._swap_proxy(disconnected)
        await self._record_disconnect(state, disconnected)
        if recovery in (Recovery.RELINK, Recovery.FAIL, Recovery.STOP):
            return state
        delay = self._deps.backoff.delay(self.attempt, self._deps.rng)
        self.attempt += 1
        await self._audit_quietly(
            AuditEvent.RECONNECT,
            {"attempt": self.attempt, "delay_ms": round(delay * 1000), "after": disconnected.kind},
        )
        self.log.info("reconnecting in %.2fs (attempt %d)", delay, self.attempt)
        await self._deps.clock.wait(self._stopping, delay)
        return None

    def _healthy_long_enough(self) -> bool:
        if self._connected_since is None:
            return False
        up = self._deps.clock.monotonic() - self._connected_since
        return up >= self._deps.reset_after_s

    async def _swap_proxy(self, disconnected: Disconnected) -> Disconnected:
        """Ask the proxy pool for another proxy; the disconnect as it is to be recorded (with
        ``no_proxy_available`` when the pool had none: the next try goes through the same)."""
        failover = self._deps.proxy_failover
        if failover is None:
            return disconnected
        try:
            new = await failover(self.session_id, self.proxy, disconnected.reason)
        except StaleLease:
            raise
        except Exception:  # the pool failing must not end the session's loop
            self.log.exception("proxy failover failed")
            return disconnected
        if new is None:
            reason = f"no_proxy_available: {disconnected.reason}"[:1000]
            detail = {**disconnected.detail, "noProxyAvailable": True}
            return Disconnected(disconnected.kind, reason, detail)
        if new != self.proxy:
            self.log.warning("proxy failed; switching to another proxy")
            self.proxy = new
            await self._deps.sessions.update(self.session_id, proxy=new)
        return disconnected

    # --- verbs from the worker -----------------------------------------------------

    @property
    def link(self) -> Link | None:
        """The live link while the session is connected, else None."""
        return self._link if self.state is SessionState.CONNECTED else None

    async def logout(self) -> bool:
        """Ask WhatsApp to unlink this device; False when there is no live link."""
        link = self._link
        if link is None or self.state is not SessionState.CONNECTED:
            return False
        await link.logout()
        return True

    async def stop(self) -> bool:
        """Stop gracefully: True when a live link is draining (the run ends by itself).

        False when there is no link to drain (connecting, or waiting to
        reconnect): then :meth:`run` ends at its next wait, or the caller
        cancels it.
        """
        self._stopping.set()
        link = self._link
        if link is None:
            return False
        await self._drain(link)
        return True

    async def _drain(self, link: Link) -> None:
        if self._draining:
            return
        self._draining = True
        try:
            await link.drain()
        except Exception as exc:  # the link is going anyway: the caller's deadline applies
            self.log.warning("could not drain the link: %s", exc)

    # --- events --------------------------------------------------------------------

    async def _handle(self, link: Link, event: EngineEvent) -> None:
        handler = self._deps.handler
        if isinstance(event, MessageEvent):
            await handler.message(self.session_id, link, event)
        elif isinstance(event, ReceiptEvent):
            await handler.receipt(self.session_id, event)
        elif isinstance(event, GroupEvent):
            await handler.group(self.session_id, link, event)
        elif isinstance(event, QRCode):
            await self._on_qr(event)
        elif isinstance(event, PairCode):
            await self._on_pair_code(event)
        elif isinstance(event, Connected):
            await self._on_connected(link, event)

    async def _on_qr(self, event: QRCode) -> None:
        deps, now = self._deps, self._deps.clock.now()
        if not deps.qr.should_update(self.session_id, event.code, now):
            return
        self._qr_count += 1
        expires_at = deps.qr.expiry(now, event.ttl_s)
        data = {"qr": event.code, "expires_at": expires_at.isoformat()}
        change = self._change(SessionState.QR, ChangeKind.QR, data)
        await deps.sessions.record_qr(change, event.code, now, expires_at)
        deps.qr.updated(self.session_id, event.code, now, expires_at)
        self._set_state(SessionState.QR)
        self.answered = True
        await deps.audit.add(self.session_id, AuditEvent.QR_GENERATED, {"n": self._qr_count})
        await self._notify(change)

    async def _on_pair_code(self, event: PairCode) -> None:
        self.answered = True
        data = {"code": event.code}
        await self._record(self.state, ChangeKind.PAIR_CODE, data, pair_code=event.code)

    async def _on_connected(self, link: Link, event: Connected) -> None:
        deps = self._deps
        data = {"phone": event.phone, "jid": event.jid, "push_name": event.push_name}
        change = self._change(SessionState.CONNECTED, ChangeKind.CONNECTED, data)
        await deps.sessions.record_connected(
            change,
            phone_number=event.phone,
            jid=event.jid,
            wa_name=event.push_name,
            device_name=event.device_name,
            lid=event.lid,
        )
        deps.qr.forget(self.session_id)
        self._qr_count = 0
        self._connected_since = deps.clock.monotonic()
        await deps.audit.add(self.session_id, AuditEvent.CONNECT, {"phone": event.phone})
        self.log.info("connected as %s", event.phone)
        # the handlers have the link before anyone sees the runner connected
        self._linked = True
        await deps.handler.linked(self.session_id, link)
        self._set_state(SessionState.CONNECTED)
        self.answered = True
        await self._notify(change)

    async def _record_disconnect(self, state: SessionState, event: Disconnected) -> None:
        deps = self._deps
        deps.qr.forget(self.session_id)
        data = {"kind": event.kind.value, "reason": event.reason, **event.detail}
        change = self._change(state, ChangeKind.DISCONNECTED, data)
        self._set_state(state)
        try:
            await deps.sessions.record_disconnected(
                change, event.kind, event.reason, attempts=self.attempt
            )
        except StaleLease:
            raise
        except Exception:  # the loop must go on: the next successful write corrects the row
            self.log.exception("could not record the disconnect")
        await self._audit_quietly(AuditEvent.DISCONNECT, data)
        self.log.info("disconnected: %s %s", event.kind, event.reason)
        await self._notify(change)

    # --- state ---------------------------------------------------------------------

    async def _record(
        self,
        state: SessionState,
        kind: ChangeKind,
        data: dict[str, Any] | None = None,
        **columns: Any,
    ) -> None:
        """Record a change (the row first: whoever sees the runner in ``state`` finds it so)."""
        if state is self.state and kind is ChangeKind.STATE and not columns:
            return
        change = self._change(state, kind, data)
        await self._deps.sessions.record(change, **columns)
        self._set_state(state)
        await self._notify(change)

    def _change(
        self, state: SessionState, kind: ChangeKind, data: dict[str, Any] | None = None
    ) -> SessionChange:
        return SessionChange(self.session_id, state, kind, self._deps.clock.now(), data or {})

    def _set_state(self, state: SessionState) -> None:
        if state is self.state:
            return
        if not can_transition(self.state, state):
            self.log.error("unexpected transition %s → %s", self.state, state)
        self.state = state

    async def _notify(self, change: SessionChange) -> None:
        try:
            await self._deps.notify(change)
        except Exception:
            self.log.exception("a session listener failed on %s", change.kind)

    async def _audit_quietly(self, event: AuditEvent, data: dict[str, Any]) -> None:
        try:
            await self._deps.audit.add(self.session_id, event, data)
        except Exception:
            self.log.exception("could not write audit_log %s", event)
