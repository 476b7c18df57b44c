"""Seed 002's ``POST /session/{id}/send`` and ``GET /session/{id}/messages``, field by field."""

from __future__ import annotations

import re

from tests.control.test_messages import inbound
from tests.outbound.conftest import ALICE, ALICE_JID, PHONE, Rig
from wagate.domain.message import MessageKind
from wagate.testing import eventually

ISO_Z = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")


async def test_send_envelope(rig: Rig) -> None:
    link = await rig.connect()
    r = await rig.api.post(
        "/session/s1/send", json={"to": ALICE_JID, "type": "text", "message": "Hello World!"}
    )
    assert r.status_code == 200
    body = r.json()
    assert set(body) == {"success", "data"} and body["success"] is True
    data = body["data"]
    assert set(data) == {"messageId", "status", "timestamp"}
    assert re.match(r"^3EB0[0-9A-F]{16}$", data["messageId"])
    assert data["status"] == "queued"
    assert ISO_Z.match(data["timestamp"])
    await eventually(lambda: len(link.sent) == 1)
    assert (link.sent[0].text, link.sent[0].id) == ("Hello World!", data["messageId"])


async def test_message_is_the_caption_of_media_and_the_emoji_of_a_reaction(rig: Rig) -> None:
    link = await rig.connect()
    r = await rig.api.post(
        "/session/s1/send",
        json={"to": ALICE, "type": "image", "message": "look", "media": {"base64": "iVBORw0K"}},
    )
    assert r.status_code == 200, r.text
    target = r.json()["data"]["messageId"]
    r = await rig.api.post(
        "/session/s1/send",
        json={
            "to": ALICE,
            "type": "reaction",
            "message": "🔥",
            "reaction": {"messageId": target, "emoji": ""},
        },
    )
    assert r.status_code == 200, r.text
    await eventually(lambda: len(link.sent) == 2)
    image, reaction = link.sent
    assert (image.kind, image.text) == (MessageKind.IMAGE, "look")
    assert (reaction.kind, reaction.text, reaction.react_to) == (MessageKind.REACTION, "🔥", target)


async def test_send_errors_use_the_seed_vocabulary(rig: Rig) -> None:
    await rig.create()
    r = await rig.api.post(
        "/session/s1/send", json={"to": ALICE, "type": "telepathy", "message": "x"}
    )
    assert r.status_code == 422
    assert r.json()["success"] is False and r.json()["error"]["field"] == "type"
    r = await rig.api.post("/session/s1/send", json={"to": ALICE, "type": "text"})
    assert r.json()["error"]["field"] == "message"
    r = await rig.api.post(
        "/session/s1/send",
        json={
            "to": ALICE,
            "type": "location",
            "message": "x",
            "location": {"latitude": 1, "longitude": 1},
        },
    )
    assert (r.status_code, r.json()["error"]["field"]) == (422, "message")
    r = await rig.api.post("/session/s1/send", json={"type": "text", "message": "x"})
    assert (r.status_code, r.json()["error"]["field"]) == (422, "to")
    r = await rig.api.post("/session/ghost/send", json={"to": ALICE, "message": "x"})
    assert r.status_code == 404


async def test_send_is_idempotent_with_the_header(rig: Rig) -> None:
    await rig.create()
    body = {"to": ALICE, "type": "text", "message": "once"}
    first = await rig.api.post("/session/s1/send", json=body, headers={"Idempotency-Key": "x1"})
    again = await rig.api.post("/session/s1/send", json=body, headers={"Idempotency-Key": "x1"})
    assert first.json() == again.json()


async def test_messages_envelope(rig: Rig) -> None:
    link = await rig.connect()
    await inbound(rig, "WAIN1", ALICE_JID, "Hello!")
    sent = (await rig.send(text="Hi back")).json()
    await eventually(lambda: len(link.sent) == 1)
    await rig.wait_status(sent["id"], "sent")
    r = await rig.api.get("/session/s1/messages", params={"limit": 50, "offset": 0})
    assert r.status_code == 200
    body = r.json()
    assert set(body) == {"success", "data"} and body["success"] is True
    assert set(body["data"]) == {"messages", "pagination"}
    assert body["data"]["pagination"] == {"total": 2, "limit": 50, "offset": 0}
    out, in_ = body["data"]["messages"]
    me = f"{PHONE}@s.whatsapp.net"
    for m in (out, in_):
        assert set(m) == {"id", "from", "to", "type", "content", "timestamp", "status"}
        assert ISO_Z.match(m["timestamp"])
    assert out == {
        "id": sent["messageId"],
        "from": me,
        "to": ALICE_JID,
        "type": "text",
        "content": "Hi back",
        "timestamp": out["timestamp"],
        "status": "sent",
    }
    assert in_ == {
        "id": "WAIN1",
        "from": ALICE_JID,
        "to": me,
        "type": "text",
        "content": "Hello!",
        "timestamp": in_["timestamp"],
        "status": "received",
    }


async def test_messages_pagination(rig: Rig) -> None:
    await rig.create()
    for i in range(5):
        await inbound(rig, f"W{i}", ALICE_JID, f"m{i}")
    r = await rig.api.get("/session/s1/messages", params={"limit": 2, "offset": 1})
    data = r.json()["data"]
    assert [m["content"] for m in data["messages"]] == ["m3", "m2"]
    assert data["pagination"] == {"total": 5, "limit": 2, "offset": 1}
    defaults = (await rig.api.get("/session/s1/messages")).json()["data"]["pagination"]
    assert defaults == {"total": 5, "limit": 50, "offset": 0}
    for params, field in (({"limit": 0}, "limit"), ({"offset": -1}, "offset")):
        r = await rig.api.get("/session/s1/messages", params=params)
        assert (r.status_code, r.json()["error"]["field"]) == (422, field)
