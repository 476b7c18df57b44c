"""Redis: seed 004's keys, worker liveness keys and the bus of session changes.

Redis is a cache and a bus, never the only copy (``docs/cluster.md``):
everything written here can be written again from PostgreSQL
(:class:`wagate.control.cache.RedisMirror`, ``wagate redis rebuild``).

Every key and channel name lives in this module (:class:`RedisKeys`), each
behind the deployment's prefix (``WAGATE_REDIS_PREFIX``, may be empty)::

    session:<id>:status      seed 004's word for the state (domain.session.SEED_004)
    session:<id>:phone       the account's number (digits), once known
    session:<id>:proxy       the session's proxy URL
    session:<id>:qr          the QR to scan; expires with it
    session:<id>:lock        the worker holding the session's lease
    session:<id>:created     epoch ms
    session:<id>:lastPing    epoch ms of the session's last keep-alive
    phone:<number>:proxy     sticky IP: the number's proxy
    phone:<number>:session   the number's session
    proxy:<url>:status       "active" | "bad"
    proxy:<url>:sessions     how many sessions use the proxy
    worker:<id>:alive        a worker's liveness: expires unless renewed
    session-changes          channel: every session change, as JSON
    worker:<id>:wake         channel: wakes one worker up

Errors are translated here, once: every method that talks to Redis raises
:class:`~wagate.errors.StorageUnavailable` when Redis fails (unreachable,
timed out, or refused the command), never a redis-py exception. Cache writes
and publishing may fail while the work that made them succeeded: the caller
catches ``StorageUnavailable`` and carries on. Three methods never raise on a
Redis failure: :meth:`Redis.ping` answers ``False``, and :meth:`Redis.changes`
and :meth:`Redis.wakeups` log, wait and subscribe again.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import random
import re
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from enum import Enum
from types import TracebackType
from typing import Any, Final, Self, cast

from redis import asyncio as aioredis
from redis.asyncio.client import Pipeline, PubSub
from redis.asyncio.retry import Retry
from redis.backoff import AbstractBackoff
from redis.exceptions import RedisError

from wagate.backoff import Backoff
from wagate.clock import Clock, SystemClock
from wagate.domain.session import SEED_004, Session
from wagate.errors import ConfigError, InvalidInput, StorageUnavailable

log = logging.getLogger(__name__)

SESSION_FIELDS: Final = ("status", "phone", "proxy", "qr", "lock", "created", "lastPing")
PROXY_STATUSES: Final = frozenset({"active", "bad"})

# how long a lost subscription waits before it subscribes again (attempt 0, 1, …)
RESUBSCRIBE = Backoff(base_s=0.1, max_s=5.0, jitter_ratio=0.2)
# a command that lost its connection is retried once, this much later
COMMAND_RETRY = Backoff(base_s=0.05, max_s=0.5)

_GLOB = re.compile(r"([*?\[\]\\])")

# delete a session's keys, and its phone's keys while they still name this session
_FORGET = """
local n = tonumber(ARGV[2])
redis.call('DEL', unpack(KEYS, 1, n))
if #KEYS > n and redis.call('GET', KEYS[n + 1]) == ARGV[1] then
  redis.call('DEL', KEYS[n + 1], KEYS[n + 2])
end
return 0
"""


@dataclass(frozen=True, slots=True)
class RedisKeys:
    """Every key and channel name, behind ``prefix``; pure (no I/O)."""

    prefix: str = ""

    # --- seed 004: a session ----------------------------------------------------------
    def session_status(self, session_id: str) -> str:
        return self._session(session_id, "status")

    def session_phone(self, session_id: str) -> str:
        return self._session(session_id, "phone")

    def session_proxy(self, session_id: str) -> str:
        return self._session(session_id, "proxy")

    def session_qr(self, session_id: str) -> str:
        return self._session(session_id, "qr")

    def session_lock(self, session_id: str) -> str:
        return self._session(session_id, "lock")

    def session_created(self, session_id: str) -> str:
        return self._session(session_id, "created")

    def session_last_ping(self, session_id: str) -> str:
        return self._session(session_id, "lastPing")

    def session_keys(self, session_id: str) -> list[str]:
        """All of a session's keys, in :data:`SESSION_FIELDS` order."""
        return [self._session(session_id, name) for name in SESSION_FIELDS]

    # --- seed 004: sticky IP and the proxy pool -----------------------------------------
    def phone_proxy(self, number: str) -> str:
        return f"{self.prefix}phone:{number}:proxy"

    def phone_session(self, number: str) -> str:
        return f"{self.prefix}phone:{number}:session"

    def proxy_status(self, url: str) -> str:
        return f"{self.prefix}proxy:{url}:status"

    def proxy_sessions(self, url: str) -> str:
        return f"{self.prefix}proxy:{url}:sessions"

    # --- ours: liveness and the bus -----------------------------------------------------
    def worker_alive(self, worker_id: str) -> str:
        return f"{self.prefix}worker:{worker_id}:alive"

    def mirrored(self) -> str:
        """Set once the keys were written from the record: gone after a flush."""
        return f"{self.prefix}wagate:mirrored"

    def session_changes(self) -> str:
        """The channel of session changes (JSON messages)."""
        return f"{self.prefix}session-changes"

    def worker_wake(self, worker_id: str) -> str:
        """The channel that wakes one worker up."""
        return f"{self.prefix}worker:{worker_id}:wake"

    # --- SCAN patterns, and reading a name back -----------------------------------------
    def session_pattern(self) -> str:
        return f"{self._glob_prefix()}session:*"

    def phone_pattern(self) -> str:
        return f"{self._glob_prefix()}phone:*"

    def proxy_sessions_pattern(self) -> str:
        return f"{self._glob_prefix()}proxy:*:sessions"

    def alive_pattern(self) -> str:
        return f"{self._glob_prefix()}worker:*:alive"

    def session_of(self, key: str) -> str | None:
        """The session id of a ``session:<id>:<field>`` key; None for any other key."""
        for name in SESSION_FIELDS:
            found = self._between(key, "session:", f":{name}")
            if found is not None:
                return found
        return None

    def phone_of(self, key: str) -> str | None:
        """The number of a ``phone:<number>:proxy|session`` key; None for any other key."""
        return self._between(key, "phone:", ":session") or self._between(key, "phone:", ":proxy")

    def proxy_of(self, key: str) -> str | None:
        """The URL of a ``proxy:<url>:sessions`` key; None for any other key."""
        return self._between(key, "proxy:", ":sessions")

    def worker_of(self, key: str) -> str | None:
        """The worker id of a ``worker:<id>:alive`` key; None for any other key."""
        return self._between(key, "worker:", ":alive")

    def _session(self, session_id: str, name: str) -> str:
        return f"{self.prefix}session:{session_id}:{name}"

    def _glob_prefix(self) -> str:
        return _GLOB.sub(r"\\\1", self.prefix)

    def _between(self, key: str, head: str, tail: str) -> str | None:
        start = self.prefix + head
        if len(key) <= len(start) + len(tail) or not key.startswith(start):
            return None
        return key[len(start) : -len(tail)] if key.endswith(tail) else None


class Redis:
    """The process's connection to Redis: seed 004's keys, liveness, the bus.

    An async context manager (leaving it is :meth:`aclose`). Open it with
    :meth:`connect`. Subscriptions (:meth:`changes`, :meth:`wakeups`) use
    their own connections, without a read timeout; they end on :meth:`aclose`.
    """

    def __init__(
        self,
        client: aioredis.Redis,
        subscriber: aioredis.Redis,
        *,
        prefix: str = "",
        clock: Clock | None = None,
        backoff: Backoff = RESUBSCRIBE,
        rng: random.Random | None = None,
    ) -> None:
        self.keys = RedisKeys(prefix)
        self._client = client
        self._subscriber = subscriber
        self._clock = clock or SystemClock()
        self._backoff = backoff
        self._rng = rng or random.Random()
        self._closed = asyncio.Event()
        self._forget = client.register_script(_FORGET)

    @classmethod
    async def connect(
        cls,
        url: str,
        *,
        prefix: str = "",
        timeout_s: float = 5.0,
        client_name: str = "wagate",
        clock: Clock | None = None,
        backoff: Backoff = RESUBSCRIBE,
        rng: random.Random | None = None,
    ) -> Redis:
        """Connect and check Redis answers.

        :class:`ConfigError` (one line naming ``REDIS_URL``) when ``url`` is
        not a Redis URL; :class:`StorageUnavailable` when Redis cannot be reached.
        """
        client, subscriber = _clients(url, timeout_s, client_name)
        redis = cls(client, subscriber, prefix=prefix, clock=clock, backoff=backoff, rng=rng)
        try:
            with _translated("connect"):
                await client.ping()
        except StorageUnavailable:
            await redis.aclose()
            raise
        return redis

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """End every subscription, then close the connections."""
        self._closed.set()
        for client in (self._client, self._subscriber):
            with contextlib.suppress(RedisError, OSError):
                await client.aclose()

    async def ping(self) -> bool:
        """Whether Redis answers now; never raises."""
        try:
            with _translated("ping"):
                return bool(await self._client.ping())
        except StorageUnavailable:
            return False

    # --- seed 004's view of a session -----------------------------------------------------

    async def write_session(
        self, session: Session, *, owner: str | None = None, last_ping_ms: int | None = None
    ) -> None:
        """Write the session's keys (and its phone's sticky mapping) in one transaction.

        The keys mirror ``session`` exactly: an absent value deletes its key;
        ``owner`` is the lease holder (None: nobody). ``lastPing`` is
        ``last_ping_ms``, else the row's ``last_ping_at``; when neither is
        known the key is left as it is (a ping is newer than the row).
        """
        with _translated("write_session"):
            async with self._client.pipeline(transaction=True) as pipe:
                self._session_ops(pipe, session, owner, last_ping_ms)
                await pipe.execute()

    async def forget_session(self, session_id: str, phone: str | None) -> None:
        """Delete the session's keys, and ``phone``'s mapping while it names this session.

        ``phone`` None: the number stored under ``session:<id>:phone``, if any.
        """
        k = self.keys
        with _translated("forget_session"):
            if phone is None:
                stored = await self._client.get(k.session_phone(session_id))
                phone = str(stored) if stored else None
            keys = k.session_keys(session_id)
            if phone:
                keys += [k.phone_session(phone), k.phone_proxy(phone)]
            await self._forget(keys=keys, args=[session_id, len(SESSION_FIELDS)])

    async def set_last_ping(self, session_id: str, at_ms: int) -> None:
        with _translated("set_last_ping"):
            await self._client.set(self.keys.session_last_ping(session_id), str(at_ms))

    async def map_phone(self, phone: str, *, session_id: str, proxy: str | None) -> None:
        """Sticky IP: ``phone`` → its session and its proxy (None deletes the proxy)."""
        with _translated("map_phone"):
            async with self._client.pipeline(transaction=True) as pipe:
                pipe.set(self.keys.phone_session(phone), session_id)
                _put(pipe, self.keys.phone_proxy(phone), proxy)
                await pipe.execute()

    async def set_proxy(self, url: str, *, status: str, sessions: int) -> None:
        """A proxy's status (``active`` | ``bad``) and how many sessions use it."""
        if status not in PROXY_STATUSES:
            raise InvalidInput("status", f"proxy status must be one of {sorted(PROXY_STATUSES)}")
        if sessions < 0:
            raise InvalidInput("sessions", "a proxy's session count cannot be negative")
        with _translated("set_proxy"):
            async with self._client.pipeline(transaction=True) as pipe:
                pipe.set(self.keys.proxy_status(url), status)
                pipe.set(self.keys.proxy_sessions(url), str(sessions))
                await pipe.execute()

    async def set_proxy_load(self, url: str, sessions: int) -> None:
        """How many sessions use the proxy; a proxy with no status yet becomes ``active``."""
        with _translated("set_proxy_load"):
            async with self._client.pipeline(transaction=True) as pipe:
                pipe.set(self.keys.proxy_sessions(url), str(max(0, sessions)))
                pipe.set(self.keys.proxy_status(url), "active", nx=True)
                await pipe.execute()

    # --- what is there (for a rebuild) ----------------------------------------------------

    async def session_ids(self) -> set[str]:
        """Every session id that has a key."""
        return await self._scan(self.keys.session_pattern(), self.keys.session_of)

    async def phone_numbers(self) -> set[str]:
        """Every number that has a sticky mapping key."""
        return await self._scan(self.keys.phone_pattern(), self.keys.phone_of)

    async def proxy_urls(self) -> set[str]:
        """Every proxy that has a session count."""
        return await self._scan(self.keys.proxy_sessions_pattern(), self.keys.proxy_of)

    async def forget_phone(self, phone: str) -> None:
        with _translated("forget_phone"):
            await self._client.delete(self.keys.phone_session(phone), self.keys.phone_proxy(phone))

    # --- liveness -------------------------------------------------------------------------

    async def mark_alive(self, worker_id: str, ttl_s: float) -> None:
        """The worker is alive for ``ttl_s`` more seconds (the value: when it said so, epoch ms)."""
        ttl_ms = max(1, math.ceil(ttl_s * 1000))
        with _translated("mark_alive"):
            await self._client.set(
                self.keys.worker_alive(worker_id), str(_ms(self._clock.now())), px=ttl_ms
            )

    async def drop_alive(self, worker_id: str) -> None:
        with _translated("drop_alive"):
            await self._client.delete(self.keys.worker_alive(worker_id))

    async def mark_mirrored(self) -> None:
        with _translated("mark_mirrored"):
            await self._client.set(self.keys.mirrored(), str(_ms(self._clock.now())))

    async def is_mirrored(self) -> bool:
        """False after a flush (or before the first rebuild): the keys must be written again."""
        with _translated("is_mirrored"):
            return bool(await self._client.exists(self.keys.mirrored()))

    async def alive_workers(self) -> set[str]:
        return await self._scan(self.keys.alive_pattern(), self.keys.worker_of)

    # --- the bus --------------------------------------------------------------------------

    async def publish_change(self, change: dict[str, Any]) -> None:
        """Publish ``change`` (JSON) on the channel of session changes."""
        message = json.dumps(change, default=_jsonable, separators=(",", ":"))
        with _translated("publish_change"):
            await self._client.publish(self.keys.session_changes(), message)

    async def changes(self) -> AsyncIterator[dict[str, Any]]:
        """Every session change published from now on, until :meth:`aclose`.

        Survives a lost connection: it logs, waits and subscribes again
        (changes published meanwhile are missed). A message that is not a
        JSON object is logged and skipped.
        """
        channel = self.keys.session_changes()
        async for raw in self._messages(channel):
            try:
                change = json.loads(raw)
            except ValueError:
                change = None
            if isinstance(change, dict):
                yield change
            else:
                log.warning("skipped a message on %s that is not a JSON object", channel)

    async def wake(self, worker_id: str) -> None:
        """Wake the worker up (it looks for work now instead of at its next poll)."""
        with _translated("wake"):
            await self._client.publish(self.keys.worker_wake(worker_id), "1")

    async def wakeups(self, worker_id: str) -> AsyncIterator[None]:
        """One item per :meth:`wake` of ``worker_id``, until :meth:`aclose`; as :meth:`changes`."""
        async for _ in self._messages(self.keys.worker_wake(worker_id)):
            yield None

    # --- inside ---------------------------------------------------------------------------

    def _session_ops(
        self, pipe: Pipeline, session: Session, owner: str | None, last_ping_ms: int | None
    ) -> None:
        k, sid = self.keys, session.id
        number = session.phone_number or session.phone
        pipe.set(k.session_status(sid), SEED_004[session.status])
        _put(pipe, k.session_phone(sid), number)
        _put(pipe, k.session_proxy(sid), session.proxy)
        qr, ttl_ms = self._qr(session)
        _put(pipe, k.session_qr(sid), qr, px=ttl_ms)
        _put(pipe, k.session_lock(sid), owner)
        _put(pipe, k.session_created(sid), _ms_text(session.created_at))
        if last_ping_ms is None and session.last_ping_at is not None:
            last_ping_ms = _ms(session.last_ping_at)
        if last_ping_ms is not None:
            pipe.set(k.session_last_ping(sid), str(last_ping_ms))
        if number:
            pipe.set(k.phone_session(number), sid)
            _put(pipe, k.phone_proxy(number), session.proxy)

    def _qr(self, session: Session) -> tuple[str | None, int | None]:
        """The QR still valid now and its time to live in ms (None: no known expiry)."""
        now = self._clock.now()
        if session.qr is None or not session.qr_valid_at(now):
            return None, None
        if session.qr_expires_at is None:
            return session.qr, None
        left = (session.qr_expires_at - now).total_seconds()
        return session.qr, max(1, math.ceil(left * 1000))

    async def _scan(self, pattern: str, parse: Callable[[str], str | None]) -> set[str]:
        found: set[str] = set()
        with _translated("scan"):
            async for key in self._client.scan_iter(match=pattern, count=500):
                name = parse(key)
                if name is not None:
                    found.add(name)
        return found

    async def _messages(self, channel: str) -> AsyncIterator[str]:
        """The data of every message on ``channel`` until closed, subscribing again when lost."""
        attempt = 0
        while not self._closed.is_set():
            try:
                async with self._subscription(channel) as pubsub:
                    if attempt:
                        log.info("subscribed again to %s", channel)
                    attempt = 0
                    while (data := await self._next(pubsub)) is not None:
                        yield data
                    return
            except (RedisError, OSError) as exc:
                if self._closed.is_set():
                    return
                log.warning(
                    "lost the subscription to %s (%s); subscribing again", channel, _short(exc)
                )
            await self._clock.wait(self._closed, self._backoff.delay(attempt, self._rng))
            attempt += 1

    @contextlib.asynccontextmanager
    async def _subscription(self, channel: str) -> AsyncIterator[PubSub]:
        pubsub = self._subscriber.pubsub(ignore_subscribe_messages=True)
        try:
            await pubsub.subscribe(channel)
            yield pubsub
        finally:
            with contextlib.suppress(RedisError, OSError):
                await cast(Any, pubsub).aclose()  # closes its connection; untyped in redis-py

    async def _next(self, pubsub: PubSub) -> str | None:
        """The next message's data; None once :meth:`aclose` was called."""
        closed = asyncio.ensure_future(self._closed.wait())
        try:
            while True:
                read = asyncio.ensure_future(pubsub.get_message(timeout=None))
                try:
                    await asyncio.wait({read, closed}, return_when=asyncio.FIRST_COMPLETED)
                finally:
                    if not read.done():  # closed, or this task cancelled: the read must end first
                        read.cancel()
                        await asyncio.gather(read, return_exceptions=True)
                if closed.done():
                    return None
                message = read.result()
                if message is not None and message.get("type") == "message":
                    return str(message["data"])
        finally:
            closed.cancel()


def _clients(url: str, timeout_s: float, client_name: str) -> tuple[aioredis.Redis, aioredis.Redis]:
    """The command client (bounded, one quick retry) and the subscriber (no read timeout).

    The subscriber neither retries nor reconnects by itself: a lost subscription
    surfaces to :meth:`Redis._messages`, which logs it and subscribes again.
    """
    common: dict[str, Any] = {
        "decode_responses": True,
        "socket_connect_timeout": timeout_s,
        "client_name": client_name,
    }
    quick = Retry(_Delays(COMMAND_RETRY), 1)
    never = Retry(_Delays(COMMAND_RETRY), 0, supported_errors=())
    try:
        client = aioredis.Redis.from_url(url, socket_timeout=timeout_s, retry=quick, **common)
        subscriber = aioredis.Redis.from_url(url, socket_keepalive=True, retry=never, **common)
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"REDIS_URL is not a usable Redis URL ({_url_problem(exc)})") from None
    return client, subscriber


class _Delays(AbstractBackoff):
    """redis-py's retry delays, from our one formula (:mod:`wagate.backoff`)."""

    def __init__(self, backoff: Backoff) -> None:
        self._backoff = backoff

    def compute(self, failures: int) -> float:
        return self._backoff.core(failures)


def _url_problem(exc: BaseException) -> str:
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return "use redis://host:port/db, rediss://… or unix://…" if "scheme" in text else text[:120]


@contextlib.contextmanager
def _translated(what: str) -> Iterator[None]:
    """redis-py's (and the socket's) exceptions → :class:`StorageUnavailable`."""
    try:
        yield
    except (RedisError, OSError) as exc:
        raise StorageUnavailable(f"redis unavailable ({what}): {_short(exc)}") from exc


def _put(pipe: Pipeline, key: str, value: str | None, *, px: int | None = None) -> None:
    if value is None:
        pipe.delete(key)
    else:
        pipe.set(key, value, px=px)


def _ms(at: datetime) -> int:
    return round(at.timestamp() * 1000)


def _ms_text(at: datetime | None) -> str | None:
    return None if at is None else str(_ms(at))


def _jsonable(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, Enum):
        return value.value
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def _short(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:200] if text else type(exc).__name__
