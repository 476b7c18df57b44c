"""Outbound URL guard: webhook and media URLs may not reach internal addresses.

A URL is checked by resolving its host and refusing loopback, private,
link-local (cloud metadata at 169.254.169.254), multicast, reserved and
unspecified addresses, unless the operator allows private targets
(``WAGATE_ALLOW_PRIVATE_URLS``, for webhooks into the same network).

A DNS answer can change between that check and the HTTP client's own lookup
(DNS rebinding), so the address a connection actually reached is checked too:
:func:`check_peer` on a socket address, and :func:`connect_guard`, an httpx
``trace`` extension that refuses a new connection to an internal address as
soon as it is made, before any byte of the request is sent.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import urlsplit

from wagate.errors import InvalidInput

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class InternalAddress(InvalidInput):
    """The URL (or the connection made for it) reaches an internal address."""

    def __init__(self, field: str, ip: IPAddress) -> None:
        message = f"{field} points at an internal address ({ip}); that is not allowed"
        super().__init__(field, message)
        self.ip = ip


def is_public(ip: IPAddress) -> bool:
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return not (
        ip.is_loopback
        or ip.is_private
        or ip.is_link_local
        or ip.is_multicast
        or ip.is_reserved
        or ip.is_unspecified
        or (isinstance(ip, ipaddress.IPv4Address) and ip in _CGNAT)
    )


_CGNAT = ipaddress.ip_network("100.64.0.0/10")


def parse_http_url(url: str, field: str) -> tuple[str, str, int]:
    """``(scheme, host, port)`` of an http(s) URL, or InvalidInput naming ``field``."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise InvalidInput(field, f"{field} is not a valid URL") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InvalidInput(field, f"{field} must be an http:// or https:// URL with a host")
    return parts.scheme, parts.hostname, port or (443 if parts.scheme == "https" else 80)


async def check_url(url: str, field: str, *, allow_private: bool = False) -> None:
    """Refuse URLs whose host resolves to an internal address (every address is checked)."""
    _, host, port = parse_http_url(url, field)
    if allow_private:
        return
    for ip in await _resolve(host, port, field):
        if not is_public(ip):
            raise InternalAddress(field, ip)


def check_peer(address: Any, field: str) -> None:
    """Refuse a connection whose peer (a socket address, ``(host, port, …)``) is internal."""
    if not address:
        return
    try:
        ip = ipaddress.ip_address(str(address[0]).split("%", 1)[0])
    except ValueError:
        return
    if not is_public(ip):
        raise InternalAddress(field, ip)


Trace = Callable[[str, dict[str, Any]], Awaitable[None]]


def connect_guard(field: str) -> Trace:
    """An httpx ``trace`` extension: each new TCP connection is checked by :func:`check_peer`.

    Pass it as ``extensions={"trace": connect_guard("url")}``; a connection that
    reached an internal address is closed and the request fails with
    :class:`~wagate.errors.InvalidInput` before anything is written to it.
    """

    async def trace(name: str, info: dict[str, Any]) -> None:
        if name != "connection.connect_tcp.complete":
            return
        stream = info.get("return_value")
        if stream is None:
            return
        try:
            check_peer(stream.get_extra_info("server_addr"), field)
        except InvalidInput:
            await stream.aclose()
            raise

    return trace


async def _resolve(host: str, port: int, field: str) -> list[IPAddress]:
    try:
        return [ipaddress.ip_address(host.strip("[]"))]
    except ValueError:
        pass
    loop = asyncio.get_running_loop()
    try:
        infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror:
        raise InvalidInput(field, f"{field} host {host!r} does not resolve") from None
    return [ipaddress.ip_address(info[4][0]) for info in infos]
