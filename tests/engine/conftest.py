"""Fixtures for the sandbox network tests: networks, engines, real servers, event readers."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import pytest
import uvicorn
from starlette.types import ASGIApp

from wagate.engine.base import EngineEvent, Link
from wagate.engine.sandbox import SandboxEngine
from wagate.sandbox import SandboxNetwork, SandboxTimings, create_app

T = TypeVar("T")

# QR codes that expire fast, for the timeout paths.
FAST = SandboxTimings(qr_first_s=0.08, qr_next_s=0.04, qr_count=6, hello_timeout_s=2.0)
# QR codes that outlive any test, so a scan never races an expiry.
PATIENT = SandboxTimings(qr_first_s=30.0, qr_next_s=30.0, qr_count=6, hello_timeout_s=2.0)


class Events:
    """Reads a link's event stream with a deadline per event, so a hang fails fast."""

    def __init__(self, link: Link) -> None:
        self._it = link.events()

    async def next(self, within_s: float = 5.0) -> EngineEvent:
        async with asyncio.timeout(within_s):
            return await anext(self._it)

    async def expect(self, kind: type[T], within_s: float = 5.0) -> T:
        event = await self.next(within_s)
        assert isinstance(event, kind), f"expected {kind.__name__}, got {event!r}"
        return event

    async def rest(self, within_s: float = 5.0) -> list[EngineEvent]:
        """Every remaining event; fails if the stream does not end in time."""
        async with asyncio.timeout(within_s):
            return [event async for event in self._it]


NetworkFactory = Callable[..., Awaitable[SandboxNetwork]]


@pytest.fixture
async def make_network() -> AsyncIterator[NetworkFactory]:
    """Build networks (PATIENT timings unless told); each is closed at teardown."""
    made: list[SandboxNetwork] = []

    async def make(**kwargs: Any) -> SandboxNetwork:
        kwargs.setdefault("timings", PATIENT)
        made.append(SandboxNetwork(**kwargs))
        return made[-1]

    yield make
    for net in made:
        await net.aclose()


@pytest.fixture
async def network(make_network: NetworkFactory) -> SandboxNetwork:
    return await make_network()


@pytest.fixture
async def fast_network(make_network: NetworkFactory) -> SandboxNetwork:
    return await make_network(timings=FAST)


@pytest.fixture
def engine(network: SandboxNetwork) -> SandboxEngine:
    return SandboxEngine(network=network, client="test-gateway")


@pytest.fixture
def watch() -> Callable[[Link], Events]:
    """``watch(link)``: an :class:`Events` reader over the link's stream."""
    return Events


def free_socket() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    return sock


@dataclass(frozen=True)
class Served:
    """A real uvicorn server on 127.0.0.1 serving an app."""

    base: str  # http://127.0.0.1:<port>
    port: int

    def ws(self, path: str = "/ws") -> str:
        return self.base.replace("http://", "ws://") + path


ServeApp = Callable[[ASGIApp], Awaitable[Served]]


@pytest.fixture
async def serve_app() -> AsyncIterator[ServeApp]:
    """Start apps on real sockets in this event loop; every one is stopped at teardown."""
    servers: list[tuple[uvicorn.Server, asyncio.Task[None]]] = []

    async def start(app: ASGIApp) -> Served:
        sock = free_socket()
        config = uvicorn.Config(
            app, lifespan="off", log_level="warning", timeout_graceful_shutdown=2
        )
        server = uvicorn.Server(config)
        task = asyncio.create_task(server.serve(sockets=[sock]))
        servers.append((server, task))
        async with asyncio.timeout(5):
            while not server.started:  # noqa: ASYNC110 - uvicorn offers no event to wait on
                await asyncio.sleep(0.005)
        port = int(sock.getsockname()[1])
        return Served(f"http://127.0.0.1:{port}", port)

    yield start
    for server, _ in servers:
        server.should_exit = True
    for _, task in servers:
        with contextlib.suppress(asyncio.CancelledError):
            await task


@pytest.fixture
async def served(network: SandboxNetwork, serve_app: ServeApp) -> Served:
    return await serve_app(create_app(network))


@pytest.fixture
def closed_port() -> int:
    """A local port nobody listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
