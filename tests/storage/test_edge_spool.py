"""The edge worker's spool: posts kept in order per lane until taken, each send recorded once."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from wagate.errors import StorageError
from wagate.storage import edge_spool
from wagate.storage.edge_spool import (
    FAILED,
    MARK_SENT,
    SENDING,
    SENT,
    EdgeSpool,
    Post,
    SendRecord,
)

INBOUND = "/inbound"


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "data" / "edge-spool.sqlite3"  # its folder made on opening


@pytest.fixture
async def spool(path: Path) -> AsyncIterator[EdgeSpool]:
    async with EdgeSpool(path) as opened:
        yield opened


@pytest.fixture
def now(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """The spool's wall clock, set by the test: ``now[0]``."""
    clock = [1_000.0]
    monkeypatch.setattr(edge_spool, "time", SimpleNamespace(time=lambda: clock[0]))
    return clock


async def settle(
    spool: EdgeSpool,
    message_id: str,
    state: str = SENT,
    instance: str = "i1",
    wa_id: str | None = "3EB0AA",
    error: str | None = None,
) -> None:
    mark = {"instanceId": instance, "messageId": message_id, "status": state}
    await spool.settle_send(
        instance,
        message_id,
        state=state,
        wa_message_id=wa_id,
        error=error,
        mark=mark,
        path=MARK_SENT,
    )


async def drain(spool: EdgeSpool, instance: str, path: str = INBOUND) -> list[Post]:
    """Every post of one lane, oldest first, each marked done once read."""
    taken = []
    while (post := await spool.oldest(instance, path)) is not None:
        taken.append(post)
        await spool.done(post.seq)
    return taken


# --- posts ---------------------------------------------------------------------------------


async def test_posts_come_out_oldest_first_per_lane(spool: EdgeSpool) -> None:
    first = await spool.add_post("i1", INBOUND, {"text": "héllo 👋"})
    other = await spool.add_post("i2", INBOUND, {"text": "b"})
    mark = await spool.add_post("i1", MARK_SENT, {"messageId": "m1"}, key="m1")
    second = await spool.add_post("i1", INBOUND, {"text": "2"})
    assert first < other < mark < second
    assert await spool.oldest("i1", INBOUND) == Post(
        first, "i1", INBOUND, None, {"text": "héllo 👋"}, 0
    )
    assert await spool.oldest("i1", MARK_SENT) == Post(
        mark, "i1", MARK_SENT, "m1", {"messageId": "m1"}, 0
    )
    assert await spool.oldest("i2", INBOUND) == Post(other, "i2", INBOUND, None, {"text": "b"}, 0)
    await spool.done(first)
    assert await spool.oldest("i1", INBOUND) == Post(second, "i1", INBOUND, None, {"text": "2"}, 0)
    await spool.done(second)
    assert await spool.oldest("i1", INBOUND) is None
    assert await spool.oldest("i1", MARK_SENT) is not None
    assert await spool.oldest("i2", MARK_SENT) is None and await spool.oldest("i9", INBOUND) is None


async def test_pending_counts_posts_per_instance_and_in_all(spool: EdgeSpool) -> None:
    assert await spool.pending() == 0
    seqs = [await spool.add_post(i, INBOUND, {}) for i in ("i1", "i1", "i2")]
    await spool.add_post("i1", MARK_SENT, {}, key="m1")
    assert [await spool.pending(i) for i in (None, "i1", "i2")] == [4, 3, 1]
    await spool.done(seqs[0])
    await spool.done(seqs[0])  # done twice: nothing more goes
    assert [await spool.pending(i) for i in (None, "i1", "i3")] == [3, 2, 0]


async def test_pending_lanes_come_in_the_order_of_their_oldest_post(spool: EdgeSpool) -> None:
    assert await spool.pending_lanes() == []
    b1 = await spool.add_post("b", INBOUND, {})
    for lane in (("a", INBOUND), ("b", MARK_SENT), ("b", INBOUND), ("c", INBOUND)):
        await spool.add_post(*lane, {})
    lanes = [("b", INBOUND), ("a", INBOUND), ("b", MARK_SENT), ("c", INBOUND)]
    assert await spool.pending_lanes() == lanes
    await spool.done(b1)
    assert await spool.pending_lanes() == [lanes[1], lanes[2], lanes[0], lanes[3]]
    await drain(spool, "a")
    await drain(spool, "b", MARK_SENT)
    assert await spool.pending_lanes() == [("b", INBOUND), ("c", INBOUND)]


async def test_a_failed_attempt_is_counted_on_its_post_which_stays_first(spool: EdgeSpool) -> None:
    seq = await spool.add_post("i1", INBOUND, {"n": 1})
    later = await spool.add_post("i1", INBOUND, {"n": 2})
    await spool.failed_attempt(seq, "503: busy")
    await spool.failed_attempt(seq, "x" * 2_000)
    oldest = await spool.oldest("i1", INBOUND)
    assert oldest is not None and (oldest.seq, oldest.attempts) == (seq, 2)
    await spool.done(seq)
    again = await spool.oldest("i1", INBOUND)
    assert again is not None and (again.seq, again.attempts) == (later, 0)


async def test_has_post_matches_instance_path_and_key(spool: EdgeSpool) -> None:
    await spool.add_post("i1", MARK_SENT, {}, key="m1")
    assert await spool.has_post("i1", MARK_SENT, "m1")
    assert not await spool.has_post("i2", MARK_SENT, "m1")
    assert not await spool.has_post("i1", INBOUND, "m1")
    assert not await spool.has_post("i1", MARK_SENT, "m2")


async def test_fifty_concurrent_posts_all_land_with_distinct_seqs(spool: EdgeSpool) -> None:
    seqs = await asyncio.gather(*(spool.add_post("i1", INBOUND, {"n": n}) for n in range(50)))
    assert len(set(seqs)) == 50 and all(seq > 0 for seq in seqs)
    assert await spool.pending("i1") == 50
    taken = await drain(spool, "i1")
    assert sorted(post.body["n"] for post in taken) == list(range(50))
    assert [post.seq for post in taken] == sorted(seqs)


# --- on disk -------------------------------------------------------------------------------


async def test_posts_and_sends_survive_closing_and_reopening(path: Path) -> None:
    async with EdgeSpool(path) as spool:
        seq = await spool.add_post("i1", INBOUND, {"text": "kept"}, key="k")
        await spool.begin_send("i1", "m1")
        await spool.begin_send("i1", "m2")
        await settle(spool, "m2", FAILED, wa_id=None, error="no such number")
    async with EdgeSpool(path) as reopened:
        assert await reopened.oldest("i1", INBOUND) == Post(
            seq, "i1", INBOUND, "k", {"text": "kept"}, 0
        )
        assert await reopened.has_post("i1", MARK_SENT, "m2")
        assert await reopened.send_of("i1", "m1") == SendRecord("i1", "m1", SENDING, None, None, 1)
        failed = SendRecord("i1", "m2", FAILED, None, "no such number", 1)
        assert await reopened.send_of("i1", "m2") == failed
        assert await reopened.begin_send("i1", "m1") == 2


async def test_a_seq_is_never_given_twice_even_across_a_reopen(path: Path) -> None:
    async with EdgeSpool(path) as spool:
        seqs = [await spool.add_post("i1", INBOUND, {}) for _ in range(3)]
        await drain(spool, "i1")
    async with EdgeSpool(path) as reopened:
        assert await reopened.add_post("i1", INBOUND, {}) > max(seqs)


# --- sends ---------------------------------------------------------------------------------


async def test_begin_send_counts_the_attempts_while_sending(spool: EdgeSpool) -> None:
    assert await spool.send_of("i1", "m1") is None
    assert [await spool.begin_send("i1", "m1") for _ in range(3)] == [1, 2, 3]
    assert await spool.begin_send("i2", "m1") == 1  # per instance
    record = await spool.send_of("i1", "m1")
    assert record == SendRecord("i1", "m1", SENDING, None, None, 3) and not record.settled


async def test_concurrent_begin_sends_each_get_their_own_count(spool: EdgeSpool) -> None:
    counts = await asyncio.gather(*(spool.begin_send("i1", "m1") for _ in range(10)))
    assert sorted(counts) == list(range(1, 11))


async def test_settle_send_writes_the_outcome_and_its_acknowledgement(spool: EdgeSpool) -> None:
    await spool.begin_send("i1", "m1")
    await spool.begin_send("i1", "m1")
    await settle(spool, "m1", SENT, wa_id="3EB0AA")
    record = await spool.send_of("i1", "m1")
    assert record == SendRecord("i1", "m1", SENT, "3EB0AA", None, 2) and record.settled
    assert await spool.has_post("i1", MARK_SENT, "m1")
    post = await spool.oldest("i1", MARK_SENT)
    assert post is not None and (post.path, post.key) == (MARK_SENT, "m1")
    assert post.body == {"instanceId": "i1", "messageId": "m1", "status": SENT}


async def test_a_send_settled_without_beginning_counts_one_attempt(spool: EdgeSpool) -> None:
    await settle(spool, "m1", FAILED, wa_id=None, error="cannot be read")
    assert await spool.send_of("i1", "m1") == SendRecord(
        "i1", "m1", FAILED, None, "cannot be read", 1
    )
    assert await spool.pending("i1") == 1


@pytest.mark.parametrize("state", [SENT, FAILED])
async def test_a_settled_send_is_not_reset_by_a_later_begin_send(
    spool: EdgeSpool, state: str
) -> None:
    await spool.begin_send("i1", "m1")
    await spool.begin_send("i1", "m1")
    await settle(spool, "m1", state, wa_id="3EB0AA", error="e")
    assert await spool.begin_send("i1", "m1") == 2
    assert await spool.begin_send("i1", "m1") == 2
    assert await spool.send_of("i1", "m1") == SendRecord("i1", "m1", state, "3EB0AA", "e", 2)


async def test_a_settle_whose_post_cannot_be_written_leaves_no_trace(spool: EdgeSpool) -> None:
    await spool.begin_send("i1", "m1")
    with pytest.raises(TypeError):  # the acknowledgement is not JSON: after the send's row
        await spool.settle_send(
            "i1", "m1", state=SENT, wa_message_id="3EB0AA", error=None, mark={"x": {1}}, path="/m"
        )
    assert await spool.send_of("i1", "m1") == SendRecord("i1", "m1", SENDING, None, None, 1)
    assert await spool.pending() == 0


async def test_a_failed_transaction_takes_no_other_coroutines_write_with_it(
    spool: EdgeSpool,
) -> None:
    bad = spool.settle_send(
        "i1", "m1", state=SENT, wa_message_id=None, error=None, mark={"x": {1}}, path="/m"
    )
    outcomes = await asyncio.gather(
        bad, spool.add_post("i2", INBOUND, {"n": 1}), return_exceptions=True
    )
    assert isinstance(outcomes[0], TypeError) and isinstance(outcomes[1], int)
    assert await spool.send_of("i1", "m1") is None
    assert await spool.oldest("i2", INBOUND) == Post(outcomes[1], "i2", INBOUND, None, {"n": 1}, 0)


async def test_forget_sends_drops_only_settled_sends_older_than_the_age(
    spool: EdgeSpool, now: list[float]
) -> None:
    await settle(spool, "old-sent", SENT)
    await settle(spool, "old-failed", FAILED, error="e")
    await settle(spool, "old-unacknowledged", SENT)
    await spool.begin_send("i1", "old-sending")
    now[0] = 1_400.0
    await settle(spool, "at-the-edge", SENT)
    now[0] = 1_500.0
    await settle(spool, "fresh", SENT)
    now[0] = 2_000.0
    for _ in range(2):  # the acknowledgements of old-sent and old-failed were taken
        post = await spool.oldest("i1", MARK_SENT)
        assert post is not None and post.key in ("old-sent", "old-failed")
        await spool.done(post.seq)
    assert await spool.forget_sends(600) == 2  # older than 1 400, and acknowledged
    for gone in ("old-sent", "old-failed"):
        assert await spool.send_of("i1", gone) is None
    # a send whose acknowledgement still waits is remembered: handed out again, it is not sent
    for kept in ("old-sending", "at-the-edge", "fresh", "old-unacknowledged"):
        assert await spool.send_of("i1", kept) is not None
    assert await spool.pending("i1") == 3  # the acknowledgements still waiting stay
    assert await spool.forget_sends(600) == 0


# --- closed --------------------------------------------------------------------------------

CALLS: list[Callable[[EdgeSpool], Awaitable[Any]]] = [
    lambda s: s.add_post("i1", INBOUND, {}),
    lambda s: s.oldest("i1", INBOUND),
    lambda s: s.pending(),
    lambda s: s.pending_lanes(),
    lambda s: s.has_post("i1", MARK_SENT, "m1"),
    lambda s: s.done(1),
    lambda s: s.failed_attempt(1, "e"),
    lambda s: s.send_of("i1", "m1"),
    lambda s: s.begin_send("i1", "m1"),
    lambda s: settle(s, "m1"),
    lambda s: s.forget_sends(0),
]


@pytest.mark.parametrize("call", CALLS)
async def test_a_closed_spool_refuses_every_call(
    path: Path, call: Callable[[EdgeSpool], Awaitable[Any]]
) -> None:
    async with EdgeSpool(path) as spool:
        pass
    with pytest.raises(StorageError, match="closed"):
        await call(spool)
    with pytest.raises(StorageError, match="closed"):
        await call(EdgeSpool(path))  # never opened


async def test_closing_twice_is_harmless(path: Path) -> None:
    spool = await EdgeSpool(path).__aenter__()
    await spool.aclose()
    await spool.aclose()
    with pytest.raises(StorageError):
        await spool.pending()


async def test_a_spool_that_cannot_be_opened_says_so(tmp_path: Path) -> None:
    (tmp_path / "a-file").write_text("not a folder")
    with pytest.raises(StorageError, match="cannot open the edge spool"):
        async with EdgeSpool(tmp_path / "a-file" / "edge-spool.sqlite3"):
            pass
