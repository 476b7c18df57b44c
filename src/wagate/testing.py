"""Public fakes and factories for tests (wagate's own and its users').

:class:`ScriptedEngine` is an :class:`~wagate.engine.base.Engine` whose links
play scripts: each call to ``link()`` takes the next script, a list of events
(ending, or not, in a ``Disconnected``) or an exception to raise on open. A
script that does not end in ``Disconnected`` keeps its link open until the
test calls :meth:`ScriptedLink.end` or the runner closes it.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self, TypeVar

from wagate.clock import Clock
from wagate.domain.event import OutboxEvent
from wagate.domain.group import GroupInfo
from wagate.domain.message import MediaRef, Outgoing, SendResult
from wagate.domain.session import DisconnectKind
from wagate.engine.base import (
    AuthStore,
    Connected,
    Disconnected,
    EngineEvent,
    GroupEvent,
    Link,
    LinkOptions,
    MessageEvent,
    ReceiptEvent,
)
from wagate.settings import Settings, load_settings
from wagate.storage.db import Database
from wagate.storage.outbox import Outbox

Script = Sequence[EngineEvent] | BaseException
E = TypeVar("E")


def settings_for_tests(data_dir: Path, **overrides: Any) -> Settings:
    """Settings for a test: the sandbox engine, a key, everything under ``data_dir``.

    The environment still applies to what is not given (a database URL, say).
    """
    values: dict[str, Any] = {"engine": "sandbox", "data_dir": data_dir, "api_key": "test-key"}
    return load_settings(**(values | overrides))


class RecordingOutbox(Outbox):
    """An :class:`~wagate.storage.outbox.Outbox` that also keeps every event it was given.

    Kept whether or not the producer's transaction then commits; the
    deliveries themselves are written as usual. ``fail_next`` makes the next
    write raise (a crash between a state and its events, say).
    """

    def __init__(self, db: Database, clock: Clock, **kw: Any) -> None:
        super().__init__(db, clock, **kw)
        self.events: list[OutboxEvent] = []
        self.fail_next: BaseException | None = None

    async def write_in(self, conn: Any, events: Sequence[OutboxEvent]) -> int:
        if self.fail_next is not None:
            error, self.fail_next = self.fail_next, None
            raise error
        self.events.extend(events)
        return await super().write_in(conn, events)

    def of(self, name: str) -> list[dict[str, Any]]:
        """The ``data`` of every event named ``name``, in order."""
        return [e.payload["data"] for e in self.events if e.name == name]


@dataclass
class RecordingHandler:
    """An :class:`~wagate.worker.events.EventHandler` that keeps what it was handed."""

    calls: list[tuple[str, str, object]] = field(default_factory=list)
    links: dict[str, object] = field(default_factory=dict)

    async def linked(self, session_id: str, link: Link) -> None:
        self.links[session_id] = link
        self.calls.append(("linked", session_id, link))

    async def unlinked(self, session_id: str) -> None:
        self.links.pop(session_id, None)
        self.calls.append(("unlinked", session_id, None))

    async def message(self, session_id: str, link: Link, event: MessageEvent) -> None:
        self.calls.append(("message", session_id, event))

    async def group(self, session_id: str, link: Link, event: GroupEvent) -> None:
        self.calls.append(("group", session_id, event))

    async def receipt(self, session_id: str, event: ReceiptEvent) -> None:
        self.calls.append(("receipt", session_id, event))

    def of(self, kind: str) -> list[object]:
        return [what for name, _, what in self.calls if name == kind]


async def until(check: Callable[[], Awaitable[bool]], limit_s: float = 10.0) -> None:
    """Wait (in real time, bounded) until ``await check()`` holds: for state in a database."""

    async def wait() -> None:
        while not await check():  # noqa: ASYNC110 - the database is the only signal
            await asyncio.sleep(0.005)

    await asyncio.wait_for(wait(), limit_s)


async def eventually(predicate: Callable[[], object], limit_s: float = 5.0) -> None:
    """Wait (in real time, bounded) until ``predicate()`` is true: for state other tasks reach."""

    async def wait() -> None:
        while not predicate():  # noqa: ASYNC110 - a plain predicate has nothing to await
            await asyncio.sleep(0.002)

    await asyncio.wait_for(wait(), limit_s)


class Events:
    """Reads a link's event stream with a deadline per event, so a hang fails fast."""

    def __init__(self, link: Link) -> None:
        self._it = link.events()

    async def next(self, within_s: float = 5.0) -> EngineEvent:
        async with asyncio.timeout(within_s):
            return await anext(self._it)

    async def expect(self, kind: type[E], within_s: float = 5.0) -> E:
        event = await self.next(within_s)
        assert isinstance(event, kind), f"expected {kind.__name__}, got {event!r}"
        return event

    async def first(self, kind: type[E], within_s: float = 5.0) -> E:
        """The next event of ``kind``, skipping others (group notices, receipts…)."""
        async with asyncio.timeout(within_s):
            while True:
                event = await anext(self._it)
                if isinstance(event, kind):
                    return event

    async def rest(self, within_s: float = 5.0) -> list[EngineEvent]:
        """Every remaining event; fails if the stream does not end in time."""
        async with asyncio.timeout(within_s):
            return [event async for event in self._it]


def connected(phone: str = "6281234567890", name: str = "Test Phone") -> Connected:
    return Connected(
        jid=f"{phone}:7@s.whatsapp.net",
        phone=phone,
        push_name=name,
        device_name="wagate",
        lid="123456789012345@lid",
    )


def lost(reason: str = "network down") -> Disconnected:
    return Disconnected(DisconnectKind.CONNECTION_LOST, reason)


@dataclass
class ScriptedLink:
    script: Sequence[EngineEvent]
    auth: AuthStore
    options: LinkOptions
    closed: bool = False
    logged_out: bool = False
    sent: list[Outgoing] = field(default_factory=list)
    send_error: BaseException | None = None
    blobs: dict[str, bytes] = field(default_factory=dict)
    group_list: list[GroupInfo] = field(default_factory=list)
    presence: list[bool] = field(default_factory=list)
    drained: bool = False
    refused: list[EngineEvent] = field(default_factory=list)  # pushed after a drain: not taken
    close_gate: asyncio.Event | None = None  # set: closing waits for it, cancelled or not
    _queue: asyncio.Queue[EngineEvent | None] = field(default_factory=asyncio.Queue)

    async def __aenter__(self) -> Self:
        for event in self.script:
            self._queue.put_nowait(event)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        # a close that hangs and ignores cancellation, like a socket stuck in native code
        while self.close_gate is not None and not self.close_gate.is_set():
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.shield(self.close_gate.wait())
        self.closed = True

    async def events(self) -> AsyncIterator[EngineEvent]:
        while True:
            event = await self._queue.get()
            if event is None:
                return
            yield event
            if isinstance(event, Disconnected):
                return

    def push(self, event: EngineEvent) -> None:
        if self.drained:
            self.refused.append(event)
            return
        self._queue.put_nowait(event)

    async def drain(self) -> None:
        """What was pushed so far is still yielded; then the stream ends."""
        if not self.drained:
            self.drained = True
            self._queue.put_nowait(None)

    def end(self, kind: DisconnectKind = DisconnectKind.CONNECTION_LOST, reason: str = "") -> None:
        self.push(Disconnected(kind, reason))

    async def logout(self) -> None:
        self.logged_out = True
        self.end(DisconnectKind.LOGGED_OUT, "logged out by request")

    async def send(self, message: Outgoing) -> SendResult:
        if self.send_error is not None:
            raise self.send_error
        self.sent.append(message)
        return SendResult(message.id or f"SCRIPTED{len(self.sent):06d}", datetime.now(UTC))

    async def download(self, media: MediaRef) -> AsyncIterator[bytes]:
        data = self.blobs[str(media.handle.get("blob"))]
        for start in range(0, len(data), 64 * 1024):
            yield data[start : start + 64 * 1024]

    async def groups(self) -> list[GroupInfo]:
        return list(self.group_list)

    async def set_presence(self, available: bool) -> None:
        self.presence.append(available)


class ScriptedEngine:
    """An engine that plays one script per link; see the module docstring."""

    name = "scripted"

    def __init__(self, scripts: Sequence[Script] = ()) -> None:
        self.scripts: deque[tuple[Script, asyncio.Event | None]] = deque(
            (script, None) for script in scripts
        )
        self.links: list[ScriptedLink] = []
        self.options: list[LinkOptions] = []

    def add(self, *scripts: Script, close_gate: asyncio.Event | None = None) -> None:
        """Queue scripts; with ``close_gate``, their links hang on close until it is set."""
        self.scripts.extend((script, close_gate) for script in scripts)

    def link(self, auth: AuthStore, options: LinkOptions) -> ScriptedLink:
        self.options.append(options)
        script, gate = self.scripts.popleft() if self.scripts else ((), None)
        if isinstance(script, BaseException):
            return _Raising(script, auth, options)  # type: ignore[return-value]
        link = ScriptedLink(list(script), auth, options, close_gate=gate)
        self.links.append(link)
        return link

    async def aclose(self) -> None:
        return None


@dataclass
class _Raising:
    error: BaseException
    auth: AuthStore
    options: LinkOptions

    async def __aenter__(self) -> ScriptedLink:
        raise self.error

    async def __aexit__(self, *exc: object) -> None:
        return None


if TYPE_CHECKING:  # mypy holds each fake to the protocol it stands in for
    from wagate.engine.base import Engine
    from wagate.storage.auth_state import MemoryAuthStore
    from wagate.worker.events import EventHandler

    _engine: Engine = ScriptedEngine()
    _link: Link = ScriptedLink([], MemoryAuthStore("s"), LinkOptions())
    _handler: EventHandler = RecordingHandler()
    _auth: AuthStore = MemoryAuthStore("s")
