"""Sessions reach the sandbox through their SOCKS5 proxy, and proxy failures say so."""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import struct
from collections.abc import AsyncIterator

import pytest

from wagate.domain.session import DisconnectKind
from wagate.engine.base import Connected, Disconnected, LinkOptions, QRCode
from wagate.engine.sandbox import SandboxEngine
from wagate.errors import ProxyFailure
from wagate.storage.auth_state import MemoryAuthStore

PHONE = "15550001111"


class Socks5Proxy:
    """A tiny SOCKS5 server: no auth, CONNECT only; can refuse or cut every tunnel."""

    def __init__(self, *, refuse: bool = False) -> None:
        self.refuse = refuse
        self.targets: list[tuple[str, int]] = []
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> int:
        self._server = await asyncio.start_server(self._client, "127.0.0.1", 0)
        return int(self._server.sockets[0].getsockname()[1])

    async def stop(self) -> None:
        assert self._server is not None
        self._server.close()
        self.cut()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._server.wait_closed()

    def cut(self) -> None:
        """Kill every open tunnel, as a proxy that dies would."""
        for writer in list(self._writers):
            writer.transport.abort()

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        self._writers.add(writer)
        try:
            await self._tunnel(reader, writer)
        except (OSError, asyncio.IncompleteReadError):
            pass
        finally:
            self._tasks.discard(task)
            self._writers.discard(writer)
            writer.close()

    async def _tunnel(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        _, n_methods = await reader.readexactly(2)
        await reader.readexactly(n_methods)
        writer.write(b"\x05\x00")
        _, command, _, atyp = await reader.readexactly(4)
        host = await _read_host(reader, atyp)
        (port,) = struct.unpack("!H", await reader.readexactly(2))
        self.targets.append((host, port))
        if self.refuse or command != 1:
            writer.write(b"\x05\x05\x00\x01" + bytes(6))  # connection refused
            return
        up_reader, up_writer = await asyncio.open_connection(host, port)
        self._writers.add(up_writer)
        writer.write(b"\x05\x00\x00\x01" + bytes(6))
        await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))


async def _read_host(reader: asyncio.StreamReader, atyp: int) -> str:
    if atyp == 1:
        return str(ipaddress.IPv4Address(await reader.readexactly(4)))
    if atyp == 3:
        (size,) = await reader.readexactly(1)
        return (await reader.readexactly(size)).decode("ascii")
    return str(ipaddress.IPv6Address(await reader.readexactly(16)))


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    with contextlib.suppress(OSError):
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    writer.close()


@pytest.fixture
async def proxy() -> AsyncIterator[tuple[Socks5Proxy, int]]:
    server = Socks5Proxy()
    port = await server.start()
    yield server, port
    await server.stop()


@pytest.mark.parametrize("scheme", ["socks5", "socks5h"])
async def test_a_session_links_through_its_socks5_proxy(scheme, proxy, network, served, watch):
    server, proxy_port = proxy
    engine = SandboxEngine(url=f"ws://localhost:{served.port}/ws")
    options = LinkOptions(proxy=f"{scheme}://127.0.0.1:{proxy_port}")
    async with engine.link(MemoryAuthStore("s1"), options) as link:
        events = watch(link)
        qr = await events.expect(QRCode)
        await network.scan(qr.code, PHONE)
        await events.expect(Connected)
    (host, port) = server.targets[0]
    assert port == served.port
    # socks5h leaves the name to the proxy; socks5 resolves it locally.
    assert host == ("localhost" if scheme == "socks5h" else "127.0.0.1")


async def test_a_proxy_that_is_not_there_is_a_proxy_failure(served, closed_port) -> None:
    engine = SandboxEngine(url=served.ws())
    options = LinkOptions(proxy=f"socks5://user:pw@127.0.0.1:{closed_port}")
    with pytest.raises(ProxyFailure) as failure:
        async with engine.link(MemoryAuthStore("s1"), options):
            pass
    assert "pw" not in failure.value.message, "proxy credentials stay out of messages"


async def test_a_proxy_that_refuses_the_tunnel_is_a_proxy_failure(served) -> None:
    server = Socks5Proxy(refuse=True)
    port = await server.start()
    try:
        engine = SandboxEngine(url=served.ws())
        with pytest.raises(ProxyFailure):
            async with engine.link(
                MemoryAuthStore("s1"), LinkOptions(proxy=f"socks5://127.0.0.1:{port}")
            ):
                pass
        assert server.targets, "the proxy was asked"
    finally:
        await server.stop()


async def test_a_proxy_dying_mid_stream_is_a_lost_connection(proxy, network, served, watch):
    server, proxy_port = proxy
    engine = SandboxEngine(url=served.ws())
    options = LinkOptions(proxy=f"socks5h://127.0.0.1:{proxy_port}")
    async with engine.link(MemoryAuthStore("s1"), options) as link:
        events = watch(link)
        await events.expect(QRCode)
        server.cut()
        (ended,) = await events.rest()
    assert isinstance(ended, Disconnected) and ended.kind is DisconnectKind.CONNECTION_LOST
