"""Session credentials at rest: a folder per session, or (for tests) memory.

Both are :class:`~wagate.engine.base.AuthStore` implementations. The file
store keeps ``<root>/<session_id>/<name>.json``, each written atomically with
the folder fsynced (:func:`wagate.files.write_atomic`), and does its I/O in a
thread so a slow disk never stalls the event loop.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

from wagate.files import remove_tree, write_atomic


class FileAuthStore:
    """``<root>/<session_id>/<name>.json`` files; see the module docstring."""

    def __init__(self, root: Path, session_id: str) -> None:
        self.session_id = session_id
        self._dir = root / session_id

    async def folder(self) -> Path:
        await asyncio.to_thread(self._dir.mkdir, parents=True, exist_ok=True)
        return self._dir

    async def load(self, name: str) -> dict[str, Any] | None:
        return await asyncio.to_thread(self._load, name)

    def _load(self, name: str) -> dict[str, Any] | None:
        try:
            data = json.loads((self._dir / f"{name}.json").read_text("utf-8"))
        except FileNotFoundError:
            return None
        return data if isinstance(data, dict) else None

    async def save(self, name: str, data: dict[str, Any]) -> None:
        body = json.dumps(data).encode("utf-8")
        await asyncio.to_thread(write_atomic, self._dir / f"{name}.json", body, mode=0o600)

    async def exists(self) -> bool:
        return await asyncio.to_thread(self._exists)

    def _exists(self) -> bool:
        return self._dir.is_dir() and any(self._dir.iterdir())

    async def clear(self) -> None:
        await asyncio.to_thread(remove_tree, self._dir)


class MemoryAuthStore:
    """In-memory twin of :class:`FileAuthStore`, for tests."""

    def __init__(self, session_id: str) -> None:
        self.session_id = session_id
        self.files: dict[str, dict[str, Any]] = {}

    async def folder(self) -> Path | None:
        return None

    async def load(self, name: str) -> dict[str, Any] | None:
        data = self.files.get(name)
        return dict(data) if data is not None else None

    async def save(self, name: str, data: dict[str, Any]) -> None:
        self.files[name] = dict(data)

    async def exists(self) -> bool:
        return bool(self.files)

    async def clear(self) -> None:
        self.files.clear()
