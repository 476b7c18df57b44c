"""Seed 001's worker-proxy over a real gateway's app: the whole cycle, every refusal, spellings."""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from wagate.clock import ManualClock
from wagate.errors import Conflict
from wagate.roles.serve import Gateway
from wagate.settings import Settings
from wagate.testing import RecordingOutbox, ScriptedEngine

from ..conftest import GatewayFactory

SECRET = "the-edge-secret"
P = "/worker-proxy"
AUTH = {"Authorization": f"Bearer {SECRET}"}
RAW_QR = "2@abc,def,ghi,jkl"
PHONE = "+6281234567890"
ALICE = "6289876543210"
PNG = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(64)
DATA_URL = "data:image/png;base64," + base64.b64encode(PNG).decode()


@dataclass
class Edge:
    gateway: Gateway
    clock: ManualClock
    api: httpx.AsyncClient  # the public API, with the key
    proxy: httpx.AsyncClient  # the worker-proxy, with the secret
    bare: httpx.AsyncClient  # no credential at all

    @property
    def outbox(self) -> RecordingOutbox:
        outbox = self.gateway.outbox
        assert isinstance(outbox, RecordingOutbox)
        return outbox

    async def provision(self, sid: str = "e1") -> dict[str, Any]:
        answer = await self.api.post("/api/sessions/provision", json={"id": sid, "uplink": "edge"})
        assert answer.status_code == 201, answer.text
        body: dict[str, Any] = answer.json()
        return body

    async def status(self, sid: str, status: str, **extra: Any) -> httpx.Response:
        return await self.proxy.post(
            f"{P}/update-status", json={"instanceId": sid, "status": status} | extra
        )

    async def session(self, sid: str = "e1") -> dict[str, Any]:
        body: dict[str, Any] = (await self.api.get(f"/api/sessions/{sid}")).json()
        return body

    def now_ms(self) -> int:
        return round(self.clock.now().timestamp() * 1000)


@pytest.fixture
async def edge(
    gateways: GatewayFactory, settings: Settings, clock: ManualClock
) -> AsyncIterator[Edge]:
    given = settings.model_copy(update={"worker_secret": SECRET})
    gateway = await gateways(
        given, engine=ScriptedEngine(), clock=clock, outbox_type=RecordingOutbox
    )
    transport = httpx.ASGITransport(app=gateway.app())
    async with (
        httpx.AsyncClient(
            transport=transport, base_url="http://gw", headers={"X-Api-Key": "test-key"}
        ) as api,
        httpx.AsyncClient(transport=transport, base_url="http://gw", headers=AUTH) as proxy,
        httpx.AsyncClient(transport=transport, base_url="http://gw") as bare,
    ):
        yield Edge(gateway, clock, api, proxy, bare)


async def test_the_whole_cycle(edge: Edge) -> None:
    created = await edge.provision()
    assert created["uplink"] == "edge" and created["state"] == "connecting"
    assert not edge.gateway.worker.is_running("e1")  # the fleet never starts it

    offered = await edge.proxy.get(f"{P}/disconnected-instances")
    assert offered.status_code == 200 and offered.json() == [{"id": "e1"}]

    # a QR (raw, beside its picture) is shown by the API like any other
    assert (await edge.status("e1", "CONNECTING", qr_code=DATA_URL, qr=RAW_QR)).json() == {
        "ok": True
    }
    qr = (await edge.api.get("/api/sessions/e1/qr")).json()
    assert qr["qr"] == RAW_QR and qr["qrDataUrl"].startswith("data:image/png;base64,")
    assert [e["qr"] for e in edge.outbox.of("session.qr")] == [RAW_QR]

    assert (await edge.status("e1", "CONNECTED", qr_code=None, phone=PHONE)).status_code == 200
    session = await edge.session()
    assert session["state"] == "connected" and session["phoneNumber"] == PHONE.lstrip("+")
    assert (await edge.proxy.get(f"{P}/disconnected-instances")).json() == []

    # a message queued through the public API comes out once
    sent = await edge.api.post("/api/sessions/e1/messages", json={"to": ALICE, "text": "hello"})
    assert sent.status_code in (200, 201, 202), sent.text
    wa_id = sent.json()["messageId"]
    queued = await edge.proxy.get(f"{P}/queued-messages", params={"instanceId": "e1"})
    assert queued.status_code == 200
    [item] = queued.json()
    assert item == {
        "id": wa_id,
        "messageId": wa_id,
        "instanceId": "e1",
        "to": ALICE,
        "jid": f"{ALICE}@s.whatsapp.net",
        "type": "text",
        "text": "hello",
        "caption": None,
        "media": None,
        "quotedId": None,
    }
    again = await edge.proxy.get(f"{P}/queued-messages", params={"instance_id": "e1"})
    assert again.json() == []

    mark = {"instanceId": "e1", "messageId": wa_id, "waMessageId": "3EB0REAL", "status": "sent"}
    assert (await edge.proxy.post(f"{P}/mark-sent", json=mark)).json() == {"ok": True}
    assert (await edge.proxy.post(f"{P}/mark-sent", json=mark)).status_code == 200  # a repeat
    row = (await edge.api.get(f"/api/sessions/e1/messages/{sent.json()['id']}")).json()
    assert row["status"] == "sent"
    assert len(edge.outbox.of("message.sent")) == 1

    inbound = {
        "instanceId": "e1",
        "messageId": "IN-1",
        "from": ALICE,
        "chat": f"{ALICE}@s.whatsapp.net",
        "pushName": "Alice",
        "type": "text",
        "text": "hi there",
        "timestamp": edge.now_ms(),
    }
    assert (await edge.proxy.post(f"{P}/inbound", json=inbound)).json() == {"ok": True}
    assert (await edge.proxy.post(f"{P}/inbound", json=inbound)).status_code == 200  # deduped
    history = (await edge.api.get("/api/sessions/e1/messages", params={"direction": "in"})).json()
    rows = history.get("messages", history.get("data"))
    assert [m["text"] for m in rows] == ["hi there"]
    received = edge.outbox.of("message.received")
    assert [e["waMessageId"] for e in received] == ["IN-1"]
    assert received[0]["pushName"] == "Alice" and received[0]["text"] == "hi there"
    assert received[0]["senderPhone"] == f"{ALICE}@s.whatsapp.net"


async def test_a_data_url_alone_is_the_qr(edge: Edge) -> None:
    await edge.provision()
    assert (await edge.status("e1", "CONNECTING", qr_code=DATA_URL)).status_code == 200
    qr = (await edge.api.get("/api/sessions/e1/qr")).json()
    assert qr["qrDataUrl"] == DATA_URL
    png = await edge.api.get("/api/sessions/e1/qr", headers={"Accept": "image/png"})
    assert png.headers["content-type"] == "image/png" and png.content == PNG


async def test_disconnected_reconnects_and_logged_out_rests(edge: Edge) -> None:
    await edge.provision()
    await edge.status("e1", "CONNECTED", phone=PHONE)
    await edge.status("e1", "DISCONNECTED")
    assert (await edge.session())["state"] == "reconnecting"
    assert (await edge.proxy.get(f"{P}/disconnected-instances")).json() == [{"id": "e1"}]
    await edge.status("e1", "CONNECTED", phone=PHONE)
    await edge.status("e1", "DISCONNECTED", reason="logged_out")
    assert (await edge.session())["state"] == "logged_out"
    assert (await edge.proxy.get(f"{P}/disconnected-instances")).json() == []


async def test_a_stopped_session_is_not_offered_until_connected_again(edge: Edge) -> None:
    await edge.provision()
    assert (await edge.api.post("/api/sessions/e1/stop")).json()["state"] == "stopped"
    assert (await edge.proxy.get(f"{P}/disconnected-instances")).json() == []
    await edge.status("e1", "DISCONNECTED")  # the worker cannot undo the stop
    assert (await edge.session())["state"] == "stopped"
    await edge.api.post("/session/e1/connect")  # seed 002's connect: recorded as wanted
    assert (await edge.session())["state"] == "connecting"
    assert (await edge.proxy.get(f"{P}/disconnected-instances")).json() == [{"id": "e1"}]
    assert not edge.gateway.worker.is_running("e1")


async def test_the_embedded_worker_never_starts_an_edge_session(edge: Edge) -> None:
    await edge.provision()
    await edge.api.post("/api/sessions/e1/restart")
    await edge.api.post("/api/sessions/e1/connect")
    worker = edge.gateway.worker
    assert await worker.resume() == []
    assert await worker.adopt("e1") is False
    with pytest.raises(Conflict) as refused:
        await worker.start("e1")
    assert refused.value.code == "session_on_edge"
    assert worker.running() == {}
    created = await edge.api.post("/session/create", json={"sessionId": "e2", "uplink": "edge"})
    assert created.status_code == 200
    assert (await edge.session("e2"))["uplink"] == "edge"


async def test_media_both_ways(edge: Edge) -> None:
    await edge.provision()
    await edge.status("e1", "CONNECTED", phone=PHONE)
    body = {
        "to": ALICE,
        "type": "image",
        "caption": "look",
        "media": {"base64": base64.b64encode(PNG).decode(), "mimetype": "image/png"},
    }
    sent = await edge.api.post("/api/sessions/e1/messages", json=body)
    assert sent.status_code in (200, 201, 202), sent.text
    [item] = (await edge.proxy.get(f"{P}/queued-messages?instanceId=e1")).json()
    assert item["type"] == "image" and item["caption"] == "look" and item["text"] is None
    assert base64.b64decode(item["media"]["base64"]) == PNG
    assert item["media"]["mimetype"] == "image/png"

    inbound = {
        "instance_id": "e1",
        "message_id": "IN-IMG",
        "sender": ALICE,
        "type": "image",
        "caption": "a picture",
        "timestamp": edge.clock.now().isoformat(),
        "media": {"base64": base64.b64encode(PNG).decode(), "mimetype": "image/png"},
    }
    assert (await edge.proxy.post(f"{P}/inbound", json=inbound)).status_code == 200
    [event] = edge.outbox.of("message.received")
    assert event["mediaError"] is None and event["text"] == "a picture"
    media_id = event["media"]["id"]
    stored = await edge.api.get(f"/api/media/{media_id}")
    assert stored.status_code == 200 and stored.content == PNG


async def test_mark_failed_fires_message_failed(edge: Edge) -> None:
    await edge.provision()
    sent = (
        await edge.api.post("/api/sessions/e1/messages", json={"to": ALICE, "text": "x"})
    ).json()
    await edge.proxy.get(f"{P}/queued-messages?instanceId=e1")
    mark = {"instanceId": "e1", "messageId": sent["messageId"], "status": "failed", "error": "no"}
    assert (await edge.proxy.post(f"{P}/mark-sent", json=mark)).status_code == 200
    row = (await edge.api.get(f"/api/sessions/e1/messages/{sent['id']}")).json()
    assert row["status"] == "failed" and row["error"] == "no"
    assert [e["error"] for e in edge.outbox.of("message.failed")] == ["no"]


# --- refusals ----------------------------------------------------------------------

ENDPOINTS = [
    ("GET", "/disconnected-instances", None),
    ("POST", "/update-status", {"instanceId": "e1", "status": "CONNECTING"}),
    ("GET", "/queued-messages?instanceId=e1", None),
    ("POST", "/mark-sent", {"instanceId": "e1", "messageId": "x"}),
    ("POST", "/inbound", {"instanceId": "e1", "messageId": "x", "from": ALICE}),
]


@pytest.mark.parametrize(("method", "path", "body"), ENDPOINTS)
@pytest.mark.parametrize("auth", [None, "Bearer wrong", "Basic " + SECRET, SECRET])
async def test_a_wrong_secret_gets_401_everywhere(
    edge: Edge, method: str, path: str, body: Any, auth: str | None
) -> None:
    headers = {"Authorization": auth} if auth is not None else {}
    answer = await edge.bare.request(method, P + path, json=body, headers=headers)
    assert answer.status_code == 401
    assert set(answer.json()) == {"error"}


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        ("/update-status", {"status": "CONNECTING"}, "instanceId"),
        ("/mark-sent", {"messageId": "x"}, "instanceId"),
        ("/inbound", {"messageId": "x", "from": ALICE}, "instanceId"),
        ("/inbound", {"instanceId": "e1", "from": ALICE}, "messageId"),
        ("/update-status", {"instanceId": "e1", "status": "ONLINE"}, "status"),
        ("/update-status", {"instanceId": "e1", "status": "CONNECTING", "qr_code": "x"}, "qr_code"),
        ("/update-status", {"instanceId": "e1", "status": "CONNECTED", "phone": "12"}, "phone"),
        ("/update-status", "not an object", "body"),
        (
            "/inbound",
            {"instanceId": "e1", "messageId": "x", "from": ALICE, "timestamp": "soon"},
            "timestamp",
        ),
        (
            "/inbound",
            {"instanceId": "e1", "messageId": "x", "from": ALICE, "media": {"base64": "%%%"}},
            "media.base64",
        ),
        ("/inbound", {"instanceId": "e1", "messageId": "x", "from": "nobody"}, "from"),
        ("/mark-sent", {"instanceId": "e1", "messageId": "x", "status": "maybe"}, "status"),
        ("/mark-sent", {"instance_id": "no spaces", "messageId": "x"}, "instance_id"),
    ],
)
async def test_an_unreadable_body_is_a_4xx_naming_the_field(
    edge: Edge, path: str, body: Any, field: str, caplog: pytest.LogCaptureFixture
) -> None:
    await edge.provision()
    answer = await edge.proxy.post(P + path, json=body)
    assert answer.status_code in (400, 422), answer.text
    assert field in answer.json()["error"] or field.split(".")[0] in answer.json()["error"]
    assert "cannot read the request" in caplog.text


async def test_bad_json_and_empty_bodies(edge: Edge) -> None:
    for content in (b"", b"{nope", b"[]"):
        answer = await edge.proxy.post(f"{P}/inbound", content=content)
        assert answer.status_code == 422 and "error" in answer.json()


async def test_queued_messages_needs_the_instance(edge: Edge) -> None:
    answer = await edge.proxy.get(f"{P}/queued-messages")
    assert answer.status_code == 422 and "instanceId" in answer.json()["error"]


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("POST", "/update-status", {"instanceId": "ghost", "status": "CONNECTING"}),
        ("GET", "/queued-messages?instanceId=ghost", None),
        ("POST", "/mark-sent", {"instanceId": "ghost", "messageId": "x"}),
        ("POST", "/inbound", {"instanceId": "ghost", "messageId": "x", "from": ALICE}),
        ("POST", "/mark-sent", {"instanceId": "e1", "messageId": "no-such-message"}),
    ],
)
async def test_unknown_instances_and_messages_are_404(
    edge: Edge, method: str, path: str, body: Any
) -> None:
    await edge.provision()
    answer = await edge.proxy.request(method, P + path, json=body)
    assert answer.status_code == 404 and set(answer.json()) == {"error"}


async def test_a_fleet_session_is_not_the_edges(edge: Edge) -> None:
    await edge.api.post("/session/create", json={"sessionId": "f1"})
    answer = await edge.status("f1", "CONNECTED", phone=PHONE)
    assert answer.status_code == 409 and "fleet" in answer.json()["error"]
    assert (await edge.proxy.get(f"{P}/disconnected-instances")).json() == []


async def test_another_worker_is_refused_while_the_first_holds_it(edge: Edge) -> None:
    await edge.provision()
    mine = await edge.proxy.get(f"{P}/disconnected-instances", headers={"X-Wagate-Worker": "w1"})
    assert mine.json() == [{"id": "e1"}]
    theirs = {"X-Wagate-Worker": "w2"}
    assert (await edge.proxy.get(f"{P}/disconnected-instances", headers=theirs)).json() == []
    answer = await edge.proxy.post(
        f"{P}/update-status",
        json={"instanceId": "e1", "status": "CONNECTED", "phone": PHONE},
        headers=theirs,
    )
    assert answer.status_code == 409 and "another worker" in answer.json()["error"]
    bad = await edge.proxy.get(f"{P}/disconnected-instances", headers={"X-Wagate-Worker": "a b"})
    assert bad.status_code == 422 and "X-Wagate-Worker" in bad.json()["error"]


async def test_spellings(edge: Edge) -> None:
    await edge.provision()
    wrapped = {
        "instance_id": "e1",
        "data": [
            {"id": "SP-1", "phone": f"+{ALICE}", "body": "one", "timestamp": edge.now_ms() // 1000},
            {"message_id": "SP-2", "number": ALICE, "message": "two", "messageType": "chat"},
        ],
    }
    assert (await edge.proxy.post(f"{P}/inbound", json=wrapped)).status_code == 200
    listed = [{"instanceId": "e1", "messageId": "SP-3", "sender": ALICE, "text": "three"}]
    assert (await edge.proxy.post(f"{P}/inbound", json=listed)).status_code == 200
    history = (await edge.api.get("/api/sessions/e1/messages", params={"direction": "in"})).json()
    rows = history.get("messages", history.get("data"))
    assert sorted(m["text"] for m in rows) == ["one", "three", "two"]
    status = {"instance_id": "e1", "status": "connected", "phoneNumber": PHONE}
    assert (await edge.proxy.post(f"{P}/update-status", json=status)).status_code == 200
    assert (await edge.session())["state"] == "connected"


async def test_without_a_secret_there_is_no_worker_proxy(api: httpx.AsyncClient) -> None:
    answer = await api.get(f"{P}/disconnected-instances")
    assert answer.status_code == 404


async def _inbound(edge: Edge, **fields: Any) -> httpx.Response:
    body = {"instanceId": "e1", "from": ALICE, "type": "text"} | fields
    return await edge.proxy.post(f"{P}/inbound", json=body)


def _texts(rows: dict[str, Any]) -> list[Any]:
    return [m.get("text") for m in rows.get("messages", rows.get("data", []))]


async def test_a_late_post_from_the_spool_is_live_to_when_the_worker_received_it(
    edge: Edge,
) -> None:
    await edge.provision()
    sent_at = edge.now_ms()
    await edge.clock.advance(600)  # ten minutes of an outage of the worker-proxy
    late = await _inbound(edge, messageId="LATE", text="spooled", timestamp=sent_at)
    assert late.status_code == 200
    history = (await edge.api.get("/api/sessions/e1/messages")).json()
    assert _texts(history) == []  # no receivedAt: older than the live window, not stored
    kept = await _inbound(
        edge, messageId="KEPT", text="kept", timestamp=sent_at, receivedAt=sent_at + 500
    )
    assert kept.status_code == 200
    assert _texts((await edge.api.get("/api/sessions/e1/messages")).json()) == ["kept"]
    future = await _inbound(  # a worker's clock ahead of ours counts as now, no later
        edge, messageId="AHEAD", text="ahead", timestamp=sent_at, receivedAt=edge.now_ms() + 10**9
    )
    assert future.status_code == 200
    assert _texts((await edge.api.get("/api/sessions/e1/messages")).json()) == ["kept"]


async def test_an_edge_sessions_groups_are_learned_from_their_messages(edge: Edge) -> None:
    await edge.provision()
    group = "120363000000000001@g.us"
    first = await _inbound(edge, messageId="G1", chat=group, text="first", timestamp=edge.now_ms())
    assert first.status_code == 200
    listed = (await edge.api.get("/api/sessions/e1/groups")).json()["groups"]
    assert [(g["waGroupId"], g["monitor"]) for g in listed] == [(group, False)]
    assert _texts((await edge.api.get("/api/sessions/e1/messages")).json()) == []
    monitored = await edge.api.patch(f"/api/sessions/e1/groups/{group}", json={"monitor": True})
    assert monitored.status_code == 200, monitored.text
    await _inbound(edge, messageId="G2", chat=group, text="second", timestamp=edge.now_ms())
    assert _texts((await edge.api.get("/api/sessions/e1/messages")).json()) == ["second"]
    # a group it knows keeps its name: a message does not rename it
    assert len((await edge.api.get("/api/sessions/e1/groups")).json()["groups"]) == 1


async def test_locations_contacts_reactions_and_a_missing_medias_reason_are_kept(
    edge: Edge,
) -> None:
    await edge.provision()
    now = edge.now_ms()
    place = {"latitude": -6.2, "longitude": 106.8, "name": "Monas", "address": "Jakarta"}
    await _inbound(edge, messageId="L1", type="location", location=place, timestamp=now)
    card = {"name": "Bob", "phone": "+628111", "vcard": None}
    await _inbound(edge, messageId="C1", type="contact", contact=card, timestamp=now)
    await _inbound(edge, messageId="R1", type="reaction", text="👍", reactTo="L1", timestamp=now)
    await _inbound(
        edge,
        messageId="M1",
        type="image",
        mediaError="larger than 10 bytes (WAGATE_MAX_MEDIA_MB)",
        senderLid="12345@lid",
        timestamp=now,
    )
    events = {e["waMessageId"]: e for e in edge.outbox.of("message.received")}
    assert [events[i]["type"] for i in ("L1", "C1", "R1", "M1")] == [
        "location",
        "contact",
        "reaction",
        "image",
    ]
    messages = edge.gateway.messages
    location = await messages.by_wa_id("e1", "L1")
    assert location is not None and location.raw["location"]["lat"] == -6.2
    assert location.raw["location"]["name"] == "Monas"
    reaction = await messages.by_wa_id("e1", "R1")
    assert reaction is not None and reaction.raw["reactTo"] == "L1" and reaction.text == "👍"
    assert "larger than 10 bytes" in json.dumps(events["M1"]["mediaError"])
    assert events["M1"]["senderLid"] == "12345@lid"
    bad = await _inbound(edge, messageId="L2", type="location", location={"latitude": "x"})
    assert bad.status_code == 422 and "location" in bad.json()["error"]


async def test_a_final_reason_is_recorded_on_a_reconnecting_session(edge: Edge) -> None:
    await edge.provision()
    await edge.status("e1", "CONNECTED", phone=PHONE)
    await edge.status("e1", "DISCONNECTED", reason="connection_lost")
    assert (await edge.session())["state"] == "reconnecting"
    assert (await edge.status("e1", "DISCONNECTED", reason="banned")).status_code == 200
    assert (await edge.session())["state"] == "failed"
    assert (await edge.proxy.get(f"{P}/disconnected-instances")).json() == []


async def test_refusals_name_their_code_and_answers_their_claim_ttl(edge: Edge) -> None:
    await edge.provision()
    offered = await edge.proxy.get(f"{P}/disconnected-instances")
    assert offered.headers["X-Wagate-Claim-Ttl-Ms"].isdigit()
    await edge.api.post("/api/sessions/e1/stop")
    refused = await edge.proxy.get(f"{P}/queued-messages", params={"instanceId": "e1"})
    assert refused.status_code == 409 and refused.headers["X-Wagate-Error"] == "instance_at_rest"
    assert set(refused.json()) == {"error"}  # seed 001's shape
    wrong = await edge.bare.get(f"{P}/disconnected-instances")
    assert wrong.status_code == 401 and wrong.headers["X-Wagate-Error"]
    for limit in ("-1", "x", "100001"):
        bad = await edge.proxy.get(f"{P}/disconnected-instances", params={"limit": limit})
        assert bad.status_code == 422 and "limit" in bad.json()["error"]
