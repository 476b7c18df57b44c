"""The sandbox engine: wagate's :class:`~wagate.engine.base.Engine` over the sandbox network.

``SandboxEngine(network=...)`` talks to an in-process
:class:`~wagate.sandbox.network.SandboxNetwork` through a memory
channel; ``SandboxEngine(url="ws://host:port/ws")`` talks to a sandbox server
over a websocket, through the session's proxy when it has one. Either way the
frames are the same (see :mod:`wagate.sandbox.network`).

Links are :class:`~wagate.engine.sandbox.link.SandboxLink`. Foreign failures
of opening are translated here, once: failing to reach the network is a
:class:`~wagate.errors.TransientError`, a failing proxy a
:class:`~wagate.errors.ProxyFailure` (both raised when the link opens); a
connection that dies later ends the event stream with
``Disconnected(CONNECTION_LOST)``.
"""

from __future__ import annotations

from urllib.parse import urlsplit

import python_socks
import websockets
from websockets.asyncio.client import connect

from wagate.engine.base import AuthStore, LinkOptions
from wagate.engine.sandbox.link import SandboxLink
from wagate.errors import ConfigError, EngineError, ProxyFailure, TransientError
from wagate.sandbox.network import SandboxNetwork
from wagate.sandbox.transport import Channel, WebsocketsChannel

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
        key: str | None = None,
        open_timeout_s: float = 10.0,
        close_timeout_s: float = 2.0,
        request_timeout_s: float = 30.0,
    ) -> None:
        if (network is None) == (url is None):
            raise ConfigError("the sandbox engine needs exactly one of a network or a url")
        self._network = network
        self._url = url
        self._client = client
        self._device_name = device_name
        self._headers = {"X-Api-Key": key} if key else None  # a keyed server's websocket
        self._open_timeout_s = open_timeout_s
        self._close_timeout_s = close_timeout_s
        self._request_timeout_s = request_timeout_s

    def link(self, auth: AuthStore, options: LinkOptions) -> SandboxLink:
        return SandboxLink(
            self._open,
            auth,
            options,
            client=self._client,
            device_name=self._device_name,
            open_timeout_s=self._open_timeout_s,
            request_timeout_s=self._request_timeout_s,
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
                additional_headers=self._headers,
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


__all__ = ["SandboxEngine", "SandboxLink"]
