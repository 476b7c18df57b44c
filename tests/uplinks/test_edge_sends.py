"""An edge worker's sends: each queued message sent once, its /mark-sent spooled."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import httpx
import pytest

from wagate.clock import ManualClock
from wagate.domain.message import MessageKind, Outgoing, OutgoingMedia
from wagate.engine.base import Link
from wagate.errors import InvalidInput, TransientError
from wagate.outbound.media_fetch import MediaFetcher
from wagate.outbound.sender import SendPolicy
from wagate.storage.edge_spool import FAILED, MARK_SENT, SENDING, SENT, EdgeSpool
from wagate.tasks import TaskSet
from wagate.testing import eventually
from wagate.uplinks.edge import EdgeClient, QueuedMessage, read_queued
from wagate.uplinks.edge_reports import Courier
from wagate.uplinks.edge_sends import Sends

from .edge_rig import BASE_URL, SECRET, FakeLink, Proxy, Refusals, Wakes

PHONE = "6281234567890"
JID = f"{PHONE}@s.whatsapp.net"
QUEUED = "/queued-messages"
PNG = b"\x89PNG\r\n\x1a\n-a-cat-"
POLICY = SendPolicy(interval_s=0.0, jitter_s=0.0, max_attempts=3)


def media_server(request: httpx.Request) -> httpx.Response:
    if request.url.path == "/cat.png":
        return httpx.Response(200, content=PNG, headers={"content-type": "image/png"})
    return httpx.Response(404)


@dataclass
class Rig:
    proxy: Proxy
    edge: EdgeClient
    spool: EdgeSpool
    clock: ManualClock
    tasks: TaskSet
    wakes: Wakes = field(default_factory=Wakes)
    refusals: Refusals = field(default_factory=Refusals)
    renewed: list[tuple[str, float]] = field(default_factory=list)

    def sends(self, policy: SendPolicy = POLICY) -> Sends:
        fetcher = MediaFetcher(
            max_bytes=1 << 20,
            timeout_s=10,
            allow_private=True,
            transport=httpx.MockTransport(media_server),
        )
        return Sends(
            self.edge,
            self.spool,
            cast(Courier, self.wakes),
            clock=self.clock,
            poll_s=5.0,
            policy=policy,
            fetcher=fetcher,
            on_refused=self.refusals,
            on_renewed=lambda instance, at: self.renewed.append((instance, at)),
            spawn=self.tasks.spawn,
            rng=random.Random(1),
        )

    async def marks(self, instance: str = "i1") -> list[dict[str, Any]]:
        """The /mark-sent posts waiting, taken out of the spool (as the courier would)."""
        taken = []
        while (post := await self.spool.oldest(instance, MARK_SENT)) is not None:
            assert post.key == post.body["messageId"]
            taken.append(post.body)
            await self.spool.done(post.seq)
        return taken


@pytest.fixture
async def rig(tmp_path: Path, clock: ManualClock) -> AsyncIterator[Rig]:
    proxy = Proxy()
    async with (
        httpx.AsyncClient(transport=httpx.MockTransport(proxy.handle)) as http,
        EdgeSpool(tmp_path / "edge-spool.sqlite3") as spool,
        TaskSet("test-sends") as tasks,
    ):
        yield Rig(proxy, EdgeClient(BASE_URL, SECRET, "w1", client=http), spool, clock, tasks)


def queued(message_id: str, **item: Any) -> QueuedMessage:
    message = read_queued({"id": message_id, "to": PHONE, "text": "hi", **item})
    assert message is not None
    return message


def mark(message_id: str, *, wa_id: str | None = None, error: str | None = None) -> dict[str, Any]:
    return {
        "instanceId": "i1",
        "messageId": message_id,
        "waMessageId": wa_id,
        "status": "failed" if error else "sent",
        "error": error,
    }


def as_link(link: FakeLink) -> Link:
    return cast(Link, link)


# --- one message: _one ---------------------------------------------------------------------


async def test_a_message_is_sent_once_with_its_id_and_its_mark_sent_spooled(rig: Rig) -> None:
    sends, link = rig.sends(), FakeLink("3EB0WA1")
    await sends._one("i1", as_link(link), queued("m1"), None)

    assert link.sent == [Outgoing(to=JID, kind=MessageKind.TEXT, text="hi", id="m1")]
    record = await rig.spool.send_of("i1", "m1")
    assert record is not None
    assert (record.state, record.wa_message_id, record.attempts) == (SENT, "3EB0WA1", 1)
    assert await rig.marks() == [mark("m1", wa_id="3EB0WA1")]
    assert rig.wakes.calls == [("i1", MARK_SENT)]
    assert (sends.sent, sends.failed) == (1, 0)


async def test_an_id_an_engine_cannot_take_is_not_chosen(rig: Rig) -> None:
    link = FakeLink()
    await rig.sends()._one("i1", as_link(link), queued("a message/with spaces"), None)
    assert [o.id for o in link.sent] == [None]
    assert [m["status"] for m in await rig.marks()] == ["sent"]


async def test_a_message_handed_out_again_is_only_acknowledged_again(rig: Rig) -> None:
    sends, link = rig.sends(), FakeLink("3EB0WA1")
    await sends._one("i1", as_link(link), queued("m1"), None)

    await sends._one("i1", as_link(link), queued("m1"), None)  # its ack still waits
    assert len(link.sent) == 1
    assert await rig.spool.pending("i1") == 1  # no second /mark-sent
    assert await rig.marks() == [mark("m1", wa_id="3EB0WA1")]  # the courier took it

    rig.wakes.calls.clear()
    await sends._one("i1", as_link(link), queued("m1"), None)  # the ack was lost on the way
    assert len(link.sent) == 1
    assert await rig.marks() == [mark("m1", wa_id="3EB0WA1")]
    assert rig.wakes.calls == [("i1", MARK_SENT)]
    assert sends.sent == 1


async def test_a_message_left_sending_by_a_crash_is_sent_again_with_the_same_id(
    rig: Rig,
) -> None:
    assert await rig.spool.begin_send("i1", "m1") == 1  # then the process died
    link = FakeLink("3EB0WA2")
    await rig.sends()._one("i1", as_link(link), queued("m1"), None)  # the restarted worker

    assert [o.id for o in link.sent] == ["m1"]  # an engine taking chosen ids: a no-op
    record = await rig.spool.send_of("i1", "m1")
    assert record is not None and (record.state, record.attempts) == (SENT, 2)
    assert await rig.marks() == [mark("m1", wa_id="3EB0WA2")]


async def test_a_request_error_fails_the_message_for_good(rig: Rig) -> None:
    sends, link = rig.sends(), FakeLink(InvalidInput("to", "not on WhatsApp"))
    await sends._one("i1", as_link(link), queued("m1"), None)

    record = await rig.spool.send_of("i1", "m1")
    assert record is not None and (record.state, record.error) == (FAILED, "not on WhatsApp")
    assert await rig.marks() == [mark("m1", error="not on WhatsApp")]
    assert (sends.sent, sends.failed) == (0, 1)

    await sends._one("i1", as_link(link), queued("m1"), None)  # handed out again
    assert len(link.sent) == 1
    assert await rig.marks() == [mark("m1", error="not on WhatsApp")]


async def test_another_failure_leaves_the_message_to_a_later_poll(rig: Rig) -> None:
    sends = rig.sends()
    link = FakeLink(TransientError("link down"), RuntimeError("boom"), "3EB0WA3")
    for _ in range(2):
        await sends._one("i1", as_link(link), queued("m1"), None)
        record = await rig.spool.send_of("i1", "m1")
        assert record is not None and record.state == SENDING
        assert await rig.spool.pending() == 0  # no /mark-sent
    assert rig.wakes.calls == []

    await sends._one("i1", as_link(link), queued("m1"), None)
    assert [o.id for o in link.sent] == ["m1"] * 3
    assert await rig.marks() == [mark("m1", wa_id="3EB0WA3")]
    assert (sends.sent, sends.failed) == (1, 0)


async def test_after_send_max_attempts_the_message_is_given_up(rig: Rig) -> None:
    sends = rig.sends()
    link = FakeLink(*(RuntimeError("boom") for _ in range(10)))
    for _ in range(POLICY.max_attempts + 2):
        await sends._one("i1", as_link(link), queued("m1"), None)
    assert len(link.sent) == POLICY.max_attempts
    record = await rig.spool.send_of("i1", "m1")
    assert record is not None and record.state == FAILED
    assert await rig.marks() == [mark("m1", error="gave up after 3 attempts")]
    assert sends.failed == 1


async def test_a_message_that_cannot_be_read_is_failed_with_the_problem(rig: Rig) -> None:
    message = read_queued({"id": "m1", "text": "hi"})
    assert message is not None and message.outgoing is None and message.problem
    link = FakeLink()
    await rig.sends()._one("i1", as_link(link), message, None)
    assert link.sent == []
    assert await rig.marks() == [mark("m1", error=message.problem)]
    record = await rig.spool.send_of("i1", "m1")
    assert record is not None and record.state == FAILED


async def test_media_at_a_url_is_fetched_and_sent_and_one_that_cannot_be_fails(rig: Rig) -> None:
    sends, link = rig.sends(), FakeLink()
    cat = {"type": "image", "caption": "a cat", "text": None}
    await sends._one(
        "i1", as_link(link), queued("m1", mediaUrl="http://m.test/cat.png", **cat), None
    )
    await sends._one(
        "i1", as_link(link), queued("m2", mediaUrl="http://m.test/dog.png", **cat), None
    )

    [sent] = link.sent
    assert (sent.id, sent.kind, sent.text) == ("m1", MessageKind.IMAGE, "a cat")
    assert sent.media == OutgoingMedia(PNG, "image/png")
    [ok, failed] = await rig.marks()
    assert (ok["messageId"], ok["status"]) == ("m1", "sent")
    assert (failed["messageId"], failed["status"]) == ("m2", "failed")
    assert "404" in failed["error"]


# --- the poll ------------------------------------------------------------------------------


async def test_the_poll_sends_each_message_once_paced_and_renews_the_claim(rig: Rig) -> None:
    rig.proxy.answer(QUEUED, json={"data": [{"id": "m1", "to": PHONE, "text": "one"},
                                            {"id": "m2", "to": PHONE, "text": "two"}]})  # fmt: skip
    sends = rig.sends(SendPolicy(interval_s=2.0, jitter_s=0.0, max_attempts=3))
    link = FakeLink()
    await rig.clock.advance(7.0)
    sends.linked("i1", as_link(link))
    assert sends.polling() == ["i1"]
    await rig.clock.wait_for_sleepers()  # the pause before m2
    assert [o.text for o in link.sent] == ["one"]
    await rig.clock.advance(2.0)
    await eventually(lambda: len(link.sent) == 2)
    await rig.clock.wait_for_sleepers()  # the poll's wait
    assert rig.clock.sleeps == [2.0, 5.0]

    await rig.clock.advance(5.0)  # the same two handed out again
    await eventually(lambda: len(rig.proxy.to(QUEUED)) == 2)
    await rig.clock.wait_for_sleepers()
    assert [o.id for o in link.sent] == ["m1", "m2"]
    assert [r.url.params["instanceId"] for r in rig.proxy.to(QUEUED)] == ["i1", "i1"]
    assert rig.renewed == [("i1", 7.0), ("i1", 14.0)]  # when each poll asked
    sends.unlinked("i1")
    await eventually(lambda: len(rig.tasks) == 0)


async def test_an_unavailable_worker_proxy_is_asked_again_at_the_next_poll(rig: Rig) -> None:
    answers = iter([httpx.Response(503), httpx.Response(200, json=[{"id": "m1", "to": PHONE,
                                                                    "text": "hi"}])])  # fmt: skip
    rig.proxy.routes[QUEUED] = lambda _r: next(answers)
    sends, link = rig.sends(), FakeLink()
    sends.linked("i1", as_link(link))
    await rig.clock.wait_for_sleepers()
    assert rig.renewed == [] and link.sent == []
    await rig.clock.advance(5.0)
    await eventually(lambda: len(link.sent) == 1)
    assert rig.refusals.calls == []
    sends.unlinked("i1")


async def test_a_409_from_queued_messages_lets_go_and_ends_the_poll(rig: Rig) -> None:
    rig.proxy.answer(QUEUED, 409, json={"error": "instance i1 is worker w2's"})
    sends = rig.sends()
    sends.linked("i1", as_link(FakeLink()))
    await asyncio.wait_for(rig.refusals.heard.wait(), 10)
    await eventually(lambda: len(rig.tasks) == 0)  # the poll ended
    await rig.clock.advance(60.0)
    [(instance, exc)] = rig.refusals.calls
    assert (instance, exc.status) == ("i1", 409)
    assert len(rig.proxy.to(QUEUED)) == 1
    assert rig.renewed == []


async def test_an_unlinked_instance_stops_after_the_message_in_hand(rig: Rig) -> None:
    rig.proxy.answer(QUEUED, json=[{"id": "m1", "to": PHONE, "text": "one"},
                                   {"id": "m2", "to": PHONE, "text": "two"}])  # fmt: skip
    release, sending = asyncio.Event(), asyncio.Event()

    class SlowLink(FakeLink):
        async def send(self, message: Outgoing) -> Any:
            sending.set()
            await release.wait()
            return await super().send(message)

    sends, link = rig.sends(), SlowLink()
    sends.linked("i1", as_link(link))
    await asyncio.wait_for(sending.wait(), 10)
    sends.unlinked("i1")
    assert sends.polling() == []
    release.set()
    await eventually(lambda: len(rig.tasks) == 0)
    assert [o.id for o in link.sent] == ["m1"]
    assert await rig.marks() == [mark("m1", wa_id="3EB00001")]
    assert await rig.spool.send_of("i1", "m2") is None


async def test_a_send_still_in_flight_on_the_old_link_is_not_made_again_on_the_new_one(
    rig: Rig,
) -> None:
    """The link drops while a send hangs in it; the session connects again at once and its
    new poll is handed the same message (no /mark-sent yet): one message, one send."""
    rig.proxy.answer(QUEUED, json=[{"id": "m1", "to": PHONE, "text": "one"}])
    release, sending = asyncio.Event(), asyncio.Event()

    class HangingLink(FakeLink):
        async def send(self, message: Outgoing) -> Any:
            sending.set()
            await release.wait()  # a send on a dying connection, answered late
            return await super().send(message)

    sends, old, new = rig.sends(), HangingLink("3EB0OLD"), FakeLink("3EB0NEW")
    sends.linked("i1", as_link(old))
    await asyncio.wait_for(sending.wait(), 10)
    sends.unlinked("i1")  # the link went down...
    sends.linked("i1", as_link(new))  # ...and came back
    await eventually(lambda: len(rig.proxy.to(QUEUED)) == 2)
    await rig.clock.wait_for_sleepers()  # the new poll went through its messages
    release.set()
    await eventually(lambda: len(rig.tasks) == 1)  # the old poll ended

    marks = await rig.marks()
    assert [m["waMessageId"] for m in marks] in (["3EB0OLD"], ["3EB0NEW"])  # one /mark-sent
    assert len(old.sent) + len(new.sent) == 1
    sends.unlinked("i1")
