from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from wagate.api.app import create_app
from wagate.lifecycle import Gateway
from wagate.settings import Settings
from wagate.testing import ScriptedEngine


@pytest.fixture
def engine() -> ScriptedEngine:
    return ScriptedEngine()


@pytest.fixture
async def gateway(settings: Settings, engine: ScriptedEngine) -> AsyncIterator[Gateway]:
    async with Gateway(settings, engine=engine) as gw:  # type: ignore[arg-type]
        yield gw


@pytest.fixture
async def anon(gateway: Gateway) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=create_app(gateway))
    async with httpx.AsyncClient(transport=transport, base_url="http://gw") as client:
        yield client


@pytest.fixture
async def api(gateway: Gateway) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=create_app(gateway))
    headers = {"X-Api-Key": "test-key"}
    async with httpx.AsyncClient(transport=transport, base_url="http://gw", headers=headers) as c:
        yield c
