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

from wagate.clock import Clock
from wagate.domain.session import Session
from wagate.roles.serve import Gateway
from wagate.sandbox import SandboxNetwork
from wagate.settings import load_settings
from wagate.testing import ScriptedEngine, ScriptedLink, connected, eventually
from wagate.webhooks.events import RecordingSink

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
            transport = httpx.ASGITransport(app=gateway.app())
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


@dataclass
class SandboxRig:
    """The gateway over its in-process sandbox network: what a session sends lands in inboxes."""

    gateway: Gateway
    api: httpx.AsyncClient

    @property
    def network(self) -> SandboxNetwork:
        assert self.gateway.sandbox_network is not None
        return self.gateway.sandbox_network

    async def link(self, session_id: str = "s1", phone: str = PHONE) -> None:
        """Provision the session, scan its QR from ``phone``, wait until it can send."""
        r = await self.api.post("/api/sessions/provision", json={"id": session_id})
        assert r.status_code in (200, 201), r.text
        session = await self._until(session_id, lambda s: s.qr is not None)
        assert session.qr is not None
        await self.network.add_phone(ALICE)
        await self.network.scan(session.qr, phone)
        await self._until(session_id, lambda s: self.gateway.worker.link(session_id) is not None)

    async def _until(self, session_id: str, check: Callable[[Session], bool]) -> Session:
        deadline = time.monotonic() + 30
        while True:
            session = await self.gateway.sessions.get(session_id)
            if session is not None and check(session):
                return session
            if time.monotonic() > deadline:
                raise AssertionError(f"session {session_id} never got there: {session}")
            await asyncio.sleep(0.01)

    async def inbox_entry(self, phone: str, wa_id: str) -> dict[str, Any]:
        """The entry of message ``wa_id`` in ``phone``'s inbox, once it arrived."""
        deadline = time.monotonic() + 30
        while True:
            found = [e for e in await self.network.inbox(phone) if e["id"] == wa_id]
            if found:
                return found[0]
            if time.monotonic() > deadline:
                raise AssertionError(f"{phone} never received {wa_id}")
            await asyncio.sleep(0.01)


SandboxRigFactory = Callable[..., Awaitable[SandboxRig]]


@pytest.fixture
async def make_sandbox_rig(tmp_path: Path, database_url: str) -> AsyncIterator[SandboxRigFactory]:
    """Build a gateway with the sandbox engine; keyword arguments override settings."""
    async with contextlib.AsyncExitStack() as stack:

        async def make(**overrides: Any) -> SandboxRig:
            values: dict[str, Any] = {
                "engine": "sandbox",
                "data_dir": tmp_path / "data",
                "database_url": database_url,
                "api_key": "test-key",
                "backoff_base_ms": 10,
                "backoff_jitter_ms": 0,
                "send_interval_ms": 0,
                "send_jitter_ms": 0,
            }
            values.update(overrides)
            gateway = await stack.enter_async_context(Gateway(load_settings(**values)))
            transport = httpx.ASGITransport(app=gateway.app())
            api = await stack.enter_async_context(
                httpx.AsyncClient(
                    transport=transport, base_url="http://gw", headers={"X-Api-Key": "test-key"}
                )
            )
            return SandboxRig(gateway, api)

        yield make
