"""Seed 003 §7 on the pipeline: live-only, routing, dedupe by id, media, linking, retries."""

from __future__ import annotations

import asyncio
import hashlib
from datetime import timedelta
from typing import Any

import pytest

from tests.ingest.conftest import MB, Bench, BenchFactory, GoneLink, scripted
from tests.ingest.events import ALICE, ALICE_LID, GROUP, JPEG, PNG, image, monitored, msg
from wagate.domain.message import Message
from wagate.storage.repos.messages import MessageRepo


async def test_live_only_drops_old_messages(bench: Bench) -> None:
    await monitored(bench)
    assert await bench.handle(msg(bench, "OLD", age_s=31)) is None
    stored = await bench.handle(msg(bench, "NEW", age_s=29))
    assert stored is not None and stored.wa_msg_id == "NEW"
    assert bench.pipeline.stats["s1"]["dropped_old"] == 1


async def test_only_monitored_groups_are_stored(bench: Bench) -> None:
    await monitored(bench, GROUP, True)
    await monitored(bench, "999@g.us", False)
    assert await bench.handle(msg(bench, "A")) is not None
    assert await bench.handle(msg(bench, "B", chat="999@g.us")) is None
    assert await bench.handle(msg(bench, "C", chat="unknown@g.us")) is None
    assert bench.pipeline.stats["s1"]["dropped_unmonitored"] == 2
    row = await bench.messages.by_wa_id("s1", "A")
    group = await bench.groups.get("s1", GROUP)
    assert row is not None and group is not None and row.group_id == group.id


async def test_direct_messages_are_stored_and_can_be_turned_off(
    bench: Bench, make_bench: BenchFactory
) -> None:
    direct = msg(bench, "D1", chat=ALICE)
    stored = await bench.handle(direct)
    assert stored is not None and stored.group_id is None and stored.direction == "in"
    groups_only = await make_bench(ingest_direct=False)
    assert await groups_only.handle(msg(groups_only, "D2", chat=ALICE)) is None
    assert groups_only.pipeline.stats["s1"]["dropped_direct"] == 1


async def test_dedupe_is_by_id_only(bench: Bench) -> None:
    await monitored(bench)
    first = await bench.handle(msg(bench, "SAME", text="hello"))
    again = await bench.handle(msg(bench, "SAME", text="hello"))
    twin = await bench.handle(msg(bench, "OTHER", text="hello"))
    assert first is not None and twin is not None
    assert again is None  # seen and handled in full before: nothing left to complete
    kept = await bench.messages.by_wa_id("s1", "SAME")
    assert kept is not None and kept.id == first.id and twin.id != first.id
    assert bench.pipeline.stats["s1"]["duplicates"] == 1
    assert len(bench.received()) == 2


async def test_sender_phone_and_lid_are_both_kept(bench: Bench) -> None:
    await monitored(bench)
    event = msg(
        bench, "L1", sender=ALICE_LID, sender_pn=ALICE, sender_lid=ALICE_LID, push_name="Alice"
    )
    stored = await bench.handle(event)
    assert stored is not None
    assert (stored.sender, stored.sender_pn, stored.sender_lid, stored.push_name) == (
        ALICE_LID,
        ALICE,
        ALICE_LID,
        "Alice",
    )
    payload = bench.received()[0]
    assert (payload["senderPhone"], payload["senderLid"]) == (ALICE, ALICE_LID)


async def test_media_is_hashed_stored_and_linked(bench: Bench) -> None:
    await monitored(bench)
    stored = await bench.handle(image(bench, "IMG1", PNG, caption="look"))
    assert stored is not None and stored.media_id is not None
    media = await bench.media.get(stored.media_id)
    sha = hashlib.sha256(PNG).hexdigest()
    assert media is not None
    assert (media.sha256, media.mime, media.bytes, media.width, media.height) == (
        sha,
        "image/png",
        len(PNG),
        640,
        480,
    )
    assert media.storage_path == f"wa-media/{sha}/original.png"
    assert bench.blobs.objects[media.storage_path] == (PNG, "image/png")
    assert bench.received()[0]["media"]["id"] == media.id


async def test_one_image_in_two_messages_is_one_media_row_and_one_object(bench: Bench) -> None:
    await monitored(bench)
    a = await bench.handle(image(bench, "I1", JPEG, mimetype="image/jpeg"))
    b = await bench.handle(image(bench, "I2", JPEG, mimetype="image/jpeg"))
    assert a is not None and b is not None
    assert a.media_id == b.media_id and a.media_id is not None
    assert len(bench.blobs.objects) == 1 and bench.blobs.puts == 1
    assert bench.pipeline.stats["s1"]["media_deduped"] == 1


async def test_media_too_large_is_refused_with_an_audit_error(bench: Bench) -> None:
    await monitored(bench)
    big = b"\x00" * (30 * MB)
    stored = await bench.handle(image(bench, "BIG", big, size=None))
    assert stored is not None and stored.media_id is None  # the message itself is kept
    assert bench.blobs.objects == {}
    errors = await bench.errors()
    assert errors[0]["code"] == "MEDIA_TOO_LARGE"
    assert errors[0]["ctx"] == {"wa_msg_id": "BIG"}


async def test_streamed_size_guard_catches_a_lying_declared_size(bench: Bench) -> None:
    await monitored(bench)
    big = b"\x01" * (26 * MB)
    stored = await bench.handle(image(bench, "LIAR", big, size=1000))
    assert stored is not None and stored.media_id is None
    assert (await bench.errors())[0]["code"] == "MEDIA_TOO_LARGE"
    assert list((bench.store.spool_dir).iterdir()) == []  # no spool file left behind


@pytest.mark.parametrize(
    ("data", "declared", "mime", "ext"),
    [
        (PNG, None, "image/png", "png"),  # magic bytes when metadata has no mimetype
        (JPEG, "image/jpeg; codecs=x", "image/jpeg", "jpg"),
        (b"%PDF-1.7\n" + b"x" * 100, "application/pdf", "application/pdf", "pdf"),
    ],
)
async def test_mime_detection(
    bench: Bench, data: bytes, declared: str | None, mime: str, ext: str
) -> None:
    await monitored(bench)
    stored = await bench.handle(image(bench, "M", data, mimetype=declared))
    assert stored is not None and stored.media_id is not None
    media = await bench.media.get(stored.media_id)
    assert media is not None and media.mime == mime and media.storage_path.endswith("." + ext)


async def test_mime_outside_the_allow_list_only_when_small(bench: Bench) -> None:
    await monitored(bench)
    small = await bench.handle(image(bench, "S", b"plain text", mimetype="text/plain"))
    assert small is not None and small.media_id is not None
    large = await bench.handle(image(bench, "L", b"x" * (6 * MB), mimetype="text/plain"))
    assert large is not None and large.media_id is None
    assert (await bench.errors())[0]["code"] == "MEDIA_NOT_ALLOWED"


async def test_text_then_image_links_the_image_to_the_text(bench: Bench) -> None:
    await monitored(bench)
    text = await bench.handle(msg(bench, "T1", text="see below"))
    await bench.clock.advance(60)
    img = await bench.handle(image(bench, "I1", PNG))
    assert text is not None and img is not None
    assert (await bench.messages.get(img.id)).parent_id == text.id  # type: ignore[union-attr]
    assert (await bench.messages.get(text.id)).parent_id is None  # type: ignore[union-attr]
    payloads = {d["waMessageId"]: d for d in bench.received()}
    assert payloads["I1"]["parentId"] == text.id and payloads["T1"]["parentId"] is None


async def test_image_then_text_links_the_text_to_the_image(bench: Bench) -> None:
    await monitored(bench)
    img = await bench.handle(image(bench, "I1", PNG))
    await bench.clock.advance(89)
    text = await bench.handle(msg(bench, "T1", text="that was me"))
    assert text is not None and img is not None
    assert (await bench.messages.get(text.id)).parent_id == img.id  # type: ignore[union-attr]


async def test_out_of_order_arrival_stores_the_link_on_the_later_message(bench: Bench) -> None:
    await monitored(bench)
    later = await bench.handle(image(bench, "I1", PNG))
    earlier = await bench.handle(msg(bench, "T0", text="first", age_s=10))
    assert later is not None and earlier is not None
    assert (await bench.messages.get(later.id)).parent_id == earlier.id  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("gap_s", "sender", "chat"),
    [(91, ALICE, GROUP), (10, "6282222222222@s.whatsapp.net", GROUP), (10, ALICE, "2@g.us")],
)
async def test_no_link_across_time_sender_or_chat(
    bench: Bench, gap_s: float, sender: str, chat: str
) -> None:
    await monitored(bench)
    await monitored(bench, "2@g.us")
    await bench.handle(msg(bench, "T1"))
    await bench.clock.advance(gap_s)
    img = await bench.handle(image(bench, "I1", PNG, sender=sender, chat=chat))
    assert img is not None and (await bench.messages.get(img.id)).parent_id is None  # type: ignore[union-attr]


async def test_links_are_one_to_one(bench: Bench) -> None:
    await monitored(bench)
    text = await bench.handle(msg(bench, "T1"))
    img1 = await bench.handle(image(bench, "I1", PNG))
    img2 = await bench.handle(image(bench, "I2", JPEG, mimetype="image/jpeg"))
    assert text is not None and img1 is not None and img2 is not None
    assert (await bench.messages.get(img1.id)).parent_id == text.id  # type: ignore[union-attr]
    assert (await bench.messages.get(img2.id)).parent_id is None  # type: ignore[union-attr]


async def test_transient_storage_error_is_retried_once(bench: Bench) -> None:
    await monitored(bench)
    bench.blobs.fail_puts = 1
    task = asyncio.create_task(bench.handle(image(bench, "R1", PNG)))
    await bench.clock.wait_for_sleepers(1)
    assert 0.5 <= bench.clock.sleeps[-1] <= 1.0
    await bench.clock.advance(1.0)
    stored = await task
    assert stored is not None and stored.media_id is not None
    assert await bench.errors() == []


async def test_a_second_failure_is_audited_and_the_stream_goes_on(bench: Bench) -> None:
    await monitored(bench)
    bench.blobs.fail_puts = 2
    task = asyncio.create_task(bench.handle(image(bench, "R2", PNG)))
    await bench.clock.wait_for_sleepers(1)
    await bench.clock.advance(1.0)
    stored = await task
    assert stored is not None and stored.media_id is None  # the message is kept without it
    error = (await bench.errors())[0]
    assert error["code"] == "MEDIA_STORE_FAILED" and error["ctx"] == {"wa_msg_id": "R2"}
    # announced all the same, saying why the media is missing
    (received,) = bench.received()
    assert received["waMessageId"] == "R2" and "id" not in received["media"]
    assert received["mediaError"] == {"code": "MEDIA_STORE_FAILED", "msg": error["msg"]}
    after = await bench.handle(msg(bench, "NEXT"))
    assert after is not None
    # a redelivery of the event fills in the media, and is not announced a second time
    retried = await bench.handle(image(bench, "R2", PNG))
    assert retried is not None and retried.media_id is not None
    row = await bench.messages.get(retried.id)
    assert row is not None and row.media_id == retried.media_id
    received_ids = [d["waMessageId"] for d in bench.received()]
    assert received_ids == ["R2", "NEXT"]


async def test_a_media_download_that_fails_for_good_still_links_and_announces(
    bench: Bench,
) -> None:
    await monitored(bench)
    text = await bench.handle(msg(bench, "T1", text="see the photo"))
    stored = await bench.handle(image(bench, "I1", PNG), link=scripted(GoneLink))
    assert text is not None and stored is not None
    row = await bench.messages.get(stored.id)
    assert row is not None and row.media_id is None and row.parent_id == text.id
    assert bench.clock.sleeps == []  # not a transient error: not retried
    (error,) = await bench.errors()
    assert error == {
        "code": "MEDIA_STORE_FAILED",
        "msg": "this media has no sandbox blob handle",
        "ctx": {"wa_msg_id": "I1"},
    }
    received = {d["waMessageId"]: d for d in bench.received()}
    assert received["I1"]["parentId"] == text.id
    assert received["I1"]["mediaError"]["code"] == "MEDIA_STORE_FAILED"
    assert received["T1"]["mediaError"] is None


async def test_nul_and_lone_surrogates_are_cleaned_before_storing(bench: Bench) -> None:
    await monitored(bench)
    event = msg(
        bench,
        "NUL1",
        text="pay\x00 now \ud83d",
        push_name="Al\x00ice",
        raw={"note\x00": ["a\x00b", {"deep": "c\x00"}]},
    )
    stored = await bench.handle(event)
    assert stored is not None
    row = await bench.messages.get(stored.id)
    assert row is not None
    assert (row.text, row.push_name) == ("pay now \ufffd", "Alice")
    assert row.raw == {"note": ["ab", {"deep": "c"}]}
    assert await bench.errors() == []
    (received,) = bench.received()
    assert (received["text"], received["pushName"]) == ("pay now \ufffd", "Alice")


class BrokenLinking(MessageRepo):
    async def link_partner(self, message: Message, window: timedelta) -> Message | None:
        raise ValueError("a bug in the linking query")


async def test_an_unexpected_error_in_one_step_is_audited_and_the_rest_still_run(
    make_bench: BenchFactory,
) -> None:
    bench = await make_bench(messages=BrokenLinking)
    await monitored(bench)
    stored = await bench.handle(msg(bench, "B1"))
    assert stored is not None
    (error,) = await bench.errors()
    assert error["code"] == "DB_READ_FAILED" and error["ctx"] == {"wa_msg_id": "B1"}
    assert "ValueError: a bug in the linking query" in error["msg"]
    assert [d["waMessageId"] for d in bench.received()] == ["B1"]
    assert bench.pipeline.stats["s1"]["errors"] == 1


class RefusesBad(MessageRepo):
    async def insert_inbound(self, values: dict[str, Any]) -> Message | None:
        if values["wa_msg_id"] == "BAD":
            raise ValueError("the database refused the row")
        return await super().insert_inbound(values)


async def test_a_row_that_cannot_be_stored_is_audited_and_the_stream_goes_on(
    make_bench: BenchFactory,
) -> None:
    bench = await make_bench(messages=RefusesBad)
    await monitored(bench)
    assert await bench.handle(msg(bench, "BAD")) is None
    (error,) = await bench.errors()
    assert error["code"] == "DB_INSERT_FAILED" and error["ctx"] == {"wa_msg_id": "BAD"}
    assert await bench.handle(msg(bench, "GOOD")) is not None


async def test_from_me_messages_are_stored_as_outbound(bench: Bench) -> None:
    stored = await bench.handle(msg(bench, "ME1", chat=ALICE, from_me=True))
    assert stored is not None and (stored.direction, stored.status) == ("out", "sent")


async def test_a_message_whose_event_was_lost_is_notified_on_redelivery(bench: Bench) -> None:
    await monitored(bench)
    bench.outbox.fail_next = RuntimeError("process died here")  # between the row and its event
    first = await bench.handle(msg(bench, "CRASH", text="important"))
    stored = await bench.messages.by_wa_id("s1", "CRASH")
    assert first is not None and stored is not None and first.id == stored.id
    assert stored.notified_at is None  # the row, not the event
    assert bench.received() == []
    assert (await bench.errors())[0]["code"] == "WEBHOOK_EMIT_FAILED"

    again = await bench.handle(msg(bench, "CRASH", text="important"))
    assert again is not None and again.id == stored.id
    assert [d["waMessageId"] for d in bench.received()] == ["CRASH"]
    await bench.handle(msg(bench, "CRASH", text="important"))
    assert len(bench.received()) == 1  # and only once
