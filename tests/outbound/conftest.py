"""A gateway with a scripted engine, wired as in production, and helpers to drive sends.

Every rig's outbox records the events written (``rig.outbox.of(name)``) and
can be told to fail the next writes of an event (``rig.outbox.fail(name)``):
the database going away between a status and its event.
"""

from __future__ import annotations

import contextlib
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import httpx
import pytest

from wagate.clock import Clock
from wagate.domain.event import OutboxEvent
from wagate.domain.session import Session, SessionState
from wagate.roles.serve import Gateway
from wagate.sandbox import SandboxNetwork
from wagate.settings import load_settings
from wagate.storage.db import Database
from wagate.testing import (
    RecordingOutbox,
    ScriptedEngine,
    ScriptedLink,
    connected,
    eventually,
    until,
)

PHONE = "6281234567890"  # our account
ALICE = "6281111111111"
ALICE_JID = f"{ALICE}@s.whatsapp.net"


class FlakyOutbox(RecordingOutbox):
    """Records every event; the next ``fail(name, times)`` writes of an event raise."""

    def __init__(self, db: Database, clock: Clock, **kw: Any) -> None:
        super().__init__(db, clock, **kw)
        self.failing: Counter[str] = Counter()

    def fail(self, name: str, times: int = 1) -> None:
        self.failing[name] += times

    async def write_in(self, conn: Any, events: Sequence[OutboxEvent]) -> int:
        for event in events:
            if self.failing[event.name] > 0:
                self.failing[event.name] -= 1
                raise ConnectionError(f"the database went away while recording {event.name}")
        return await super().write_in(conn, events)


@dataclass
class Rig:
    gateway: Gateway
    api: httpx.AsyncClient
    engine: ScriptedEngine

    @property
    def outbox(self) -> FlakyOutbox:
        return cast(FlakyOutbox, self.gateway.outbox)

    async def connect(self, session_id: str = "s1", phone: str = PHONE) -> ScriptedLink:
        """Provision (or restart) the session and wait until its link is live."""
        before = len(self.engine.links)
        self.engine.add([connected(phone)])
        if await self.gateway.sessions.get(session_id) is None:
            r = await self.api.post("/api/sessions/provision", json={"id": session_id})
        else:
            r = await self.api.post(f"/api/sessions/{session_id}/restart")
        assert r.status_code in (200, 201), r.text
        # the runner of that new link reads connected once the sender holds the link
        await eventually(
            lambda: (
                len(self.engine.links) > before
                and self.gateway.worker.runner_state(session_id) is SessionState.CONNECTED
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
        found: dict[str, Any] = {}

        async def reached() -> bool:
            found.update(await self.get(message_id, session_id))
            return found["status"] == status

        try:
            await until(reached, limit_s)
        except TimeoutError:
            stayed = f"message {message_id} stayed {found.get('status')}: {found}"
            raise AssertionError(stayed) from None
        return found


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
            gateway = Gateway(
                load_settings(**values),
                engine=engine,  # type: ignore[arg-type]
                clock=clock,
                outbox_type=FlakyOutbox,
            )
            await stack.enter_async_context(gateway)
            transport = httpx.ASGITransport(app=gateway.app())
            api = await stack.enter_async_context(
                httpx.AsyncClient(
                    transport=transport, base_url="http://gw", headers={"X-Api-Key": "test-key"}
                )
            )
            return Rig(gateway, api, engine)

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
        connected = SessionState.CONNECTED
        await self._until(session_id, lambda s: self.gateway.worker.runner_state(s.id) is connected)

    async def _until(self, session_id: str, check: Callable[[Session], bool]) -> Session:
        seen: list[Session | None] = [None]

        async def there() -> bool:
            seen[0] = await self.gateway.sessions.get(session_id)
            return seen[0] is not None and check(seen[0])

        try:
            await until(there, limit_s=30)
        except TimeoutError:
            raise AssertionError(f"session {session_id} never got there: {seen[0]}") from None
        assert seen[0] is not None
        return seen[0]

    async def inbox_entry(self, phone: str, wa_id: str) -> dict[str, Any]:
        """The entry of message ``wa_id`` in ``phone``'s inbox, once it arrived."""
        found: list[dict[str, Any]] = []

        async def arrived() -> bool:
            found[:] = [e for e in await self.network.inbox(phone) if e["id"] == wa_id]
            return bool(found)

        try:
            await until(arrived, limit_s=30)
        except TimeoutError:
            raise AssertionError(f"{phone} never received {wa_id}") from None
        return found[0]


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
