"""Credentials at rest: a folder per session, written atomically, never on the event loop."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path
from typing import Any

import pytest

from wagate.clock import ManualClock
from wagate.engine.base import AuthStore
from wagate.storage import auth_state
from wagate.storage.auth_state import DatabaseAuthStore, FileAuthStore, MemoryAuthStore
from wagate.storage.db import Database


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


@pytest.fixture(params=["files", "database", "memory"])
async def store(request: pytest.FixtureRequest, tmp_path: Path, db: Database) -> AuthStore:
    if request.param == "files":
        return FileAuthStore(tmp_path, "s1")
    if request.param == "database":
        return DatabaseAuthStore(db, ManualClock(), "s1")
    return MemoryAuthStore("s1")


async def test_every_store_keeps_records_per_session_until_cleared(
    store: AuthStore, tmp_path: Path, db: Database
) -> None:
    assert not await store.exists() and await store.load("creds") is None
    await store.save("creds", {"secret": "a", "n": 1})
    await store.save("creds", {"secret": "b"})  # a save replaces the record whole
    await store.save("device", {"jid": "1@s.whatsapp.net"})
    assert await store.exists()
    assert await store.load("creds") == {"secret": "b"}
    assert await store.load("device") == {"jid": "1@s.whatsapp.net"}
    await store.clear()
    assert not await store.exists() and await store.load("device") is None
