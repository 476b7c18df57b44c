"""An edge worker's durable memory: one SQLite file in ``DATA_DIR`` (``edge-spool.sqlite3``).

Seed 001's edge worker has no database of its own, yet must lose nothing
while its worker-proxy is down or slow, and must never send a message twice
because an acknowledgement was lost. Two tables, written with
``synchronous=FULL`` (a row is on disk when the call returns):

``posts``
    What the worker-proxy has not taken yet: ``/inbound`` and ``/mark-sent``
    bodies, in order (``seq``) per lane: one instance's posts to one path. A
    row goes once the worker-proxy answered 2xx (or refused it for good).
``sends``
    Each queued message this worker took on, by ``(instance, message_id)``:
    ``sending`` from before the engine is asked to send it, then ``sent`` or
    ``failed`` together with its ``/mark-sent`` post, in one transaction. A
    message handed out again is never sent again; it is only acknowledged
    again. Settled rows are forgotten after ``EDGE_SENT_MEMORY_MS``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiosqlite

from wagate.errors import StorageError

_SCHEMA = """
CREATE TABLE IF NOT EXISTS posts (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    instance TEXT NOT NULL,
    path TEXT NOT NULL,
    key TEXT,
    body TEXT NOT NULL,
    created_at REAL NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    last_error TEXT
);
CREATE INDEX IF NOT EXISTS posts_by_lane ON posts (instance, path, seq);
CREATE TABLE IF NOT EXISTS sends (
    instance TEXT NOT NULL,
    message_id TEXT NOT NULL,
    state TEXT NOT NULL,
    wa_message_id TEXT,
    error TEXT,
    attempts INTEGER NOT NULL DEFAULT 0,
    updated_at REAL NOT NULL,
    PRIMARY KEY (instance, message_id)
);
"""

SENDING, SENT, FAILED = "sending", "sent", "failed"
MARK_SENT = "/mark-sent"  # the path of a send's acknowledgement


@dataclass(frozen=True, slots=True)
class Post:
    seq: int
    instance: str
    path: str
    key: str | None
    body: dict[str, Any]
    attempts: int


@dataclass(frozen=True, slots=True)
class SendRecord:
    instance: str
    message_id: str
    state: str  # sending | sent | failed
    wa_message_id: str | None
    error: str | None
    attempts: int

    @property
    def settled(self) -> bool:
        return self.state != SENDING


class EdgeSpool:
    """See the module docstring. ``async with EdgeSpool(path)`` opens (and creates) it."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._db: aiosqlite.Connection | None = None
        # one connection: a transaction must not take in another coroutine's statements
        self._lock = asyncio.Lock()

    async def __aenter__(self) -> EdgeSpool:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = await aiosqlite.connect(self.path)
            await self._db.execute("PRAGMA journal_mode=WAL")
            await self._db.execute("PRAGMA synchronous=FULL")
            await self._db.executescript(_SCHEMA)
            await self._db.commit()
        except (OSError, aiosqlite.Error) as exc:
            await self.aclose()
            raise StorageError(f"cannot open the edge spool {self.path}: {exc}") from None
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        if self._db is not None:
            db, self._db = self._db, None
            await db.close()

    # --- posts ---------------------------------------------------------------------

    async def add_post(
        self, instance: str, path: str, body: dict[str, Any], key: str | None = None
    ) -> int:
        async with self._writing() as db:
            cursor = await db.execute(
                "INSERT INTO posts (instance, path, key, body, created_at) VALUES (?, ?, ?, ?, ?)",
                (instance, path, key, _dumps(body), time.time()),
            )
            return int(cursor.lastrowid or 0)

    async def oldest(self, instance: str, path: str) -> Post | None:
        """The first post of one lane: an instance's posts to one path, in order."""
        rows = await self._read(
            "SELECT seq, instance, path, key, body, attempts FROM posts"
            " WHERE instance = ? AND path = ? ORDER BY seq LIMIT 1",
            (instance, path),
        )
        if not rows:
            return None
        seq, inst, lane_path, key, body, attempts = rows[0]
        return Post(seq, inst, lane_path, key, json.loads(body), attempts)

    async def pending_lanes(self) -> list[tuple[str, str]]:
        """Each ``(instance, path)`` with posts waiting, the longest-waiting first."""
        rows = await self._read(
            "SELECT instance, path FROM posts GROUP BY instance, path ORDER BY MIN(seq)"
        )
        return [(row[0], row[1]) for row in rows]

    async def pending(self, instance: str | None = None) -> int:
        if instance is None:
            rows = await self._read("SELECT COUNT(*) FROM posts")
        else:
            rows = await self._read("SELECT COUNT(*) FROM posts WHERE instance = ?", (instance,))
        return int(rows[0][0])

    async def has_post(self, instance: str, path: str, key: str) -> bool:
        rows = await self._read(
            "SELECT 1 FROM posts WHERE instance = ? AND path = ? AND key = ? LIMIT 1",
            (instance, path, key),
        )
        return bool(rows)

    async def done(self, seq: int) -> None:
        async with self._writing() as db:
            await db.execute("DELETE FROM posts WHERE seq = ?", (seq,))

    async def failed_attempt(self, seq: int, error: str) -> None:
        async with self._writing() as db:
            await db.execute(
                "UPDATE posts SET attempts = attempts + 1, last_error = ? WHERE seq = ?",
                (error[:500], seq),
            )

    # --- sends ---------------------------------------------------------------------

    async def send_of(self, instance: str, message_id: str) -> SendRecord | None:
        rows = await self._read(
            "SELECT instance, message_id, state, wa_message_id, error, attempts FROM sends"
            " WHERE instance = ? AND message_id = ?",
            (instance, message_id),
        )
        return SendRecord(*rows[0]) if rows else None

    async def begin_send(self, instance: str, message_id: str) -> int:
        """Record that the engine is about to be asked; the attempts so far, this one included."""
        async with self._writing() as db:
            await db.execute(
                "INSERT INTO sends (instance, message_id, state, attempts, updated_at)"
                " VALUES (?, ?, ?, 1, ?) ON CONFLICT (instance, message_id) DO UPDATE"
                " SET attempts = sends.attempts + 1, updated_at = excluded.updated_at"
                " WHERE sends.state = 'sending'",
                (instance, message_id, SENDING, time.time()),
            )
            cursor = await db.execute(
                "SELECT attempts FROM sends WHERE instance = ? AND message_id = ?",
                (instance, message_id),
            )
            row = await cursor.fetchone()
            return int(row[0]) if row else 1

    async def settle_send(
        self,
        instance: str,
        message_id: str,
        *,
        state: str,
        wa_message_id: str | None,
        error: str | None,
        mark: dict[str, Any],
        path: str,
    ) -> None:
        """The send's outcome and its acknowledgement to post, in one transaction."""
        now = time.time()
        async with self._writing() as db:
            await db.execute(
                "INSERT INTO sends (instance, message_id, state, wa_message_id, error, attempts,"
                " updated_at) VALUES (?, ?, ?, ?, ?, 1, ?) ON CONFLICT (instance, message_id)"
                " DO UPDATE SET state = excluded.state, wa_message_id = excluded.wa_message_id,"
                " error = excluded.error, updated_at = excluded.updated_at",
                (instance, message_id, state, wa_message_id, error, now),
            )
            await db.execute(
                "INSERT INTO posts (instance, path, key, body, created_at) VALUES (?, ?, ?, ?, ?)",
                (instance, path, message_id, _dumps(mark), now),
            )

    async def touch_send(self, instance: str, message_id: str) -> None:
        """The message was handed out again: remember it from now on."""
        async with self._writing() as db:
            await db.execute(
                "UPDATE sends SET updated_at = ? WHERE instance = ? AND message_id = ?",
                (time.time(), instance, message_id),
            )

    async def forget_sends(self, older_than_s: float) -> int:
        """Drop settled sends not touched for ``older_than_s`` seconds whose acknowledgement
        was taken (one still waiting to be posted keeps its send remembered)."""
        async with self._writing() as db:
            cursor = await db.execute(
                "DELETE FROM sends WHERE state != 'sending' AND updated_at < ? AND NOT EXISTS"
                " (SELECT 1 FROM posts WHERE posts.instance = sends.instance"
                " AND posts.key = sends.message_id AND posts.path = ?)",
                (time.time() - older_than_s, MARK_SENT),
            )
            return cursor.rowcount

    # --- plumbing ------------------------------------------------------------------

    def _conn(self) -> aiosqlite.Connection:
        if self._db is None:
            raise StorageError("the edge spool is closed")
        return self._db

    async def _read(self, sql: str, args: tuple[Any, ...] = ()) -> list[Any]:
        async with self._lock:
            try:
                cursor = await self._conn().execute(sql, args)
                return list(await cursor.fetchall())
            except aiosqlite.Error as exc:
                raise StorageError(f"the edge spool {self.path}: {exc}") from None

    @contextlib.asynccontextmanager
    async def _writing(self) -> AsyncIterator[aiosqlite.Connection]:
        """One transaction, alone on the connection: committed, or rolled back (StorageError)."""
        async with self._lock:
            db = self._conn()
            try:
                yield db
                await db.commit()
            except aiosqlite.Error as exc:
                await db.rollback()
                raise StorageError(f"the edge spool {self.path}: {exc}") from None
            except BaseException:
                await db.rollback()
                raise


def _dumps(body: dict[str, Any]) -> str:
    return json.dumps(body, separators=(",", ":"), ensure_ascii=False)
