"""A gateway with a scripted engine, wired as in production, and helpers to drive sends."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from wagate.api.app import create_app
from wagate.clock import Clock
from wagate.events import RecordingSink
from wagate.lifecycle import Gateway
from wagate.settings import load_settings
from wagate.testing import ScriptedEngine, ScriptedLink, connected, eventually

PHONE = "6281234567890"  # our account
ALICE = "6281111111111"
ALICE_JID = f"{ALICE}@s.whatsapp.net"


@dataclass
class Rig:
    gateway: Gateway
    api: httpx.AsyncClient
    engine: ScriptedEngine
    sink: RecordingSink

    async def connect(self, session_id: str = "s1", phone: str = PHONE) -> ScriptedLink:
        """Provision (or restart) the session and wait until its link is live."""
        before = len(self.engine.links)
        self.engine.add([connected(phone)])
        if await self.gateway.sessions.get(session_id) is None:
            r = await self.api.post("/api/sessions/provision", json={"id": session_id})
        else:
            r = await self.api.post(f"/api/sessions/{session_id}/restart")
        assert r.status_code in (200, 201), r.text
        await eventually(
            lambda: (
                len(self.engine.links) > before
                and self.gateway.worker.link(session_id) is self.engine.links[-1]
            )
        )
        return self.engine.links[-1]

    async def create(self, session_id: str = "s1") -> None:
        """A session that exists but is not connected: sends pile up."""
        r = await self.api.post("/session/create", json={"sessionId": session_id})
        assert r.status_code == 200, r.text

    async def send(self, session_id: str = "s1", **body: Any) -> httpx.Response:
        body.setdefault("to", ALICE)
        return await self.api.post(f"/api/sessions/{session_id}/messages", json=body)

    async def get(self, message_id: int | str, session_id: str = "s1") -> dict[str, Any]:
        r = await self.api.get(f"/api/sessions/{session_id}/messages/{message_id}")
        assert r.status_code == 200, r.text
        body: dict[str, Any] = r.json()
        return body

    async def wait_status(
        self, message_id: int, status: str, session_id: str = "s1", limit_s: float = 5.0
    ) -> dict[str, Any]:
        """Poll the API (real time, bounded) until the message has ``status``."""
        deadline = time.monotonic() + limit_s
        while True:
            found = await self.get(message_id, session_id)
            if found["status"] == status:
                return found
            if time.monotonic() > deadline:
                raise AssertionError(f"message {message_id} stayed {found['status']}: {found}")
            await asyncio.sleep(0.005)


RigFactory = Callable[..., Awaitable[Rig]]


@pytest.fixture
async def make_rig(tmp_path: Path, database_url: str) -> AsyncIterator[RigFactory]:
    """Build a rig; keyword arguments override settings (``clock=`` injects a clock)."""
    async with contextlib.AsyncExitStack() as stack:

        async def make(clock: Clock | None = None, **overrides: Any) -> Rig:
            values: dict[str, Any] = {
                "data_dir": tmp_path / "data",
                "database_url": database_url,
                "api_key": "test-key",
                "backoff_base_ms": 10,
                "backoff_jitter_ms": 0,
                "send_interval_ms": 0,
                "send_jitter_ms": 0,
                "send_retry_max_ms": 20,
            }
            values.update(overrides)
            engine = ScriptedEngine()
            gateway = Gateway(load_settings(**values), engine=engine, clock=clock)  # type: ignore[arg-type]
            await stack.enter_async_context(gateway)
            sink = RecordingSink()
            gateway.sender.sink = sink
            transport = httpx.ASGITransport(app=create_app(gateway))
            api = await stack.enter_async_context(
                httpx.AsyncClient(
                    transport=transport, base_url="http://gw", headers={"X-Api-Key": "test-key"}
                )
            )
            return Rig(gateway, api, engine, sink)

        yield make


@pytest.fixture
async def rig(make_rig: RigFactory) -> Rig:
    return await make_rig()
