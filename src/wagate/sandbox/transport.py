"""How frames travel between a sandbox client and the sandbox network.

A :class:`Channel` carries JSON objects (``dict``) both ways. The network and
the client only ever see channels, so the same code runs in-process (a
:func:`memory_pair`, no sockets at all) and over a real websocket (the
client's :class:`WebsocketsChannel`, the server's :class:`StarletteChannel`).

Every adapter turns "the peer is gone" into :class:`ChannelClosed` and a frame
that is not a JSON object into :class:`BadFrame`; nothing else escapes.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import websockets
from starlette.websockets import WebSocket, WebSocketDisconnect, WebSocketState

from wagate.errors import TransientError, WagateError

if TYPE_CHECKING:
    from websockets.asyncio.client import ClientConnection

Frame = dict[str, Any]


class ChannelClosed(TransientError):
    """The peer closed the channel, or it broke; no more frames will come."""

    code = "channel_closed"


class BadFrame(WagateError):
    """The peer sent something that is not a JSON object."""

    code = "bad_frame"


@runtime_checkable
class Channel(Protocol):
    """A two-way pipe of JSON-object frames."""

    async def send(self, frame: Frame) -> None:
        """Send one frame; raises :class:`ChannelClosed` if the peer is gone."""
        ...

    async def recv(self) -> Frame:
        """The next frame; raises :class:`ChannelClosed` or :class:`BadFrame`."""
        ...

    async def close(self) -> None:
        """Close without sending anything more; idempotent."""
        ...


def encode(frame: Frame) -> str:
    return json.dumps(frame, separators=(",", ":"))


def decode(data: str | bytes) -> Frame:
    try:
        frame = json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise BadFrame(f"frame is not JSON: {exc}") from exc
    if not isinstance(frame, dict):
        raise BadFrame("frame is not a JSON object")
    return frame


# --- in memory ----------------------------------------------------------------------

_EOF = None


class MemoryChannel:
    """One end of an in-process pipe made by :func:`memory_pair`."""

    def __init__(self, inbox: asyncio.Queue[str | None], outbox: asyncio.Queue[str | None]) -> None:
        self._inbox = inbox
        self._outbox = outbox
        self._closed = False  # we closed, or we read the peer's EOF

    async def send(self, frame: Frame) -> None:
        if self._closed:
            raise ChannelClosed("channel is closed")
        # Encoding here keeps the in-memory twin honest: only JSON crosses, never shared objects.
        self._outbox.put_nowait(encode(frame))

    async def recv(self) -> Frame:
        if self._closed:
            raise ChannelClosed("channel is closed")
        data = await self._inbox.get()
        if data is _EOF:
            self._closed = True
            raise ChannelClosed("peer closed the channel")
        return decode(data)

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._outbox.put_nowait(_EOF)
        # Wake our own pending recv(), if any, so it ends instead of hanging.
        self._inbox.put_nowait(_EOF)


def memory_pair() -> tuple[MemoryChannel, MemoryChannel]:
    """Two connected channel ends: what one sends, the other receives."""
    a_to_b: asyncio.Queue[str | None] = asyncio.Queue()
    b_to_a: asyncio.Queue[str | None] = asyncio.Queue()
    return MemoryChannel(b_to_a, a_to_b), MemoryChannel(a_to_b, b_to_a)


# --- websockets (client side) -------------------------------------------------------


class WebsocketsChannel:
    """A channel over a ``websockets`` client connection."""

    def __init__(self, connection: ClientConnection) -> None:
        self._ws = connection

    async def send(self, frame: Frame) -> None:
        try:
            await self._ws.send(encode(frame))
        except websockets.ConnectionClosed as exc:
            raise ChannelClosed(str(exc)) from exc

    async def recv(self) -> Frame:
        try:
            data = await self._ws.recv()
        except websockets.ConnectionClosed as exc:
            raise ChannelClosed(str(exc)) from exc
        return decode(data)

    async def close(self) -> None:
        # A dead peer can make the closing handshake fail; we are leaving anyway.
        with contextlib.suppress(OSError, websockets.WebSocketException):
            await self._ws.close()


# --- Starlette (server side) --------------------------------------------------------


class StarletteChannel:
    """A channel over an accepted Starlette :class:`~starlette.websockets.WebSocket`."""

    def __init__(self, websocket: WebSocket) -> None:
        self._ws = websocket
        # the address the peer came from: a session's proxy's, when it uses one
        self.remote = websocket.client.host if websocket.client else None

    async def send(self, frame: Frame) -> None:
        try:
            await self._ws.send_text(encode(frame))
        except (WebSocketDisconnect, RuntimeError, OSError) as exc:
            # RuntimeError: Starlette's "already closed" state errors.
            raise ChannelClosed("peer is gone") from exc

    async def recv(self) -> Frame:
        try:
            message = await self._ws.receive()
        except (RuntimeError, OSError) as exc:
            raise ChannelClosed("peer is gone") from exc
        if message["type"] == "websocket.disconnect":
            raise ChannelClosed(f"peer closed the channel ({message.get('code')})")
        data = message.get("text")
        return decode(data if data is not None else message.get("bytes") or b"")

    async def close(self) -> None:
        if self._ws.application_state is WebSocketState.DISCONNECTED:
            return
        with contextlib.suppress(WebSocketDisconnect, RuntimeError, OSError):
            await self._ws.close()
