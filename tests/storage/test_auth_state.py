"""Credentials at rest: a folder per session, written atomically, never on the event loop."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path
from typing import Any

import pytest

from wagate.storage import auth_state
from wagate.storage.auth_state import FileAuthStore


async def test_each_session_has_its_own_folder(tmp_path: Path) -> None:
    store = FileAuthStore(tmp_path, "abc")
    await store.save("creds", {"x": 1})
    assert (tmp_path / "abc" / "creds.json").is_file() and await store.exists()
    assert (tmp_path / "abc" / "creds.json").stat().st_mode & 0o777 == 0o600
    assert await store.load("creds") == {"x": 1}
    await store.clear()
    assert not (tmp_path / "abc").exists() and await store.load("creds") is None
    assert not await store.exists()


async def test_a_slow_disk_does_not_stall_the_event_loop(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    disk_free = threading.Event()
    written = auth_state.write_atomic

    def slow_write(path: Path, data: Any, **kw: Any) -> None:
        assert disk_free.wait(10), "the test never freed the disk"
        written(path, data, **kw)

    monkeypatch.setattr(auth_state, "write_atomic", slow_write)
    store = FileAuthStore(tmp_path, "s1")
    saving = asyncio.create_task(store.save("creds", {"k": 1}))
    ticks = 0
    for _ in range(20):  # the loop keeps running other work while the write waits on the disk
        await asyncio.sleep(0)
        ticks += 1
    assert ticks == 20 and not saving.done()
    disk_free.set()
    await asyncio.wait_for(saving, 5)
    assert await store.load("creds") == {"k": 1}
