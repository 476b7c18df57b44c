"""The ``Ingest`` service on a session's event path: rows first, media after, nothing lost.

On the event path it only stores; a message's media is downloaded in a task
the session owns, so a slow download never holds up the session's next
event. A row left unfinished when the link went away is completed when the
session is linked again, and announced once whoever completes it.
"""

from __future__ import annotations

import asyncio

from tests.ingest.conftest import Bench, BenchFactory
from tests.ingest.events import PNG, image, monitored, msg
from wagate.domain.event import Announce
from wagate.domain.group import GroupUpsert
from wagate.engine.base import GroupEvent
from wagate.storage.repos.groups import GroupRepo
from wagate.testing import eventually, until

# what the session's event path may take to store a row, on a loaded machine
EVENT_PATH_LIMIT_S = 10


async def _row_is(bench: Bench, wa_id: str, *, media: bool, notified: bool) -> bool:
    row = await bench.messages.by_wa_id("s1", wa_id)
    return (
        row is not None
        and (row.media_id is not None) == media
        and (row.notified_at is not None) == notified
    )


async def test_a_slow_download_does_not_hold_up_the_sessions_next_event(bench: Bench) -> None:
    ingest = await bench.start_ingest()
    await monitored(bench)
    link = bench.link
    await ingest.linked("s1", link)
    link.hold()
    async with asyncio.timeout(EVENT_PATH_LIMIT_S):  # the event path never waits for a download
        await ingest.message("s1", link, image(bench, "SLOW", PNG))
    assert await _row_is(bench, "SLOW", media=False, notified=False)  # stored at once
    await eventually(lambda: link.downloads == 1)  # its download started, and is held

    async with asyncio.timeout(EVENT_PATH_LIMIT_S):
        await ingest.message("s1", link, msg(bench, "NEXT", text="and then"))
    assert await _row_is(bench, "NEXT", media=False, notified=True)
    assert await _row_is(bench, "SLOW", media=False, notified=False)  # still downloading
    assert [d["waMessageId"] for d in bench.received()] == ["NEXT"]

    link.release()
    await until(lambda: _row_is(bench, "SLOW", media=True, notified=True))
    slow = await bench.messages.by_wa_id("s1", "SLOW")
    assert slow is not None
    assert [d["waMessageId"] for d in bench.received()] == ["NEXT", "SLOW"]
    assert bench.received()[1]["media"]["id"] == slow.media_id
    assert await bench.errors() == []


async def test_an_unfinished_row_is_completed_when_the_session_is_linked_again(
    bench: Bench,
) -> None:
    ingest = await bench.start_ingest()
    await monitored(bench)
    first = bench.link
    await ingest.linked("s1", first)
    first.hold()
    late = image(bench, "LATE", PNG)
    await ingest.message("s1", first, late)
    await eventually(lambda: first.downloads == 1)
    await ingest.unlinked("s1")  # the link went away mid-download: its task ends with it
    await eventually(lambda: len(ingest.tasks) == 0)
    assert await _row_is(bench, "LATE", media=False, notified=False)  # stored, not announced
    assert bench.received() == []

    await bench.clock.advance(5)  # the session comes back a little later
    second = bench.another_link()
    second.hold()
    await ingest.linked("s1", second)
    await eventually(lambda: second.downloads == 1)  # the recovery completes the row
    await ingest.message("s1", second, late)  # and the engine redelivers it meanwhile
    await eventually(lambda: second.downloads == 2)  # two completions of one row, racing
    second.release()
    await eventually(lambda: len(ingest.tasks) == 0)

    row = await bench.messages.by_wa_id("s1", "LATE")
    assert row is not None and row.media_id is not None and row.notified_at is not None
    (announced,) = bench.received()  # exactly once
    assert announced["waMessageId"] == "LATE" and announced["media"]["id"] == row.media_id
    assert announced["mediaError"] is None
    assert len(bench.blobs.objects) == 1
    assert await bench.errors() == []


class GroupsDown(GroupRepo):
    async def upsert(
        self,
        session_id: str,
        wa_group_id: str,
        name: str | None,
        participants: int | None = None,
        *,
        announce: Announce[GroupUpsert] | None = None,
    ) -> GroupUpsert:
        raise ConnectionError("database went away")


async def test_a_failing_group_event_is_audited_not_raised(make_bench: BenchFactory) -> None:
    bench = await make_bench(groups=GroupsDown)
    ingest = await bench.start_ingest()
    event = GroupEvent("120363000000000009@g.us", "New group", "created")
    await ingest.group("s1", bench.link, event)  # does not raise into the session's loop
    (entry,) = await bench.audit.recent("s1", event="error")
    assert entry.data["code"] == "EVENT_FAILED"
    assert entry.data["ctx"] == {"wa_group_id": "120363000000000009@g.us"}
    assert "ConnectionError: database went away" in entry.data["msg"]
