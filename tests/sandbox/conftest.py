"""Fixtures of the sandbox network's tests: networks on a manual clock, engines, real servers.

Networks run on the test's :class:`~wagate.clock.ManualClock` (the ``clock``
fixture): nothing expires, times out or is saved late unless the test
advances it. ``tests/engine/sandbox`` (the engine adapter's tests) shares these.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
import uvicorn
from starlette.types import ASGIApp

from tests.sandbox.support import Served, free_socket
from wagate.clock import ManualClock
from wagate.engine.base import Link
from wagate.engine.sandbox import SandboxEngine
from wagate.sandbox import SandboxNetwork, create_app
from wagate.testing import Events

NetworkFactory = Callable[..., Awaitable[SandboxNetwork]]


@pytest.fixture
async def make_network(clock: ManualClock) -> AsyncIterator[NetworkFactory]:
    """Build networks (on the test's manual clock unless told); each is closed at teardown."""
    made: list[SandboxNetwork] = []

    async def make(**kwargs: Any) -> SandboxNetwork:
        kwargs.setdefault("clock", clock)
        made.append(SandboxNetwork(**kwargs))
        return made[-1]

    yield make
    for net in made:
        await net.aclose()


@pytest.fixture
async def network(make_network: NetworkFactory) -> SandboxNetwork:
    return await make_network()


@pytest.fixture
def engine(network: SandboxNetwork) -> SandboxEngine:
    return SandboxEngine(network=network, client="test-gateway")


@pytest.fixture
def watch() -> Callable[[Link], Events]:
    """``watch(link)``: an :class:`Events` reader over the link's stream."""
    return Events


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
        async with asyncio.timeout(10):
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
