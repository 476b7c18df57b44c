"""The sandbox WhatsApp network: a simulated WhatsApp that sessions connect to.

:class:`SandboxNetwork` holds the whole simulated state (accounts, linked
devices, bans, live connections, QR and pairing codes) and serves peers over
any :class:`~wagate.engine.sandbox.transport.Channel`: in-process through
:meth:`SandboxNetwork.open_channel`, or over a websocket through
:mod:`wagate.engine.sandbox.server`. Its control methods let a test or a
developer act as the phone (scan a QR, confirm a pair code) and as fate
(drop, logout, ban, replace, proxy errors, slowness, outages).

Frame protocol
--------------

Every frame is one JSON object. Client → network::

    {"op": "hello", "session": "<session id>", "client": "<gateway label>" | null,
     "device_name": "wagate", "creds": {...} | null, "pair_phone": "<digits>" | null}
    {"op": "logout"}

``hello`` must be the first frame (within ``hello_timeout_s``). Network → client::

    {"ev": "qr", "code": "2@<ref>,<noise key>,<identity key>,<adv secret>", "ttl": <seconds>}
    {"ev": "pair_code", "code": "ABCD-EFGH"}
    {"ev": "paired", "creds": {...}}            # the client saves these creds
    {"ev": "connected", "jid": "<phone>:<n>@s.whatsapp.net", "phone": "<digits>",
     "lid": "<14 digits>@lid", "push_name": "...", "device_name": "..."}
    {"ev": "disconnected", "kind": "<DisconnectKind>", "reason": "..."}   # then the close
    {"ev": "error", "code": "...", "message": "..."}

Error codes: ``unavailable`` (outage) and ``hello_timeout`` are worth a retry;
``bad_hello`` and ``bad_frame`` mean the client is wrong; ``unknown_op`` and an
op handler's own codes answer one frame of a live connection.

A hello with the creds of a linked device goes straight to ``connected``.
Without creds the network shows ``qr_count`` QR codes (the first valid
``qr_first_s``, each next one ``qr_next_s``, each with a fresh ref) and, when
``pair_phone`` is given, one pairing code; a scan or a confirmed code links a
new device (creating the account if new) and yields ``paired`` then
``connected``; if nobody scans, ``disconnected`` ``qr_timeout``. Creds of an
unlinked device get ``logged_out``; of a banned account, ``banned``. A second
connection with the same device creds ends the first with ``replaced``. During
an outage a new connection gets ``error`` ``unavailable`` and is closed. An
``error`` frame after the handshake (unknown op, bad frame) does not end the
connection. A connection that just closes, with no ``disconnected`` frame, was
lost.

New ops are added to the table with :meth:`SandboxNetwork.register_op`.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Self

from wagate.domain.session import DisconnectKind
from wagate.engine.sandbox.accounts import (
    Account,
    AccountBook,
    AccountInfo,
    Device,
    DeviceInfo,
    normalize_phone,
)
from wagate.engine.sandbox.codes import QRKeys, new_pair_code, new_ref, normalize_pair_code, ref_of
from wagate.engine.sandbox.connection import (
    Connection,
    ConnectionInfo,
    ConnState,
    Hello,
    error_frame,
)
from wagate.engine.sandbox.faults import FaultKind, FaultsMixin
from wagate.engine.sandbox.transport import BadFrame, Channel, ChannelClosed, Frame, memory_pair
from wagate.errors import Conflict, NotFound, WagateError

log = logging.getLogger(__name__)

OpHandler = Callable[[Connection, Frame], Awaitable[None]]

__all__ = [
    "AccountInfo",
    "DeviceInfo",
    "FaultKind",
    "OpHandler",
    "SandboxNetwork",
    "SandboxTimings",
]


@dataclass(frozen=True, slots=True)
class SandboxTimings:
    """How long things take on the simulated network (WhatsApp's real values by default)."""

    qr_first_s: float = 60.0
    qr_next_s: float = 20.0
    qr_count: int = 6
    hello_timeout_s: float = 10.0


class SandboxNetwork(FaultsMixin):
    """The simulated WhatsApp network: state, connection handling and control operations."""

    def __init__(
        self, *, timings: SandboxTimings | None = None, state_path: Path | None = None
    ) -> None:
        self.timings = timings or SandboxTimings()
        self._book = AccountBook(state_path)
        self._conns: dict[int, Connection] = {}
        self._by_device: dict[str, Connection] = {}
        self._qr_refs: dict[str, Connection] = {}
        self._pair_codes: dict[str, Connection] = {}
        self._ids = itertools.count(1)
        self._down = False
        self._tasks: set[asyncio.Task[None]] = set()
        self._ops: dict[str, OpHandler] = {"logout": self._op_logout}
        # Replaced on every change of the live connections; waiters hold the old one.
        self._changed = asyncio.Event()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Drop every connection and stop the in-process serving tasks."""
        for conn in list(self._conns.values()):
            await conn.drop()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    def register_op(self, op: str, handler: OpHandler) -> None:
        """Handle client frames ``{"op": op, ...}`` of live connections with ``handler``."""
        self._ops[op] = handler

    @property
    def is_down(self) -> bool:
        return self._down

    async def wait_connections(
        self, ready: Callable[[list[ConnectionInfo]], bool]
    ) -> list[ConnectionInfo]:
        """Wait until the live connections satisfy ``ready`` (tests, demos and load runs)."""
        while not ready(found := await self.connections()):
            await self._changed.wait()
        return found

    def _touch(self) -> None:
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()

    # --- serving ---------------------------------------------------------------------

    def open_channel(self) -> Channel:
        """Connect in-process: the client end of a fresh channel the network now serves."""
        client_end, network_end = memory_pair()
        task = asyncio.create_task(self.serve(network_end), name="sandbox-serve")
        self._tasks.add(task)
        task.add_done_callback(self._task_done)
        return client_end

    def _task_done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("sandbox connection task failed", exc_info=task.exception())

    async def serve(self, channel: Channel) -> None:
        """Handle one peer connection until it closes."""
        try:
            conn = await self._greet(channel)
            if conn is not None:
                await self._run(conn)
        except ChannelClosed:
            pass  # the peer left during the handshake
        finally:
            await channel.close()

    async def _greet(self, channel: Channel) -> Connection | None:
        if self._down:
            await _refuse(channel, "unavailable", "the sandbox network is down (simulated outage)")
            return None
        try:
            async with asyncio.timeout(self.timings.hello_timeout_s):
                frame = await channel.recv()
            hello = Hello.parse(frame)
        except TimeoutError:
            await _refuse(channel, "hello_timeout", "no hello frame in time")
            return None
        except BadFrame as exc:
            await _refuse(channel, "bad_frame", str(exc))
            return None
        except WagateError as exc:
            await _refuse(channel, "bad_hello", exc.message)
            return None
        return Connection(next(self._ids), channel, hello)

    async def _run(self, conn: Connection) -> None:
        self._conns[conn.id] = conn
        self._touch()
        log.debug("connection %d opened by session %s", conn.id, conn.session)
        reader = asyncio.create_task(self._read_loop(conn), name=f"sandbox-read-{conn.id}")
        try:
            await self._login(conn)
            await conn.done.wait()
        finally:
            reader.cancel()
            await asyncio.wait([reader])
            if not reader.cancelled() and reader.exception() is not None:
                log.error("sandbox reader %d failed", conn.id, exc_info=reader.exception())
            self._forget(conn)
            log.debug("connection %d closed", conn.id)

    def _forget(self, conn: Connection) -> None:
        conn.peer_gone()
        self._conns.pop(conn.id, None)
        if conn.device_id is not None and self._by_device.get(conn.device_id) is conn:
            del self._by_device[conn.device_id]
        self._withdraw_codes(conn)
        self._touch()

    def _withdraw_codes(self, conn: Connection) -> None:
        if conn.qr_code is not None:
            self._qr_refs.pop(ref_of(conn.qr_code), None)
        if conn.pair_code is not None:
            self._pair_codes.pop(conn.pair_code, None)

    async def _read_loop(self, conn: Connection) -> None:
        while not conn.ended:
            try:
                frame = await conn.channel.recv()
            except ChannelClosed:
                conn.peer_gone()
                return
            except BadFrame as exc:
                await conn.send(error_frame("bad_frame", str(exc)))
                continue
            await self._dispatch(conn, frame)

    async def _dispatch(self, conn: Connection, frame: Frame) -> None:
        op = frame.get("op")
        handler = self._ops.get(op) if isinstance(op, str) else None
        if handler is None:
            await conn.send(error_frame("unknown_op", f"unknown op {op!r}"))
            return
        try:
            await handler(conn, frame)
        except WagateError as exc:
            await conn.send(error_frame(exc.code, exc.message))

    # --- logging in --------------------------------------------------------------------

    async def _login(self, conn: Connection) -> None:
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

    async def _go_online(self, conn: Connection, account: Account, device: Device) -> None:
        older = self._by_device.get(device.device_id)
        self._by_device[device.device_id] = conn
        conn.state = ConnState.CONNECTED
        conn.phone, conn.device_id, conn.jid = account.phone, device.device_id, account.jid(device)
        self._touch()
        if older is not None and older is not conn:
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
        keys = QRKeys.generate()
        timings = self.timings
        for index in range(timings.qr_count):
            ttl = timings.qr_first_s if index == 0 else timings.qr_next_s
            self._withdraw_codes(conn)  # the previous QR expires as the next is shown
            conn.qr_code = keys.code(new_ref())
            self._qr_refs[ref_of(conn.qr_code)] = conn
            await conn.send({"ev": "qr", "code": conn.qr_code, "ttl": ttl})
            if index == 0 and conn.hello.pair_phone is not None:
                await self._offer_pair_code(conn)
            if await conn.wait_wake(ttl):
                break
        self._withdraw_codes(conn)
        if conn.ended:
            return
        if conn.linked is None:
            await conn.end(DisconnectKind.QR_TIMEOUT, f"no scan after {timings.qr_count} QR codes")
            return
        account, device = self._book.find(conn.linked) or (None, None)
        if account is None or device is None:  # unlinked again between scan and now
            await conn.end(DisconnectKind.LOGGED_OUT, "this device is no longer linked")
            return
        await conn.send({"ev": "paired", "creds": conn.linked.to_json(account, device)})
        await self._go_online(conn, account, device)

    async def _offer_pair_code(self, conn: Connection) -> None:
        conn.pair_code = new_pair_code()
        self._pair_codes[conn.pair_code] = conn
        await conn.send({"ev": "pair_code", "code": conn.pair_code})

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

    # --- listing and outages ---------------------------------------------------------

    async def set_outage(self, down: bool) -> None:
        """While down, new connections are refused with a transient ``unavailable`` error."""
        self._down = down

    async def connections(self) -> list[ConnectionInfo]:
        return [conn.info() for conn in self._conns.values() if not conn.ended]

    async def accounts(self) -> list[AccountInfo]:
        return [account.info(online=self._by_device.keys()) for account in self._book.all()]

    async def _op_logout(self, conn: Connection, frame: Frame) -> None:
        if conn.phone is not None and conn.device_id is not None:
            self._book.unlink(conn.phone, conn.device_id)
        await conn.end(DisconnectKind.LOGGED_OUT, "logged out by the client")


async def _refuse(channel: Channel, code: str, message: str) -> None:
    log.info("refusing a connection: %s", message)
    try:
        await channel.send(error_frame(code, message))
    except ChannelClosed:
        pass
