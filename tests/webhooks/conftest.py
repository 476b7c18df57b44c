"""Webhook fixtures: a real HTTP receiver on 127.0.0.1 and the webhook parts on a manual clock."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import pytest

from wagate.clock import Clock, ManualClock
from wagate.settings import Settings
from wagate.storage.db import Database, create_engine
from wagate.storage.outbox import Outbox
from wagate.storage.repos.webhooks import DeliveryRepo, SubscriptionRepo
from wagate.webhooks.admin import WebhookAdmin
from wagate.webhooks.dispatcher import WebhookDispatcher
from wagate.webhooks.events import Event, outbox_event


@dataclass(frozen=True)
class Reply:
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b"ok"
    delay_s: float = 0.0


@dataclass(frozen=True)
class Received:
    method: str
    path: str
    headers: dict[str, str]  # names lower-cased
    body: bytes

    @property
    def delivery_id(self) -> str:
        return self.headers["x-wagate-delivery"]


class Receiver:
    """A real HTTP/1.1 server on 127.0.0.1 answering from a script (then ``default``)."""

    def __init__(self, port: int | None = None) -> None:
        self.port = port or free_port()
        self.requests: list[Received] = []
        self.replies: deque[Reply] = deque()
        self.default = Reply()
        self._server: asyncio.Server | None = None
        self._handlers: set[asyncio.Task[Any]] = set()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", self.port)

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        for task in list(self._handlers):  # a reply still held back
            task.cancel()
        await asyncio.gather(*self._handlers, return_exceptions=True)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        try:
            request = await _read_request(reader)
            self.requests.append(request)
            reply = self.replies.popleft() if self.replies else self.default
            if reply.delay_s:
                await asyncio.sleep(reply.delay_s)
            writer.write(_response(reply))
            await writer.drain()
        except (OSError, asyncio.IncompleteReadError):
            pass
        finally:
            self._handlers.discard(task)
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()


async def _read_request(reader: asyncio.StreamReader) -> Received:
    head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1")
    request_line, *lines = head.strip().split("\r\n")
    method, path, _ = request_line.split(" ", 2)
    headers = {}
    for line in lines:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    body = await reader.readexactly(int(headers.get("content-length", "0")))
    return Received(method, path, headers, body)


def _response(reply: Reply) -> bytes:
    lines = [f"HTTP/1.1 {reply.status} Status", f"Content-Length: {len(reply.body)}"]
    lines += ["Connection: close", *(f"{k}: {v}" for k, v in reply.headers.items())]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + reply.body


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.fixture
def hook_settings(settings: Settings) -> Settings:
    """Fast, deterministic delivery settings; private URLs allowed (the receiver is local)."""
    return settings.model_copy(
        update={
            "allow_private_urls": True,
            "webhook_backoff_base_ms": 1_000,
            "webhook_backoff_max_ms": 60_000,
            "webhook_jitter_ratio": 0.1,
            "webhook_max_attempts": 5,
            "webhook_poll_ms": 1_000,
            "webhook_timeout_ms": 5_000,
            "webhook_concurrency": 4,
            "stop_timeout_ms": 2_000,
        }
    )


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    rx = Receiver()
    await rx.start()
    yield rx
    await rx.stop()


@dataclass
class Hooks:
    """The webhook parts, tied as ``roles/serve.py`` ties them.

    The outbox rings ``doorbell`` when deliveries commit; the dispatcher (if
    any) wakes on it, and so does a replay or an enabled subscription.
    """

    subscriptions: SubscriptionRepo
    deliveries: DeliveryRepo
    outbox: Outbox
    admin: WebhookAdmin
    dispatcher: WebhookDispatcher | None
    doorbell: asyncio.Event
    clock: Clock

    async def emit(self, event: Event, session_id: str | None, data: dict[str, Any]) -> int:
        """Record one event in a transaction of its own; how many deliveries it made."""
        return await self.outbox.emit([outbox_event(event, session_id, data, self.clock.now())])


@contextlib.asynccontextmanager
async def running_hooks(
    settings: Settings, db: Database, clock: Clock, *, dispatch: bool = True
) -> AsyncIterator[Hooks]:
    """The webhook parts over ``db``; with ``dispatch``, a dispatcher runs until the block ends."""
    doorbell = asyncio.Event()
    subscriptions, deliveries = SubscriptionRepo(db, clock), DeliveryRepo(db, clock)
    outbox = Outbox(db, clock, on_commit=doorbell.set)
    admin = WebhookAdmin(settings.webhooks, subscriptions, deliveries, wake=doorbell.set)
    if not dispatch:
        yield Hooks(subscriptions, deliveries, outbox, admin, None, doorbell, clock)
        return
    dispatcher = WebhookDispatcher(settings.webhooks, deliveries, clock, wakeup=doorbell)
    async with dispatcher:
        yield Hooks(subscriptions, deliveries, outbox, admin, dispatcher, doorbell, clock)


HooksFactory = Callable[..., Awaitable[Hooks]]


@pytest.fixture
async def make_hooks(
    hook_settings: Settings, db: Database, clock: ManualClock
) -> AsyncIterator[HooksFactory]:
    """Start the webhook parts (see :func:`running_hooks`); every one is stopped at the end."""
    manual = clock
    async with contextlib.AsyncExitStack() as stack:

        async def make(
            *,
            settings: Settings | None = None,
            own_db: bool = False,
            clock: Clock = manual,
            dispatch: bool = True,
        ) -> Hooks:
            chosen = settings or hook_settings
            database = db
            if own_db:  # a second process's engine on the same database
                database = Database(create_engine(chosen.sqlalchemy_url))
                stack.push_async_callback(database.aclose)
            hooks = running_hooks(chosen, database, clock, dispatch=dispatch)
            return await stack.enter_async_context(hooks)

        yield make
