"""What a worker reports about a session to its control plane, in each seed's words.

Seed 004's events (``{type, sessionId, data}``) and seed 002's status words,
and what each means in our vocabulary. Both sides use it: the reporters of
``uplinks/`` and the control plane's ``SessionReports``. Pure.
"""

from __future__ import annotations

import enum

from wagate.domain.session import SEED_002, DisconnectKind, SessionState, recovery_for


class EventType(enum.StrEnum):
    """Seed 004's events, with the fields of their ``data``."""

    QR_CODE = "QR_CODE"  # {qr}
    CONNECTED = "CONNECTED"  # {phoneNumber}
    DISCONNECTED = "DISCONNECTED"  # {reason, code}
    PING = "PING"  # {timestamp} (epoch ms)
    PROXY_ERROR = "PROXY_ERROR"  # {error}
    AUTH_FAILURE = "AUTH_FAILURE"  # {reason}


# Baileys' DisconnectReason (what seed 004's workers run on) sent as DISCONNECTED's code
BAILEYS_CODES: dict[int, DisconnectKind] = {
    401: DisconnectKind.LOGGED_OUT,
    403: DisconnectKind.BANNED,
    440: DisconnectKind.REPLACED,
}


def disconnect_kind(code: int | str | None) -> DisconnectKind | None:
    """DISCONNECTED's ``code`` as a kind; None for a session stopped on purpose.

    Our workers send the kind's name (``"connection_lost"``, ``"banned"``, …)
    or null for a stop; Baileys' numbers are understood too. Anything else is
    a lost connection: the worker reconnects by itself (seed 004, Flow 3).
    """
    if code is None:
        return None
    if isinstance(code, str) and code.isascii() and code.isdigit():
        code = int(code)
    if isinstance(code, str):
        try:
            return DisconnectKind(code)
        except ValueError:
            return DisconnectKind.CONNECTION_LOST
    return BAILEYS_CODES.get(code, DisconnectKind.CONNECTION_LOST)


def state_after(kind: DisconnectKind | None) -> SessionState:
    """The state a session rests in after a disconnect of ``kind`` (None: stopped)."""
    return SessionState.STOPPED if kind is None else recovery_for(kind)[1]


# seed 002's status words, and the state a report of each one records
SEED_002_REPORTED: dict[str, SessionState] = {
    "disconnected": SessionState.STOPPED,
    "connecting": SessionState.CONNECTING,
    "qr_required": SessionState.QR,
    "connected": SessionState.CONNECTED,
}


def seed_002_states(word: str) -> frozenset[SessionState]:
    """Every state seed 002 calls ``word``: a row in one of them already says it."""
    return frozenset(state for state, said in SEED_002.items() if said == word)
