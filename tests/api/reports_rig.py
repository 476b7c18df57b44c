"""A gateway's app with workers' reports switched on, on a manual clock."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx

from wagate.api.app import create_app
from wagate.clock import ManualClock
from wagate.control.session_reports import SessionReports
from wagate.roles.serve import Gateway
from wagate.testing import RecordingOutbox, ScriptedEngine
from wagate.webhooks.seed004_signing import EventVerifier, event_headers

from ..conftest import GatewayFactory

SECRET = "the-webhook-secret"
TOKEN = "the-worker-token"


@dataclass
class ReportsApp:
    gateway: Gateway
    clock: ManualClock
    reports: SessionReports
    client: httpx.AsyncClient  # sends no key: these routes have their own credentials

    @property
    def outbox(self) -> RecordingOutbox:
        outbox = self.gateway.outbox
        assert isinstance(outbox, RecordingOutbox)
        return outbox

    async def signed(self, event: dict[str, Any], *, at: int | None = None) -> httpx.Response:
        body = json.dumps(event).encode()
        stamp = int(self.clock.now().timestamp()) if at is None else at
        headers = event_headers(SECRET, stamp, body, str(event.get("type")))
        return await self.client.post("/webhook", content=body, headers=headers)


def reports_for(gateway: Gateway, clock: ManualClock, **kw: Any) -> SessionReports:
    verifier = EventVerifier(SECRET, tolerance_s=300, clock=clock)
    options: dict[str, Any] = {"verifier": verifier, "worker_token": TOKEN} | kw
    return SessionReports(gateway.sessions, gateway.audit, clock, **options)


async def reports_app(
    gateways: GatewayFactory, clock: ManualClock, **kw: Any
) -> AsyncIterator[ReportsApp]:
    gateway = await gateways(engine=ScriptedEngine(), clock=clock, outbox_type=RecordingOutbox)
    reports = reports_for(gateway, clock, **kw)
    services = dataclasses.replace(gateway.services, reports=reports)
    app = create_app(services, api_key=gateway.api_key)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://control") as client:
        await gateway.sessions.create("s1", engine="sandbox")
        yield ReportsApp(gateway, clock, reports, client)
