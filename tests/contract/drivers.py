"""What the engine contract needs from each engine's world, and the sandbox's driver.

A driver owns an engine and the world around it: it makes a phone scan a
QR, makes phones send into the session, reads what the session sent (each
phone's inbox), creates and renames groups, marks messages read and injects
faults. The contract tests speak only this protocol.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol

from wagate.engine.base import AuthStore, Engine
from wagate.engine.sandbox import SandboxEngine
from wagate.sandbox import SandboxNetwork, SandboxTimings
from wagate.storage.auth_state import FileAuthStore

# QR codes that outlive any test, so a scan never races an expiry.
PATIENT = SandboxTimings(qr_first_s=30.0, qr_next_s=30.0, qr_count=6, hello_timeout_s=2.0)
FAST = SandboxTimings(qr_first_s=0.08, qr_next_s=0.04, qr_count=3, hello_timeout_s=2.0)


class Driver(Protocol):
    name: str
    engine: Engine

    def auth(self, session_id: str) -> AuthStore: ...

    async def scan(self, qr: str, phone: str, push_name: str | None = None) -> None: ...

    async def add_phone(self, phone: str) -> None:
        """A phone with WhatsApp (that the session may write to)."""
        ...

    async def fast_qr_engine(self) -> Engine:
        """An engine whose QR codes run out within a second."""
        ...

    async def phone_send(self, from_phone: str, to: str, **fields: Any) -> str: ...

    async def inbox(self, phone: str) -> list[dict[str, Any]]: ...

    async def blob(self, entry: dict[str, Any]) -> bytes: ...

    async def mark_read(self, phone: str, ids: list[str]) -> None: ...

    async def create_group(self, name: str, owner: str, members: list[str]) -> str: ...

    async def rename_group(self, jid: str, name: str) -> None: ...

    async def fault(self, kind: str, session: str) -> None: ...

    async def aclose(self) -> None: ...


class SandboxDriver:
    """The sandbox network in-process, through its own control methods."""

    name = "sandbox"

    def __init__(self, tmp_path: Path) -> None:
        self.root = tmp_path / "auth"
        self.network = SandboxNetwork(timings=PATIENT)
        self.engine = SandboxEngine(network=self.network, client="contract")
        self._extra: list[SandboxNetwork] = []

    def auth(self, session_id: str) -> AuthStore:
        return FileAuthStore(self.root, session_id)

    async def scan(self, qr: str, phone: str, push_name: str | None = None) -> None:
        await self.network.scan(qr, phone, push_name=push_name)

    async def add_phone(self, phone: str) -> None:
        await self.network.add_phone(phone)

    async def fast_qr_engine(self) -> Engine:
        network = SandboxNetwork(timings=FAST)
        self._extra.append(network)
        return SandboxEngine(network=network, client="contract")

    async def phone_send(self, from_phone: str, to: str, **fields: Any) -> str:
        return await self.network.phone_send(from_phone, to, **fields)

    async def inbox(self, phone: str) -> list[dict[str, Any]]:
        return await self.network.inbox(phone)

    async def blob(self, entry: dict[str, Any]) -> bytes:
        return await self.network.blob(entry["media_handle"])

    async def mark_read(self, phone: str, ids: list[str]) -> None:
        await self.network.mark_read(phone, ids)

    async def create_group(self, name: str, owner: str, members: list[str]) -> str:
        return await self.network.create_group(name, owner, members)

    async def rename_group(self, jid: str, name: str) -> None:
        await self.network.rename_group(jid, name)

    async def fault(self, kind: str, session: str) -> None:
        await self.network.fault(kind, session=session)

    async def aclose(self) -> None:
        for network in (self.network, *self._extra):
            await network.aclose()
