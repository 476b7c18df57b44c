"""API fixtures: a control plane's app that takes workers' reports."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from wagate.clock import ManualClock

from ..conftest import GatewayFactory
from .reports_rig import ReportsApp, reports_app


@pytest.fixture
async def control(gateways: GatewayFactory, clock: ManualClock) -> AsyncIterator[ReportsApp]:
    async for made in reports_app(gateways, clock):
        yield made
