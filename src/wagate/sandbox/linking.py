"""Linking devices on the sandbox network: QR codes, pairing codes, logging in and out.

A connection without creds is shown rotating QR codes (and a pairing code when
it asked for one) until a phone scans or confirms; one with creds logs in, or
is told why not (logged out, banned). Each QR stays up for its ``ttl`` on the
network's clock (the connection waits on it). See the network's docstring for
the frames.
"""

from __future__ import annotations

import logging

from wagate.domain.session import DisconnectKind
from wagate.errors import Conflict, NotFound
from wagate.sandbox.accounts import Account, AccountBook, Device, normalize_phone
from wagate.sandbox.codes import QRKeys, new_pair_code, new_ref, normalize_pair_code, ref_of
from wagate.sandbox.connection import Connection, ConnState, OpHandler
from wagate.sandbox.connections import Connections
from wagate.sandbox.limits import SandboxTimings
from wagate.sandbox.transport import Frame

log = logging.getLogger(__name__)


class Linking:
    """QR and pair-code linking, logging linked devices in, and the client's ``logout`` op."""

    def __init__(
        self, book: AccountBook, connections: Connections, timings: SandboxTimings
    ) -> None:
        self._book = book
        self._connections = connections
        self._timings = timings
        self._qr_refs: dict[str, Connection] = {}  # by the ref of the QR each one shows
        self._pair_codes: dict[str, Connection] = {}
        # a device logged in while another connection of it was live: two sockets on one
        # device, which a fleet must never cause (its tests assert this stays 0)
        self.replaced_streams = 0

    def ops(self) -> dict[str, OpHandler]:
        return {"logout": self._op_logout}

    async def login(self, conn: Connection) -> None:
        """Log a new connection in with its creds, or link it as a new device first."""
        creds = conn.hello.creds
        if creds is None:
            await self._pairing(conn)
            return
        account, device = self._book.find(creds) or (None, None)
        if account is None:
            await conn.end(DisconnectKind.LOGGED_OUT, "no such account")
        elif account.banned:
            await conn.end(DisconnectKind.BANNED, "this account is banned")
        elif device is None:
            await conn.end(DisconnectKind.LOGGED_OUT, "this device is no longer linked")
        else:
            await self._go_online(conn, account, device)

    # --- the phone's side ------------------------------------------------------------

    async def scan(self, qr: str, phone: str, push_name: str | None = None) -> dict[str, str]:
        """The phone ``phone`` scans a displayed QR (its full code, or just its ref)."""
        digits = normalize_phone(phone)
        conn = self._qr_refs.get(ref_of(qr))
        if conn is None or ("," in qr and qr.strip() != conn.qr_code):
            raise NotFound("unknown or expired QR code")
        return self._link(conn, digits, push_name)

    async def pair(self, code: str) -> dict[str, str]:
        """The phone confirms a pairing code shown to the user."""
        conn = self._pair_codes.get(normalize_pair_code(code))
        if conn is None or conn.hello.pair_phone is None:
            raise NotFound("unknown or expired pairing code")
        return self._link(conn, conn.hello.pair_phone, None)

    # --- the connection's side -------------------------------------------------------

    async def _go_online(self, conn: Connection, account: Account, device: Device) -> None:
        conn.log_in(account.phone, device.device_id, account.jid(device))
        older = self._connections.claim(device.device_id, conn)
        if older is not None:
            self.replaced_streams += 1
            await older.end(DisconnectKind.REPLACED, "another connection logged in as this device")
        await conn.send(
            {
                "ev": "connected",
                "jid": conn.jid,
                "phone": account.phone,
                "lid": account.lid,
                "push_name": account.push_name,
                "device_name": device.name,
            }
        )

    async def _pairing(self, conn: Connection) -> None:
        try:
            await self._show_codes(conn)
        finally:
            self._withdraw_codes(conn)
        if conn.ended:
            return
        if conn.linked is None:
            count = self._timings.qr_count
            await conn.end(DisconnectKind.QR_TIMEOUT, f"no scan after {count} QR codes")
            return
        account, device = self._book.find(conn.linked) or (None, None)
        if account is None or device is None:  # unlinked again between scan and now
            await conn.end(DisconnectKind.LOGGED_OUT, "this device is no longer linked")
            return
        await conn.send({"ev": "paired", "creds": conn.linked.to_json(account, device)})
        await self._go_online(conn, account, device)

    async def _show_codes(self, conn: Connection) -> None:
        """Rotate QR codes until a scan, the end of the connection, or the last one expires."""
        keys = QRKeys.generate()
        timings = self._timings
        for index in range(timings.qr_count):
            ttl = timings.qr_first_s if index == 0 else timings.qr_next_s
            self._withdraw_codes(conn)  # the previous QR expires as the next is shown
            conn.qr_code = keys.code(new_ref())
            self._qr_refs[ref_of(conn.qr_code)] = conn
            await conn.send({"ev": "qr", "code": conn.qr_code, "ttl": ttl})
            if index == 0 and conn.hello.pair_phone is not None:
                await self._offer_pair_code(conn)
            if await conn.wait_wake(ttl):
                return

    async def _offer_pair_code(self, conn: Connection) -> None:
        conn.pair_code = new_pair_code()
        self._pair_codes[conn.pair_code] = conn
        await conn.send({"ev": "pair_code", "code": conn.pair_code})

    def _link(self, conn: Connection, phone: str, push_name: str | None) -> dict[str, str]:
        # No await in here: the check and the link happen atomically on the loop.
        if conn.linked is not None or conn.state is not ConnState.PAIRING:
            raise Conflict("this connection is already linked")
        existing = self._book.get(phone)
        if existing is not None and existing.banned:
            raise Conflict(f"account {phone} is banned")
        account, creds = self._book.link(phone, conn.hello.device_name, push_name)
        conn.linked = creds
        self._withdraw_codes(conn)
        conn.wake.set()
        device = account.devices[creds.device_id]
        log.info("session %s linked to %s as device %d", conn.session, phone, device.number)
        return {"session": conn.session, "phone": phone, "jid": account.jid(device)}

    def _withdraw_codes(self, conn: Connection) -> None:
        if conn.qr_code is not None:
            self._qr_refs.pop(ref_of(conn.qr_code), None)
        if conn.pair_code is not None:
            self._pair_codes.pop(conn.pair_code, None)

    async def _op_logout(self, conn: Connection, frame: Frame) -> None:
        if conn.phone is not None and conn.device_id is not None:
            self._book.unlink(conn.phone, conn.device_id)
        await conn.end(DisconnectKind.LOGGED_OUT, "logged out by the client")
