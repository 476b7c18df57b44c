"""The control API's messaging routes, over HTTP and through SandboxControl."""

from __future__ import annotations

import base64
import hashlib
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from tests.sandbox.support import ALICE, BOB, CAROL, jid, link_auth, online
from wagate.domain.message import MessageKind
from wagate.engine.base import GroupEvent, ReceiptEvent
from wagate.errors import InvalidInput, NotFound, Unauthorized
from wagate.sandbox import SandboxControl, create_app

TOKEN = "s3cret-token"


def http(network, **headers: str) -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=create_app(network))
    return httpx.AsyncClient(transport=transport, base_url="http://sandbox", headers=headers)


def control(network, **kw) -> SandboxControl:
    app = create_app(network, control_token=kw.pop("token", None))
    return SandboxControl("http://sandbox", transport=httpx.ASGITransport(app=app), **kw)


async def test_send_and_read_the_inbox_over_http(network) -> None:
    async with http(network) as client:
        sent = await client.post("/control/send", json={"from": BOB, "to": ALICE, "text": "hi"})
        inbox = await client.get(f"/control/inbox/{ALICE}")
        by_jid = await client.get(f"/control/inbox/{jid(ALICE)}")
    assert sent.status_code == 200 and sent.json()["ok"] is True
    (entry,) = inbox.json()["messages"]
    assert (entry["id"], entry["from"], entry["text"]) == (sent.json()["id"], jid(BOB), "hi")
    assert by_jid.json() == inbox.json()


async def test_media_with_a_caption_then_the_blob(network) -> None:
    data = b"\x89PNG" + bytes(300)
    body = {
        "from": BOB,
        "to": ALICE,
        "mediaBase64": base64.b64encode(data).decode(),
        "mimetype": "image/png",
        "filename": "p.png",
        "caption": "a picture",
        "width": 10,
        "durationS": None,
    }
    async with http(network) as client:
        await client.post("/control/send", json=body)
        (entry,) = (await client.get(f"/control/inbox/{ALICE}")).json()["messages"]
        blob = await client.get(f"/control/blobs/{entry['media_handle']}")
    assert (entry["kind"], entry["text"], entry["filename"], entry["width"]) == (
        "image",
        "a picture",
        "p.png",
        10,
    )
    assert entry["sha256"] == hashlib.sha256(data).hexdigest()
    assert blob.content == data and blob.headers["content-type"] == "application/octet-stream"


async def test_control_client_drives_a_session(network, engine) -> None:
    auth = await link_auth(network)
    old = datetime.now(UTC) - timedelta(minutes=2)
    async with control(network) as phone, online(engine, auth) as alice:
        await phone.add_phone(CAROL, push_name="Carol")
        first = await phone.send(BOB, ALICE, text="one")
        voice = await phone.send(BOB, ALICE, media=b"OggS", mimetype="audio/ogg", kind="voice")
        reply = await phone.send(BOB, ALICE, text="re", quote_id=first, timestamp=old)
        events = [await alice.message() for _ in range(3)]
        group = await phone.create_group("Via API", BOB, [ALICE, CAROL])
        await phone.rename_group(group, "Renamed")
        await phone.change_members(group, add=["15550004444"], remove=[CAROL])
        changes = [await alice.events.expect(GroupEvent) for _ in range(4)]
        sent = await alice.text(BOB, "read this")
        await phone.mark_read(BOB, [sent])
        read = await alice.events.expect(ReceiptEvent)
        (entry,) = await phone.inbox(BOB)
        assert await phone.blob(events[1].media.sha256) == b"OggS"
    assert [e.id for e in events] == [first, voice, reply]
    assert events[1].kind is MessageKind.VOICE and events[2].quoted_id == first
    assert events[2].timestamp == old
    assert [(c.change, c.name) for c in changes] == [
        ("created", "Via API"),
        ("renamed", "Renamed"),
        ("participants", "Renamed"),  # added
        ("participants", "Renamed"),  # removed
    ]
    assert read.status.value == "read" and entry["id"] == sent


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        ("/control/send", {"to": ALICE, "text": "x"}, "from"),
        ("/control/send", {"from": BOB, "text": "x"}, "to"),
        ("/control/send", {"from": "bob", "to": ALICE, "text": "x"}, "from"),
        ("/control/send", {"from": BOB, "to": "x@y", "text": "x"}, "to"),
        ("/control/send", {"from": BOB, "to": ALICE}, "text"),
        ("/control/send", {"from": BOB, "to": ALICE, "text": 5}, "text"),
        ("/control/send", {"from": BOB, "to": ALICE, "mediaBase64": "***"}, "mediaBase64"),
        ("/control/send", {"from": BOB, "to": ALICE, "text": "x", "kind": "gif"}, "kind"),
        (
            "/control/send",
            {"from": BOB, "to": ALICE, "text": "x", "timestamp": "noon"},
            "timestamp",
        ),
        ("/control/send", {"from": BOB, "to": ALICE, "text": "x", "quoteId": "a b"}, "quoteId"),
        ("/control/send", {"from": BOB, "to": ALICE, "text": "x", "id": "a b"}, "id"),
        ("/control/send", {"from": BOB, "to": ALICE, "kind": "reaction", "text": "x"}, "reactTo"),
        (
            "/control/send",
            {"from": BOB, "to": ALICE, "mediaBase64": "eA==", "mimetype": "image/png", "width": -1},
            "width",
        ),
        ("/control/send", [], "body"),
        ("/control/phones", {"phone": "12"}, "phone"),
        ("/control/read", {"phone": BOB}, "ids"),
        ("/control/read", {"phone": BOB, "ids": [""]}, "ids"),
        ("/control/groups", {"name": "g", "owner": BOB}, "members"),
        ("/control/groups", {"name": "g", "owner": BOB, "members": "x"}, "members"),
        ("/control/groups", {"name": " ", "owner": BOB, "members": [ALICE]}, "name"),
        ("/control/groups", {"name": "g", "owner": "me", "members": [ALICE]}, "owner"),
    ],
)
async def test_bad_fields_are_422_naming_the_field(path, body, field, network) -> None:
    async with http(network) as client:
        response = await client.post(path, json=body)
    assert response.status_code == 422, response.text
    assert response.json()["error"]["field"] == field


async def test_unknown_things_are_404_never_500(network) -> None:
    missing_group = "120363000000000000@g.us"
    async with http(network) as client:
        answers = [
            await client.post(
                "/control/send", json={"from": BOB, "to": missing_group, "text": "x"}
            ),
            await client.post(f"/control/groups/{missing_group}/rename", json={"name": "x"}),
            await client.post(f"/control/groups/{missing_group}/members", json={"add": [BOB]}),
            await client.get("/control/blobs/" + "0" * 64),
            await client.get("/control/blobs/..%2F..%2Fetc%2Fpasswd"),
            await client.post("/control/read", json={"phone": BOB, "ids": ["3EB0"]}),
        ]
        bad_phone = await client.get("/control/inbox/not-a-phone")
    assert [a.status_code for a in answers] == [404] * len(answers)
    assert all(a.json()["error"]["message"] for a in answers)
    assert bad_phone.status_code == 422 and bad_phone.json()["error"]["field"] == "phone"


async def test_an_unknown_phone_has_an_empty_inbox(network) -> None:
    async with control(network) as phone:
        assert await phone.inbox("+1 555 000 9999") == []


async def test_the_control_client_maps_errors(network) -> None:
    async with control(network) as phone:
        with pytest.raises(InvalidInput) as bad:
            await phone.send(BOB, ALICE)
        with pytest.raises(NotFound):
            await phone.rename_group("120363000000000000@g.us", "x")
        with pytest.raises(NotFound):
            await phone.blob("f" * 64)
    assert bad.value.field == "text"


async def test_the_messaging_routes_need_the_token(network) -> None:
    async with control(network, token=TOKEN) as anonymous:
        with pytest.raises(Unauthorized):
            await anonymous.send(BOB, ALICE, text="x")
        with pytest.raises(Unauthorized):
            await anonymous.inbox(ALICE)
    async with control(network, token=TOKEN, api_key=TOKEN) as keyed:
        msg_id = await keyed.send(BOB, ALICE, text="x")
        assert [entry["id"] for entry in await keyed.inbox(ALICE)] == [msg_id]
