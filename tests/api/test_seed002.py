"""Seed 002's worker endpoints with its exact envelopes."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from wagate.domain.session import SessionState
from wagate.engine.base import QRCode
from wagate.roles.serve import Gateway
from wagate.testing import ScriptedEngine, connected

QR = "2@ref2,noise,identity,adv"


async def test_create_does_not_connect(api: httpx.AsyncClient, engine: ScriptedEngine) -> None:
    r = await api.post(
        "/session/create",
        json={"sessionId": "user123-personal", "userId": "user123", "sessionName": "Personal"},
    )
    assert r.status_code == 200
    assert r.json() == {
        "success": True,
        "data": {
            "sessionId": "user123-personal",
            "status": "disconnected",
            "message": "Session created successfully",
        },
    }
    assert engine.links == []


async def test_connect_returns_qr_required_with_a_png_data_url(
    api: httpx.AsyncClient, engine: ScriptedEngine
) -> None:
    engine.add([QRCode(QR, 60)])
    await api.post("/session/create", json={"sessionId": "s2"})
    r = await api.post("/session/s2/connect")
    assert r.status_code == 200
    body = r.json()
    assert body["success"] is True
    assert set(body["data"]) == {"sessionId", "status", "qrCode"}
    assert (body["data"]["sessionId"], body["data"]["status"]) == ("s2", "qr_required")
    assert body["data"]["qrCode"].startswith("data:image/png;base64,iVBORw0KGgo")


async def test_status_and_delete(api: httpx.AsyncClient, engine: ScriptedEngine) -> None:
    engine.add([connected("6281234567890")])
    await api.post("/session/create", json={"sessionId": "s3"})
    r = await api.post("/session/s3/connect")
    assert r.json()["data"]["status"] == "connected"
    r = await api.get("/session/s3/status")
    body = r.json()
    assert body["success"] is True
    assert set(body["data"]) == {"sessionId", "status", "phoneNumber", "lastActivity"}
    assert body["data"]["status"] == "connected"
    assert body["data"]["phoneNumber"] == "+6281234567890"
    assert body["data"]["lastActivity"].endswith("Z")
    r = await api.delete("/session/s3")
    assert r.json() == {"success": True, "message": "Session deleted successfully"}
    assert (await api.get("/session/s3/status")).status_code == 404


async def test_create_without_body_makes_an_id(api: httpx.AsyncClient) -> None:
    r = await api.post("/session/create")
    assert r.status_code == 200
    assert r.json()["data"]["sessionId"].startswith("s-")


async def test_create_rejects_a_bad_session_id(api: httpx.AsyncClient) -> None:
    r = await api.post("/session/create", json={"sessionId": "../../etc"})
    assert r.status_code == 422
    assert r.json()["error"]["field"] == "sessionId"


async def test_parallel_connects_start_one_runner(
    api: httpx.AsyncClient, engine: ScriptedEngine, gateway: Gateway
) -> None:
    engine.add([QRCode(QR, 60)], [QRCode("2@second,noise,identity,adv", 60)])
    await api.post("/session/create", json={"sessionId": "race1"})
    replies = await asyncio.gather(*(api.post("/session/race1/connect") for _ in range(6)))
    assert {r.json()["data"]["status"] for r in replies} == {"qr_required"}
    assert len(engine.links) == 1
    shown = await gateway.audit.recent("race1", event="qr_generated")
    assert [e.data for e in shown] == [{"n": 1}]


@pytest.mark.parametrize(
    "resting", [SessionState.LOGGED_OUT, SessionState.FAILED, SessionState.CONNECTED]
)
async def test_connect_after_a_rest_answers_with_the_new_qr(
    api: httpx.AsyncClient, engine: ScriptedEngine, gateway: Gateway, resting: SessionState
) -> None:
    # a connected row with no runner is what a process that died leaves behind
    await api.post("/session/create", json={"sessionId": "again"})
    await gateway.sessions.update("again", status=resting)
    engine.add([QRCode(QR, 60)])
    r = await api.post("/session/again/connect")
    data = r.json()["data"]
    assert set(data) == {"sessionId", "status", "qrCode"}
    assert data["status"] == "qr_required"
    assert data["qrCode"].startswith("data:image/png;base64,")


async def test_delete_of_a_stopped_linked_session_logs_it_out_keeping_the_envelope(
    api: httpx.AsyncClient, engine: ScriptedEngine, gateway: Gateway
) -> None:
    engine.add([connected("6281234567890")], [connected("6281234567890")])
    await api.post("/session/create", json={"sessionId": "s4"})
    assert (await api.post("/session/s4/connect")).json()["data"]["status"] == "connected"
    await gateway.worker.auth("s4").save("creds", {"k": 1})
    await gateway.services.sessions.stop("s4")
    r = await api.delete("/session/s4")
    assert r.json() == {"success": True, "message": "Session deleted successfully"}
    assert len(engine.links) == 2 and engine.links[1].logged_out
