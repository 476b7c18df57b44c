"""Bad send requests get a 4xx whose error names the field; never a 500."""

from __future__ import annotations

import base64
from typing import Any

import pytest

from tests.outbound.conftest import ALICE, Rig, RigFactory


async def _refused(rig: Rig, body: dict[str, Any], field: str, status: int = 422) -> str:
    r = await rig.api.post("/api/sessions/s1/messages", json=body)
    assert r.status_code == status, r.text
    error = r.json()["error"]
    assert error["field"] == field, error
    assert r.json()["success"] is False
    message: str = error["message"]
    return message


@pytest.mark.parametrize(
    ("body", "field", "words"),
    [
        ({"to": ALICE, "type": "hologram", "text": "x"}, "type", "unknown message type"),
        ({"type": "text", "text": "x"}, "to", "Field required"),
        ({"to": "not a number", "text": "x"}, "to", "invalid phone"),
        ({"to": "123@broadcast", "text": "x"}, "to", "not a phone number"),
        ({"to": ALICE}, "text", "required"),
        ({"to": ALICE, "text": "   "}, "text", "empty"),
        (
            {"to": ALICE, "type": "image", "media": {"base64": "%%%not base64%%%"}},
            "media.base64",
            "not valid base64",
        ),
        ({"to": ALICE, "type": "image"}, "media", "required"),
        ({"to": ALICE, "type": "image", "media": {}}, "media", "exactly one"),
        (
            {
                "to": ALICE,
                "type": "image",
                "media": {"url": "https://x.example/a", "base64": "AAAA"},
            },
            "media",
            "exactly one",
        ),
        (
            {"to": ALICE, "type": "audio", "media": {"base64": "AAAA"}, "caption": "no"},
            "caption",
            "not used",
        ),
        (
            {"to": ALICE, "text": "x", "location": {"latitude": 1, "longitude": 2}},
            "location",
            "not used",
        ),
        (
            {"to": ALICE, "type": "location", "location": {"latitude": 91, "longitude": 0}},
            "location.latitude",
            "90",
        ),
        (
            {"to": ALICE, "type": "contact", "contact": {"name": "Ann"}},
            "contact",
            "phone or a vcard",
        ),
        (  # one of the two would be dropped on the way
            {
                "to": ALICE,
                "type": "contact",
                "contact": {"name": "Ann", "phone": ALICE, "vcard": "BEGIN:VCARD\nEND:VCARD"},
            },
            "contact",
            "not both",
        ),
        (
            {"to": ALICE, "type": "contact", "contact": {"name": "Ann", "vcard": "Ann, +62 811"}},
            "contact.vcard",
            "BEGIN:VCARD",
        ),
        (
            {
                "to": ALICE,
                "type": "image",
                "media": {"base64": "AAAA", "mimetype": "application/pdf"},
            },
            "media.mimetype",
            "image/",
        ),
        (
            {
                "to": ALICE,
                "type": "reaction",
                "reaction": {"messageId": "X", "emoji": "👍"},
                "quotedId": "Y",
            },
            "quotedId",
            "reaction",
        ),
        (
            {"to": ALICE, "text": "x", "mentions": ["120363012345678901@g.us"]},
            "mentions[0]",
            "not a phone",
        ),
        ({"to": ALICE, "text": "x", "colour": "red"}, "colour", "Extra inputs"),
        (
            {"to": ALICE, "type": "image", "media": {"url": "file:///etc/passwd"}},
            "media.url",
            "http",
        ),
    ],
)
async def test_bad_requests(rig: Rig, body: dict[str, Any], field: str, words: str) -> None:
    await rig.create()
    message = await _refused(rig, body, field)
    assert words.lower() in message.lower()


@pytest.mark.parametrize("host", ["127.0.0.1", "169.254.169.254", "[::1]", "10.0.0.8", "localhost"])
async def test_media_urls_to_internal_addresses_are_refused(rig: Rig, host: str) -> None:
    await rig.create()
    body = {"to": ALICE, "type": "image", "media": {"url": f"http://{host}/latest/meta-data"}}
    message = await _refused(rig, body, "media.url")
    assert "internal address" in message


async def test_media_too_large_by_base64(make_rig: RigFactory) -> None:
    rig = await make_rig(send_media_max_bytes=1000)
    await rig.create()
    big = base64.b64encode(b"x" * 1001).decode()
    message = await _refused(
        rig, {"to": ALICE, "type": "document", "media": {"base64": big}}, "media.base64"
    )
    assert "larger than the limit of 1000 bytes" in message
    ok = base64.b64encode(b"x" * 1000).decode()
    r = await rig.send(type="document", media={"base64": ok, "filename": "x.bin"})
    assert r.status_code == 201


async def test_a_body_far_over_the_limit_is_refused_unread(make_rig: RigFactory) -> None:
    rig = await make_rig(send_media_max_bytes=1000)
    await rig.create()
    padding = "A" * (2 * 1024 * 1024)
    body = {"to": ALICE, "type": "document", "media": {"base64": padding}}
    await _refused(rig, body, "body", status=413)


async def test_unknown_session_is_404(rig: Rig) -> None:
    r = await rig.send("nope", text="x")
    assert r.status_code == 404
    r = await rig.send("../etc", text="x")
    assert r.status_code in (404, 422)


async def test_not_json(rig: Rig) -> None:
    await rig.create()
    r = await rig.api.post(
        "/api/sessions/s1/messages", content=b"{nope", headers={"content-type": "application/json"}
    )
    assert r.status_code == 422
    assert "not valid JSON" in r.json()["error"]["message"]
    r = await rig.api.post("/api/sessions/s1/messages", content=b"")
    assert r.status_code == 422
    r = await rig.api.post("/api/sessions/s1/messages", json=["to", ALICE])
    assert r.status_code == 422


async def test_key_is_required(rig: Rig) -> None:
    await rig.create()
    r = await rig.api.post(
        "/api/sessions/s1/messages", json={"to": ALICE, "text": "x"}, headers={"X-Api-Key": ""}
    )
    assert r.status_code == 401
