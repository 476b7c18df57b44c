"""Shared fixtures: a fresh, migrated database per test, on SQLite or on PostgreSQL.

Set ``WAGATE_TEST_DATABASE_URL=postgresql://user@host:port/db`` to run the
suite on PostgreSQL: a migrated template database is made once per run and
each test gets its own copy (``CREATE DATABASE … TEMPLATE``), dropped after.
Without it every test gets a copy of a migrated SQLite file.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest

from wagate.clock import ManualClock
from wagate.roles.serve import Gateway
from wagate.settings import Settings, load_settings
from wagate.storage.db import Database, create_engine, migrate_sync
from wagate.storage.repos.audit import AuditRepo
from wagate.storage.repos.sessions import SessionRepo
from wagate.testing import ScriptedEngine

PG_URL = os.environ.get("WAGATE_TEST_DATABASE_URL")


def pytest_report_header() -> str:
    return f"wagate database: {'PostgreSQL' if PG_URL else 'SQLite'}"


def _with_db(url: str, name: str) -> str:
    base, _, _ = url.rpartition("/")
    return f"{base}/{name}"


async def _pg_admin(sql: str) -> None:
    assert PG_URL is not None
    conn = await asyncpg.connect(PG_URL.replace("postgresql+asyncpg", "postgresql"))
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


class DatabaseFactory:
    """Makes fresh migrated databases; drops (or deletes) them when the test ends."""

    def __init__(self, template: str, tmp: Path) -> None:
        self._template = template
        self._tmp = tmp
        self._made: list[str] = []

    def new(self) -> str:
        """A URL (as a user would give it in DATABASE_URL) of a new, migrated database."""
        if PG_URL:
            name = f"wagate_t_{secrets.token_hex(5)}"
            asyncio.run(_pg_admin(f'CREATE DATABASE "{name}" TEMPLATE "{self._template}"'))
            self._made.append(name)
            return _with_db(PG_URL, name)
        path = self._tmp / f"db-{secrets.token_hex(4)}.sqlite"
        shutil.copyfile(self._template, path)
        return f"sqlite:///{path}"

    def cleanup(self) -> None:
        for name in self._made:
            asyncio.run(_pg_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture(scope="session")
def db_template(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    if PG_URL:
        name = f"wagate_tpl_{os.getpid()}"
        asyncio.run(_pg_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        asyncio.run(_pg_admin(f'CREATE DATABASE "{name}"'))
        migrate_sync(_with_db(PG_URL, name).replace("postgresql://", "postgresql+asyncpg://", 1))
        yield name
        asyncio.run(_pg_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    else:
        path = tmp_path_factory.mktemp("template") / "template.sqlite"
        migrate_sync(f"sqlite+aiosqlite:///{path}")
        yield str(path)


@pytest.fixture
def databases(db_template: str, tmp_path: Path) -> Iterator[DatabaseFactory]:
    factory = DatabaseFactory(db_template, tmp_path)
    yield factory
    factory.cleanup()


@pytest.fixture
def database_url(databases: DatabaseFactory) -> str:
    return databases.new()


@pytest.fixture
def settings(tmp_path: Path, database_url: str) -> Settings:
    return load_settings(
        engine="sandbox",
        data_dir=tmp_path / "data",
        database_url=database_url,
        api_key="test-key",
        backoff_base_ms=1000,
        backoff_max_ms=30000,
    )


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
async def db(settings: Settings) -> AsyncIterator[Database]:
    database = Database(create_engine(settings.sqlalchemy_url))
    yield database
    await database.aclose()


@pytest.fixture
def session_repo(db: Database, clock: ManualClock) -> SessionRepo:
    return SessionRepo(db, clock)


@pytest.fixture
def audit_repo(db: Database, clock: ManualClock) -> AuditRepo:
    return AuditRepo(db, clock)


# --- the in-process gateway with a scripted engine, and API clients ---------------


@pytest.fixture
def engine() -> ScriptedEngine:
    return ScriptedEngine()


GatewayFactory = Callable[..., Awaitable[Gateway]]
ClientFactory = Callable[..., Awaitable[httpx.AsyncClient]]


@pytest.fixture
async def gateways(settings: Settings) -> AsyncIterator[GatewayFactory]:
    """Start gateways: ``await gateways(settings=None, **kw)``, ``kw`` as :class:`Gateway` takes
    them (``engine=``, ``clock=``, ``listeners=``, ``outbox_type=``); each is stopped at the end.
    """
    async with contextlib.AsyncExitStack() as stack:

        async def start(given: Settings | None = None, **kw: Any) -> Gateway:
            return await stack.enter_async_context(Gateway(given or settings, **kw))

        yield start


@pytest.fixture
async def api_clients(gateways: GatewayFactory) -> AsyncIterator[ClientFactory]:
    """HTTP clients of a gateway's app (in process), closed before the gateways stop.

    ``await api_clients(gw)`` sends the test key; ``key=None`` none; ``raise_app_exceptions=False``
    makes a 500 an answer to look at instead of an exception.
    """
    async with contextlib.AsyncExitStack() as stack:

        async def client(
            gateway: Gateway, *, key: str | None = "test-key", raise_app_exceptions: bool = True
        ) -> httpx.AsyncClient:
            transport = httpx.ASGITransport(
                app=gateway.app(), raise_app_exceptions=raise_app_exceptions
            )
            headers = {"X-Api-Key": key} if key is not None else {}
            made = httpx.AsyncClient(transport=transport, base_url="http://gw", headers=headers)
            return await stack.enter_async_context(made)

        yield client


@pytest.fixture
async def gateway(gateways: GatewayFactory, engine: ScriptedEngine) -> Gateway:
    return await gateways(engine=engine)


@pytest.fixture
async def anon(api_clients: ClientFactory, gateway: Gateway) -> httpx.AsyncClient:
    return await api_clients(gateway, key=None)


@pytest.fixture
async def api(api_clients: ClientFactory, gateway: Gateway) -> httpx.AsyncClient:
    return await api_clients(gateway)


# --- a real S3-compatible server -------------------------------------------------


@pytest.fixture(scope="session")
def s3_url() -> Iterator[str]:
    """CI's S3 server (``WAGATE_TEST_S3_URL``), or a moto server started for this run."""
    given = os.environ.get("WAGATE_TEST_S3_URL")
    if given:
        yield given
        return
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = Path(sys.executable).parent / "moto_server"
    proc = subprocess.Popen(
        [str(server), "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        _wait(url)
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def _wait(url: str) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            with httpx.Client(timeout=1) as client:
                client.get(url)
            return
        except httpx.HTTPError:
            time.sleep(0.1)
    raise AssertionError(f"S3 server at {url} did not start")
