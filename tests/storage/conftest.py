"""A real Redis for the tests that need one, each test under its own key prefix.

``WAGATE_TEST_REDIS_URL`` names it (default ``redis://127.0.0.1:6379/0``);
the tests skip, saying so, when nothing answers there. Other suites share
that Redis: a test deletes only its own prefix's keys, never FLUSHALL.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import urlsplit

import pytest
import redis as redis_py
from redis import asyncio as aioredis

from wagate.clock import ManualClock
from wagate.storage.redis import Redis

REDIS_URL = os.environ.get("WAGATE_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


@pytest.fixture(scope="session")
def redis_url() -> str:
    try:
        with redis_py.Redis.from_url(REDIS_URL, socket_connect_timeout=2) as probe:
            probe.ping()
    except (redis_py.RedisError, OSError) as exc:
        pytest.skip(f"no Redis at {REDIS_URL} (set WAGATE_TEST_REDIS_URL): {exc}")
    return REDIS_URL


@pytest.fixture
def redis_prefix() -> str:
    return f"wagate-test-{secrets.token_hex(5)}:"


@pytest.fixture
async def raw_redis(redis_url: str, redis_prefix: str) -> AsyncIterator[aioredis.Redis]:
    """A plain client to look at (and break) what the code under test wrote; it deletes
    every key of the test's prefix at the end."""
    client = aioredis.from_url(redis_url, decode_responses=True)
    yield client
    async for key in client.scan_iter(match=f"{redis_prefix}*", count=500):
        await client.delete(key)
    await client.aclose()


@pytest.fixture
async def redis(
    redis_url: str, redis_prefix: str, clock: ManualClock, raw_redis: aioredis.Redis
) -> AsyncIterator[Redis]:
    """Our connection, under the test's prefix, named after it (to find it in CLIENT LIST)."""
    name = "wagate-test-" + redis_prefix.rstrip(":").rsplit("-", 1)[-1]
    connection = await Redis.connect(redis_url, prefix=redis_prefix, clock=clock, client_name=name)
    yield connection
    await connection.aclose()


async def snapshot(client: aioredis.Redis, prefix: str) -> dict[str, tuple[Any, bool]]:
    """Every key under ``prefix``: its value and whether it expires."""
    found: dict[str, tuple[Any, bool]] = {}
    async for key in client.scan_iter(match=f"{prefix}*", count=500):
        found[key] = (await client.get(key), await client.pttl(key) > 0)
    return found


class Relay:
    """A TCP relay to Redis that a test can cut, as if Redis went away."""

    def __init__(self) -> None:
        self._server: asyncio.Server | None = None
        self._writers: list[asyncio.StreamWriter] = []
        self._pipes: set[asyncio.Task[None]] = set()

    async def start(self, redis_url: str) -> int:
        target = urlsplit(redis_url)

        async def accept(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            up_reader, up_writer = await asyncio.open_connection(target.hostname, target.port)
            self._writers += [writer, up_writer]
            for source, sink in ((reader, up_writer), (up_reader, writer)):
                task = asyncio.create_task(_pipe(source, sink))
                self._pipes.add(task)
                task.add_done_callback(self._pipes.discard)

        self._server = await asyncio.start_server(accept, "127.0.0.1", 0)
        return int(self._server.sockets[0].getsockname()[1])

    async def cut(self) -> None:
        """Close the port and every relayed connection."""
        if self._server is not None:
            self._server.close()
        for writer in self._writers:
            writer.close()
        for task in list(self._pipes):
            task.cancel()
        await asyncio.gather(*self._pipes, return_exceptions=True)


async def _pipe(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
    with contextlib.suppress(OSError):
        while data := await source.read(65536):
            sink.write(data)
            await sink.drain()
    sink.close()


@pytest.fixture
async def relay() -> AsyncIterator[Relay]:
    made = Relay()
    yield made
    await made.cut()
