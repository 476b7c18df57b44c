"""The engine contract: what every engine does the same, checked on each (see conftest.py)."""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest

from tests.contract.drivers import Driver
from wagate.domain.message import (
    ContactCard,
    LinkPreview,
    Location,
    MessageKind,
    Outgoing,
    OutgoingMedia,
    Quote,
)
from wagate.domain.session import DisconnectKind
from wagate.engine.base import (
    Connected,
    Disconnected,
    GroupEvent,
    Link,
    LinkOptions,
    MessageEvent,
    QRCode,
    ReceiptEvent,
)
from wagate.errors import InvalidInput, TransientError
from wagate.testing import Events

PHONE, PEER, PEER2 = "15550001111", "15550002222", "15550003333"
PEER_JID = f"{PEER}@s.whatsapp.net"
IMAGE = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 8
DOC = b"%PDF-1.4\n" + b"contract " * 300


def recent(at: datetime) -> bool:
    """Within a minute of now: a timestamp read in the wrong unit is decades off."""
    return abs(datetime.now(UTC) - at) < timedelta(seconds=60)


@contextlib.asynccontextmanager
async def online(
    driver: Driver, session: str = "s1", phone: str = PHONE
) -> AsyncIterator[tuple[Link, Events, Connected]]:
    for peer in (PEER, PEER2):
        await driver.add_phone(peer)
    async with driver.engine.link(driver.auth(session), LinkOptions()) as link:
        events = Events(link)
        qr = await events.expect(QRCode)
        await driver.scan(qr.code, phone, push_name="Alice")
        connected = await events.first(Connected)
        yield link, events, connected


async def sent_to(driver: Driver, phone: str, msg_id: str) -> dict[str, object]:
    found = [entry for entry in await driver.inbox(phone) if entry["id"] == msg_id]
    assert found, f"{phone} never got message {msg_id}"
    return found[-1]


# --- linking ------------------------------------------------------------------------------


async def test_a_new_session_shows_whatsapp_qr_codes(driver: Driver) -> None:
    async with driver.engine.link(driver.auth("s1"), LinkOptions()) as link:
        qr = await Events(link).expect(QRCode)
    assert qr.code.startswith("2@") and qr.code.count(",") >= 3
    assert qr.ttl_s > 0


async def test_a_scan_links_the_device_and_names_it(driver: Driver) -> None:
    async with online(driver) as (_, _, connected):
        pass
    assert connected.phone == PHONE
    assert connected.jid.startswith(PHONE) and connected.jid.endswith("@s.whatsapp.net")
    assert connected.push_name == "Alice"
    assert connected.lid is None or connected.lid.endswith("@lid")


async def test_a_linked_session_reconnects_without_a_qr(driver: Driver) -> None:
    async with online(driver):
        pass
    async with driver.engine.link(driver.auth("s1"), LinkOptions()) as link:
        again = await Events(link).first(Connected)
    assert again.phone == PHONE


async def test_unscanned_qr_codes_end_with_qr_timeout(driver: Driver) -> None:
    engine = await driver.fast_qr_engine()
    async with engine.link(driver.auth("s9"), LinkOptions()) as link:
        events = await Events(link).rest(within_s=10)
    qrs = [event for event in events if isinstance(event, QRCode)]
    assert len(qrs) >= 2 and len({qr.code for qr in qrs}) == len(qrs)
    assert qrs[0].ttl_s >= qrs[1].ttl_s
    assert isinstance(events[-1], Disconnected) and events[-1].kind is DisconnectKind.QR_TIMEOUT


async def test_verbs_before_the_link_is_up_fail_transiently(driver: Driver) -> None:
    async with driver.engine.link(driver.auth("s1"), LinkOptions()) as link:
        await Events(link).expect(QRCode)
        with pytest.raises(TransientError):
            await link.send(Outgoing(to=PEER_JID, kind=MessageKind.TEXT, text="too early"))


# --- messages in ---------------------------------------------------------------------------


async def test_inbound_text_names_the_senders_phone(driver: Driver) -> None:
    async with online(driver) as (_, events, _):
        msg_id = await driver.phone_send(PEER, PHONE, text="hi there")
        event = await events.first(MessageEvent)
    assert (event.id, event.kind, event.text) == (msg_id, MessageKind.TEXT, "hi there")
    assert event.sender_pn == PEER_JID, "the sender's phone JID (SenderAlt for an @lid sender)"
    assert event.chat == PEER_JID, "a direct chat is named by the peer's phone JID"
    assert not event.from_me and not event.is_group
    assert recent(event.timestamp)


async def test_inbound_media_carries_its_facts_and_downloads(driver: Driver) -> None:
    async with online(driver) as (link, events, _):
        await driver.phone_send(PEER, PHONE, media=IMAGE, mimetype="image/png", text="look")
        event = await events.first(MessageEvent)
        data = b"".join([chunk async for chunk in link.download(event.media)])  # type: ignore[arg-type]
    assert event.kind is MessageKind.IMAGE and event.text == "look"
    assert event.media is not None
    assert (event.media.mimetype, event.media.size) == ("image/png", len(IMAGE))
    assert event.media.sha256 in (None, hashlib.sha256(IMAGE).hexdigest())
    assert data == IMAGE


async def test_inbound_document_keeps_its_file_name(driver: Driver) -> None:
    async with online(driver) as (_, events, _):
        await driver.phone_send(
            PEER, PHONE, media=DOC, mimetype="application/pdf", filename="report.pdf"
        )
        event = await events.first(MessageEvent)
    assert event.kind is MessageKind.DOCUMENT and event.media is not None
    assert event.media.filename == "report.pdf" and event.media.size == len(DOC)


async def test_inbound_location_reaction_and_reply(driver: Driver) -> None:
    async with online(driver) as (_, events, _):
        place = Location(32.08, 34.78, name="Tel Aviv")
        await driver.phone_send(PEER, PHONE, location=place, kind="location")
        located = await events.first(MessageEvent)
        first = await driver.phone_send(PEER, PHONE, text="original")
        await events.first(MessageEvent)
        await driver.phone_send(PEER, PHONE, text="👍", react_to=first, kind="reaction")
        reaction = await events.first(MessageEvent)
        await driver.phone_send(PEER, PHONE, text="answer", quote_id=first)
        reply = await events.first(MessageEvent)
    assert located.kind is MessageKind.LOCATION and located.location is not None
    assert (located.location.latitude, located.location.longitude) == (32.08, 34.78)
    assert (reaction.kind, reaction.text, reaction.react_to) == (MessageKind.REACTION, "👍", first)
    assert (reply.kind, reply.text, reply.quoted_id) == (MessageKind.TEXT, "answer", first)


# --- messages out --------------------------------------------------------------------------


async def test_outbound_text_reaches_the_phone(driver: Driver) -> None:
    async with online(driver) as (link, _, _):
        result = await link.send(
            Outgoing(to=PEER_JID, kind=MessageKind.TEXT, text="hello @15550009999")
        )
    entry = await sent_to(driver, PEER, result.id)
    assert (entry["kind"], entry["text"]) == ("text", "hello @15550009999")
    assert entry["mentions"] == [], "text is sent as is: '@digits' is not a mention"
    assert recent(result.timestamp)


async def test_outbound_media_arrives_whole(driver: Driver) -> None:
    media = OutgoingMedia(data=IMAGE, mimetype="image/png", width=16, height=16)
    async with online(driver) as (link, _, _):
        result = await link.send(
            Outgoing(to=PEER_JID, kind=MessageKind.IMAGE, text="caption!", media=media)
        )
    entry = await sent_to(driver, PEER, result.id)
    assert (entry["kind"], entry["text"], entry["mimetype"]) == ("image", "caption!", "image/png")
    assert entry["size"] == len(IMAGE)
    assert entry["sha256"] == hashlib.sha256(IMAGE).hexdigest()
    assert await driver.blob(entry) == IMAGE


async def test_outbound_document_and_voice_note(driver: Driver) -> None:
    doc = OutgoingMedia(data=DOC, mimetype="application/pdf", filename="q3.pdf")
    voice = OutgoingMedia(data=b"OggS" + bytes(500), mimetype="audio/ogg; codecs=opus")
    async with online(driver) as (link, _, _):
        sent_doc = await link.send(Outgoing(to=PEER_JID, kind=MessageKind.DOCUMENT, media=doc))
        sent_voice = await link.send(Outgoing(to=PEER_JID, kind=MessageKind.VOICE, media=voice))
    doc_entry = await sent_to(driver, PEER, sent_doc.id)
    voice_entry = await sent_to(driver, PEER, sent_voice.id)
    assert (doc_entry["kind"], doc_entry["filename"], doc_entry["size"]) == (
        "document",
        "q3.pdf",
        len(DOC),
    )
    assert voice_entry["kind"] == "voice"


async def test_outbound_location_contact_reaction_reply_and_mentions(driver: Driver) -> None:
    async with online(driver) as (link, events, _):
        theirs = await driver.phone_send(PEER, PHONE, text="ping")
        await events.first(MessageEvent)
        place = await link.send(
            Outgoing(to=PEER_JID, kind=MessageKind.LOCATION, location=Location(1.5, 2.5, "Here"))
        )
        card = await link.send(
            Outgoing(to=PEER_JID, kind=MessageKind.CONTACT, contact=ContactCard("Bob", PEER2))
        )
        react = await link.send(
            Outgoing(
                to=PEER_JID,
                kind=MessageKind.REACTION,
                text="❤️",
                react_to=theirs,
                react_to_sender=PEER_JID,
            )
        )
        reply = await link.send(
            Outgoing(
                to=PEER_JID,
                kind=MessageKind.TEXT,
                text="pong",
                quote=Quote(id=theirs, sender=PEER_JID, text="ping"),
                mentions=(PEER_JID,),
            )
        )
    place_entry = await sent_to(driver, PEER, place.id)
    assert place_entry["kind"] == "location"
    assert place_entry["location"]["latitude"] == 1.5  # type: ignore[index]
    assert (await sent_to(driver, PEER, card.id))["kind"] == "contact"
    react_entry = await sent_to(driver, PEER, react.id)
    assert (react_entry["kind"], react_entry["react_to"]) == ("reaction", theirs)
    reply_entry = await sent_to(driver, PEER, reply.id)
    assert (reply_entry["text"], reply_entry["quoted_id"]) == ("pong", theirs)
    assert reply_entry["mentions"] == [PEER_JID]


async def test_read_receipts_come_back(driver: Driver) -> None:
    async with online(driver) as (link, events, _):
        sent = await link.send(Outgoing(to=PEER_JID, kind=MessageKind.TEXT, text="read me"))
        await driver.mark_read(PEER, [sent.id])
        receipt = await events.first(ReceiptEvent)
        while receipt.status != "read":
            receipt = await events.first(ReceiptEvent)
    assert sent.id in receipt.message_ids
    assert receipt.chat == PEER_JID, "the same chat id as the peer's messages"
    assert recent(receipt.timestamp)


# --- groups --------------------------------------------------------------------------------


async def test_groups_are_listed_and_their_changes_reported(driver: Driver) -> None:
    async with online(driver) as (link, events, _):
        group = await driver.create_group("Team", PEER, [PHONE, PEER2])
        created = await events.first(GroupEvent)
        listed = await link.groups()
        await driver.phone_send(PEER, group, text="hello team")
        message = await events.first(MessageEvent)
        await driver.rename_group(group, "New team")
        renamed = await events.first(GroupEvent)
        out = await link.send(Outgoing(to=group, kind=MessageKind.TEXT, text="hi all"))
    assert (created.jid, created.name) == (group, "Team")
    assert group in [g.jid for g in listed]
    assert message.is_group and message.chat == group and message.sender_pn == PEER_JID
    assert (renamed.jid, renamed.change, renamed.name) == (group, "renamed", "New team")
    assert (await sent_to(driver, PEER, out.id))["chat"] == group


# --- the end of a link ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fault", "kind"),
    [
        ("drop", DisconnectKind.CONNECTION_LOST),
        ("logout", DisconnectKind.LOGGED_OUT),
        ("ban", DisconnectKind.BANNED),
        ("replaced", DisconnectKind.REPLACED),
    ],
)
async def test_faults_end_the_stream_with_their_kind(
    driver: Driver, fault: str, kind: DisconnectKind
) -> None:
    async with online(driver) as (_, events, _):
        await driver.fault(fault, "s1")
        ended = await events.first(Disconnected)
        assert await events.rest() == []
    assert ended.kind is kind


async def test_logout_ends_the_stream_with_logged_out(driver: Driver) -> None:
    async with online(driver) as (link, events, _):
        await link.set_presence(True)
        await link.logout()
        ended = await events.first(Disconnected)
    assert ended.kind is DisconnectKind.LOGGED_OUT


# --- what goes on the wire for media and links ------------------------------------------------


async def test_outbound_link_preview_reaches_the_phone(driver: Driver) -> None:
    thumbnail = b"\xff\xd8\xff\xe0" + bytes(64)
    card = LinkPreview("https://e.example/a", "A title", "What it is about", thumbnail)
    text = "read https://e.example/a"
    async with online(driver) as (link, _, _):
        with_card = await link.send(
            Outgoing(to=PEER_JID, kind=MessageKind.TEXT, text=text, link_preview=True, preview=card)
        )
        without = await link.send(
            Outgoing(to=PEER_JID, kind=MessageKind.TEXT, text=text, link_preview=True)
        )
    entry = await sent_to(driver, PEER, with_card.id)
    assert entry["text"] == text
    assert entry["preview"] == {
        "url": "https://e.example/a",
        "title": "A title",
        "description": "What it is about",
        "thumbnail_sha256": hashlib.sha256(thumbnail).hexdigest(),
        "thumbnail_size": len(thumbnail),
    }
    assert (await sent_to(driver, PEER, without.id))["preview"] is None


@pytest.mark.parametrize(
    ("kind", "mimetype", "words"),
    [
        (MessageKind.STICKER, "image/png", "image/webp"),
        (MessageKind.VOICE, "audio/mpeg", "audio/ogg; codecs=opus"),
    ],
)
async def test_media_whatsapp_cannot_show_is_refused(
    driver: Driver, kind: MessageKind, mimetype: str, words: str
) -> None:
    media = OutgoingMedia(data=IMAGE, mimetype=mimetype)
    async with online(driver) as (link, _, _):
        with pytest.raises(InvalidInput, match=words):
            await link.send(Outgoing(to=PEER_JID, kind=kind, media=media))
        ok = await link.send(Outgoing(to=PEER_JID, kind=MessageKind.TEXT, text="still here"))
    assert (await sent_to(driver, PEER, ok.id))["text"] == "still here"
    assert [e for e in await driver.inbox(PEER) if e["kind"] == kind.value] == []
