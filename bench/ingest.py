"""Ingest benchmark: the inbound pipeline against same-run baselines.

- messages: the pipeline for N text messages (one session, in order, as the
  session's event path runs it: ``IngestPipeline.receive`` then ``complete``,
  which for a text is inline) against raw batched ``INSERT``s of the same rows
  with the same driver and database (throughput);
- latency: each message's pipeline run against a single-row ``INSERT`` and commit
  of the same row with the same driver, the two timed alternately message by
  message so both see the same machine and the same table size;
- media: ``MediaStore.store`` (spool, sha256, dedupe lookup, local store, row)
  against ``hashlib.sha256`` alone over the same bytes.

Run: ``python bench/ingest.py [--messages 2000] [--database-url postgresql://…]``.
Prints a table and writes ``bench/results/ingest-<time>.json``. Not a test.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import os
import random
import tempfile
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from report import report

from wagate.clock import SystemClock
from wagate.domain.message import MessageKind
from wagate.engine.base import MessageEvent
from wagate.ingest.media import MediaMeta, MediaStore
from wagate.ingest.pipeline import IngestPipeline
from wagate.settings import load_settings, to_async_url
from wagate.storage.blobs import LocalBlobStore
from wagate.storage.db import Database, create_engine, migrate
from wagate.storage.repos.audit import AuditRepo
from wagate.storage.repos.groups import GroupRepo
from wagate.storage.repos.media import MediaRepo
from wagate.storage.repos.messages import MessageRepo
from wagate.storage.tables import messages


def _event(i: int, now: datetime) -> MessageEvent:
    chat = f"62811{i % 50:08d}@s.whatsapp.net"
    return MessageEvent(
        id=f"BENCH{i:012d}",
        chat=chat,
        sender=chat,
        timestamp=now,
        kind=MessageKind.TEXT,
        text=f"message number {i} " + "x" * 80,
    )


def _row(i: int, now: datetime, session_id: str = "raw") -> dict[str, Any]:
    chat = f"62811{i % 50:08d}@s.whatsapp.net"
    return {
        "session_id": session_id,
        "wa_msg_id": f"{session_id.upper()}{i:012d}",
        "direction": "in",
        "status": "received",
        "chat_id": chat,
        "sender": chat,
        "kind": "text",
        "text": f"message number {i} " + "x" * 80,
        "raw": {},
        "ts": now,
        "created_at": now,
        "updated_at": now,
    }


async def bench_raw(db: Database, n: int, batch: int = 500) -> float:
    now = datetime.now(UTC)
    rows = [_row(i, now) for i in range(n)]
    start = time.perf_counter()
    for offset in range(0, n, batch):
        async with db.begin() as conn:
            await conn.execute(messages.insert(), rows[offset : offset + batch])
    return time.perf_counter() - start


async def ingest_one(pipeline: IngestPipeline, session_id: str, event: MessageEvent) -> None:
    """What the session's event path does with a text message: store it, then complete it.

    No link: a text has no media to download (``Ingest.message`` completes it inline).
    """
    message = await pipeline.receive(session_id, event)
    if message is not None:
        await pipeline.complete(session_id, None, message)


async def bench_messages(
    db: Database, pipeline: IngestPipeline, n: int
) -> tuple[list[float], list[float]]:
    """Per-message seconds: one-row insert+commit (baseline) and the pipeline, alternately."""
    single: list[float] = []
    handled: list[float] = []
    for i in range(n):
        now = datetime.now(UTC)
        row = _row(i, now, "single")
        t0 = time.perf_counter()
        async with db.begin() as conn:
            await conn.execute(messages.insert().values(**row))
        single.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        await ingest_one(pipeline, "bench", _event(i, now))
        handled.append(time.perf_counter() - t0)
    return single, handled


def _ms(seconds: list[float], q: float) -> float:
    """The ``q`` quantile of ``seconds``, in milliseconds."""
    ordered = sorted(seconds)
    return ordered[max(0, round(len(ordered) * q) - 1)] * 1000


async def _chunks(data: bytes, size: int = 64 * 1024) -> AsyncIterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start : start + size]


async def bench_media(store: MediaStore, blobs: list[bytes]) -> tuple[float, float]:
    start = time.perf_counter()
    for data in blobs:
        hashlib.sha256(data).hexdigest()
    baseline = time.perf_counter() - start
    start = time.perf_counter()
    for data in blobs:
        await store.store(_chunks(data), MediaMeta(mimetype="image/jpeg", size=len(data)))
    return baseline, time.perf_counter() - start


async def run(args: argparse.Namespace) -> dict[str, Any]:
    tmp = Path(tempfile.mkdtemp(prefix="wagate-bench-"))
    url = args.database_url or f"sqlite:///{tmp / 'bench.db'}"
    settings = load_settings(data_dir=tmp, database_url=url)
    await migrate(to_async_url(url))
    db = Database(create_engine(to_async_url(url)))
    clock = SystemClock()
    media = MediaStore(
        MediaRepo(db, clock),
        LocalBlobStore(tmp / "media"),
        max_bytes=64 * 1024 * 1024,
        other_max_bytes=0,
        prefix="wa-media",
        spool_dir=tmp / "spool",
    )
    # repositories without an outbox: the events are built, not written (no subscriber here)
    pipeline = IngestPipeline(
        settings.ingest,
        messages=MessageRepo(db, clock),
        groups=GroupRepo(db, clock),
        media=media,
        audit=AuditRepo(db, clock),
        clock=clock,
    )
    try:
        raw_s = await bench_raw(db, args.messages)
        single, lat = await bench_messages(db, pipeline, args.messages)
        blobs = [os.urandom(args.media_kb * 1024) for _ in range(args.media)]
        hash_s, store_s = await bench_media(media, blobs)
    finally:
        await db.aclose()
    pipe_s = sum(lat)
    return {
        "when": datetime.now(UTC).isoformat(),
        "database": db.dialect,
        "messages": args.messages,
        "raw_batched_msgs_per_s": args.messages / raw_s,
        "pipeline_msgs_per_s": args.messages / pipe_s,
        "pipeline_to_raw_ratio": raw_s / pipe_s,
        "single_insert_latency_ms_p50": _ms(single, 0.5),
        "single_insert_latency_ms_p99": _ms(single, 0.99),
        "pipeline_latency_ms_p50": _ms(lat, 0.5),
        "pipeline_latency_ms_p99": _ms(lat, 0.99),
        "pipeline_to_single_insert_latency_ratio_p50": _ms(lat, 0.5) / _ms(single, 0.5),
        "pipeline_to_single_insert_latency_ratio_p99": _ms(lat, 0.99) / _ms(single, 0.99),
        "media_files": args.media,
        "media_kb": args.media_kb,
        "hashlib_mb_per_s": args.media * args.media_kb / 1024 / hash_s,
        "media_store_mb_per_s": args.media * args.media_kb / 1024 / store_s,
        "media_store_to_hashlib_ratio": hash_s / store_s,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--messages", type=int, default=2000)
    parser.add_argument("--media", type=int, default=20)
    parser.add_argument("--media-kb", type=int, default=2048)
    parser.add_argument("--database-url", default=os.environ.get("WAGATE_BENCH_DATABASE_URL"))
    args = parser.parse_args()
    random.seed(1)
    result = asyncio.run(run(args))
    report("ingest", result)


if __name__ == "__main__":
    main()
