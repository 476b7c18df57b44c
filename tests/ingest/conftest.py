"""The inbound side on its own: a pipeline (and the ``Ingest`` service) over a real database.

A :class:`Bench` is built by the ``make_bench`` factory from its parts, each
given through a constructor: settings overrides, the repository classes (a
subclass that fails where a test needs it to), a recording outbox and a
manual clock. Links are scripted; their downloads can be held.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field, replace
from datetime import timedelta
from pathlib import Path
from typing import Any, TypeVar

import pytest

from wagate.clock import ManualClock
from wagate.domain.message import MediaRef, Message
from wagate.engine.base import AuthStore, LinkOptions, MessageEvent
from wagate.errors import NotFound
from wagate.ingest.groups import GroupSync
from wagate.ingest.media import MediaStore
from wagate.ingest.pipeline import IngestPipeline
from wagate.ingest.service import Ingest
from wagate.settings import IngestSettings, Settings
from wagate.storage.auth_state import MemoryAuthStore
from wagate.storage.blobs import MemoryBlobStore
from wagate.storage.db import Database
from wagate.storage.repos.audit import AuditRepo
from wagate.storage.repos.groups import GroupRepo
from wagate.storage.repos.media import MediaRepo
from wagate.storage.repos.messages import MessageRepo
from wagate.testing import RecordingOutbox, ScriptedEngine, ScriptedLink, settings_for_tests
from wagate.webhooks.events import Event

MB = 1024 * 1024
HOUR_MS = 3_600_000
L = TypeVar("L", bound=ScriptedLink)


@dataclass
class HeldLink(ScriptedLink):
    """A scripted link whose downloads can be held back: each waits while the link is held."""

    gate: asyncio.Event = field(default_factory=asyncio.Event)
    downloads: int = 0  # downloads started, held or not

    def __post_init__(self) -> None:
        self.gate.set()

    def hold(self) -> None:
        self.gate.clear()

    def release(self) -> None:
        self.gate.set()

    async def download(self, media: MediaRef) -> AsyncIterator[bytes]:
        self.downloads += 1
        await self.gate.wait()
        async for chunk in super().download(media):
            yield chunk


class GoneLink(ScriptedLink):
    """A scripted link whose every download fails for good (the media is gone)."""

    async def download(self, media: MediaRef) -> AsyncIterator[bytes]:
        raise NotFound("this media has no sandbox blob handle")
        yield b""  # pragma: no cover - makes this an async generator, like a real download


class GroupsEngine(ScriptedEngine):
    """A scripted engine whose new links are in ``groups`` from the start.

    The first discovery runs as soon as a session connects: the groups must be
    there before that, not put on the link once the test sees it.
    """

    def __init__(self) -> None:
        super().__init__()
        self.groups: list[Any] = []

    def link(self, auth: AuthStore, options: LinkOptions) -> ScriptedLink:
        made = super().link(auth, options)
        made.group_list = list(self.groups)
        return made


@pytest.fixture
def engine() -> GroupsEngine:
    return GroupsEngine()


@pytest.fixture
def settings(tmp_path: Path, database_url: str) -> Settings:
    """The suite's settings, but runtime flags are polled by the tests alone.

    A test polls the flag watcher itself; a poll of the watcher's own loop
    overlapping it would act on the same flag twice.
    """
    return settings_for_tests(
        tmp_path / "data",
        database_url=database_url,
        backoff_base_ms=1000,
        backoff_max_ms=30000,
        worker_poll_ms=HOUR_MS,
        proxy_check_interval_ms=HOUR_MS,  # the proxy pool's checks stay off the clock
        proxy_recheck_base_ms=HOUR_MS,
    )


@dataclass
class Bench:
    pipeline: IngestPipeline
    messages: MessageRepo
    groups: GroupRepo
    media: MediaRepo
    store: MediaStore
    audit: AuditRepo
    blobs: MemoryBlobStore
    outbox: RecordingOutbox
    clock: ManualClock
    link: HeldLink
    start_ingest: Callable[[], Awaitable[Ingest]]

    async def handle(
        self, event: MessageEvent, *, link: ScriptedLink | None = None, session_id: str = "s1"
    ) -> Message | None:
        """The event path then the completion, in order: the row as completed, or None.

        None when the pipeline did not ingest the event, or it had been
        handled in full before (nothing left to complete).
        """
        message = await self.pipeline.receive(session_id, event)
        if message is None:
            return None
        return await self.pipeline.complete(session_id, link or self.link, message)

    def received(self) -> list[dict[str, Any]]:
        """The ``data`` of every ``message.received`` written to the outbox, in order."""
        return self.outbox.of(Event.MESSAGE_RECEIVED)

    def another_link(self) -> HeldLink:
        """A new link of the same account (after a reconnect): the same media to download."""
        link = scripted(HeldLink)
        link.blobs = self.link.blobs
        return link

    async def errors(self) -> list[dict[str, object]]:
        return [e.data for e in await self.audit.recent(event="error")]


def scripted(kind: type[L] = ScriptedLink) -> L:  # type: ignore[assignment]
    """A link of session ``s1`` with nothing scripted: the tests hand events in themselves."""
    return kind([], MemoryAuthStore("s1"), LinkOptions())


def ingest_settings(tmp_path: Path, **overrides: Any) -> IngestSettings:
    """Seed 003's defaults, as a test builds them: no environment involved."""
    view = IngestSettings(
        max_media_bytes=25 * MB,
        other_media_max_bytes=5 * MB,
        live_window=timedelta(seconds=30),
        link_window=timedelta(seconds=90),
        ingest_direct=True,
        ingest_from_me=True,
        retry_min_s=0.5,
        retry_max_s=1.0,
        media_prefix="wa-media",
        spool_dir=tmp_path / "spool",
    )
    return replace(view, **overrides)


BenchFactory = Callable[..., Awaitable[Bench]]


@pytest.fixture
async def make_bench(
    db: Database, clock: ManualClock, tmp_path: Path
) -> AsyncIterator[BenchFactory]:
    """Build a bench; keyword arguments override :class:`IngestSettings` fields.

    ``messages=`` and ``groups=`` take the repository classes to build (a
    subclass that fails on purpose). Every ``Ingest`` service a bench starts
    is stopped when the test ends.
    """
    async with contextlib.AsyncExitStack() as stack:

        async def make(
            *,
            messages: type[MessageRepo] = MessageRepo,
            groups: type[GroupRepo] = GroupRepo,
            **overrides: Any,
        ) -> Bench:
            settings = ingest_settings(tmp_path, **overrides)
            outbox = RecordingOutbox(db, clock)
            message_repo = messages(db, clock, outbox=outbox)
            group_repo = groups(db, clock, outbox=outbox)
            media, audit, blobs = MediaRepo(db, clock), AuditRepo(db, clock), MemoryBlobStore()
            store = MediaStore(
                media,
                blobs,
                max_bytes=settings.max_media_bytes,
                other_max_bytes=settings.other_media_max_bytes,
                prefix=settings.media_prefix,
                spool_dir=settings.spool_dir,
            )
            pipeline = IngestPipeline(
                settings,
                messages=message_repo,
                groups=group_repo,
                media=store,
                audit=audit,
                clock=clock,
                rng=random.Random(5),
            )

            async def start_ingest() -> Ingest:
                service = Ingest(
                    pipeline=pipeline,
                    groups=GroupSync(group_repo, audit, clock),
                    messages=message_repo,
                    audit=audit,
                )
                return await stack.enter_async_context(service)

            return Bench(
                pipeline,
                message_repo,
                group_repo,
                media,
                store,
                audit,
                blobs,
                outbox,
                clock,
                scripted(HeldLink),
                start_ingest,
            )

        yield make


@pytest.fixture
async def bench(make_bench: BenchFactory) -> Bench:
    return await make_bench()
