"""Seed 004's side of a session process: its signed events to the control plane's ``/webhook``.

One process runs one session (``wagate worker --session``). Its
:class:`EventReporter` hears the session's changes (a worker listener) and
sends each as seed 004's event, ``{"type", "sessionId", "data"}``, signed
with ``WEBHOOK_SECRET`` (:mod:`wagate.webhooks.seed004_signing`) at the
second the change happened; and it sends ``PING {timestamp}`` every
``PING_INTERVAL_MS``. A change becomes:

==============================================  ===========================================
QR shown                                        ``QR_CODE {qr}``
connected                                       ``CONNECTED {phoneNumber}`` (digits)
disconnected, logged out                        ``AUTH_FAILURE {reason}``
disconnected, proxy error                       ``PROXY_ERROR {error}``
any other disconnect, or a stop                 ``DISCONNECTED {reason, code}``; ``code`` is the
                                                disconnect kind (``connection_lost``,
                                                ``banned``, …), null for a stop on purpose
==============================================  ===========================================
"""

from __future__ import annotations

import json
import random
from typing import Any

import httpx

from wagate.backoff import Backoff
from wagate.clock import Clock
from wagate.domain.reports import EventType
from wagate.domain.session import ChangeKind, DisconnectKind, SessionChange
from wagate.lifecycle import Periodic
from wagate.uplinks.reporting import (
    DEFAULT_BACKOFF,
    DEFAULT_MAX_ATTEMPTS,
    DEFAULT_MAX_QUEUED,
    Report,
    Reporter,
)
from wagate.webhooks.seed004_signing import event_headers


def seed004_event(change: SessionChange) -> tuple[EventType, dict[str, Any]] | None:
    """The seed 004 event a change is reported as; None when seed 004 has no word for it."""
    data = change.data
    if change.kind is ChangeKind.QR:
        return EventType.QR_CODE, {"qr": data.get("qr")}
    if change.kind is ChangeKind.CONNECTED:
        return EventType.CONNECTED, {"phoneNumber": data.get("phone")}
    ended = change.kind is ChangeKind.DISCONNECTED or (
        change.kind is ChangeKind.STATE and not change.state.is_running
    )
    if not ended:
        return None
    reason = str(data.get("reason") or change.state.value)
    kind = data.get("kind")
    if kind == DisconnectKind.LOGGED_OUT:
        return EventType.AUTH_FAILURE, {"reason": reason}
    if kind == DisconnectKind.PROXY_ERROR:
        return EventType.PROXY_ERROR, {"error": reason}
    return EventType.DISCONNECTED, {"reason": reason, "code": kind}


class EventReporter(Reporter):
    """Sends one session's seed 004 events, signed, to ``url`` (``WEBHOOK_URL``).

    Enter it to start sending and pinging; give :meth:`on_change` to the
    worker as a listener. Sending never blocks the session (see
    :mod:`wagate.uplinks.reporting` for the queue, retries and drops).
    """

    def __init__(
        self,
        url: str,
        secret: str,
        session_id: str,
        *,
        client: httpx.AsyncClient,
        clock: Clock,
        ping_interval_s: float,
        backoff: Backoff = DEFAULT_BACKOFF,
        max_attempts: int = DEFAULT_MAX_ATTEMPTS,
        max_queued: int = DEFAULT_MAX_QUEUED,
        rng: random.Random | None = None,
        stop_timeout_s: float = 10.0,
    ) -> None:
        super().__init__(
            f"seed004-events:{session_id}",
            url,
            client=client,
            clock=clock,
            backoff=backoff,
            max_attempts=max_attempts,
            max_queued=max_queued,
            rng=rng,
            stop_timeout_s=stop_timeout_s,
        )
        self.session_id = session_id
        self._secret = secret
        self._clock = clock
        self._pings = Periodic(f"seed004-ping:{session_id}", self.ping, ping_interval_s, clock)

    async def open(self) -> None:
        await super().open()
        await self.ping()  # the control plane hears of the process at once
        await self._pings.__aenter__()

    async def stop_intake(self) -> None:
        await self._pings.__aexit__(None, None, None)

    async def on_change(self, change: SessionChange) -> None:
        """A worker listener: report this session's ``change`` when seed 004 has a word for it."""
        if change.session_id != self.session_id:
            return
        event = seed004_event(change)
        if event is not None:
            self.send(self._signed(event[0], event[1], int(change.at.timestamp())))

    async def ping(self) -> None:
        """Queue ``PING {timestamp}`` (epoch ms, now): the first to go if the queue is full."""
        now = self._clock.now().timestamp()
        ping = self._signed(EventType.PING, {"timestamp": round(now * 1000)}, int(now))
        self.send(ping)

    def _signed(self, kind: EventType, data: dict[str, Any], timestamp: int) -> Report:
        event = {"type": kind.value, "sessionId": self.session_id, "data": data}
        body = json.dumps(event, separators=(",", ":"), ensure_ascii=False).encode()
        headers = event_headers(self._secret, timestamp, body, kind.value)
        droppable = kind is EventType.PING
        return Report(self.session_id, kind.value, body, headers, droppable=droppable)
