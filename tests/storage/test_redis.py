"""Redis: the key names (pure), seed 004's keys as written, liveness, the bus, failures."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import pytest
from redis import asyncio as aioredis

from tests.storage.conftest import Relay, snapshot
from wagate.clock import ManualClock
from wagate.domain.session import Session, SessionState
from wagate.errors import ConfigError, InvalidInput, StorageUnavailable
from wagate.storage.redis import Redis, RedisKeys

WAIT_S = 10.0  # a generous bound on anything that should happen at once


# --- key names ------------------------------------------------------------------------


def test_keys_are_seed_004s_verbatim_without_a_prefix() -> None:
    k = RedisKeys()
    assert k.session_status("s1") == "session:s1:status"
    assert k.session_phone("s1") == "session:s1:phone"
    assert k.session_proxy("s1") == "session:s1:proxy"
    assert k.session_qr("s1") == "session:s1:qr"
    assert k.session_lock("s1") == "session:s1:lock"
    assert k.session_created("s1") == "session:s1:created"
    assert k.session_last_ping("s1") == "session:s1:lastPing"
    assert k.phone_proxy("6281234567890") == "phone:6281234567890:proxy"
    assert k.phone_session("6281234567890") == "phone:6281234567890:session"
    assert k.proxy_status("socks5h://p:1080") == "proxy:socks5h://p:1080:status"
    assert k.proxy_sessions("socks5h://p:1080") == "proxy:socks5h://p:1080:sessions"
    assert k.worker_alive("w1") == "worker:w1:alive"
    assert k.session_changes() == "session-changes"
    assert k.worker_wake("w1") == "worker:w1:wake"


def test_every_name_sits_behind_the_prefix() -> None:
    k = RedisKeys("prod:")
    names = [
        *k.session_keys("s1"),
        k.phone_proxy("1"),
        k.phone_session("1"),
        k.proxy_status("u"),
        k.proxy_sessions("u"),
        k.worker_alive("w"),
        k.session_changes(),
        k.worker_wake("w"),
    ]
    assert len(k.session_keys("s1")) == 7
    assert all(name.startswith("prod:") for name in names)
    assert RedisKeys().session_keys("s1") == [name[len("prod:") :] for name in names[:7]]


def test_names_read_back_and_patterns_escape_the_prefix() -> None:
    k = RedisKeys("a*[b]:")
    assert k.session_of(k.session_last_ping("s.1")) == "s.1"
    assert k.session_of(k.session_status("s.1")) == "s.1"
    assert k.session_of("a*[b]:session:s1:other") is None
    assert k.session_of(RedisKeys().session_status("s1")) is None  # another prefix
    assert k.phone_of(k.phone_proxy("123")) == "123"
    assert k.phone_of(k.phone_session("123")) == "123"
    assert k.proxy_of(k.proxy_sessions("socks5h://u:p@h:1")) == "socks5h://u:p@h:1"
    assert k.proxy_of(k.proxy_status("socks5h://h:1")) is None
    assert k.worker_of(k.worker_alive("w-1")) == "w-1"
    assert k.worker_of(k.worker_wake("w-1")) is None
    assert k.session_pattern() == r"a\*\[b\]:session:*"
    assert k.alive_pattern() == r"a\*\[b\]:worker:*:alive"


# --- seed 004's keys ------------------------------------------------------------------


def _session(clock: ManualClock, **kw: Any) -> Session:
    now = clock.now()
    values: dict[str, Any] = {
        "id": "s1",
        "status": SessionState.QR,
        "engine": "sandbox",
        "phone": "6281234567890",
        "proxy": "socks5h://proxy-a:1080",
        "qr": "2@ABC",
        "qr_expires_at": now + timedelta(seconds=60),
        "created_at": now - timedelta(minutes=5),
        **kw,
    }
    return Session(**values)


def _ms(clock: ManualClock, **delta: float) -> str:
    return str(round((clock.now() + timedelta(**delta)).timestamp() * 1000))


async def test_a_session_is_written_as_seed_004s_keys(
    redis: Redis, raw_redis: aioredis.Redis, redis_prefix: str, clock: ManualClock
) -> None:
    await redis.write_session(_session(clock), owner="worker-1", last_ping_ms=1234)

    p = redis_prefix
    assert await snapshot(raw_redis, p) == {
        f"{p}session:s1:status": ("qr_ready", False),
        f"{p}session:s1:phone": ("6281234567890", False),
        f"{p}session:s1:proxy": ("socks5h://proxy-a:1080", False),
        f"{p}session:s1:qr": ("2@ABC", True),
        f"{p}session:s1:lock": ("worker-1", False),
        f"{p}session:s1:created": (_ms(clock, minutes=-5), False),
        f"{p}session:s1:lastPing": ("1234", False),
        f"{p}phone:6281234567890:session": ("s1", False),
        f"{p}phone:6281234567890:proxy": ("socks5h://proxy-a:1080", False),
    }


async def test_the_qr_expires_with_it(
    redis: Redis, raw_redis: aioredis.Redis, clock: ManualClock
) -> None:
    await redis.write_session(_session(clock))
    ttl = await raw_redis.pttl(redis.keys.session_qr("s1"))
    assert 59_000 < ttl <= 60_000

    await clock.advance(61)  # the row still holds the QR, but it is no longer valid
    await redis.write_session(_session(clock, qr_expires_at=clock.now() - timedelta(seconds=1)))
    assert await raw_redis.exists(redis.keys.session_qr("s1")) == 0


async def test_a_rewrite_mirrors_the_row_exactly(
    redis: Redis, raw_redis: aioredis.Redis, redis_prefix: str, clock: ManualClock
) -> None:
    await redis.write_session(_session(clock), owner="worker-1")
    connected = _session(
        clock, status=SessionState.CONNECTED, qr=None, qr_expires_at=None, proxy=None
    )
    await redis.write_session(connected, last_ping_ms=99)

    keys = await snapshot(raw_redis, redis_prefix)
    p = f"{redis_prefix}session:s1:"
    assert keys[p + "status"] == ("connected", False)
    assert keys[p + "lastPing"] == ("99", False)
    for gone in ("qr", "lock", "proxy"):
        assert p + gone not in keys
    assert f"{redis_prefix}phone:6281234567890:proxy" not in keys


async def test_the_last_ping_falls_back_to_the_row_and_is_kept_when_unknown(
    redis: Redis, raw_redis: aioredis.Redis, clock: ManualClock
) -> None:
    key = redis.keys.session_last_ping("s1")
    await redis.set_last_ping("s1", 555)
    await redis.write_session(_session(clock))
    assert await raw_redis.get(key) == "555"

    await redis.write_session(_session(clock, last_ping_at=clock.now()))
    assert await raw_redis.get(key) == _ms(clock)


async def test_the_phone_is_the_connected_number_first(
    redis: Redis, raw_redis: aioredis.Redis, clock: ManualClock
) -> None:
    await redis.write_session(_session(clock, phone=None, phone_number="447700900123"))
    assert await raw_redis.get(redis.keys.session_phone("s1")) == "447700900123"
    assert await raw_redis.get(redis.keys.phone_session("447700900123")) == "s1"


async def test_forget_deletes_the_session_and_only_its_own_phone_mapping(
    redis: Redis, raw_redis: aioredis.Redis, redis_prefix: str, clock: ManualClock
) -> None:
    await redis.write_session(_session(clock), owner="w")
    await redis.forget_session("s1", None)  # the phone comes from session:s1:phone
    assert await snapshot(raw_redis, redis_prefix) == {}

    await redis.write_session(_session(clock))
    await redis.map_phone("6281234567890", session_id="s2", proxy="socks5h://b:1")
    await redis.forget_session("s1", "6281234567890")
    assert await snapshot(raw_redis, redis_prefix) == {
        f"{redis_prefix}phone:6281234567890:session": ("s2", False),
        f"{redis_prefix}phone:6281234567890:proxy": ("socks5h://b:1", False),
    }


async def test_phone_and_proxy_keys(
    redis: Redis, raw_redis: aioredis.Redis, redis_prefix: str
) -> None:
    await redis.map_phone("123456789", session_id="s9", proxy=None)
    await redis.set_proxy("socks5h://p:1", status="bad", sessions=3)
    await redis.set_proxy_load("socks5h://p:1", 2)  # keeps the status
    await redis.set_proxy_load("socks5h://q:1", 1)  # a new proxy is active

    p = redis_prefix
    assert await snapshot(raw_redis, p) == {
        f"{p}phone:123456789:session": ("s9", False),
        f"{p}proxy:socks5h://p:1:status": ("bad", False),
        f"{p}proxy:socks5h://p:1:sessions": ("2", False),
        f"{p}proxy:socks5h://q:1:status": ("active", False),
        f"{p}proxy:socks5h://q:1:sessions": ("1", False),
    }
    assert await redis.phone_numbers() == {"123456789"}
    assert await redis.proxy_urls() == {"socks5h://p:1", "socks5h://q:1"}
    with pytest.raises(InvalidInput) as bad:
        await redis.set_proxy("socks5h://p:1", status="broken", sessions=1)
    assert bad.value.field == "status"


# --- liveness -------------------------------------------------------------------------


async def test_liveness_keys_expire_and_are_listed(redis: Redis, raw_redis: aioredis.Redis) -> None:
    await redis.mark_alive("w1", 30)
    await redis.mark_alive("w2", 0.2)
    assert await redis.alive_workers() == {"w1", "w2"}
    ttl = await raw_redis.pttl(redis.keys.worker_alive("w1"))
    assert 29_000 < ttl <= 30_000

    await _until(lambda: _absent(raw_redis, redis.keys.worker_alive("w2")))  # Redis expired it
    assert await redis.alive_workers() == {"w1"}
    await redis.drop_alive("w1")
    assert await redis.alive_workers() == set()


# --- the bus --------------------------------------------------------------------------


async def test_a_published_change_reaches_every_subscriber(
    redis: Redis, raw_redis: aioredis.Redis, clock: ManualClock
) -> None:
    channel = redis.keys.session_changes()
    async with _collect(redis.changes()) as first, _collect(redis.changes()) as second:
        await _until(lambda: _subscribers(raw_redis, channel, 2))
        change = {"sessionId": "s1", "state": "connected", "at": clock.now()}
        await redis.publish_change(change)
        expected = {"sessionId": "s1", "state": "connected", "at": clock.now().isoformat()}
        assert await asyncio.wait_for(first.get(), WAIT_S) == expected
        assert await asyncio.wait_for(second.get(), WAIT_S) == expected


async def test_a_message_that_is_not_a_change_is_skipped(
    redis: Redis, raw_redis: aioredis.Redis, caplog: pytest.LogCaptureFixture
) -> None:
    channel = redis.keys.session_changes()
    async with _collect(redis.changes()) as got:
        await _until(lambda: _subscribers(raw_redis, channel, 1))
        await raw_redis.publish(channel, "not json")
        await raw_redis.publish(channel, "[1, 2]")
        await redis.publish_change({"n": 1})
        assert await asyncio.wait_for(got.get(), WAIT_S) == {"n": 1}
    assert "not a JSON object" in caplog.text


async def test_wake_reaches_only_that_worker(redis: Redis, raw_redis: aioredis.Redis) -> None:
    async with _collect(redis.wakeups("w1")) as w1, _collect(redis.wakeups("w2")) as w2:
        await _until(lambda: _subscribers(raw_redis, redis.keys.worker_wake("w1"), 1))
        await _until(lambda: _subscribers(raw_redis, redis.keys.worker_wake("w2"), 1))
        await redis.wake("w1")
        assert await asyncio.wait_for(w1.get(), WAIT_S) is None
        await redis.wake("w1")
        assert await asyncio.wait_for(w1.get(), WAIT_S) is None
    assert w2.empty()


async def test_a_subscriber_survives_its_connection_being_killed(
    redis: Redis,
    raw_redis: aioredis.Redis,
    clock: ManualClock,
    caplog: pytest.LogCaptureFixture,
) -> None:
    channel = redis.keys.session_changes()
    async with _collect(redis.changes()) as got:
        await _until(lambda: _subscribers(raw_redis, channel, 1))
        (killed,) = await _subscriber_ids(raw_redis, redis)
        await raw_redis.client_kill_filter(_id=killed)

        await clock.wait_for_sleepers(1, limit_s=WAIT_S)  # it waits (on the clock) to retry
        assert "lost" in caplog.text
        await clock.advance(10)
        await _until(lambda: _subscribers(raw_redis, channel, 1))
        assert killed not in await _subscriber_ids(raw_redis, redis)

        await redis.publish_change({"after": "kill"})
        assert await asyncio.wait_for(got.get(), WAIT_S) == {"after": "kill"}


async def test_subscriptions_end_when_the_connection_closes(
    redis: Redis, raw_redis: aioredis.Redis
) -> None:
    async def drain() -> int:
        return len([c async for c in redis.changes()])

    task = asyncio.create_task(drain())
    await _until(lambda: _subscribers(raw_redis, redis.keys.session_changes(), 1))
    await redis.aclose()
    assert await asyncio.wait_for(task, WAIT_S) == 0
    assert [c async for c in redis.changes()] == []


# --- failures -------------------------------------------------------------------------


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_an_unreachable_redis_is_storage_unavailable() -> None:
    with pytest.raises(StorageUnavailable):
        await Redis.connect(f"redis://127.0.0.1:{_closed_port()}/0", timeout_s=2)


async def test_when_redis_goes_away_calls_raise_storage_unavailable(
    redis_url: str,
    redis_prefix: str,
    relay: Relay,
    clock: ManualClock,
    raw_redis: aioredis.Redis,  # deletes the prefix's keys at the end
) -> None:
    port = await relay.start(redis_url)
    url = f"redis://127.0.0.1:{port}/0"
    async with await Redis.connect(url, prefix=redis_prefix, clock=clock, timeout_s=2) as gone:
        await gone.mark_alive("w1", 5)
        await relay.cut()

        assert await gone.ping() is False
        for call in (
            gone.write_session(_session(clock)),
            gone.publish_change({"n": 1}),
            gone.mark_alive("w1", 5),
            gone.alive_workers(),
            gone.wake("w1"),
        ):
            with pytest.raises(StorageUnavailable):
                await call


@pytest.mark.parametrize(
    "url", ["http://127.0.0.1:6379", "redis://127.0.0.1:port/0", "127.0.0.1:6379", ""]
)
async def test_a_bad_url_is_a_config_error_naming_redis_url(url: str) -> None:
    with pytest.raises(ConfigError) as caught:
        await Redis.connect(url)
    assert "REDIS_URL" in caught.value.message
    assert "\n" not in caught.value.message


async def test_it_answers_ping(redis: Redis) -> None:
    assert await redis.ping() is True


# --- helpers --------------------------------------------------------------------------


class _collect:  # noqa: N801 — used as ``async with _collect(iterator) as queue``
    """Consume an async iterator into a queue in a task; cancel it on exit."""

    def __init__(self, source: AsyncIterator[Any]) -> None:
        self._source = source
        self._queue: asyncio.Queue[Any] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> asyncio.Queue[Any]:
        self._task = asyncio.create_task(self._pump())
        return self._queue

    async def __aexit__(self, *exc: object) -> None:
        assert self._task is not None
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)

    async def _pump(self) -> None:
        async for item in self._source:
            await self._queue.put(item)


async def _until(check: Any, limit_s: float = WAIT_S) -> None:
    """Wait (real time, bounded) until ``await check()`` is true."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + limit_s
    while not await check():
        assert loop.time() < deadline, "the condition did not become true in time"
        await asyncio.sleep(0.01)


async def _subscribers(client: aioredis.Redis, channel: str, count: int) -> bool:
    ((_, n),) = await client.pubsub_numsub(channel)
    return int(n) == count


async def _absent(client: aioredis.Redis, key: str) -> bool:
    return int(await client.exists(key)) == 0


async def _subscriber_ids(client: aioredis.Redis, redis: Redis) -> list[str]:
    name = "wagate-test-" + redis.keys.prefix.rstrip(":").rsplit("-", 1)[-1]
    clients = await client.client_list()
    return [c["id"] for c in clients if c.get("name") == name and int(c.get("sub", 0)) > 0]
