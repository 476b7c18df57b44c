"""Messaging on the sandbox network: routing, from_me copies, ids, kinds, @lid, bad input."""

from __future__ import annotations

import asyncio
import hashlib
import re
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from tests.sandbox.support import (
    ALICE,
    BOB,
    CAROL,
    NO_OPTIONS,
    Session,
    jid,
    lid_of,
    link_auth,
    online,
)
from wagate.clock import ManualClock
from wagate.domain.message import (
    ContactCard,
    LinkPreview,
    Location,
    MessageKind,
    Outgoing,
    OutgoingMedia,
    Quote,
    ReceiptStatus,
)
from wagate.engine.base import QRCode
from wagate.engine.sandbox import SandboxEngine
from wagate.errors import InvalidInput, TransientError
from wagate.sandbox import SandboxNetwork
from wagate.storage.auth_state import MemoryAuthStore

WA_ID = re.compile(r"3EB0[0-9A-F]{16}")


@pytest.fixture
async def alice(network: SandboxNetwork, engine: SandboxEngine) -> AsyncIterator[Session]:
    """A session linked to ALICE's account, online; BOB exists as a simulated phone."""
    auth = await link_auth(network)
    await network.add_phone(BOB, push_name="Bob")
    async with online(engine, auth) as session:
        yield session


# --- routing ----------------------------------------------------------------------------


async def test_a_phone_message_reaches_the_session(network, alice, clock: ManualClock) -> None:
    await clock.advance(42)
    msg_id = await network.phone_send(BOB, ALICE, text="hello")
    event = await alice.message()
    assert WA_ID.fullmatch(msg_id) and event.id == msg_id
    assert (event.chat, event.sender, event.sender_pn) == (jid(BOB), jid(BOB), jid(BOB))
    assert event.sender_lid == await lid_of(network, BOB) and event.sender_lid.endswith("@lid")
    assert (event.kind, event.text, event.from_me, event.push_name) == (
        MessageKind.TEXT,
        "hello",
        False,
        "Bob",
    )
    assert event.timestamp.tzinfo is UTC and event.timestamp == clock.now(), "the network's time"
    (entry,) = await network.inbox(ALICE)
    assert (entry["id"], entry["from"], entry["chat"], entry["text"]) == (
        msg_id,
        jid(BOB),
        jid(BOB),
        "hello",
    )


async def test_a_session_send_is_acked_lands_in_the_inbox_and_is_delivered(network, alice, clock):
    result = await alice.link.send(Outgoing(to=jid(BOB), kind=MessageKind.TEXT, text="hi Bob"))
    receipt = await alice.receipt()
    assert WA_ID.fullmatch(result.id) and result.timestamp.tzinfo is UTC
    assert result.timestamp == receipt.timestamp == clock.now(), "the network's time"
    assert (receipt.chat, receipt.message_ids, receipt.status) == (
        jid(BOB),
        (result.id,),
        ReceiptStatus.DELIVERED,
    )
    (entry,) = await network.inbox(BOB)
    assert entry["id"] == result.id and entry["from"] == jid(ALICE) and entry["text"] == "hi Bob"
    assert datetime.fromisoformat(entry["timestamp"]) == result.timestamp
    assert entry["chat"] == jid(ALICE) and entry["kind"] == "text"


async def test_every_device_receives_and_the_senders_other_devices_get_from_me(
    network, engine
) -> None:
    one, two = await link_auth(network, "s1"), await link_auth(network, "s2")
    bob = await link_auth(network, "s3", phone=BOB)
    async with online(engine, one) as s1, online(engine, two) as s2, online(engine, bob) as s3:
        sent_id = await s1.text(jid(BOB), "to bob")
        mine = await s2.message()
        assert (mine.id, mine.from_me, mine.chat, mine.sender) == (
            sent_id,
            True,
            jid(BOB),
            jid(ALICE),
        )
        assert (await s2.receipt()).message_ids == (sent_id,), "receipts go to every device"
        theirs = await s3.message()
        assert (theirs.id, theirs.from_me, theirs.chat) == (sent_id, False, jid(ALICE))
        phone_id = await network.phone_send(BOB, ALICE, text="to both")
        assert (await s1.message()).id == (await s2.message()).id == phone_id
        # Bob's own session sees what his phone sent, as his.
        echo = await s3.message()
        assert (echo.id, echo.from_me, echo.chat) == (phone_id, True, jid(ALICE))
        # s1 got no copy of its own send: its next event is the marker, not a duplicate.
        marker = await network.phone_send(CAROL, ALICE, text="marker")
        assert (await s1.message()).id == marker


async def test_lid_addressing_reaches_the_account(network, alice) -> None:
    bob_lid = await lid_of(network, BOB)
    sent_id = await alice.text(bob_lid, "via lid")
    (entry,) = await network.inbox(BOB)
    assert entry["id"] == sent_id and entry["to"] == bob_lid and entry["from"] == jid(ALICE)
    alice_lid = await lid_of(network, ALICE)
    got_id = await network.phone_send(BOB, alice_lid, text="back via lid")
    event = await alice.message()
    assert event.id == got_id and event.chat == jid(BOB) and event.sender_lid == bob_lid


async def test_writing_to_yourself_reaches_your_other_devices(network, engine) -> None:
    one, two = await link_auth(network, "s1"), await link_auth(network, "s2")
    async with online(engine, one) as s1, online(engine, two) as s2:
        sent_id = await s1.text(ALICE, "note to self")
        copy = await s2.message()
        await s2.receipt()
    assert (copy.id, copy.from_me, copy.chat) == (sent_id, True, jid(ALICE))
    assert await network.inbox(ALICE) == []


# --- ids --------------------------------------------------------------------------------


async def test_a_resend_with_the_same_id_is_acked_again_but_not_delivered_twice(
    network, alice
) -> None:
    message = Outgoing(to=BOB, kind=MessageKind.TEXT, text="once", id="3EB0AAAABBBBCCCCDDDD")
    first = await alice.link.send(message)
    await alice.receipt()
    again = await alice.link.send(message)
    assert again == first and first.id == "3EB0AAAABBBBCCCCDDDD"
    assert [entry["id"] for entry in await network.inbox(BOB)] == [first.id]
    # No second delivered receipt: the next event is the next send's.
    other = await alice.text(BOB, "next")
    assert [entry["id"] for entry in await network.inbox(BOB)] == [first.id, other]


async def test_phone_sends_are_deduplicated_by_id_too(network, alice) -> None:
    assert await network.phone_send(BOB, ALICE, text="x", msg_id="M-1") == "M-1"
    assert await network.phone_send(BOB, ALICE, text="x", msg_id="M-1") == "M-1"
    assert [entry["id"] for entry in await network.inbox(ALICE)] == ["M-1"]
    # The same id from another account is another message.
    assert await network.phone_send(CAROL, ALICE, text="y", msg_id="M-1") == "M-1"
    assert len(await network.inbox(ALICE)) == 2


async def test_several_sends_in_flight_each_get_their_own_ack(network, alice) -> None:
    picture = OutgoingMedia(PNG * 300, "image/png")
    messages = [Outgoing(BOB, MessageKind.TEXT, text=f"n{n}") for n in range(8)]
    messages.insert(3, Outgoing(BOB, MessageKind.IMAGE, media=picture))
    results = await asyncio.gather(*(alice.link.send(message) for message in messages))
    receipts = [await alice.receipt() for _ in messages]
    inbox = {entry["id"]: entry for entry in await network.inbox(BOB)}
    assert len({result.id for result in results}) == len(messages)
    for message, result in zip(messages, results, strict=True):
        assert inbox[result.id]["text"] == message.text
        assert inbox[result.id]["kind"] == message.kind.value
    assert {r.message_ids[0] for r in receipts} == {result.id for result in results}


async def test_generated_ids_are_whatsapp_like_and_unique(network, alice) -> None:
    ids = [await network.phone_send(BOB, ALICE, text=str(n)) for n in range(20)]
    assert len(set(ids)) == 20 and all(WA_ID.fullmatch(each) for each in ids)


# --- kinds ------------------------------------------------------------------------------

PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        (
            {"text": "hi @15550001111", "mentions": [jid(ALICE)]},
            {"kind": MessageKind.TEXT, "text": "hi @15550001111", "mentions": (jid(ALICE),)},
        ),
        (
            {"media": PNG, "mimetype": "image/png", "text": "cap", "width": 64, "height": 32},
            {"kind": MessageKind.IMAGE, "text": "cap", "media.width": 64, "media.height": 32},
        ),
        (
            {"media": b"v" * 100, "mimetype": "video/mp4", "duration_s": 3.5},
            {"kind": MessageKind.VIDEO, "media.duration_s": 3.5, "media.size": 100},
        ),
        ({"media": b"a" * 10, "mimetype": "audio/mpeg"}, {"kind": MessageKind.AUDIO}),
        (
            {"media": b"o" * 10, "mimetype": "audio/ogg; codecs=opus", "kind": "voice"},
            {"kind": MessageKind.VOICE, "media.kind": MessageKind.VOICE},
        ),
        (
            {"media": b"%PDF", "mimetype": "application/pdf", "filename": "a.pdf"},
            {"kind": MessageKind.DOCUMENT, "media.filename": "a.pdf"},
        ),
        (
            {"media": b"RIFF", "mimetype": "image/webp", "kind": "sticker"},
            {"kind": MessageKind.STICKER, "media.mimetype": "image/webp"},
        ),
        (
            {"location": Location(52.37, 4.89, name="Dam")},
            {"kind": MessageKind.LOCATION, "location": Location(52.37, 4.89, "Dam", None)},
        ),
        (
            {"contact": ContactCard("Carol", phone="+15550003333")},
            {"kind": MessageKind.CONTACT, "contact": ContactCard("Carol", "+15550003333")},
        ),
        (
            {"react_to": "3EB0000000000000AAAA", "text": "👍"},
            {"kind": MessageKind.REACTION, "react_to": "3EB0000000000000AAAA", "text": "👍"},
        ),
        (
            {"text": "answer", "quote_id": "3EB0000000000000BBBB"},
            {"kind": MessageKind.TEXT, "quoted_id": "3EB0000000000000BBBB"},
        ),
    ],
)
async def test_each_kind_a_phone_sends_arrives_with_its_fields(
    kwargs: dict[str, Any], expected: dict[str, Any], network, alice
) -> None:
    msg_id = await network.phone_send(BOB, ALICE, **kwargs)
    event = await alice.message()
    assert event.id == msg_id
    for key, value in expected.items():
        owner, _, name = key.rpartition(".")
        assert getattr(getattr(event, owner) if owner else event, name) == value, key
    if "media" in kwargs:
        assert event.media is not None and event.media.handle == {"blob": event.media.sha256}
        assert event.media.size == len(kwargs["media"])


@pytest.mark.parametrize(
    ("message", "expected"),
    [
        (
            Outgoing(BOB, MessageKind.TEXT, text="@15550002222 hi", mentions=(jid(BOB),)),
            {"kind": "text", "text": "@15550002222 hi", "mentions": [jid(BOB)]},
        ),
        (
            Outgoing(BOB, MessageKind.TEXT, text="re", quote=Quote("3EB0000000000000CCCC")),
            {"quoted_id": "3EB0000000000000CCCC"},
        ),
        (
            Outgoing(BOB, MessageKind.REACTION, text="❤️", react_to="3EB0000000000000DDDD"),
            {"kind": "reaction", "text": "❤️", "react_to": "3EB0000000000000DDDD"},
        ),
        (
            Outgoing(BOB, MessageKind.LOCATION, location=Location(-33.9, 18.4, address="Cape")),
            {"location": {"latitude": -33.9, "longitude": 18.4, "name": None, "address": "Cape"}},
        ),
        (
            Outgoing(BOB, MessageKind.CONTACT, contact=ContactCard("Dan", vcard="BEGIN:VCARD")),
            {"contact": {"name": "Dan", "phone": None, "vcard": "BEGIN:VCARD"}},
        ),
        (
            Outgoing(
                BOB,
                MessageKind.VOICE,
                media=OutgoingMedia(b"ogg" * 50, "audio/ogg", duration_s=2.0),
            ),
            {"kind": "voice", "mimetype": "audio/ogg", "size": 150, "duration_s": 2.0},
        ),
        (
            Outgoing(
                BOB,
                MessageKind.DOCUMENT,
                text="the report",
                media=OutgoingMedia(b"%PDF-1.7", "application/pdf", filename="r.pdf"),
            ),
            {"kind": "document", "text": "the report", "filename": "r.pdf", "size": 8},
        ),
        (
            Outgoing(
                BOB,
                MessageKind.TEXT,
                text="see https://e.example/a",
                link_preview=True,
                preview=LinkPreview("https://e.example/a", "A", "about a", b"\xff\xd8\xff"),
            ),
            {
                "text": "see https://e.example/a",
                "preview": {
                    "url": "https://e.example/a",
                    "title": "A",
                    "description": "about a",
                    "thumbnail_sha256": hashlib.sha256(b"\xff\xd8\xff").hexdigest(),
                    "thumbnail_size": 3,
                },
            },
        ),
        (Outgoing(BOB, MessageKind.TEXT, text="no card", link_preview=True), {"preview": None}),
    ],
)
async def test_each_kind_a_session_sends_lands_with_its_fields(
    message: Outgoing, expected: dict[str, Any], network, alice
) -> None:
    result = await alice.link.send(message)
    (entry,) = await network.inbox(BOB)
    assert entry["id"] == result.id
    assert {key: entry[key] for key in expected} == expected


# --- time ---------------------------------------------------------------------------------


async def test_an_old_timestamp_can_be_injected(network, alice) -> None:
    old = datetime.now(UTC) - timedelta(minutes=5)
    await network.phone_send(BOB, ALICE, text="from the past", timestamp=old)
    event = await alice.message()
    assert event.timestamp == old
    (entry,) = await network.inbox(ALICE)
    assert datetime.fromisoformat(entry["timestamp"]) == old


async def test_a_naive_timestamp_is_taken_as_utc(network, alice) -> None:
    await network.phone_send(BOB, ALICE, text="naive", timestamp=datetime(2024, 1, 2, 3, 4, 5))
    assert (await alice.message()).timestamp == datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC)


# --- refusals -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("message", "field"),
    [
        (Outgoing("15559999999", MessageKind.TEXT, text="?"), "to"),
        (Outgoing("123456789012345678@g.us", MessageKind.TEXT, text="?"), "to"),
        (Outgoing("99999999999999@lid", MessageKind.TEXT, text="?"), "to"),
        (Outgoing("not a jid", MessageKind.TEXT, text="?"), "to"),
        (Outgoing(BOB, MessageKind.TEXT), "text"),
        (Outgoing(BOB, MessageKind.OTHER, text="?"), "kind"),
        (Outgoing(BOB, MessageKind.IMAGE, text="no media"), "media"),
        (Outgoing(BOB, MessageKind.REACTION, text="👍"), "react_to"),
        (Outgoing(BOB, MessageKind.TEXT, text="?", id="has spaces"), "id"),
        (Outgoing(BOB, MessageKind.LOCATION, location=Location(91, 0)), "location"),
        (Outgoing(BOB, MessageKind.STICKER, media=OutgoingMedia(b"x", "image/png")), "mimetype"),
        (Outgoing(BOB, MessageKind.VOICE, media=OutgoingMedia(b"x", "audio/mpeg")), "mimetype"),
        (
            Outgoing(BOB, MessageKind.TEXT, text="no link", preview=LinkPreview("https://e.x/")),
            "preview",
        ),
        (
            Outgoing(
                BOB,
                MessageKind.IMAGE,
                text="https://e.x/",
                media=OutgoingMedia(b"x", "image/png"),
                preview=LinkPreview("https://e.x/"),
            ),
            "preview",
        ),
    ],
)
async def test_bad_sends_are_invalid_input_and_the_link_lives_on(
    message: Outgoing, field: str, network, alice
) -> None:
    with pytest.raises(InvalidInput) as refused:
        await alice.link.send(message)
    assert refused.value.field == field, refused.value.message
    assert await alice.text(BOB, "still fine")


async def test_a_non_member_cannot_send_to_a_group(network, alice) -> None:
    group = await network.create_group("Others", BOB, [CAROL])
    with pytest.raises(InvalidInput, match="not a participant"):
        await alice.link.send(Outgoing(group, MessageKind.TEXT, text="let me in"))


async def test_verbs_need_a_logged_in_open_link(network, engine, watch) -> None:
    text = Outgoing(BOB, MessageKind.TEXT, text="?")
    async with engine.link(MemoryAuthStore("s1"), NO_OPTIONS) as link:
        await watch(link).expect(QRCode)
        with pytest.raises(TransientError, match="not logged in"):
            await link.send(text)
        with pytest.raises(TransientError):
            await link.groups()
    with pytest.raises(TransientError, match="down"):
        await link.send(text)


async def test_a_link_that_drops_fails_its_verbs_as_transient(network, alice) -> None:
    await network.fault("drop", session="s1")
    await alice.events.rest()
    with pytest.raises(TransientError):
        await alice.link.set_presence(True)


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"from_phone": "nope", "to": ALICE, "text": "x"}, "from"),
        ({"from_phone": BOB, "to": ALICE, "text": "x", "kind": "hologram"}, "kind"),
        ({"from_phone": BOB, "to": ALICE}, "text"),
        ({"from_phone": BOB, "to": ALICE, "text": "x", "msg_id": "a b"}, "msg_id"),
        ({"from_phone": BOB, "to": ALICE, "media": b"", "mimetype": "image/png"}, "media"),
        ({"from_phone": BOB, "to": ALICE, "media": b"x", "mimetype": "png"}, "mimetype"),
    ],
)
async def test_phone_send_checks_its_input(kwargs: dict[str, Any], field: str, network) -> None:
    from_phone = kwargs.pop("from_phone")
    to = kwargs.pop("to")
    with pytest.raises(InvalidInput) as refused:
        await network.phone_send(from_phone, to, **kwargs)
    assert refused.value.field == field


async def test_a_phone_may_write_to_a_number_new_to_the_network(network) -> None:
    await network.phone_send(BOB, "+1 555 000 4444", text="welcome")
    assert [entry["text"] for entry in await network.inbox("15550004444")] == ["welcome"]


async def test_presence_is_recorded_on_the_connection(network, alice) -> None:
    await alice.link.set_presence(True)
    assert [c.presence for c in await network.connections()] == ["available"]
    await alice.link.set_presence(False)
    assert [c.presence for c in await network.connections()] == ["unavailable"]
