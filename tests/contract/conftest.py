"""The engine contract runs once per engine: ``driver`` is parametrised over them.

The neonize engine runs on :class:`~tests.contract.neonize_fake.FakeGo` (its
FFI boundary replaced, all of neonize's Python real); every neonize test also
fails if the fake saw a call Go would have died of.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, TypeVar

import pytest

from tests.contract.drivers import Driver, SandboxDriver
from tests.contract.neonize_driver import NeonizeDriver
from tests.contract.neonize_fake import FakeGo, patch_ffi

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
