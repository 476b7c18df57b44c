"""Uplink fixtures: the control plane's app served by uvicorn on a loopback port."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass

import httpx
import pytest
import uvicorn

from wagate.api.app import create_app
from wagate.clock import ManualClock
from wagate.roles.serve import Gateway
from wagate.serving import bind
from wagate.testing import RecordingOutbox, ScriptedEngine, eventually

from ..api.reports_rig import reports_for
from ..conftest import GatewayFactory


class _Server(uvicorn.Server):
    """uvicorn's server, leaving the test process's signal handlers alone."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


@dataclass
class Control:
    """A control plane taking workers' reports over real HTTP."""

    gateway: Gateway
    url: str  # http://127.0.0.1:PORT

    @property
    def outbox(self) -> RecordingOutbox:
        outbox = self.gateway.outbox
        assert isinstance(outbox, RecordingOutbox)
        return outbox


@pytest.fixture
async def control(gateways: GatewayFactory, clock: ManualClock) -> AsyncIterator[Control]:
    gateway = await gateways(engine=ScriptedEngine(), clock=clock, outbox_type=RecordingOutbox)
    services = dataclasses.replace(gateway.services, reports=reports_for(gateway, clock))
    app = create_app(services, api_key=gateway.api_key)
    sock = bind("127.0.0.1", 0, "test")
    port = sock.getsockname()[1]
    config = uvicorn.Config(app, log_config=None, lifespan="off", access_log=False)
    server = _Server(config)
    serving = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        await eventually(lambda: server.started or serving.done(), limit_s=10)
        assert server.started, "the control plane's server did not start"
        await gateway.sessions.create("s1", engine="sandbox")
        yield Control(gateway, f"http://127.0.0.1:{port}")
    finally:
        server.should_exit = True
        with contextlib.suppress(Exception):
            await asyncio.wait_for(serving, 10)
        sock.close()


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=10) as made:
        yield made
