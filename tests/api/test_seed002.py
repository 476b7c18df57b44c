"""Seed 002's worker endpoints with its exact envelopes."""

from __future__ import annotations

import httpx

from wagate.engine.base import QRCode
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
