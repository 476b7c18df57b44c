"""The pieces under the send path: payload codec, media spool, queue repository, policy."""

from __future__ import annotations

import random
from datetime import timedelta
from pathlib import Path

import pytest

from wagate.clock import ManualClock
from wagate.domain.message import (
    ContactCard,
    LinkPreview,
    Location,
    MessageKind,
    Outgoing,
    OutgoingMedia,
    Quote,
)
from wagate.outbound import queue
from wagate.outbound.sender import SendPolicy
from wagate.storage.db import Database
from wagate.storage.repos.outbound import NewOutbound, OutboundRepo
from wagate.storage.spool import MediaSpool, SpoolError


def test_codec_round_trips_every_field() -> None:
    message = Outgoing(
        to="1@s.whatsapp.net",
        kind=MessageKind.DOCUMENT,
        text="caption",
        media=OutgoingMedia(b"bytes", "application/pdf", "a.pdf", 1, 2, 3.5),
        location=Location(1.0, 2.0, "n", "a"),
        contact=ContactCard("Ann", "62811", None),
        react_to="R",
        react_to_sender="2@s.whatsapp.net",
        quote=Quote("Q", "3@s.whatsapp.net", "quoted"),
        mentions=("4@s.whatsapp.net",),
        link_preview=True,
        preview=LinkPreview("https://e.x/", "title", "description", b"\xff\xd8thumb"),
        id="ignored",
    )
    data = queue.to_json(message)
    assert "bytes" not in repr(data) and "ignored" not in repr(data)
    back = queue.from_json(data, id="3EB0X", media_data=b"bytes")
    assert back == Outgoing(**{**_fields(message), "id": "3EB0X"})
    minimal = queue.to_json(Outgoing("1@s.whatsapp.net", MessageKind.TEXT, "hi"))
    assert minimal == {"to": "1@s.whatsapp.net", "kind": "text", "text": "hi"}
    with pytest.raises(ValueError):
        queue.from_json(data, id=None)  # media named, no bytes given


def _fields(message: Outgoing) -> dict[str, object]:
    return {name: getattr(message, name) for name in Outgoing.__slots__}


async def test_spool_inline_and_file(tmp_path: Path) -> None:
    spool = MediaSpool(tmp_path / "outbox", inline_max_bytes=4)
    small = await spool.put("s1", "A", b"1234")
    big = await spool.put("s1", "B", b"12345")
    assert "data" in small and big["file"] == "s1/B.bin"
    assert (await spool.load(small), await spool.load(big)) == (b"1234", b"12345")
    assert MediaSpool.stripped(big) == {"size": 5, "sha256": big["sha256"]}
    (tmp_path / "outbox" / "s1" / "B.bin").write_bytes(b"54321")
    with pytest.raises(SpoolError, match="checksum"):
        await spool.load(big)
    await spool.discard(big)
    assert not (tmp_path / "outbox" / "s1" / "B.bin").exists()
    with pytest.raises(SpoolError, match="unreadable"):
        await spool.load(big)
    with pytest.raises(SpoolError, match="outside"):
        await spool.load({**big, "file": "../../etc/passwd"})
    with pytest.raises(SpoolError, match="dropped"):
        await spool.load(MediaSpool.stripped(big))


async def test_spool_lists_old_files(tmp_path: Path) -> None:
    spool = MediaSpool(tmp_path, inline_max_bytes=0)
    assert await spool.files_older_than(0) == []
    (tmp_path / "s1").mkdir()
    (tmp_path / "s1" / "W1.bin").write_bytes(b"x")
    assert [(s, w) for s, w, _ in await spool.files_older_than(-1)] == [("s1", "W1")]
    assert await spool.files_older_than(3600) == []


async def test_receipts_only_move_forward(db: Database, clock: ManualClock) -> None:
    repo = OutboundRepo(db, clock)
    message, created = await repo.enqueue(
        NewOutbound("s1", "W1", "1@s.whatsapp.net", "text", "hi", payload={})
    )
    assert created
    at = clock.now()
    assert [m.status for m in await repo.apply_receipt("s1", ["W1"], "read", at)] == ["read"]
    assert await repo.apply_receipt("s1", ["W1"], "delivered", at + timedelta(1)) == []
    sent = await repo.mark_sent(message.id, wa_msg_id="W1", at=at, payload=None)
    assert sent is not None and sent.status == "read"
    assert sent.delivered_at == at and sent.read_at == at
    assert await repo.mark_failed(message.id, "too late", None) is None  # not queued any more
    assert await repo.apply_receipt("s2", ["W1"], "played", at) == []  # other sessions' ids


async def test_enqueue_returns_the_holder_of_a_key(db: Database, clock: ManualClock) -> None:
    repo = OutboundRepo(db, clock)
    first, created = await repo.enqueue(
        NewOutbound("s1", "W1", "c", "text", "a", payload={}, idempotency_key="k")
    )
    again, created_again = await repo.enqueue(
        NewOutbound("s1", "W2", "c", "text", "b", payload={}, idempotency_key="k")
    )
    assert (created, created_again) == (True, False)
    assert again.id == first.id and again.wa_msg_id == "W1"
    assert await repo.sessions_with_queue() == ["s1"]


def test_policy() -> None:
    rng = random.Random(1)
    assert SendPolicy(interval_s=0, jitter_s=5).gap(rng) == 0
    gaps = {SendPolicy(interval_s=1, jitter_s=0.5).gap(rng) for _ in range(20)}
    assert all(1 <= g <= 1.5 for g in gaps) and len(gaps) > 1
    policy = SendPolicy(retry_max_s=10)
    assert [policy.retry_delay(n) for n in (1, 2, 3, 4, 5, 6)] == [1, 2, 4, 8, 10, 10]
