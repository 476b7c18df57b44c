"""One session's life on a worker: connect → events → disconnect → recover → connect.

The runner owns the session's link to the engine and is the only writer of
its runtime columns. What happens after a disconnect is decided by the pure
:func:`wagate.domain.session.recovery_for`; delays come from
:class:`~wagate.backoff.Backoff` and are slept on the injected clock.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from wagate.backoff import Backoff
from wagate.clock import Clock
from wagate.domain.audit import AuditEvent
from wagate.domain.session import (
    DisconnectKind,
    Recovery,
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
    Link,
    LinkOptions,
    PairCode,
    QRCode,
)
from wagate.errors import AccountBlocked, ProxyFailure, RelinkRequired, TransientError
from wagate.storage.repos.audit import AuditRepo
from wagate.storage.repos.sessions import SessionRepo
from wagate.worker.qr import QRTracker

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class SessionChange:
    """Something a listener (webhooks, uplinks, waiters) may want to hear about."""

    session_id: str
    state: SessionState
    event: str  # state | qr | pair_code | connected | disconnected
    at: datetime
    data: dict[str, Any] = field(default_factory=dict)


Notify = Callable[[SessionChange], Awaitable[None]]
ProxyFailover = Callable[[str, str | None, str], Awaitable[str | None]]
EventSink = Callable[[str, EngineEvent], Awaitable[None]]


async def _no_events(_session_id: str, _event: EngineEvent) -> None:
    return None


@dataclass(slots=True)
class RunnerDeps:
    """What every runner of a worker shares."""

    engine: Engine
    sessions: SessionRepo
    audit: AuditRepo
    clock: Clock
    rng: random.Random
    backoff: Backoff
    qr: QRTracker
    reset_after_s: float
    notify: Notify
    proxy_failover: ProxyFailover | None = None
    on_event: EventSink = _no_events


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
        self._deps = deps
        self._link: Link | None = None
        self._connected_since: float | None = None
        self._qr_count = 0
        self.log = log.getChild(session_id)

    # --- the loop ------------------------------------------------------------------

    async def run(self) -> SessionState:
        """Run until the session rests; returns the resting state."""
        while True:
            disconnected = await self._connect_once()
            resting = await self._recover(disconnected)
            if resting is not None:
                return resting

    async def _connect_once(self) -> Disconnected:
        options = LinkOptions(proxy=self.proxy, pair_phone=self.pair_phone)
        try:
            await self._enter_connecting()
            async with self._deps.engine.link(self.auth, options) as link:
                self._link = link
                async for event in link.events():
                    if isinstance(event, Disconnected):
                        return event
                    await self._handle(event)
            return Disconnected(DisconnectKind.CONNECTION_LOST, "stream ended")
        except ProxyFailure as exc:
            return Disconnected(DisconnectKind.PROXY_ERROR, exc.message)
        except TransientError as exc:
            return Disconnected(DisconnectKind.CONNECTION_LOST, exc.message)
        except RelinkRequired as exc:
            return Disconnected(DisconnectKind.LOGGED_OUT, exc.message)
        except AccountBlocked as exc:
            return Disconnected(DisconnectKind.BANNED, exc.message)
        except Exception as exc:  # a bug or a storage outage: recover like a lost connection
            self.log.exception("session loop failed")
            await self._audit_quietly(AuditEvent.ERROR, {"code": "RUNNER_ERROR", "msg": str(exc)})
            return Disconnected(DisconnectKind.CONNECTION_LOST, f"internal error: {exc}"[:300])
        finally:
            self._link = None

    async def _enter_connecting(self) -> None:
        # a new link shows its own QRs: the one remembered as shown goes with the cleared columns
        self._deps.qr.forget(self.session_id)
        await self._enter(
            SessionState.CONNECTING,
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
        await self._record_disconnect(state, disconnected)
        if recovery in (Recovery.RELINK, Recovery.FAIL, Recovery.STOP):
            return state
        if recovery is Recovery.RECONNECT_NEW_PROXY:
            await self._swap_proxy(disconnected.reason)
        delay = self._deps.backoff.delay(self.attempt, self._deps.rng)
        self.attempt += 1
        await self._audit_quietly(
            AuditEvent.RECONNECT,
            {"attempt": self.attempt, "delay_ms": round(delay * 1000), "after": disconnected.kind},
        )
        self.log.info("reconnecting in %.2fs (attempt %d)", delay, self.attempt)
        await self._deps.clock.sleep(delay)
        return None

    def _healthy_long_enough(self) -> bool:
        if self._connected_since is None:
            return False
        up = self._deps.clock.monotonic() - self._connected_since
        return up >= self._deps.reset_after_s

    async def _swap_proxy(self, reason: str) -> None:
        failover = self._deps.proxy_failover
        if failover is None:
            return
        new = await failover(self.session_id, self.proxy, reason)
        if new is not None and new != self.proxy:
            self.log.warning("proxy failed; switching to another proxy")
            self.proxy = new
            await self._deps.sessions.update(self.session_id, proxy=new)

    # --- verbs from the host -------------------------------------------------------

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

    # --- events --------------------------------------------------------------------

    async def _handle(self, event: EngineEvent) -> None:
        if isinstance(event, QRCode):
            await self._on_qr(event)
        elif isinstance(event, PairCode):
            await self._on_pair_code(event)
        elif isinstance(event, Connected):
            await self._on_connected(event)
        else:
            await self._deps.on_event(self.session_id, event)

    async def _on_qr(self, event: QRCode) -> None:
        deps, now = self._deps, self._deps.clock.now()
        if not deps.qr.should_update(self.session_id, event.code, now):
            return
        self._qr_count += 1
        expires_at = deps.qr.expiry(now, event.ttl_s)
        await deps.sessions.record_qr(self.session_id, event.code, now, expires_at)
        deps.qr.updated(self.session_id, event.code, now, expires_at)
        self._set_state(SessionState.QR)
        await deps.audit.add(self.session_id, AuditEvent.QR_GENERATED, {"n": self._qr_count})
        await self._notify("qr", qr=event.code, expires_at=expires_at.isoformat())

    async def _on_pair_code(self, event: PairCode) -> None:
        await self._deps.sessions.update(self.session_id, pair_code=event.code)
        await self._notify("pair_code", code=event.code)

    async def _on_connected(self, event: Connected) -> None:
        deps = self._deps
        await deps.sessions.record_connected(
            self.session_id,
            phone_number=event.phone,
            jid=event.jid,
            wa_name=event.push_name,
            device_name=event.device_name,
            lid=event.lid,
        )
        deps.qr.forget(self.session_id)
        self._qr_count = 0
        self._connected_since = deps.clock.monotonic()
        self._set_state(SessionState.CONNECTED)
        await deps.audit.add(self.session_id, AuditEvent.CONNECT, {"phone": event.phone})
        self.log.info("connected as %s", event.phone)
        await self._notify("connected", phone=event.phone, jid=event.jid, push_name=event.push_name)

    async def _record_disconnect(self, state: SessionState, event: Disconnected) -> None:
        deps = self._deps
        deps.qr.forget(self.session_id)
        self._set_state(state)
        try:
            await deps.sessions.record_disconnected(
                self.session_id, state, event.kind, event.reason, attempts=self.attempt
            )
        except Exception:  # the loop must go on: the next successful write corrects the row
            self.log.exception("could not record the disconnect")
        data = {"kind": event.kind.value, "reason": event.reason, **event.detail}
        await self._audit_quietly(AuditEvent.DISCONNECT, data)
        self.log.info("disconnected: %s %s", event.kind, event.reason)
        await self._notify("disconnected", **data)

    # --- state ---------------------------------------------------------------------

    async def _enter(self, state: SessionState, **columns: Any) -> None:
        if state is self.state and not columns:
            return
        # written first: whoever sees the runner in ``state`` finds the row saying so too
        await self._deps.sessions.update(self.session_id, status=state, **columns)
        self._set_state(state)
        await self._notify("state")

    def _set_state(self, state: SessionState) -> None:
        if state is self.state:
            return
        if not can_transition(self.state, state):
            self.log.error("unexpected transition %s → %s", self.state, state)
        self.state = state

    async def _notify(self, event: str, **data: Any) -> None:
        change = SessionChange(self.session_id, self.state, event, self._deps.clock.now(), data)
        try:
            await self._deps.notify(change)
        except Exception:
            self.log.exception("a session listener failed on %s", event)

    async def _audit_quietly(self, event: AuditEvent, data: dict[str, Any]) -> None:
        try:
            await self._deps.audit.add(self.session_id, event, data)
        except Exception:
            self.log.exception("could not write audit_log %s", event)
