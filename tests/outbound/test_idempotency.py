"""An idempotency key makes a retried request return the first message, never a second send."""

from __future__ import annotations

import asyncio

import pytest

from tests.outbound.conftest import ALICE, Rig
from wagate.testing import eventually


@pytest.mark.parametrize("where", ["header", "field"])
async def test_a_repeat_returns_the_first_message(rig: Rig, where: str) -> None:
    link = await rig.connect()
    body = {"to": ALICE, "text": "pay 10"}
    headers = {}
    if where == "header":
        headers["Idempotency-Key"] = "order-1"
    else:
        body["idempotencyKey"] = "order-1"
    first = await rig.api.post("/api/sessions/s1/messages", json=body, headers=headers)
    assert first.status_code == 201
    await rig.wait_status(first.json()["id"], "sent")
    again = await rig.api.post("/api/sessions/s1/messages", json=body, headers=headers)
    assert again.status_code == 200
    assert again.json() == await rig.get(first.json()["id"])
    assert again.json()["idempotencyKey"] == "order-1"
    # one row, already sent: the sender has nothing left that it could send again
    assert await _queue_of(rig) == [(first.json()["id"], "sent")]
    assert [m.text for m in link.sent] == ["pay 10"]


async def test_the_same_key_for_another_request_is_a_conflict(rig: Rig) -> None:
    await rig.create()
    assert (await rig.send(text="pay 10", idempotencyKey="k")).status_code == 201
    r = await rig.send(text="pay 1000", idempotencyKey="k")
    assert r.status_code == 409
    assert r.json()["error"]["code"] == "idempotency_conflict"
    r = await rig.send(to="+62 811 2222 2222", text="pay 10", idempotencyKey="k")
    assert r.status_code == 409


async def test_equivalent_recipients_are_the_same_request(rig: Rig) -> None:
    await rig.create()
    first = await rig.send(to="+62 811-1111-1111", text="x", idempotencyKey="k2")
    again = await rig.send(to=f"{ALICE}@s.whatsapp.net", text="x", idempotencyKey="k2")
    assert (first.status_code, again.status_code) == (201, 200)
    assert again.json()["id"] == first.json()["id"]


async def test_media_by_base64_is_compared_by_content(rig: Rig) -> None:
    await rig.create()
    media = {"type": "image", "media": {"base64": "iVBORw0KGgo="}, "idempotencyKey": "img"}
    assert (await rig.send(**media)).status_code == 201
    assert (await rig.send(**media)).status_code == 200
    other = {**media, "media": {"base64": "R0lGODlh"}}
    assert (await rig.send(**other)).status_code == 409


async def test_header_and_field_must_agree(rig: Rig) -> None:
    await rig.create()
    r = await rig.api.post(
        "/api/sessions/s1/messages",
        json={"to": ALICE, "text": "x", "idempotencyKey": "a"},
        headers={"Idempotency-Key": "b"},
    )
    assert r.status_code == 422
    assert r.json()["error"]["field"] == "idempotencyKey"


async def test_concurrent_repeats_queue_one_message(rig: Rig) -> None:
    await rig.create()
    answers = await asyncio.gather(
        *(rig.send(text="once", idempotencyKey="race") for _ in range(8))
    )
    codes = sorted(a.status_code for a in answers)
    assert codes == [200] * 7 + [201]
    assert len({a.json()["id"] for a in answers}) == 1
    link = await rig.connect()
    await eventually(lambda: len(link.sent) == 1)
    await rig.wait_status(answers[0].json()["id"], "sent")
    # one row, already sent: the sender has nothing left that it could send again
    assert await _queue_of(rig) == [(answers[0].json()["id"], "sent")]
    assert len(link.sent) == 1


async def _queue_of(rig: Rig) -> list[tuple[int, str]]:
    """Every outgoing message of session s1, as (id, status)."""
    r = await rig.api.get("/api/sessions/s1/messages", params={"direction": "out"})
    assert r.status_code == 200, r.text
    return [(m["id"], m["status"]) for m in r.json()["messages"]]


async def test_keys_are_per_session(rig: Rig) -> None:
    await rig.create("s1")
    await rig.create("s2")
    assert (await rig.send("s1", text="a", idempotencyKey="k")).status_code == 201
    assert (await rig.send("s2", text="b", idempotencyKey="k")).status_code == 201
