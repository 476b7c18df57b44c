"""``Database.begin()`` translates a lost or unreachable database, and nothing else.

A database that cannot be reached (or went away) is :class:`StorageUnavailable`
(retry later), whatever the driver; a constraint violation is the repository's
to translate into what it means, so it passes through untouched.
"""

from __future__ import annotations

import asyncio
import shutil
import socket
import threading
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from wagate.clock import ManualClock
from wagate.errors import Conflict, StorageError, StorageUnavailable
from wagate.settings import to_async_url
from wagate.storage.db import Database, create_engine, on_commit
from wagate.storage.repos.sessions import SessionRepo
from wagate.storage.tables import audit_log, sessions
from wagate.testing import eventually

from ..conftest import PG_URL


def _closed_port() -> int:
    """A port nothing listens on (bound, then let go)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def _sqlite_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if "_connection_worker_thread" in t.name]


async def _select_one(db: Database) -> None:
    async with db.begin() as conn:
        await conn.execute(sa.text("SELECT 1"))


async def test_a_postgresql_nobody_listens_for_is_storage_unavailable() -> None:
    url = f"postgresql+asyncpg://wagate:hunter2@127.0.0.1:{_closed_port()}/wagate"
    db = Database(create_engine(url))
    try:
        with pytest.raises(StorageUnavailable) as info:
            await _select_one(db)
    finally:
        await db.aclose()
    assert isinstance(info.value, StorageError)  # storage's branch of the error tree
    assert info.value.code == "storage_unavailable"
    assert "hunter2" not in info.value.message  # the URL's password is not repeated


async def test_a_sqlite_file_whose_folder_is_gone_is_storage_unavailable(
    tmp_path: Path,
) -> None:
    before = set(_sqlite_threads())
    folder = tmp_path / "volume"
    url = f"sqlite+aiosqlite:///{folder / 'wagate.db'}"
    db = Database(create_engine(url))
    try:
        await _select_one(db)  # reachable while the volume is there
        await db.engine.dispose()  # no pooled connection keeps the old file open
        shutil.rmtree(folder)  # the volume went away
        with pytest.raises(StorageUnavailable) as info:
            await _select_one(db)
    finally:
        await db.aclose()
        # aiosqlite stops the thread of a connection that failed to open without waiting for
        # it; it must finish while this test's loop still runs, to hand its result back
        await eventually(lambda: not set(_sqlite_threads()) - before)
    assert info.value.message.startswith("database unavailable: ")
    assert isinstance(info.value.__cause__, sa.exc.OperationalError)  # kept for the log


@pytest.mark.postgres
@pytest.mark.skipif(not PG_URL, reason="needs the PostgreSQL of WAGATE_TEST_DATABASE_URL")
async def test_a_connection_lost_in_a_transaction_is_storage_unavailable(db: Database) -> None:
    with pytest.raises(StorageUnavailable):
        async with db.begin() as conn:
            pid = (await conn.execute(sa.text("SELECT pg_backend_pid()"))).scalar_one()
            async with Database(db.engine).begin() as other:  # a second pooled connection
                await other.execute(sa.text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
            await conn.execute(sa.text("SELECT 1"))
    await _select_one(db)  # the pool lets the dead connection go: the next one works


async def test_a_constraint_violation_passes_through_to_the_repository(
    db: Database, clock: ManualClock
) -> None:
    row = {"id": "s1", "status": "created", "created_at": clock.now(), "updated_at": clock.now()}
    async with db.begin() as conn:
        await conn.execute(sessions.insert().values(**row))
    with pytest.raises(IntegrityError):  # untranslated: only the repository knows what it means
        async with db.begin() as conn:
            await conn.execute(sessions.insert().values(**row))
    with pytest.raises(Conflict) as info:  # … and it does
        await SessionRepo(db, clock).create("s1", engine="sandbox")
    assert info.value.message == "session 's1' already exists"


def _seen_by_another_process(url: str) -> int:
    """How many ``audit_log`` rows a connection of its own sees now (as another process would).

    Run to its end on a thread with its own loop: the caller's loop is held, so the
    count is of this very moment.
    """
    counts: list[int] = []

    async def count() -> None:
        other = Database(create_engine(to_async_url(url)))
        try:
            async with other.begin() as conn:
                query = sa.select(sa.func.count()).select_from(audit_log)
                counts.append((await conn.execute(query)).scalar_one())
        finally:
            await other.aclose()

    thread = threading.Thread(target=asyncio.run, args=(count(),))
    thread.start()
    thread.join(timeout=30)
    assert counts, "the other connection did not answer"
    return counts[0]


async def test_a_commit_callback_runs_once_what_was_written_can_be_read(
    db: Database, clock: ManualClock, database_url: str
) -> None:
    # a dispatcher woken by it must find the rows: a wake-up before the commit is lost
    seen: list[int] = []
    entry = {"session_id": "s1", "event": "ingest", "data": {}, "created_at": clock.now()}
    async with db.begin() as conn:
        await conn.execute(audit_log.insert().values(**entry))
        on_commit(conn, lambda: seen.append(_seen_by_another_process(database_url)))
        assert seen == []
    assert seen == [1]

    with pytest.raises(RuntimeError):
        async with db.begin() as conn:
            await conn.execute(audit_log.insert().values(**entry))
            on_commit(conn, lambda: seen.append(-1))
            raise RuntimeError("rolled back")
    assert seen == [1]  # never for a transaction that did not commit
