"""One client connection as the sandbox network sees it.

A :class:`Connection` wraps a :class:`~wagate.sandbox.transport.Channel`
with what the network knows about the peer (its ``hello``, the account and
device it authenticated as) and the only two ways a connection ends: with a
``disconnected`` frame (:meth:`Connection.end`) or abruptly with none
(:meth:`Connection.drop`). Frames go out one at a time, in order, each after
the connection's simulated latency, which passes on the network's clock.
"""

from __future__ import annotations

import asyncio
import enum
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from wagate.clock import Clock
from wagate.domain.session import DisconnectKind
from wagate.errors import InvalidInput
from wagate.sandbox.accounts import Creds, normalize_phone
from wagate.sandbox.blobs import Upload
from wagate.sandbox.transport import Channel, ChannelClosed, Frame

_MAX_LABEL = 200


class ConnState(enum.StrEnum):
    PAIRING = "pairing"  # showing QR / pair codes, not linked yet
    CONNECTED = "connected"
    CLOSED = "closed"


def _label(frame: Frame, key: str, *, required: bool = False) -> str | None:
    value = frame.get(key)
    if value is None and not required:
        return None
    if not isinstance(value, str) or not value or len(value) > _MAX_LABEL:
        raise InvalidInput(key, f"{key} must be a non-empty string of at most {_MAX_LABEL} chars")
    return value


@dataclass(frozen=True, slots=True)
class Hello:
    """The first frame of every connection: who is connecting and how."""

    session: str
    client: str | None
    device_name: str
    creds: Creds | None
    pair_phone: str | None

    @classmethod
    def parse(cls, frame: Frame) -> Hello:
        if frame.get("op") != "hello":
            raise InvalidInput("op", "the first frame must be {'op': 'hello', ...}")
        raw_creds = frame.get("creds")
        raw_phone = frame.get("pair_phone")
        if raw_phone is not None and not isinstance(raw_phone, str):
            raise InvalidInput("pair_phone", "pair_phone must be a string of digits")
        return cls(
            session=_label(frame, "session", required=True) or "",
            client=_label(frame, "client"),
            device_name=_label(frame, "device_name") or "wagate",
            creds=Creds.from_json(raw_creds) if raw_creds is not None else None,
            pair_phone=normalize_phone(raw_phone, field_name="pair_phone") if raw_phone else None,
        )


@dataclass(frozen=True, slots=True)
class ConnectionInfo:
    """A live connection, as listed by the control API."""

    id: int
    session: str
    client: str | None
    phone: str | None
    jid: str | None
    state: str
    delay_ms: int
    presence: str | None = None  # "available" or "unavailable" once the session said
    remote: str | None = None  # the address it came from (a proxy's, when it uses one)


def error_frame(code: str, message: str) -> Frame:
    return {"ev": "error", "code": code, "message": message}


class Connection:
    """A live peer of the network. Mutated only on the network's event loop."""

    def __init__(self, conn_id: int, channel: Channel, hello: Hello, clock: Clock) -> None:
        self.id = conn_id
        self.channel = channel
        self.hello = hello
        self._clock = clock
        self.state = ConnState.PAIRING
        self.phone: str | None = None
        self.device_id: str | None = None
        self.jid: str | None = None
        self.delay_s = 0.0
        self.linked: Creds | None = None  # set by a scan or a confirmed pair code
        self.qr_code: str | None = None  # the QR currently shown
        self.pair_code: str | None = None
        self.presence: str | None = None
        self.uploads: dict[str, Upload] = {}  # media on its way in, by the client's upload id
        # wake: something happened the lifecycle waits for (a scan, or the end).
        self.wake = asyncio.Event()
        self.done = asyncio.Event()  # closed, and the goodbye (if any) sent
        self._send_lock = asyncio.Lock()

    @property
    def session(self) -> str:
        return self.hello.session

    @property
    def ended(self) -> bool:
        return self.state is ConnState.CLOSED

    def info(self) -> ConnectionInfo:
        return ConnectionInfo(
            id=self.id,
            session=self.session,
            client=self.hello.client,
            phone=self.phone,
            jid=self.jid,
            state=self.state.value,
            delay_ms=round(self.delay_s * 1000),
            presence=self.presence,
            remote=getattr(self.channel, "remote", None),
        )

    def log_in(self, phone: str, device_id: str, jid: str) -> None:
        """The peer is now this device of this account."""
        self.state = ConnState.CONNECTED
        self.phone, self.device_id, self.jid = phone, device_id, jid

    async def send(self, frame: Frame) -> bool:
        """Send a frame after the simulated latency; False if the connection has ended."""
        if self.ended:
            return False
        return await self._send(frame)

    async def end(self, kind: DisconnectKind, reason: str, **extra: Any) -> None:
        """Tell the peer why, then close. Later calls do nothing."""
        if self.ended:
            return
        self.state = ConnState.CLOSED
        self.wake.set()
        try:
            await self._send({"ev": "disconnected", "kind": kind.value, "reason": reason, **extra})
            await self.channel.close()
        finally:
            # Done only now: the network closes a done connection's channel, and a slow
            # connection's last frame must not be cut off on its way out.
            self.done.set()

    async def drop(self) -> None:
        """Close with no frame at all: to the peer, the connection was simply lost."""
        if self.ended:
            return
        self._mark_closed()
        await self.channel.close()

    def peer_gone(self) -> None:
        self._mark_closed()

    def _mark_closed(self) -> None:
        self.state = ConnState.CLOSED
        self.done.set()
        self.wake.set()

    async def _send(self, frame: Frame) -> bool:
        async with self._send_lock:
            if self.delay_s > 0:
                await self._clock.sleep(self.delay_s)
            try:
                await self.channel.send(frame)
            except ChannelClosed:
                self._mark_closed()
                return False
            return True

    async def wait_wake(self, within_s: float) -> bool:
        """True if woken (scanned or ended) within ``within_s`` seconds."""
        return await self._clock.wait(self.wake, within_s)


# How the network handles one client frame ``{"op": ...}`` of a live connection.
OpHandler = Callable[[Connection, Frame], Awaitable[None]]
