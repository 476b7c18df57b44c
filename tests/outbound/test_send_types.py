"""Every message type, through the API, becomes the right ``Outgoing`` on the engine."""

from __future__ import annotations

import base64
import re
from typing import Any

import pytest

from tests.outbound.conftest import ALICE, ALICE_JID, PHONE, Rig
from tests.outbound.samples import MP3, MP4, OPUS, PDF, PNG, WEBP
from wagate.domain.message import (
    ContactCard,
    Location,
    MessageKind,
    Outgoing,
    OutgoingMedia,
    Quote,
)
from wagate.storage.repos.messages import MessageRepo
from wagate.testing import ScriptedLink, eventually

WA_ID = re.compile(r"^3EB0[0-9A-F]{16}$")


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


async def sent_one(rig: Rig, link: ScriptedLink, **body: Any) -> tuple[dict[str, Any], Outgoing]:
    before = len(link.sent)
    r = await rig.send(**body)
    assert r.status_code == 201, r.text
    await eventually(lambda: len(link.sent) > before)
    return r.json(), link.sent[-1]


async def test_text_answers_201_with_the_queued_message(rig: Rig) -> None:
    link = await rig.connect()
    body, out = await sent_one(
        rig, link, type="text", text="see https://example.com", linkPreview=True
    )
    assert WA_ID.match(body["messageId"])
    assert body["status"] == "queued"
    assert (body["direction"], body["chat"], body["type"]) == ("out", ALICE_JID, "text")
    assert body["sender"] == f"{PHONE}@s.whatsapp.net"
    assert out == Outgoing(
        to=ALICE_JID,
        kind=MessageKind.TEXT,
        text="see https://example.com",
        link_preview=True,
        id=body["messageId"],
    )
    assert (await rig.wait_status(body["id"], "sent"))["sentAt"] is not None


@pytest.mark.parametrize(
    ("kind", "media", "expected_mime", "caption"),
    [
        ("image", {"base64": "data:image/png;base64," + b64(PNG)}, "image/png", "a cat"),
        ("video", {"base64": b64(MP4), "mimetype": "video/mp4"}, "video/mp4", "clip"),
        ("audio", {"base64": b64(MP3)}, "audio/mpeg", None),
        ("ptt", {"base64": b64(OPUS), "mimetype": "audio/ogg"}, "audio/ogg; codecs=opus", None),
        ("sticker", {"base64": b64(WEBP)}, "image/webp", None),
        (
            "document",
            {"base64": b64(PDF), "filename": "report.pdf"},
            "application/pdf",
            "the report",
        ),
    ],
)
async def test_media_kinds(
    rig: Rig, kind: str, media: dict[str, str], expected_mime: str, caption: str | None
) -> None:
    link = await rig.connect()
    body: dict[str, Any] = {"type": kind, "media": media}
    if caption:
        body["caption"] = caption
    answer, out = await sent_one(rig, link, **body)
    expected_kind = MessageKind.VOICE if kind == "ptt" else MessageKind(kind)
    assert out.kind is expected_kind
    assert out.text == caption
    assert out.media is not None
    data = media["base64"].split(",", 1)[-1]
    assert out.media == OutgoingMedia(base64.b64decode(data), expected_mime, media.get("filename"))
    assert answer["media"]["mimetype"] == expected_mime
    assert answer["media"]["size"] == len(out.media.data)


async def test_text_as_caption_of_an_image(rig: Rig) -> None:
    link = await rig.connect()
    _, out = await sent_one(rig, link, type="image", text="hi", media={"base64": b64(PNG)})
    assert out.text == "hi"
    assert out.media is not None and out.media.mimetype == "image/png"  # nobody said: detected


async def test_location_and_contact(rig: Rig) -> None:
    link = await rig.connect()
    where = {"latitude": -6.2, "longitude": 106.8, "name": "Monas", "address": "Jakarta"}
    _, out = await sent_one(rig, link, type="location", location=where)
    assert out.kind is MessageKind.LOCATION
    assert out.location == Location(-6.2, 106.8, "Monas", "Jakarta")
    _, out = await sent_one(
        rig, link, type="contact", contact={"name": "Ann", "phone": "+62 812-0000-0000"}
    )
    assert out.contact == ContactCard("Ann", "6281200000000")
    # an empty name or address is none: the sandbox refuses "" where neonize sends nothing
    bare = {"latitude": 1.5, "longitude": 2.5, "name": "", "address": "  "}
    _, out = await sent_one(rig, link, type="location", location=bare)
    assert out.location == Location(1.5, 2.5)
    vcard = "BEGIN:VCARD\nVERSION:3.0\nFN:Bo\nEND:VCARD"
    _, out = await sent_one(rig, link, type="contact", contact={"name": "Bo", "vcard": vcard})
    assert out.contact == ContactCard("Bo", None, vcard)


async def test_reaction_to_our_message_and_to_theirs(rig: Rig) -> None:
    link = await rig.connect()
    first, _ = await sent_one(rig, link, text="hello")
    _, out = await sent_one(
        rig, link, type="reaction", reaction={"messageId": first["messageId"], "emoji": "👍"}
    )
    assert out.kind is MessageKind.REACTION
    assert (out.text, out.react_to) == ("👍", first["messageId"])
    assert out.react_to_sender == f"{PHONE}@s.whatsapp.net"
    # by our numeric id too; an empty emoji takes the reaction back
    _, out = await sent_one(
        rig, link, type="reaction", reaction={"messageId": str(first["id"]), "emoji": ""}
    )
    assert (out.text, out.react_to) == ("", first["messageId"])
    await _inbound(rig, "WAIN0001", "hi there")
    _, out = await sent_one(
        rig, link, type="react", reaction={"messageId": "WAIN0001", "emoji": "❤"}
    )
    assert (out.react_to, out.react_to_sender) == ("WAIN0001", ALICE_JID)


async def test_reply_quotes_a_known_message_and_mentions(rig: Rig) -> None:
    link = await rig.connect()
    await _inbound(rig, "WAIN0002", "are you coming?")
    _, out = await sent_one(
        rig,
        link,
        text="@6281111111111 yes",
        quotedId="WAIN0002",
        mentions=["+62 811-1111-1111", "123456789012345@lid"],
    )
    assert out.quote == Quote("WAIN0002", ALICE_JID, "are you coming?")
    assert out.mentions == (ALICE_JID, "123456789012345@lid")
    # an id we never stored is quoted as is
    _, out = await sent_one(rig, link, text="ok", quotedId="UNKNOWN1")
    assert out.quote == Quote("UNKNOWN1")
    answer = await rig.get(out.id or "")
    assert answer["quotedId"] == "UNKNOWN1"


@pytest.mark.parametrize(
    ("to", "jid"),
    [
        ("+62 811-1111-1111", ALICE_JID),
        (ALICE, ALICE_JID),
        (f"{ALICE}:12@s.whatsapp.net", ALICE_JID),
        (f"{ALICE}@c.us", ALICE_JID),
        ("123456789012345@lid", "123456789012345@lid"),
        ("120363012345678901@g.us", "120363012345678901@g.us"),
        ("6281111111111-1600000000@g.us", "6281111111111-1600000000@g.us"),
    ],
)
async def test_recipients_are_normalised(rig: Rig, to: str, jid: str) -> None:
    link = await rig.connect()
    body, out = await sent_one(rig, link, to=to, text="hi")
    assert out.to == jid
    assert body["chat"] == jid


async def test_type_defaults_to_text(rig: Rig) -> None:
    link = await rig.connect()
    _, out = await sent_one(rig, link, text="plain")
    assert out.kind is MessageKind.TEXT


async def _inbound(rig: Rig, wa_id: str, text: str) -> None:
    repo = MessageRepo(rig.gateway.db, rig.gateway.clock)
    await repo.insert_inbound(
        {
            "session_id": "s1",
            "wa_msg_id": wa_id,
            "chat_id": ALICE_JID,
            "sender": ALICE_JID,
            "kind": "text",
            "text": text,
            "ts": rig.gateway.clock.now(),
        }
    )
