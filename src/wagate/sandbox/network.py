"""The sandbox WhatsApp network: a simulated WhatsApp that sessions connect to.

:class:`SandboxNetwork` puts the simulated network together and is the one
place its operations are called on. It serves peers over any
:class:`~wagate.sandbox.transport.Channel`: in-process through
:meth:`SandboxNetwork.open_channel`, or over a websocket through
:mod:`wagate.sandbox.server`. Its control methods let a test or a developer
act as the phone (scan a QR, confirm a pair code, send, read, run groups) and
as fate (drop, logout, ban, replace, proxy errors, slowness, outages).

Each concern is a part, given its collaborators when it is built:

- state: :class:`~.accounts.AccountBook` (accounts, devices, bans),
  :class:`~.groups.GroupBook`, :class:`~.mail.Mail` (inboxes, device queues),
  :class:`~.blobs.BlobStore` (media), all saved through one
  :class:`~.state.StateFile`;
- :class:`~.connections.Connections`: the live connections;
- :class:`~.switchboard.Switchboard`: serves each connection from its hello to its close;
- :class:`~.linking.Linking`: QR and pair codes, logging in and out;
- :class:`~.faults.Faults`: faults and outages;
- :class:`~.messaging.Messaging`: the ops of logged-in sessions, and
  :class:`~.phones.Phones`: the phone's side, both routed by the
  :class:`~.office.PostOffice`.

Every wait and every timestamp goes through one :class:`~wagate.clock.Clock`
(QR rotation, the hello timeout, the ``slow`` fault, delayed saves, message and
link times), so a test drives a ``ManualClock`` instead of waiting.

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

from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import Any, Self, Unpack

from wagate.clock import Clock, SystemClock
from wagate.sandbox.accounts import AccountBook, AccountInfo, DeviceInfo
from wagate.sandbox.blobs import BlobStore
from wagate.sandbox.connection import ConnectionInfo, OpHandler
from wagate.sandbox.connections import Connections
from wagate.sandbox.faults import FaultKind, Faults
from wagate.sandbox.groups import GroupBook
from wagate.sandbox.limits import SandboxLimits, SandboxTimings
from wagate.sandbox.linking import Linking
from wagate.sandbox.mail import Mail
from wagate.sandbox.messaging import Messaging
from wagate.sandbox.office import PostOffice
from wagate.sandbox.phones import PhoneMessage, Phones
from wagate.sandbox.state import StateFile
from wagate.sandbox.switchboard import Switchboard
from wagate.sandbox.transport import Channel

__all__ = [
    "AccountInfo",
    "DeviceInfo",
    "FaultKind",
    "OpHandler",
    "PhoneMessage",
    "SandboxLimits",
    "SandboxNetwork",
    "SandboxTimings",
]


class SandboxNetwork:
    """The simulated WhatsApp network: its parts put together, and every operation on it."""

    def __init__(
        self,
        *,
        timings: SandboxTimings | None = None,
        state_path: Path | None = None,
        limits: SandboxLimits | None = None,
        clock: Clock | None = None,
    ) -> None:
        self.timings = timings or SandboxTimings()
        self.limits = limits or SandboxLimits()
        clock = clock or SystemClock()
        self._state = StateFile(state_path, delay_s=self.limits.save_delay_s, clock=clock)
        mail = Mail(self._state, self.limits)
        self._book = AccountBook(self._state, clock, on_unlink=mail.forget_device)
        groups = GroupBook(self._state, clock)
        blobs = BlobStore(
            self._state.blob_folder,
            memory_bytes=self.limits.blob_memory_bytes,
            max_bytes=self.limits.max_media_bytes,
        )
        office = PostOffice(self._book, groups, mail, self._state, clock)
        self._connections = Connections()
        self._linking = Linking(self._book, self._connections, self.timings)
        self._faults = Faults(self._book, self._connections)
        self._phones = Phones(self._book, groups, mail, blobs, office)
        messaging = Messaging(self._book, groups, mail, blobs, office, self.limits)
        ops = {**self._linking.ops(), **messaging.ops()}
        self._switchboard = Switchboard(
            self._connections,
            self._linking,
            self._faults,
            mail,
            ops,
            timings=self.timings,
            clock=clock,
        )

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
        await self._switchboard.aclose()
        await self._state.aclose()

    # --- serving ---------------------------------------------------------------------

    def open_channel(self) -> Channel:
        """Connect in-process: the client end of a fresh channel the network now serves."""
        return self._switchboard.open_channel()

    async def serve(self, channel: Channel) -> None:
        """Handle one peer connection until it closes."""
        await self._switchboard.serve(channel)

    def register_op(self, op: str, handler: OpHandler) -> None:
        """Handle client frames ``{"op": op, ...}`` of live connections with ``handler``."""
        self._switchboard.register_op(op, handler)

    async def connections(self) -> list[ConnectionInfo]:
        return self._connections.infos()

    async def wait_connections(
        self, ready: Callable[[list[ConnectionInfo]], bool]
    ) -> list[ConnectionInfo]:
        """Wait until the live connections satisfy ``ready`` (tests, demos and load runs)."""
        return await self._connections.wait(ready)

    async def stats(self) -> dict[str, int]:
        """Counters a test or an operator watches: live connections, replaced streams."""
        return {
            "connections": len(self._connections.infos()),
            "replacedStreams": self._linking.replaced_streams,
        }

    async def accounts(self) -> list[AccountInfo]:
        online = self._connections.online_devices()
        return [account.info(online=online) for account in self._book.all()]

    # --- the phone's side: linking ------------------------------------------------------

    async def scan(self, qr: str, phone: str, push_name: str | None = None) -> dict[str, str]:
        """The phone ``phone`` scans a displayed QR (its full code, or just its ref)."""
        return await self._linking.scan(qr, phone, push_name)

    async def pair(self, code: str) -> dict[str, str]:
        """The phone confirms a pairing code shown to the user."""
        return await self._linking.pair(code)

    # --- the phone's side: messaging (see phones.py) ------------------------------------

    async def add_phone(self, phone: str, push_name: str | None = None) -> AccountInfo:
        """A simulated phone joins the network (an account with no linked device)."""
        return await self._phones.add(phone, push_name)

    async def phone_send(self, from_phone: str, to: str, **message: Unpack[PhoneMessage]) -> str:
        """A simulated phone (created if new) sends to a phone, a ``@lid`` or a group.

        The fields of ``message`` are :class:`~.phones.PhoneMessage`'s. Returns the message id.
        """
        return await self._phones.send(from_phone, to, **message)

    async def inbox(self, phone: str) -> list[dict[str, Any]]:
        """What ``phone`` received, oldest first (at most ``limits.inbox_size``)."""
        return await self._phones.inbox(phone)

    async def mark_read(self, phone: str, message_ids: list[str]) -> None:
        """``phone`` reads messages of its inbox; each sender's devices get receipts."""
        await self._phones.mark_read(phone, message_ids)

    async def blob(self, handle: str) -> bytes:
        """The bytes of a media blob; :class:`NotFound` if the network has none by that handle."""
        return await self._phones.blob(handle)

    async def create_group(self, name: str, owner: str, members: list[str]) -> str:
        """Create a group (accounts are created for new phones); returns its JID."""
        return await self._phones.create_group(name, owner, members)

    async def rename_group(self, jid: str, name: str) -> None:
        await self._phones.rename_group(jid, name)

    async def add_members(self, jid: str, members: list[str]) -> None:
        await self._phones.add_members(jid, members)

    async def remove_members(self, jid: str, members: list[str]) -> None:
        await self._phones.remove_members(jid, members)

    # --- fate (see faults.py) -----------------------------------------------------------

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
        return await self._faults.fault(kind, session=session, phone=phone, delay_ms=delay_ms)

    async def unban(self, phone: str) -> None:
        """Lift a ban; the account's devices may connect again."""
        await self._faults.unban(phone)

    async def set_outage(self, down: bool) -> None:
        """While down, new connections are refused with a transient ``unavailable`` error."""
        await self._faults.set_outage(down)

    @property
    def is_down(self) -> bool:
        return self._faults.is_down
