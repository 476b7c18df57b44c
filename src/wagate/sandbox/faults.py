"""Fault injection on the sandbox network: what can go wrong with WhatsApp, on request.

:class:`Faults` ends, drops or slows live connections (found in the network's
:class:`~wagate.sandbox.connections.Connections`), bans and unbans accounts,
and holds the outage switch the switchboard asks before greeting anyone. Kept
apart so the happy path and the failures each read on their own.
"""

from __future__ import annotations

import enum
import logging

from wagate.domain.session import DisconnectKind
from wagate.errors import InvalidInput, NotFound
from wagate.sandbox.accounts import AccountBook, normalize_phone
from wagate.sandbox.connection import Connection
from wagate.sandbox.connections import Connections

log = logging.getLogger(__name__)

_MAX_DELAY_MS = 60_000


class FaultKind(enum.StrEnum):
    DROP = "drop"  # the socket dies with no frame: connection_lost
    LOGOUT = "logout"  # the device is unlinked from the phone: logged_out
    BAN = "ban"  # the account is banned: banned, until unban
    REPLACED = "replaced"  # another client took the device's stream: replaced
    PROXY_ERROR = "proxy_error"  # the session's proxy broke: proxy_error
    SLOW = "slow"  # every frame to the connection is delayed by delay_ms


def parse_fault_kind(raw: str) -> FaultKind:
    try:
        return FaultKind(raw)
    except ValueError:
        kinds = ", ".join(kind.value for kind in FaultKind)
        raise InvalidInput("kind", f"unknown fault kind {raw!r}; use one of {kinds}") from None


class Faults:
    """The ``fault``, ``unban`` and outage control operations."""

    def __init__(self, book: AccountBook, connections: Connections) -> None:
        self._book = book
        self._connections = connections
        self._down = False

    @property
    def is_down(self) -> bool:
        return self._down

    async def set_outage(self, down: bool) -> None:
        """While down, new connections are refused with a transient ``unavailable`` error."""
        self._down = down

    async def fault(
        self,
        kind: FaultKind | str,
        *,
        session: str | None = None,
        phone: str | None = None,
        delay_ms: int = 500,
    ) -> int:
        """Inject a fault into the connections of ``session`` and/or ``phone``.

        Returns how many live connections it touched. ``ban`` and a ``logout`` by
        phone alone act on the account even when none of its devices is online.
        """
        fault = parse_fault_kind(kind)
        if session is None and phone is None:
            raise InvalidInput("session", "name the session or the phone to fault")
        digits = normalize_phone(phone) if phone is not None else None
        if fault is FaultKind.SLOW and not 0 <= delay_ms <= _MAX_DELAY_MS:
            raise InvalidInput("delay_ms", f"delay_ms must be between 0 and {_MAX_DELAY_MS}")
        log.info("fault %s on session=%s phone=%s", fault.value, session, digits)
        if fault is FaultKind.BAN:
            return await self._ban(session, digits)
        if fault is FaultKind.LOGOUT and session is None and digits is not None:
            return await self._logout_account(digits)
        targets = self._require_targets(session, digits)
        if fault is FaultKind.SLOW:
            for conn in targets:
                conn.delay_s = delay_ms / 1000
        elif fault is FaultKind.LOGOUT:
            await self._logout_devices(targets)
        else:
            await _end_all(targets, fault)
        return len(targets)

    async def unban(self, phone: str) -> None:
        """Lift a ban; the account's devices may connect again."""
        self._book.set_banned(normalize_phone(phone), False)

    def _require_targets(self, session: str | None, phone: str | None) -> list[Connection]:
        targets = self._connections.live(session, phone)
        if not targets:
            named = (("session", session), ("phone", phone))
            who = " and ".join(f"{name} {value}" for name, value in named if value)
            raise NotFound(f"no live connection for {who}")
        return targets

    async def _ban(self, session: str | None, phone: str | None) -> int:
        if phone is not None:
            phones = {phone}
        else:
            phones = {c.phone for c in self._require_targets(session, None) if c.phone is not None}
            if not phones:
                raise NotFound(f"session {session} has not logged in to an account")
        for each in phones:
            self._book.set_banned(each, True)
        targets = [conn for conn in self._connections.live() if conn.phone in phones]
        for conn in targets:
            await conn.end(DisconnectKind.BANNED, "this account has been banned")
        return len(targets)

    async def _logout_account(self, phone: str) -> int:
        """The phone logs out every linked device."""
        self._book.unlink(phone)
        targets = self._connections.live(phone=phone)
        for conn in targets:
            await conn.end(DisconnectKind.LOGGED_OUT, "logged out from the phone")
        return len(targets)

    async def _logout_devices(self, targets: list[Connection]) -> None:
        for conn in targets:
            if conn.phone is not None and conn.device_id is not None:
                self._book.unlink(conn.phone, conn.device_id)
            await conn.end(DisconnectKind.LOGGED_OUT, "logged out from the phone")


_END_KINDS = {
    FaultKind.REPLACED: (DisconnectKind.REPLACED, "another client replaced this stream"),
    FaultKind.PROXY_ERROR: (DisconnectKind.PROXY_ERROR, "the proxy failed"),
}


async def _end_all(targets: list[Connection], fault: FaultKind) -> None:
    for conn in targets:
        if fault is FaultKind.DROP:
            await conn.drop()
        else:
            kind, reason = _END_KINDS[fault]
            await conn.end(kind, reason)
