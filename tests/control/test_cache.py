"""RedisMirror: seed 004's keys written from the record, rebuilt after a flush, kept current."""

from __future__ import annotations

import asyncio
import json
from datetime import timedelta

import pytest
from redis import asyncio as aioredis

from tests.storage.conftest import Relay, snapshot
from wagate.clock import ManualClock
from wagate.control.cache import RedisMirror
from wagate.domain.session import ChangeKind, SessionChange, SessionState, change_message
from wagate.storage.db import Database
from wagate.storage.redis import Redis
from wagate.storage.repos.sessions import SessionRepo
from wagate.storage.tables import session_leases

WAIT_S = 10.0
PROXY_A = "socks5h://proxy-a:1080"
PROXY_B = "socks5h://proxy-b:1080"


def _change(session_id: str, state: SessionState, clock: ManualClock) -> SessionChange:
    return SessionChange(session_id, state, ChangeKind.STATE, clock.now(), {"reason": "test"})


async def _lease(db: Database, session_id: str, worker_id: str, clock: ManualClock) -> None:
    now = clock.now()
    row = {"session_id": session_id, "worker_id": worker_id, "updated_at": now}
    async with db.begin() as conn:
        await conn.execute(
            session_leases.insert().values(**row, expires_at=now + timedelta(seconds=45))
        )


async def _fleet(session_repo: SessionRepo, db: Database, clock: ManualClock) -> None:
    """Three sessions: a new one, one showing a QR (leased to w1), one connected."""
    await session_repo.create("s1", engine="sandbox", phone="6281111111111", proxy=PROXY_A)
    await session_repo.create("s2", engine="sandbox", proxy=PROXY_A)
    await session_repo.record_qr(
        _change("s2", SessionState.QR, clock),
        "2@QR",
        clock.now(),
        clock.now() + timedelta(seconds=60),
    )
    await _lease(db, "s2", "w1", clock)
    await session_repo.create("s3", engine="sandbox", proxy=PROXY_B)
    await session_repo.record_connected(
        _change("s3", SessionState.CONNECTED, clock),
        phone_number="6283333333333",
        jid="6283333333333@s.whatsapp.net",
        wa_name=None,
        device_name=None,
        lid=None,
    )


async def test_rebuild_writes_every_sessions_keys_from_the_record(
    session_repo: SessionRepo,
    db: Database,
    redis: Redis,
    raw_redis: aioredis.Redis,
    redis_prefix: str,
    clock: ManualClock,
) -> None:
    await _fleet(session_repo, db, clock)

    assert await RedisMirror(session_repo, redis).rebuild() == 3

    created = str(round(clock.now().timestamp() * 1000))
    p = redis_prefix
    assert await snapshot(raw_redis, p) == {
        f"{p}wagate:mirrored": (created, False),  # written last: a flush removes it
        f"{p}session:s1:status": ("pending", False),
        f"{p}session:s1:phone": ("6281111111111", False),
        f"{p}session:s1:proxy": (PROXY_A, False),
        f"{p}session:s1:created": (created, False),
        f"{p}phone:6281111111111:session": ("s1", False),
        f"{p}phone:6281111111111:proxy": (PROXY_A, False),
        f"{p}session:s2:status": ("qr_ready", False),
        f"{p}session:s2:proxy": (PROXY_A, False),
        f"{p}session:s2:qr": ("2@QR", True),
        f"{p}session:s2:lock": ("w1", False),
        f"{p}session:s2:created": (created, False),
        f"{p}session:s3:status": ("connected", False),
        f"{p}session:s3:phone": ("6283333333333", False),
        f"{p}session:s3:proxy": (PROXY_B, False),
        f"{p}session:s3:created": (created, False),
        f"{p}phone:6283333333333:session": ("s3", False),
        f"{p}phone:6283333333333:proxy": (PROXY_B, False),
        f"{p}proxy:{PROXY_A}:status": ("active", False),
        f"{p}proxy:{PROXY_A}:sessions": ("2", False),
        f"{p}proxy:{PROXY_B}:status": ("active", False),
        f"{p}proxy:{PROXY_B}:sessions": ("1", False),
    }


async def test_a_flushed_redis_is_rebuilt_exactly(
    session_repo: SessionRepo,
    db: Database,
    redis: Redis,
    raw_redis: aioredis.Redis,
    redis_prefix: str,
    clock: ManualClock,
) -> None:
    await _fleet(session_repo, db, clock)
    mirror = RedisMirror(session_repo, redis)
    await mirror.rebuild()
    await mirror.on_change(_change("s3", SessionState.CONNECTED, clock))
    before = await snapshot(raw_redis, redis_prefix)

    async for key in raw_redis.scan_iter(match=f"{redis_prefix}*"):
        await raw_redis.delete(key)
    assert await snapshot(raw_redis, redis_prefix) == {}

    assert await mirror.rebuild() == 3
    assert await snapshot(raw_redis, redis_prefix) == before


async def test_rebuild_removes_what_the_record_no_longer_has(
    session_repo: SessionRepo,
    db: Database,
    redis: Redis,
    raw_redis: aioredis.Redis,
    redis_prefix: str,
    clock: ManualClock,
) -> None:
    await _fleet(session_repo, db, clock)
    mirror = RedisMirror(session_repo, redis)
    await mirror.rebuild()
    await redis.set_proxy("socks5h://old:1", status="bad", sessions=4)
    await session_repo.delete("s1")
    await session_repo.delete("s3")

    assert await mirror.rebuild() == 1

    keys = await snapshot(raw_redis, redis_prefix)
    assert await redis.session_ids() == {"s2"}
    assert await redis.phone_numbers() == set()
    p = redis_prefix
    assert keys[f"{p}proxy:{PROXY_A}:sessions"] == ("1", False)
    assert keys[f"{p}proxy:{PROXY_B}:sessions"] == ("0", False)
    assert keys[f"{p}proxy:socks5h://old:1:sessions"] == ("0", False)
    assert keys[f"{p}proxy:socks5h://old:1:status"] == ("bad", False)  # the pool's word stays


async def test_a_change_rewrites_the_sessions_keys_and_is_published(
    session_repo: SessionRepo,
    db: Database,
    redis: Redis,
    raw_redis: aioredis.Redis,
    clock: ManualClock,
) -> None:
    await _fleet(session_repo, db, clock)
    mirror = RedisMirror(session_repo, redis)
    await mirror.rebuild()
    change = _change("s2", SessionState.CONNECTED, clock)
    await session_repo.record_connected(
        change,
        phone_number="6282222222222",
        jid="6282222222222@s.whatsapp.net",
        wa_name="Two",
        device_name=None,
        lid=None,
    )
    heard: asyncio.Queue[dict[str, object]] = asyncio.Queue()

    async def listen() -> None:
        async for message in redis.changes():
            await heard.put(message)

    listener = asyncio.create_task(listen())
    try:
        await _until_subscribed(raw_redis, redis.keys.session_changes())
        await mirror.on_change(change)
        message = await asyncio.wait_for(heard.get(), WAIT_S)
    finally:
        listener.cancel()
        await asyncio.gather(listener, return_exceptions=True)

    assert message == json.loads(json.dumps(change_message(change)))
    k = redis.keys
    assert await raw_redis.get(k.session_status("s2")) == "connected"
    assert await raw_redis.get(k.session_phone("s2")) == "6282222222222"
    assert await raw_redis.get(k.phone_session("6282222222222")) == "s2"
    assert await raw_redis.exists(k.session_qr("s2")) == 0
    assert await raw_redis.get(k.session_lock("s2")) == "w1"


async def test_a_change_of_a_deleted_session_forgets_its_keys(
    session_repo: SessionRepo,
    db: Database,
    redis: Redis,
    raw_redis: aioredis.Redis,
    clock: ManualClock,
) -> None:
    await _fleet(session_repo, db, clock)
    mirror = RedisMirror(session_repo, redis)
    await mirror.rebuild()
    await session_repo.delete("s1")

    await mirror.on_change(_change("s1", SessionState.STOPPED, clock))

    assert "s1" not in await redis.session_ids()
    assert await raw_redis.exists(redis.keys.phone_session("6281111111111")) == 0


async def test_a_change_while_redis_is_down_is_logged_not_raised(
    session_repo: SessionRepo,
    redis_url: str,
    redis_prefix: str,
    relay: Relay,
    raw_redis: aioredis.Redis,
    clock: ManualClock,
    caplog: pytest.LogCaptureFixture,
) -> None:
    await session_repo.create("s1", engine="sandbox")
    port = await relay.start(redis_url)
    url = f"redis://127.0.0.1:{port}/0"
    async with await Redis.connect(url, prefix=redis_prefix, clock=clock, timeout_s=2) as down:
        await relay.cut()
        await RedisMirror(session_repo, down).on_change(
            _change("s1", SessionState.CONNECTING, clock)
        )
    assert "could not refresh the keys of s1" in caplog.text
    assert "could not publish" in caplog.text


async def _until_subscribed(client: aioredis.Redis, channel: str) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + WAIT_S
    while int((await client.pubsub_numsub(channel))[0][1]) < 1:
        assert loop.time() < deadline, f"nobody subscribed to {channel}"
        await asyncio.sleep(0.01)


async def test_keep_rebuilds_only_after_the_keys_were_lost(
    session_repo: SessionRepo,
    db: Database,
    redis: Redis,
    raw_redis: aioredis.Redis,
    redis_prefix: str,
    clock: ManualClock,
) -> None:
    await _fleet(session_repo, db, clock)
    mirror = RedisMirror(session_repo, redis)
    assert await mirror.keep() is True, "never written: written now"
    before = await snapshot(raw_redis, redis_prefix)
    assert await mirror.keep() is False, "current: left alone"
    async for key in raw_redis.scan_iter(match=f"{redis_prefix}*"):
        await raw_redis.delete(key)  # FLUSHALL, for this test's keys only
    assert await mirror.keep() is True
    assert await snapshot(raw_redis, redis_prefix) == before
