"""The sandbox engine: wagate's :class:`~wagate.engine.base.Engine` over the sandbox network.

``SandboxEngine(network=...)`` talks to an in-process
:class:`~wagate.engine.sandbox.network.SandboxNetwork` through a memory
channel; ``SandboxEngine(url="ws://host:port/ws")`` talks to a sandbox server
over a websocket, through the session's proxy when it has one. Either way the
frames are the same (see :mod:`wagate.engine.sandbox.network`).

Foreign failures are translated here, once: failing to reach the network is a
:class:`~wagate.errors.TransientError`, a failing proxy a
:class:`~wagate.errors.ProxyFailure` (both raised when the link opens); a
connection that dies later ends the event stream with
``Disconnected(CONNECTION_LOST)``.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from types import TracebackType
from typing import Self
from urllib.parse import urlsplit

import python_socks
import websockets
from websockets.asyncio.client import connect

from wagate.domain.session import DisconnectKind
from wagate.engine.base import (
    AuthStore,
    Connected,
    Disconnected,
    EngineEvent,
    LinkOptions,
    PairCode,
    QRCode,
)
from wagate.engine.sandbox.network import SandboxNetwork
from wagate.engine.sandbox.transport import (
    BadFrame,
    Channel,
    ChannelClosed,
    Frame,
    WebsocketsChannel,
)
from wagate.errors import ConfigError, EngineError, ProxyFailure, TransientError

log = logging.getLogger(__name__)

Opener = Callable[[LinkOptions], Awaitable[Channel]]
FrameHandler = Callable[[Frame], EngineEvent | None]

_TRANSIENT_CODES = frozenset({"unavailable", "hello_timeout"})
_PROXY_ERRORS = (
    python_socks.ProxyError,
    python_socks.ProxyConnectionError,
    python_socks.ProxyTimeoutError,
    websockets.exceptions.ProxyError,
    websockets.exceptions.InvalidProxy,
)


class SandboxEngine:
    """Links sessions to a sandbox network, in-process (``network=``) or remote (``url=``)."""

    name = "sandbox"

    def __init__(
        self,
        *,
        network: SandboxNetwork | None = None,
        url: str | None = None,
        client: str | None = None,
        device_name: str = "wagate",
        open_timeout_s: float = 10.0,
        close_timeout_s: float = 2.0,
    ) -> None:
        if (network is None) == (url is None):
            raise ConfigError("the sandbox engine needs exactly one of a network or a url")
        self._network = network
        self._url = url
        self._client = client
        self._device_name = device_name
        self._open_timeout_s = open_timeout_s
        self._close_timeout_s = close_timeout_s

    def link(self, auth: AuthStore, options: LinkOptions) -> SandboxLink:
        return SandboxLink(
            self._open,
            auth,
            options,
            client=self._client,
            device_name=self._device_name,
            open_timeout_s=self._open_timeout_s,
        )

    async def aclose(self) -> None:
        """Nothing to release: links own their channels and the network is not ours."""

    async def _open(self, options: LinkOptions) -> Channel:
        if self._network is not None:
            return self._network.open_channel()  # in-process: a proxy has nothing to carry
        assert self._url is not None
        try:
            connection = await connect(
                self._url,
                proxy=options.proxy,  # None also stops websockets reading *_PROXY from the env
                open_timeout=self._open_timeout_s,
                close_timeout=self._close_timeout_s,
            )
        except Exception as exc:
            raise _connect_error(exc, self._url, options.proxy) from exc
        return WebsocketsChannel(connection)


def _connect_error(exc: Exception, url: str, proxy: str | None) -> EngineError:
    if isinstance(exc, _PROXY_ERRORS) or (proxy is not None and isinstance(exc, TimeoutError)):
        return ProxyFailure(f"proxy {_redact(proxy)} failed to reach {url}: {exc}")
    if isinstance(exc, OSError | TimeoutError | websockets.WebSocketException):
        return TransientError(f"cannot reach the sandbox network at {url}: {exc}")
    return EngineError(f"cannot connect to the sandbox network at {url}: {exc!r}")


def _redact(proxy: str | None) -> str:
    """The proxy without its credentials, fit for a log line or an error message."""
    if proxy is None:
        return "(none)"
    parts = urlsplit(proxy)
    return f"{parts.scheme}://{parts.hostname}:{parts.port}"


class SandboxLink:
    """One session's connection to the sandbox network (see :class:`wagate.engine.base.Link`)."""

    def __init__(
        self,
        opener: Opener,
        auth: AuthStore,
        options: LinkOptions,
        *,
        client: str | None,
        device_name: str,
        open_timeout_s: float,
    ) -> None:
        self._opener = opener
        self._auth = auth
        self._options = options
        self._client = client
        self._device_name = device_name
        self._open_timeout_s = open_timeout_s
        self._channel: Channel | None = None
        self._first: Frame | None = None
        self._finished = False  # the one Disconnected was yielded, or we closed the link
        self._handlers: dict[str, FrameHandler] = {
            "qr": _qr,
            "pair_code": _pair_code,
            "connected": _connected,
            "disconnected": _disconnected,
            "paired": self._on_paired,
            "error": self._on_error,
        }

    async def __aenter__(self) -> Self:
        channel = await self._opener(self._options)
        try:
            first = await self._handshake(channel)
        except BaseException:
            await channel.close()
            raise
        self._channel, self._first = channel, first
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._finished = True
        if self._channel is not None:
            await self._channel.close()

    async def _handshake(self, channel: Channel) -> Frame:
        """Say hello and wait for the network's first answer; refusals become errors."""
        try:
            await channel.send(self._hello())
        except ChannelClosed:
            pass  # refused before our hello went out: the reason is waiting to be read
        try:
            async with asyncio.timeout(self._open_timeout_s):
                first = await channel.recv()
        except (ChannelClosed, BadFrame, TimeoutError) as exc:
            raise TransientError(f"sandbox handshake failed: {str(exc) or 'timed out'}") from exc
        if first.get("ev") == "error":
            code, message = str(first.get("code")), str(first.get("message"))
            if code in _TRANSIENT_CODES:
                raise TransientError(message)
            raise EngineError(message, code=code)
        return first

    def _hello(self) -> Frame:
        creds = self._auth.load("creds")
        if creds is not None and creds.get("engine") != "sandbox":
            log.warning("session %s: ignoring creds of another engine", self._auth.session_id)
            creds = None
        pair_phone = self._options.pair_phone
        return {
            "op": "hello",
            "session": self._auth.session_id,
            "client": self._client,
            "device_name": self._device_name,
            "creds": creds,
            "pair_phone": re.sub(r"\D", "", pair_phone) if pair_phone else None,
        }

    async def events(self) -> AsyncIterator[EngineEvent]:
        """Events until (and including) the one :class:`Disconnected`."""
        while not self._finished:
            event = await self._next_event()
            if event is not None:
                yield event

    async def _next_event(self) -> EngineEvent | None:
        frame = self._first or await self._recv()
        self._first = None
        if self._finished:  # closed by us while waiting: end quietly
            return None
        handler = self._handlers.get(str(frame.get("ev")))
        try:
            event = handler(frame) if handler is not None else None
        except (KeyError, ValueError, TypeError) as exc:
            # Only the frame's name is logged: a paired frame carries secrets.
            log.warning(
                "session %s: malformed %r frame: %r", self._auth.session_id, frame.get("ev"), exc
            )
            event = Disconnected(DisconnectKind.CONNECTION_LOST, "malformed frame from the network")
        if isinstance(event, Disconnected):
            self._finished = True
            await self._require_channel().close()
        return event

    async def _recv(self) -> Frame:
        try:
            return await self._require_channel().recv()
        except (ChannelClosed, BadFrame) as exc:
            reason = f"connection lost: {exc}" if str(exc) else "connection lost"
            return {"ev": "disconnected", "kind": DisconnectKind.CONNECTION_LOST, "reason": reason}

    def _require_channel(self) -> Channel:
        if self._channel is None:
            raise RuntimeError("the link is not open; use it as an async context manager")
        return self._channel

    async def logout(self) -> None:
        """Unlink this device; the stream then ends with ``logged_out``."""
        if self._finished:
            return
        try:
            await self._require_channel().send({"op": "logout"})
        except ChannelClosed:
            pass  # already gone: the stream reports connection_lost

    def _on_paired(self, frame: Frame) -> None:
        creds = frame["creds"]
        if not isinstance(creds, dict):
            raise TypeError("creds must be an object")
        self._auth.save("creds", creds)
        log.info("session %s: paired, creds saved", self._auth.session_id)

    def _on_error(self, frame: Frame) -> None:
        log.warning(
            "session %s: network error %s: %s",
            self._auth.session_id,
            frame.get("code"),
            frame.get("message"),
        )


def _qr(frame: Frame) -> QRCode:
    return QRCode(code=str(frame["code"]), ttl_s=float(frame["ttl"]))


def _pair_code(frame: Frame) -> PairCode:
    return PairCode(code=str(frame["code"]))


def _connected(frame: Frame) -> Connected:
    return Connected(
        jid=str(frame["jid"]),
        phone=str(frame["phone"]),
        push_name=frame.get("push_name"),
        device_name=frame.get("device_name"),
        lid=frame.get("lid"),
    )


def _disconnected(frame: Frame) -> Disconnected:
    try:
        kind = DisconnectKind(str(frame.get("kind")))
    except ValueError:
        kind = DisconnectKind.CONNECTION_LOST  # a kind we do not know yet: reconnecting is safe
    return Disconnected(kind, str(frame.get("reason", "")))
