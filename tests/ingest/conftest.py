from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

import pytest

from wagate.clock import ManualClock
from wagate.engine.base import LinkOptions
from wagate.ingest.media import MediaStore
from wagate.ingest.pipeline import IngestPipeline, IngestPolicy
from wagate.storage.auth_state import MemoryAuthStore
from wagate.storage.blobs import MemoryBlobStore
from wagate.storage.db import Database
from wagate.storage.repos.audit import AuditRepo
from wagate.storage.repos.groups import GroupRepo
from wagate.storage.repos.media import MediaRepo
from wagate.storage.repos.messages import MessageRepo
from wagate.testing import ScriptedLink
from wagate.webhooks.events import RecordingSink

MB = 1024 * 1024


@dataclass
class Bench:
    pipeline: IngestPipeline
    messages: MessageRepo
    groups: GroupRepo
    media: MediaRepo
    audit: AuditRepo
    blobs: MemoryBlobStore
    sink: RecordingSink
    clock: ManualClock
    link: ScriptedLink
    connected: list[bool] = field(default_factory=lambda: [True])

    async def errors(self) -> list[dict[str, object]]:
        return [e.data for e in await self.audit.recent(event="error")]


@pytest.fixture
def bench(db: Database, clock: ManualClock, tmp_path: Path) -> Iterator[Bench]:
    messages, groups, media = MessageRepo(db, clock), GroupRepo(db, clock), MediaRepo(db, clock)
    audit, blobs, sink = AuditRepo(db, clock), MemoryBlobStore(), RecordingSink()
    link = ScriptedLink([], MemoryAuthStore("s1"), LinkOptions())
    store = MediaStore(
        media,
        blobs,
        max_bytes=25 * MB,
        other_max_bytes=5 * MB,
        prefix="wa-media",
        spool_dir=tmp_path / "spool",
    )
    connected = [True]
    policy = IngestPolicy(
        live_window=timedelta(seconds=30),
        link_window=timedelta(seconds=90),
        ingest_direct=True,
        ingest_from_me=True,
        retry_min_s=0.5,
        retry_max_s=1.0,
    )
    pipeline = IngestPipeline(
        policy=policy,
        messages=messages,
        groups=groups,
        media=store,
        audit=audit,
        sink=sink,
        clock=clock,
        link_for=lambda _sid: link if connected[0] else None,
        rng=random.Random(5),
    )
    yield Bench(pipeline, messages, groups, media, audit, blobs, sink, clock, link, connected)
