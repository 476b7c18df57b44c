"""A proxy's health check: a SOCKS5 handshake with its credentials, then a CONNECT to a target.

The target is where sessions go: WhatsApp's web host by default, the
sandbox server in sandbox mode. A proxy that cannot reach it is as bad as
one that does not answer. ``socks5h`` lets the proxy resolve the target's
name; ``socks5`` resolves it here.
"""

from __future__ import annotations

import asyncio

from python_socks import ProxyError, ProxyTimeoutError, ProxyType
from python_socks.async_.asyncio import Proxy as SocksProxy

from wagate.control.proxy_pool import ProxyCheck
from wagate.domain.proxy import parse_proxy
from wagate.errors import InvalidInput

DEFAULT_TARGET = ("web.whatsapp.com", 443)


def socks_probe(target: tuple[str, int], timeout_s: float) -> ProxyCheck:
    host, port = target

    async def check(url: str) -> str | None:
        try:
            parsed = parse_proxy(url)
        except InvalidInput as exc:
            return exc.message
        proxy = SocksProxy.create(
            ProxyType.SOCKS5,
            parsed.host,
            parsed.port,
            username=parsed.username,
            password=parsed.password,
            rdns=parsed.scheme == "socks5h",
        )
        try:
            async with asyncio.timeout(timeout_s):
                sock = await proxy.connect(dest_host=host, dest_port=port)
        except (TimeoutError, ProxyTimeoutError):
            return f"no answer within {timeout_s:g}s (to {host}:{port} through it)"
        except ProxyError as exc:
            return f"the proxy refused: {exc}"[:300]
        except OSError as exc:
            return f"cannot reach the proxy: {exc.strerror or exc}"[:300]
        sock.close()
        return None

    return check
