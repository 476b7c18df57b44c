"""The one session vocabulary: states, allowed transitions, disconnect kinds,
what to do after each kind, and how each seed spells our states.

Pure: no I/O, no clock. ::

                 start
    CREATED ───────────► CONNECTING ──► QR ──scan──► CONNECTED
       ▲                  │   ▲  │       │              │
       │                  │   │  │       │ qr_timeout   │ connection_lost / proxy_error
       │                  │   │  ▼       ▼              ▼
       │                  │   └─ RECONNECTING ◄─────────┘
       │                  ▼
       └──────── STOPPED   LOGGED_OUT (auth deleted)   FAILED (banned, replaced,
                                                               client_outdated)

Every state may go to STOPPED (an operator stopped the session) and every
resting state (STOPPED, LOGGED_OUT, FAILED) may go back to CONNECTING when
the session is started again. Only LOGGED_OUT and FAILED need an operator;
every other non-running state recovers by itself.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from wagate.errors import Conflict


class SessionState(enum.StrEnum):
    CREATED = "created"
    CONNECTING = "connecting"
    QR = "qr"
    CONNECTED = "connected"
    RECONNECTING = "reconnecting"
    STOPPED = "stopped"
    LOGGED_OUT = "logged_out"
    FAILED = "failed"

    @property
    def is_running(self) -> bool:
        """A runner is (or should be) working on the session."""
        return self in _RUNNING

    @property
    def needs_operator(self) -> bool:
        return self in (SessionState.LOGGED_OUT, SessionState.FAILED)


_RUNNING = frozenset(
    {
        SessionState.CONNECTING,
        SessionState.QR,
        SessionState.CONNECTED,
        SessionState.RECONNECTING,
    }
)
_RESTING = frozenset(
    {SessionState.CREATED, SessionState.STOPPED, SessionState.LOGGED_OUT, SessionState.FAILED}
)

_S = SessionState
TRANSITIONS: dict[SessionState, frozenset[SessionState]] = {
    _S.CREATED: frozenset({_S.CONNECTING, _S.STOPPED}),
    _S.CONNECTING: frozenset(
        {_S.QR, _S.CONNECTED, _S.RECONNECTING, _S.STOPPED, _S.LOGGED_OUT, _S.FAILED}
    ),
    _S.QR: frozenset({_S.CONNECTED, _S.RECONNECTING, _S.STOPPED, _S.LOGGED_OUT, _S.FAILED}),
    _S.CONNECTED: frozenset({_S.RECONNECTING, _S.STOPPED, _S.LOGGED_OUT, _S.FAILED}),
    _S.RECONNECTING: frozenset({_S.CONNECTING, _S.STOPPED, _S.LOGGED_OUT, _S.FAILED}),
    _S.STOPPED: frozenset({_S.CONNECTING}),
    _S.LOGGED_OUT: frozenset({_S.CONNECTING, _S.STOPPED}),
    _S.FAILED: frozenset({_S.CONNECTING, _S.STOPPED}),
}


class IllegalTransition(Conflict):
    """A state the session cannot go to from the one it is in."""

    code = "illegal_transition"

    def __init__(self, current: SessionState, target: SessionState) -> None:
        super().__init__(f"session cannot go from {current} to {target}")
        self.current = current
        self.target = target


def can_transition(current: SessionState, target: SessionState) -> bool:
    return target in TRANSITIONS[current]


def check_transition(current: SessionState, target: SessionState) -> SessionState:
    if not can_transition(current, target):
        raise IllegalTransition(current, target)
    return target


class DisconnectKind(enum.StrEnum):
    LOGGED_OUT = "logged_out"
    CONNECTION_LOST = "connection_lost"
    REPLACED = "replaced"
    BANNED = "banned"
    PROXY_ERROR = "proxy_error"
    QR_TIMEOUT = "qr_timeout"
    # WhatsApp refuses this client's version: only an upgrade (of neonize, so of wagate) helps
    CLIENT_OUTDATED = "client_outdated"


class Recovery(enum.Enum):
    """What the runtime does after a disconnect (seed 004, Flow 3)."""

    RECONNECT = "reconnect"  # connection lost: back off, connect again
    RECONNECT_NEW_PROXY = "reconnect_new_proxy"  # proxy error: swap the proxy, connect again
    RELINK = "relink"  # logged out: delete auth, wait for a new QR
    FAIL = "fail"  # banned / replaced / client outdated: stop, an operator must look
    STOP = "stop"  # nobody scanned the QR in time


RECOVERY: dict[DisconnectKind, tuple[Recovery, SessionState]] = {
    DisconnectKind.CONNECTION_LOST: (Recovery.RECONNECT, SessionState.RECONNECTING),
    DisconnectKind.PROXY_ERROR: (Recovery.RECONNECT_NEW_PROXY, SessionState.RECONNECTING),
    DisconnectKind.LOGGED_OUT: (Recovery.RELINK, SessionState.LOGGED_OUT),
    DisconnectKind.REPLACED: (Recovery.FAIL, SessionState.FAILED),
    DisconnectKind.BANNED: (Recovery.FAIL, SessionState.FAILED),
    DisconnectKind.QR_TIMEOUT: (Recovery.STOP, SessionState.STOPPED),
    DisconnectKind.CLIENT_OUTDATED: (Recovery.FAIL, SessionState.FAILED),
}


def recovery_for(kind: DisconnectKind) -> tuple[Recovery, SessionState]:
    """The action and the state the session rests in while it is taken."""
    return RECOVERY[kind]


# --- each seed's words for our states -------------------------------------------------

# seed 004's ``session:<id>:status`` (and its API's ``status``): it has no words for our
# resting states, so a stopped or logged-out session is "disconnected" and only FAILED
# (banned, replaced, client outdated: an operator must act) is "failed"
SEED_004: dict[SessionState, str] = {
    _S.CREATED: "pending",
    _S.CONNECTING: "pending",
    _S.QR: "qr_ready",
    _S.CONNECTED: "connected",
    _S.RECONNECTING: "disconnected",
    _S.STOPPED: "disconnected",
    _S.LOGGED_OUT: "disconnected",
    _S.FAILED: "failed",
}

SEED_002: dict[SessionState, str] = {
    _S.CREATED: "disconnected",
    _S.CONNECTING: "connecting",
    _S.QR: "qr_required",
    _S.CONNECTED: "connected",
    _S.RECONNECTING: "connecting",
    _S.STOPPED: "disconnected",
    _S.LOGGED_OUT: "disconnected",
    _S.FAILED: "disconnected",
}

SEED_001: dict[SessionState, str] = {
    _S.CREATED: "DISCONNECTED",
    _S.CONNECTING: "CONNECTING",
    _S.QR: "CONNECTING",
    _S.CONNECTED: "CONNECTED",
    _S.RECONNECTING: "DISCONNECTED",
    _S.STOPPED: "DISCONNECTED",
    _S.LOGGED_OUT: "DISCONNECTED",
    _S.FAILED: "DISCONNECTED",
}

SEED_003: dict[SessionState, str] = {
    _S.CREATED: "disconnected",
    _S.CONNECTING: "connecting",
    _S.QR: "connecting",
    _S.CONNECTED: "connected",
    _S.RECONNECTING: "disconnected",
    _S.STOPPED: "disconnected",
    _S.LOGGED_OUT: "disconnected",
    _S.FAILED: "disconnected",
}


@dataclass(frozen=True, slots=True)
class Seed000Flags:
    """Seed 000's booleans for a state."""

    is_ready: bool
    is_connected: bool


def seed_000(state: SessionState) -> Seed000Flags:
    connected = state is SessionState.CONNECTED
    return Seed000Flags(is_ready=connected, is_connected=connected)


# --- what a runner's change writes into the session's row (every record keeps these) ---

CLEAR_QR: dict[str, Any] = {"qr": None, "qr_generated_at": None, "qr_expires_at": None}


def state_columns(state: SessionState) -> dict[str, Any]:
    """The state, and seed 000's booleans that follow from it."""
    flags = seed_000(state)
    return {"status": state.value, "is_ready": flags.is_ready, "is_connected": flags.is_connected}


def connected_columns(
    change: SessionChange,
    *,
    phone_number: str,
    jid: str,
    wa_name: str | None,
    device_name: str | None,
    lid: str | None,
) -> dict[str, Any]:
    """Connected: who it is now, when, and no QR, pairing code or pending attempts."""
    return {
        "phone_number": phone_number,
        "jid": jid,
        "wa_name": wa_name,
        "device_name": device_name,
        "lid": lid,
        "last_connected_at": change.at,
        "last_activity_at": change.at,
        "pair_code": None,
        "reconnect_attempts": 0,
        **CLEAR_QR,
    }


def disconnected_columns(
    change: SessionChange, kind: DisconnectKind | None, reason: str, attempts: int | None
) -> dict[str, Any]:
    """Disconnected: why and when (and how many attempts so far); no QR or pairing code."""
    values: dict[str, Any] = {
        "disconnect_kind": kind.value if kind is not None else None,
        "disconnect_reason": reason,
        "last_disconnected_at": change.at,
        "pair_code": None,
        **CLEAR_QR,
    }
    if attempts is not None:
        values["reconnect_attempts"] = attempts
    return values


class RecordsChanges:
    """The forms of ``record`` every record of sessions shares; mixed into each of them.

    A record (the database's ``SessionRepo``, a worker's in-memory one)
    implements :meth:`record`: write the change's state, the given columns
    and (where it keeps them) the change's events, together.
    """

    async def record(self, change: SessionChange, **columns: Any) -> None:
        raise NotImplementedError

    async def record_qr(
        self, change: SessionChange, qr: str, generated_at: datetime, expires_at: datetime
    ) -> None:
        await self.record(change, qr=qr, qr_generated_at=generated_at, qr_expires_at=expires_at)

    async def record_connected(
        self,
        change: SessionChange,
        *,
        phone_number: str,
        jid: str,
        wa_name: str | None,
        device_name: str | None,
        lid: str | None,
    ) -> None:
        who = {"wa_name": wa_name, "device_name": device_name, "lid": lid}
        await self.record(
            change, **connected_columns(change, phone_number=phone_number, jid=jid, **who)
        )

    async def record_disconnected(
        self,
        change: SessionChange,
        kind: DisconnectKind | None,
        reason: str,
        *,
        attempts: int | None = None,
    ) -> None:
        await self.record(change, **disconnected_columns(change, kind, reason, attempts))


def health_bucket(state: SessionState) -> str | None:
    """Seed 001's health counters: ``connected``, ``connecting`` or ``reconnecting``."""
    if state is SessionState.CONNECTED:
        return "connected"
    if state in (SessionState.CONNECTING, SessionState.QR):
        return "connecting"
    if state is SessionState.RECONNECTING:
        return "reconnecting"
    return None


class Uplink(enum.StrEnum):
    """Who hosts a session: the fleet (wagate's own workers) or seed 001's edge workers.

    Never both: the fleet never starts an edge session, and an edge worker is
    offered a fleet session only when no fleet worker lives (``docs/edge.md``).
    """

    FLEET = "fleet"
    EDGE = "edge"


@dataclass(frozen=True, slots=True)
class Session:
    """A session as stored: identity, where it runs, and what WhatsApp last said about it."""

    id: str
    status: SessionState
    engine: str
    worker_id: str | None = None
    proxy: str | None = None
    phone: str | None = None
    user_id: str | None = None
    session_name: str | None = None
    qr: str | None = None
    qr_generated_at: datetime | None = None
    qr_expires_at: datetime | None = None
    is_ready: bool = False
    is_connected: bool = False
    phone_number: str | None = None
    device_name: str | None = None
    last_connected_at: datetime | None = None
    last_disconnected_at: datetime | None = None
    disconnect_reason: str | None = None
    disconnect_kind: DisconnectKind | None = None
    pair_code: str | None = None
    wa_name: str | None = None
    jid: str | None = None
    lid: str | None = None
    reconnect_attempts: int = 0
    last_activity_at: datetime | None = None
    last_ping_at: datetime | None = None
    created_at: datetime | None = None
    updated_at: datetime | None = None
    uplink: Uplink = Uplink.FLEET

    def qr_valid_at(self, now: datetime) -> bool:
        return self.qr is not None and (self.qr_expires_at is None or self.qr_expires_at > now)


class Unlink(enum.StrEnum):
    """How a logout ended."""

    LIVE = "live"  # logged out over the session's running link (its runner recorded it)
    RELINKED = "relinked"  # logged out over a link opened for the purpose
    NOT_LINKED = "not_linked"  # nothing to unlink: no credentials, or WhatsApp no longer knew them
    FAILED = "failed"  # credentials exist but the device could not be unlinked in time

    @property
    def unlinked(self) -> bool:
        """No linked device is left behind on the phone."""
        return self is not Unlink.FAILED


class ChangeKind(enum.StrEnum):
    """What a :class:`SessionChange` reports."""

    STATE = "state"  # the runner entered a state (connecting, reconnecting, stopped, …)
    QR = "qr"  # a new QR to scan (data: qr, expires_at)
    PAIR_CODE = "pair_code"  # a pairing code to type (data: code)
    CONNECTED = "connected"  # logged in (data: phone, jid, push_name)
    DISCONNECTED = "disconnected"  # the link went down (data: kind, reason, …)


@dataclass(frozen=True, slots=True)
class SessionChange:
    """One change of a session, as its runner records it and listeners (webhooks, uplinks) hear it.

    Plain data: it crosses processes (a worker's report to its control plane)
    as it is. ``state`` is the session's state after the change.
    """

    session_id: str
    state: SessionState
    kind: ChangeKind
    at: datetime
    data: dict[str, Any] = field(default_factory=dict)


def change_message(change: SessionChange) -> dict[str, Any]:
    """The change as JSON-ready data: what crosses processes (the bus of session changes)."""
    return {
        "sessionId": change.session_id,
        "state": change.state.value,
        "kind": change.kind.value,
        "at": change.at.isoformat(),
        "data": dict(change.data),
    }


def change_from_message(message: Mapping[str, Any]) -> SessionChange:
    """Read :func:`change_message`'s data back; :class:`ValueError` when it is not one."""
    try:
        at = datetime.fromisoformat(message["at"])
        data = message.get("data") or {}
        if at.tzinfo is None or not isinstance(data, dict):
            raise ValueError("naive time or data that is not an object")
        return SessionChange(
            str(message["sessionId"]),
            SessionState(message["state"]),
            ChangeKind(message["kind"]),
            at,
            dict(data),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"not a session change: {exc}") from None
