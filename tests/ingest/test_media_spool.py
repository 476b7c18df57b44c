"""Media is spooled to disk from a thread: a slow disk never stalls the session's event loop."""

from __future__ import annotations

import asyncio
import hashlib
import os
import threading
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from wagate.ingest import media
from wagate.ingest.media import spool


async def _chunks(data: bytes, size: int = 64 * 1024) -> AsyncIterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start : start + size]


async def test_a_slow_disk_does_not_stall_the_event_loop(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    disk_free = threading.Event()
    opened = os.fdopen

    class SlowFile:
        def __init__(self, fd: int, mode: str) -> None:
            self._file = opened(fd, mode)

        def writelines(self, parts: Any) -> None:
            assert disk_free.wait(10), "the test never freed the disk"
            self._file.writelines(parts)

        def __enter__(self) -> SlowFile:
            return self

        def __exit__(self, *exc: object) -> None:
            self._file.close()

    monkeypatch.setattr(media.os, "fdopen", SlowFile)
    data = os.urandom(3 * 1024 * 1024)
    spooling = asyncio.create_task(spool(_chunks(data), 25 * 1024 * 1024, tmp_path))
    for _ in range(50):  # the loop keeps running other work while the write waits on the disk
        await asyncio.sleep(0)
    assert not spooling.done()
    disk_free.set()
    spooled = await asyncio.wait_for(spooling, 10)
    assert spooled.size == len(data) and spooled.sha256 == hashlib.sha256(data).hexdigest()
    assert spooled.path.read_bytes() == data
