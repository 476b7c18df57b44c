"""The mimetype a message's media goes out with is read from its bytes, whatever the source."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from typing import Any

import pytest

from tests.outbound.conftest import ALICE, Rig, RigFactory, SandboxRigFactory
from tests.outbound.samples import JPEG, M4A, MP3, MP4, OPUS, PDF, PNG, TEXT, VORBIS, WEBP
from tests.outbound.web import Answer, Site, serve
from wagate.domain.message import MessageKind, Outgoing, OutgoingMedia
from wagate.outbound import queue
from wagate.outbound.rules import new_wa_id
from wagate.storage.repos.outbound import NewOutbound
from wagate.testing import eventually

UNKNOWN = bytes([0x13, 0x37, 0x00, 0xFE]) * 32  # binary that no signature matches


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


async def sent_media(rig: Rig, **body: Any) -> OutgoingMedia:
    link = rig.engine.links[-1]
    before = len(link.sent)
    r = await rig.send(**body)
    assert r.status_code == 201, r.text
    await eventually(lambda: len(link.sent) > before)
    media = link.sent[-1].media
    assert media is not None
    assert r.json()["media"]["mimetype"] == media.mimetype
    return media


async def refused(rig: Rig, field: str, words: str, **body: Any) -> None:
    r = await rig.send(**body)
    assert r.status_code == 422, r.text
    error = r.json()["error"]
    assert error["field"] == field, error
    assert words in error["message"], error


@pytest.fixture
def site() -> Iterator[Site]:
    with serve(
        {
            "/pic": Answer(PNG, "application/octet-stream"),
            "/photo.jpg": Answer(PNG, "image/jpeg"),
            "/page": Answer(b"<html><body>hello</body></html>"),
        }
    ) as running:
        yield running


# --- images, video, audio: the bytes win ---------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "data", "declared", "expected"),
    [
        ("image", PNG, None, "image/png"),  # nobody said: detected, not assumed to be a JPEG
        ("image", PNG, "image/jpeg", "image/png"),  # the claim contradicts the bytes
        ("image", JPEG, "application/octet-stream", "image/jpeg"),  # a generic claim
        ("image", JPEG, "image/jpg", "image/jpeg"),
        ("video", MP4, None, "video/mp4"),
        ("audio", MP3, None, "audio/mpeg"),
        ("audio", M4A, "audio/x-m4a", "audio/mp4"),
        ("audio", MP4, None, "audio/mp4"),  # an MP4 container holding sound
        ("audio", UNKNOWN, "audio/amr-wb", "audio/amr-wb"),  # bytes that tell nothing
    ],
)
async def test_media_goes_out_as_its_bytes_say(
    rig: Rig, kind: str, data: bytes, declared: str | None, expected: str
) -> None:
    await rig.connect()
    media: dict[str, str] = {"base64": b64(data)}
    if declared:
        media["mimetype"] = declared
    assert (await sent_media(rig, type=kind, media=media)).mimetype == expected


@pytest.mark.parametrize(
    ("kind", "data", "words"),
    [
        ("image", TEXT, "holds text, not an image"),
        ("image", PDF, "holds application/pdf, which is not an image"),
        ("video", PNG, "holds image/png, which is not a video"),
        ("audio", TEXT, "holds text, not an audio"),
    ],
)
async def test_bytes_that_are_plainly_something_else_are_refused(
    rig: Rig, kind: str, data: bytes, words: str
) -> None:
    await rig.create()
    await refused(rig, "media.base64", words, type=kind, media={"base64": b64(data)})


async def test_bytes_that_tell_nothing_need_a_mimetype(rig: Rig) -> None:
    await rig.create()
    await refused(
        rig, "media.mimetype", "give media.mimetype", type="image", media={"base64": b64(UNKNOWN)}
    )
    await refused(
        rig,
        "media.mimetype",
        "must be image/*",
        type="image",
        media={"base64": b64(UNKNOWN), "mimetype": "video/mp4"},
    )
    await refused(
        rig,
        "media.mimetype",
        "is not a mimetype",
        type="document",
        media={"base64": b64(PDF), "mimetype": "pdf"},
    )


async def test_a_text_file_uploaded_as_an_image_is_refused(rig: Rig) -> None:
    await rig.create()
    r = await rig.api.post(
        "/api/sessions/s1/messages",
        data={"to": ALICE, "type": "image"},
        files={"file": ("README.md", TEXT, "image/png")},
    )
    assert r.status_code == 422, r.text
    assert r.json()["error"]["field"] == "file"
    assert "holds text" in r.json()["error"]["message"]


async def test_an_upload_goes_out_as_its_bytes_say(rig: Rig) -> None:
    await rig.connect()
    link = rig.engine.links[-1]
    r = await rig.api.post(
        "/api/sessions/s1/messages",
        data={"to": ALICE, "type": "image"},
        files={"file": ("cat.jpg", PNG, "image/jpeg")},
    )
    assert r.status_code == 201, r.text
    await eventually(lambda: len(link.sent) == 1)
    assert link.sent[0].media is not None and link.sent[0].media.mimetype == "image/png"


async def test_media_by_url_is_detected_too(make_rig: RigFactory, site: Site) -> None:
    rig = await make_rig(allow_private_urls=True)
    await rig.connect()
    for path in ("/pic", "/photo.jpg"):  # a generic Content-Type; a wrong one
        media = await sent_media(rig, type="image", media={"url": site.url + path})
        assert media.mimetype == "image/png"
    await refused(rig, "media.url", "holds text", type="image", media={"url": site.url + "/page"})


# --- stickers and voice notes: the only formats WhatsApp shows ------------------------------


async def test_a_sticker_must_be_webp(rig: Rig) -> None:
    await rig.connect()
    media = await sent_media(rig, type="sticker", media={"base64": b64(WEBP)})
    assert media.mimetype == "image/webp"
    await refused(
        rig,
        "media.base64",
        "a sticker must be image/webp",
        type="sticker",
        media={"base64": b64(PNG), "mimetype": "image/webp"},
    )


@pytest.mark.parametrize("declared", [None, "audio/ogg", "audio/opus", "audio/mpeg"])
async def test_a_voice_note_of_ogg_opus_goes_out_as_whatsapp_plays_it(
    rig: Rig, declared: str | None
) -> None:
    await rig.connect()
    media: dict[str, str] = {"base64": b64(OPUS)}
    if declared:
        media["mimetype"] = declared
    assert (await sent_media(rig, type="ptt", media=media)).mimetype == "audio/ogg; codecs=opus"


@pytest.mark.parametrize(
    ("data", "words"),
    [(MP3, "media.base64 is audio/mpeg"), (VORBIS, "another codec than Opus")],
)
async def test_a_voice_note_of_other_audio_is_refused(rig: Rig, data: bytes, words: str) -> None:
    await rig.create()
    await refused(rig, "media.base64", words, type="voice", media={"base64": b64(data)})
    await refused(
        rig, "media.base64", "send it as type audio", type="voice", media={"base64": b64(data)}
    )


# --- documents: any file, its claimed type kept ---------------------------------------------


async def test_a_document_keeps_its_declared_type(rig: Rig) -> None:
    await rig.connect()
    custom = {"base64": b64(PNG), "mimetype": "application/x-custom", "filename": "a.bin"}
    assert (await sent_media(rig, type="document", media=custom)).mimetype == "application/x-custom"


@pytest.mark.parametrize(
    ("media", "expected"),
    [
        ({"base64": b64(PDF)}, ("application/pdf", "file.pdf")),
        (
            {"base64": b64(PDF), "mimetype": "application/octet-stream", "filename": "q3"},
            ("application/pdf", "q3"),
        ),
        ({"base64": b64(TEXT), "filename": "notes.csv"}, ("text/csv", "notes.csv")),
        ({"base64": b64(UNKNOWN)}, ("application/octet-stream", "file.bin")),
    ],
)
async def test_a_document_without_a_type_gets_the_one_its_bytes_or_name_show(
    rig: Rig, media: dict[str, str], expected: tuple[str, str]
) -> None:
    await rig.connect()
    sent = await sent_media(rig, type="document", media=media)
    assert (sent.mimetype, sent.filename) == expected


# --- at send time ---------------------------------------------------------------------------


async def test_media_the_engine_refuses_at_send_time_ends_failed_with_the_reason(
    make_sandbox_rig: SandboxRigFactory,
) -> None:
    # as queued by a version that did not check: a PNG sticker, already in the queue
    rig = await make_sandbox_rig()
    await rig.link()
    gateway = rig.gateway
    wa_id = new_wa_id()
    sticker = Outgoing(
        f"{ALICE}@s.whatsapp.net", MessageKind.STICKER, media=OutgoingMedia(PNG, "image/png")
    )
    media = await gateway.spool.put("s1", wa_id, PNG)
    payload = queue.payload(sticker, fingerprint="-", media=media)
    row = NewOutbound("s1", wa_id, sticker.to, "sticker", None, payload)
    queued, _ = await gateway.outbound.enqueue(row)
    gateway.sender.wake("s1")
    r = await rig.api.post("/api/sessions/s1/messages", json={"to": ALICE, "text": "after it"})
    after = await rig.inbox_entry(ALICE, r.json()["messageId"])
    assert after["text"] == "after it"  # the queue moved on
    failed = await rig.api.get(f"/api/sessions/s1/messages/{queued.id}")
    assert failed.json()["status"] == "failed"
    assert "a sticker must be image/webp" in failed.json()["error"]
    assert [e for e in await rig.network.inbox(ALICE) if e["kind"] == "sticker"] == []
