"""The database handle: one async engine per process, migrations on demand."""

from __future__ import annotations

import asyncio
import logging
import weakref
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import event
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from wagate.errors import ConfigError, StorageUnavailable

log = logging.getLogger(__name__)

MIGRATIONS = Path(__file__).parent / "migrations"


def create_engine(url: str, *, sqlite_busy_timeout_s: float = 30.0) -> AsyncEngine:
    """An async engine; SQLite gets WAL, a busy timeout and foreign keys."""
    if url.startswith("sqlite"):
        _ensure_sqlite_folder(url)
        engine = create_async_engine(url, connect_args={"timeout": sqlite_busy_timeout_s})
        busy_ms = round(sqlite_busy_timeout_s * 1000)
        event.listen(engine.sync_engine, "connect", _sqlite_pragmas(busy_ms))
        return engine
    return create_async_engine(url, pool_pre_ping=True, pool_size=10, max_overflow=10)


def _ensure_sqlite_folder(url: str) -> None:
    path = url.split(":///", 1)[1] if ":///" in url else ""
    if path and path != ":memory:":
        Path(path).parent.mkdir(parents=True, exist_ok=True)


def _sqlite_pragmas(busy_timeout_ms: int) -> Callable[[Any, Any], None]:
    def on_connect(dbapi_conn: Any, _record: Any) -> None:
        cursor = dbapi_conn.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute(f"PRAGMA busy_timeout={int(busy_timeout_ms)}")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    return on_connect


class Database:
    """The process's database: an engine plus short transactions."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    @asynccontextmanager
    async def begin(self) -> AsyncIterator[AsyncConnection]:
        """One transaction; a lost or unreachable database is :class:`StorageUnavailable`.

        Constraint violations (``IntegrityError``) pass as they are: the
        repository that caused one translates it into what it means.
        """
        committed: list[Callable[[], None]] = []
        try:
            async with self.engine.begin() as conn:
                _after_commit[conn] = committed
                try:
                    yield conn
                finally:
                    del _after_commit[conn]
        except (OperationalError, InterfaceError) as exc:
            raise StorageUnavailable(f"database unavailable: {_short(exc)}") from exc
        except DBAPIError as exc:
            if not exc.connection_invalidated:
                raise
            raise StorageUnavailable(f"database connection lost: {_short(exc)}") from exc
        except (OSError, TimeoutError) as exc:
            raise StorageUnavailable(f"database unreachable: {type(exc).__name__}") from exc
        for callback in committed:  # the commit is done: what it wrote is there to be read
            callback()

    async def ping(self) -> None:
        async with self.engine.connect() as conn:
            await conn.exec_driver_sql("SELECT 1")

    async def aclose(self) -> None:
        await self.engine.dispose()


def alembic_config(url: str) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.attributes["url"] = url
    return cfg


def migrate_sync(url: str, revision: str = "head") -> None:
    """Upgrade the schema (blocking; runs Alembic's own event loop)."""
    command.upgrade(alembic_config(url), revision)


async def migrate(url: str, revision: str = "head") -> None:
    """Upgrade the schema to ``revision``; a database that cannot be reached is a ConfigError."""
    try:
        await asyncio.to_thread(migrate_sync, url, revision)
    except (OperationalError, DBAPIError, OSError) as exc:
        raise ConfigError(f"cannot migrate the database: {_short(exc)}") from None


def _short(exc: BaseException) -> str:
    text = str(getattr(exc, "orig", None) or exc).strip().splitlines()
    return text[0][:200] if text else type(exc).__name__


# the callbacks of each open transaction of :meth:`Database.begin`, run once it committed
_after_commit: weakref.WeakKeyDictionary[AsyncConnection, list[Callable[[], None]]] = (
    weakref.WeakKeyDictionary()
)


def on_commit(conn: AsyncConnection, callback: Callable[[], None]) -> None:
    """Call ``callback`` once, right after ``conn``'s transaction (of :meth:`Database.begin`)
    has committed; never if it rolls back.

    Not SQLAlchemy's ``commit`` event: that fires before the commit is sent, when
    another connection cannot see the rows yet.
    """
    try:
        _after_commit[conn].append(callback)
    except KeyError:
        raise RuntimeError("on_commit needs a transaction of Database.begin()") from None
