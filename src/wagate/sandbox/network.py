"""The sandbox WhatsApp network: a simulated WhatsApp that sessions connect to.

:class:`SandboxNetwork` holds the whole simulated state (accounts, linked
devices, bans, live connections, QR and pairing codes) and serves peers over
any :class:`~wagate.sandbox.transport.Channel`: in-process through
:meth:`SandboxNetwork.open_channel`, or over a websocket through
:mod:`wagate.sandbox.server`. Its control methods let a test or a
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

New ops are added to the table with :meth:`SandboxNetwork.register_op`. The
messaging ops and events (``send``, ``upload``, ``download``, ``groups``,
``presence``, ``handled``; ``message``, ``receipt``, ``group``) are described in
:mod:`wagate.sandbox.messaging`. A logged-in connection first gets
``connected``, then the events its device has not confirmed yet, oldest first.

State (accounts, groups, inboxes, device queues) lives in one JSON file when
``state_path`` is given, media blobs in a folder beside it.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import Self

from wagate.domain.session import DisconnectKind
from wagate.errors import EngineError, InvalidInput, WagateError
from wagate.sandbox.accounts import AccountBook, AccountInfo, DeviceInfo
from wagate.sandbox.blobs import BlobStore
from wagate.sandbox.connection import Connection, ConnectionInfo, Hello, error_frame
from wagate.sandbox.faults import FaultKind, FaultsMixin
from wagate.sandbox.groups import GroupBook
from wagate.sandbox.limits import SandboxLimits
from wagate.sandbox.linking import LinkingMixin, SandboxTimings
from wagate.sandbox.mail import Mail
from wagate.sandbox.messaging import MessagingMixin, OpHandler
from wagate.sandbox.office import PostOffice
from wagate.sandbox.state import StateFile
from wagate.sandbox.transport import BadFrame, Channel, ChannelClosed, Frame, memory_pair

log = logging.getLogger(__name__)

__all__ = [
    "AccountInfo",
    "DeviceInfo",
    "FaultKind",
    "OpHandler",
    "SandboxLimits",
    "SandboxNetwork",
    "SandboxTimings",
]


class SandboxNetwork(LinkingMixin, FaultsMixin, MessagingMixin):
    """The simulated WhatsApp network: state, connection handling and control operations."""

    def __init__(
        self,
        *,
        timings: SandboxTimings | None = None,
        state_path: Path | None = None,
        limits: SandboxLimits | None = None,
    ) -> None:
        self.timings = timings or SandboxTimings()
        self.limits = limits or SandboxLimits()
        self._state = StateFile(state_path, delay_s=self.limits.save_delay_s)
        self._book = AccountBook(self._state)
        self._groups = GroupBook(self._state)
        self._mail = Mail(self._state, self.limits)
        self._book.on_unlink = self._mail.forget_device
        self._blobs = BlobStore(
            self._state.blob_folder,
            memory_bytes=self.limits.blob_memory_bytes,
            max_bytes=self.limits.max_media_bytes,
        )
        self._office = PostOffice(self._book, self._groups, self._mail, self._state)
        self._conns: dict[int, Connection] = {}
        self._by_device: dict[str, Connection] = {}
        self._qr_refs: dict[str, Connection] = {}
        self._pair_codes: dict[str, Connection] = {}
        self._ids = itertools.count(1)
        self._down = False
        self._tasks: set[asyncio.Task[None]] = set()
        self._ops: dict[str, OpHandler] = {"logout": self._op_logout, **self._messaging_ops()}
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
        """Drop every connection, stop the in-process serving tasks, write pending state."""
        for conn in list(self._conns.values()):
            await conn.drop()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._state.aclose()

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
        tasks = [asyncio.create_task(self._read_loop(conn), name=f"sandbox-read-{conn.id}")]
        try:
            await self._login(conn)
            if conn.device_id is not None and not conn.ended:
                pump = self._pump(conn, conn.device_id)
                tasks.append(asyncio.create_task(pump, name=f"sandbox-pump-{conn.id}"))
            await conn.done.wait()
        finally:
            await _reap(conn, tasks)
            self._forget(conn)
            log.debug("connection %d closed", conn.id)

    async def _pump(self, conn: Connection, device_id: str) -> None:
        """Stream the device's queue to the connection; the client confirms with ``handled``."""
        queue = self._mail.queue(device_id)
        cursor = 0
        while not conn.ended:
            seq, frame = await queue.next_after(cursor)
            if not await conn.send({**frame, "q": seq}):
                return  # unconfirmed events stay queued for the next connection
            cursor = seq

    def _forget(self, conn: Connection) -> None:
        conn.peer_gone()
        self._conns.pop(conn.id, None)
        if conn.device_id is not None and self._by_device.get(conn.device_id) is conn:
            del self._by_device[conn.device_id]
        self._withdraw_codes(conn)
        self._touch()

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
            await conn.send(_refusal(frame, exc))
        except Exception:
            # A bug in one op must not kill the connection's reader (it would hang).
            log.exception("sandbox op %r failed on connection %d", op, conn.id)
            await conn.send(_refusal(frame, EngineError(f"op {op!r} failed", code="internal")))

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


def _refusal(frame: Frame, exc: WagateError) -> Frame:
    """The error answer to one request; ``rid`` lets the client match it."""
    refusal = error_frame(exc.code, exc.message)
    if "rid" in frame:
        refusal["rid"] = frame["rid"]
    if isinstance(exc, InvalidInput):
        refusal["field"] = exc.field
    return refusal


async def _reap(conn: Connection, tasks: list[asyncio.Task[None]]) -> None:
    for task in tasks:
        task.cancel()
    await asyncio.wait(tasks)
    for task in tasks:
        if not task.cancelled() and task.exception() is not None:
            log.error("sandbox task of connection %d failed", conn.id, exc_info=task.exception())


async def _refuse(channel: Channel, code: str, message: str) -> None:
    log.info("refusing a connection: %s", message)
    try:
        await channel.send(error_frame(code, message))
    except ChannelClosed:
        pass
