"""The engine contract runs once per engine: ``driver`` is parametrised over them.

The neonize engine runs on :class:`~tests.contract.neonize_fake.FakeGo` (its
FFI boundary replaced, all of neonize's Python real); every neonize test also
fails if the fake saw a call Go would have died of.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, TypeVar

import pytest

from tests.contract.drivers import Driver, SandboxDriver
from tests.contract.neonize_driver import NeonizeDriver
from tests.contract.neonize_fake import FakeGo, patch_ffi
from wagate.engine.base import EngineEvent, Link

T = TypeVar("T")


@pytest.fixture
def fake_go(monkeypatch: pytest.MonkeyPatch) -> Any:
    fake = FakeGo()
    patch_ffi(fake, monkeypatch.setattr)
    yield fake
    fake.close()


@pytest.fixture(params=["sandbox", "neonize"])
async def driver(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Driver]:
    made: Driver
    fake: FakeGo | None = None
    if request.param == "sandbox":
        made = SandboxDriver(tmp_path)
    else:
        fake = request.getfixturevalue("fake_go")
        made = NeonizeDriver(fake, tmp_path)
    yield made
    await made.aclose()
    if fake is not None:
        assert fake.violations == [], "calls Go would have crashed on"


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

    async def first(self, kind: type[T], within_s: float = 5.0) -> T:
        """The next event of ``kind``, skipping others (group notices, receipts…)."""
        async with asyncio.timeout(within_s):
            while True:
                event = await anext(self._it)
                if isinstance(event, kind):
                    return event

    async def rest(self, within_s: float = 5.0) -> list[EngineEvent]:
        async with asyncio.timeout(within_s):
            return [event async for event in self._it]
