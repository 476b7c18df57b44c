"""Message history: filters, the cursor, single messages, and media info."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from tests.outbound.conftest import ALICE_JID, Rig
from wagate.storage.repos.media import MediaRepo
from wagate.storage.repos.messages import MessageRepo

BOB = "6282222222222"
BOB_JID = f"{BOB}@s.whatsapp.net"


async def inbound(rig: Rig, wa_id: str, chat: str, text: str, **extra: Any) -> int:
    repo = MessageRepo(rig.gateway.db, rig.gateway.clock)
    values = {
        "session_id": "s1",
        "wa_msg_id": wa_id,
        "chat_id": chat,
        "sender": chat,
        "kind": "text",
        "text": text,
        "ts": rig.gateway.clock.now(),
        **extra,
    }
    new = await repo.insert_inbound(values)
    assert new is not None
    return new.id


async def history(rig: Rig, **params: Any) -> dict[str, Any]:
    r = await rig.api.get("/api/sessions/s1/messages", params=params)
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


def texts(body: dict[str, Any]) -> list[str]:
    return [m["text"] for m in body["messages"]]


async def test_newest_first_with_filters(rig: Rig) -> None:
    await rig.create()
    await inbound(rig, "IN1", ALICE_JID, "a-in")
    await rig.send(text="a-out")
    await inbound(rig, "IN2", BOB_JID, "b-in")
    await rig.send(to=BOB, text="b-out")
    assert texts(await history(rig)) == ["b-out", "b-in", "a-out", "a-in"]
    assert texts(await history(rig, chat="+62 811-1111-1111")) == ["a-out", "a-in"]
    assert texts(await history(rig, chat=BOB_JID, direction="in")) == ["b-in"]
    assert texts(await history(rig, direction="out")) == ["b-out", "a-out"]
    assert texts(await history(rig, status="queued")) == ["b-out", "a-out"]
    assert texts(await history(rig, status="received")) == ["b-in", "a-in"]


async def test_time_window(rig: Rig) -> None:
    await rig.create()
    now = rig.gateway.clock.now()
    await inbound(rig, "OLD", ALICE_JID, "old", ts=now - timedelta(hours=2))
    await inbound(rig, "MID", ALICE_JID, "mid", ts=now - timedelta(hours=1))
    await inbound(rig, "NEW", ALICE_JID, "new", ts=now)
    since = (now - timedelta(minutes=90)).isoformat()
    until = (now - timedelta(minutes=30)).isoformat()
    assert texts(await history(rig, since=since)) == ["new", "mid"]
    assert texts(await history(rig, since=since, until=until)) == ["mid"]
    naive = (now - timedelta(minutes=30)).replace(tzinfo=None).isoformat()
    assert texts(await history(rig, until=naive)) == ["mid", "old"]  # no zone means UTC


async def test_cursor_pages_through_everything(rig: Rig) -> None:
    await rig.create()
    for i in range(7):
        await inbound(rig, f"P{i}", ALICE_JID, f"m{i}")
    seen: list[str] = []
    params: dict[str, Any] = {"limit": 3}
    while True:
        page = await history(rig, **params)
        seen += texts(page)
        if page["next"] is None:
            break
        params["before"] = page["next"]
    assert seen == [f"m{i}" for i in reversed(range(7))]


async def test_bad_filters_name_the_field(rig: Rig) -> None:
    await rig.create()
    for params, field in (
        ({"direction": "sideways"}, "direction"),
        ({"status": "lost"}, "status"),
        ({"limit": 0}, "limit"),
        ({"since": "yesterday"}, "since"),
        ({"before": "x"}, "before"),
    ):
        r = await rig.api.get("/api/sessions/s1/messages", params=params)
        assert r.status_code == 422, params
        assert r.json()["error"]["field"] == field
    assert (await rig.api.get("/api/sessions/nope/messages")).status_code == 404


async def test_one_message_by_our_id_or_whatsapp_id(rig: Rig) -> None:
    await rig.create()
    await rig.create("s2")
    sent = (await rig.send(text="hello")).json()
    assert (await rig.get(sent["id"]))["messageId"] == sent["messageId"]
    assert (await rig.get(sent["messageId"]))["id"] == sent["id"]
    assert (await rig.api.get("/api/sessions/s1/messages/NOPE")).status_code == 404
    assert (await rig.api.get(f"/api/sessions/s2/messages/{sent['id']}")).status_code == 404


async def test_media_info_for_stored_media(rig: Rig) -> None:
    await rig.create()
    media = await MediaRepo(rig.gateway.db, rig.gateway.clock).insert_if_absent(
        sha256="a" * 64, mime="image/jpeg", size=1234, storage_path="wa-media/aaa/original.jpg"
    )
    message_id = await inbound(rig, "MEDIA1", ALICE_JID, "caption", kind="image", media_id=media.id)
    found = await rig.get(message_id)
    assert found["media"]["mediaId"] == media.id
    assert found["media"]["url"] == f"/api/media/{media.id}"
    assert (await history(rig))["messages"][0]["media"]["url"] == f"/api/media/{media.id}"
    plain = await rig.get((await rig.send(text="no media")).json()["id"])
    assert plain["media"] is None


async def test_the_sender_phone_and_lid_are_both_shown(rig: Rig) -> None:
    await rig.create()
    lid = "111111111111111@lid"
    message_id = await inbound(
        rig,
        "LID1",
        "120363000000000001@g.us",
        "hi all",
        sender=lid,
        sender_pn=ALICE_JID,
        sender_lid=lid,
        push_name="Alice",
    )
    found = await rig.get(message_id)
    assert (found["sender"], found["senderPhone"], found["senderLid"]) == (lid, ALICE_JID, lid)
    listed = (await history(rig))["messages"][0]
    assert (listed["senderPhone"], listed["senderLid"]) == (ALICE_JID, lid)
    # seed 002's envelope stays exactly as the seed writes it
    r = await rig.api.get("/session/s1/messages", params={"limit": 10, "offset": 0})
    body = r.json()
    assert set(body) == {"success", "data"} and set(body["data"]) == {"messages", "pagination"}
    assert set(body["data"]["messages"][0]) == {
        "id",
        "from",
        "to",
        "type",
        "content",
        "timestamp",
        "status",
    }
