"""Session credentials at rest: a folder per session, rows in the database, or memory.

Each is an :class:`~wagate.engine.base.AuthStore`. The file store keeps
``<root>/<session_id>/<name>.json``, each written atomically with the folder
fsynced (:func:`wagate.files.write_atomic`), and does its I/O in a thread so a
slow disk never stalls the event loop. The database store keeps one
``auth_state`` row per record, so any worker of a cluster can take a session
over (``AUTH_STORE=database``; it has no folder, so neonize then needs
``NEONIZE_DATABASE_URL`` for whatsmeow's own keys).
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from wagate.clock import Clock
from wagate.files import remove_tree, write_atomic
from wagate.storage.db import Database
from wagate.storage.tables import auth_state as t
from wagate.storage.upsert import insert_for


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


class DatabaseAuthStore:
    """``auth_state`` rows of one session; see the module docstring."""

    def __init__(self, db: Database, clock: Clock, session_id: str) -> None:
        self.session_id = session_id
        self._db = db
        self._clock = clock

    async def folder(self) -> Path | None:
        return None

    async def load(self, name: str) -> dict[str, Any] | None:
        query = sa.select(t.c.data).where(t.c.session_id == self.session_id, t.c.name == name)
        async with self._db.begin() as conn:
            data = await conn.scalar(query)
        return data if isinstance(data, dict) else None

    async def save(self, name: str, data: dict[str, Any]) -> None:
        values = {"data": data, "updated_at": self._clock.now()}
        async with self._db.begin() as conn:
            stmt = insert_for(conn, t).values(session_id=self.session_id, name=name, **values)
            await conn.execute(
                stmt.on_conflict_do_update(index_elements=["session_id", "name"], set_=values)
            )

    async def exists(self) -> bool:
        query = sa.select(sa.exists().where(t.c.session_id == self.session_id))
        async with self._db.begin() as conn:
            return bool(await conn.scalar(query))

    async def clear(self) -> None:
        async with self._db.begin() as conn:
            await conn.execute(t.delete().where(t.c.session_id == self.session_id))


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
