"""Seed 004's session paths, field by field."""

from __future__ import annotations

import base64

import httpx
import pytest

from wagate.domain.session import SessionState
from wagate.engine.base import QRCode
from wagate.errors import TransientError
from wagate.roles.serve import Gateway
from wagate.testing import ScriptedEngine, connected, eventually, until

QR = "2@ref1,noise,identity,adv"


async def _status(api: httpx.AsyncClient, sid: str) -> dict[str, object]:
    r = await api.get(f"/api/sessions/{sid}/status")
    assert r.status_code == 200
    return dict(r.json())


async def _wait_state(api: httpx.AsyncClient, sid: str, state: str) -> dict[str, object]:
    """The status once it says ``state`` (a bounded real-time wait)."""
    last: dict[str, object] = {}

    async def reached() -> bool:
        last.update(await _status(api, sid))
        return last["state"] == state

    try:
        await until(reached)
    except TimeoutError:
        raise AssertionError(f"{sid} never reached {state}: {last}") from None
    return last


async def test_provision_returns_an_id_and_starts(
    api: httpx.AsyncClient, engine: ScriptedEngine
) -> None:
    engine.add([QRCode(QR, 60)])
    r = await api.post("/api/sessions/provision", json={})
    assert r.status_code == 201
    body = r.json()
    assert body["id"].startswith("s-") and body["engine"] == "scripted"
    status = await _wait_state(api, body["id"], "qr")
    assert status["status"] == "qr_ready" and status["hasQr"] is True


async def test_provision_with_phone_proxy_and_id(
    api: httpx.AsyncClient, engine: ScriptedEngine
) -> None:
    engine.add([QRCode(QR, 60)])
    body = {"id": "shop-1", "phone": "+62 812-3456-7890", "proxy": "socks5h://u:pw@10.0.0.9:1080"}
    r = await api.post("/api/sessions/provision", json=body)
    assert r.status_code == 201, r.text
    out = r.json()
    assert (out["id"], out["phone"]) == ("shop-1", "6281234567890")
    assert out["proxy"] == "socks5h://u:***@10.0.0.9:1080"
    assert "pw" not in r.text
    await eventually(lambda: bool(engine.options))
    assert engine.options[0].proxy == "socks5h://u:pw@10.0.0.9:1080"  # handed to the engine


@pytest.mark.parametrize(
    ("body", "field", "needle"),
    [
        ({"phone": "12ab"}, "phone", "invalid phone number"),
        ({"proxy": "socks4://h:1080"}, "proxy", "socks5h://"),
        ({"proxy": "http://h:8080"}, "proxy", "socks5h://"),
        ({"id": "../etc"}, "id", "should match pattern"),
        ({"colour": "red"}, "colour", "Extra inputs"),
        ({"pairingCode": True}, "phone", "pairing code needs the phone"),
    ],
)
async def test_provision_rejects_bad_input(
    api: httpx.AsyncClient, body: dict[str, str], field: str, needle: str
) -> None:
    r = await api.post("/api/sessions/provision", json=body)
    assert r.status_code == 422, r.text
    error = r.json()["error"]
    assert error["field"] == field
    assert needle in error["message"]


async def test_phone_already_registered_is_409(
    api: httpx.AsyncClient, engine: ScriptedEngine
) -> None:
    engine.add(*[[QRCode(QR, 60)] for _ in range(5)])
    for _ in range(4):  # MAX_SESSIONS_PER_PHONE: WhatsApp's four companion devices
        made = await api.post("/api/sessions/provision", json={"phone": "+6281234567890"})
        assert made.status_code == 201, made.text
    r = await api.post("/api/sessions/provision", json={"phone": "6281234567890"})
    assert r.status_code == 409
    assert r.json()["error"]["code"] == "phone_registered"


async def test_duplicate_id_is_409(api: httpx.AsyncClient, engine: ScriptedEngine) -> None:
    engine.add([QRCode(QR, 60)])
    assert (await api.post("/api/sessions/provision", json={"id": "a1"})).status_code == 201
    assert (await api.post("/api/sessions/provision", json={"id": "a1"})).status_code == 409


async def test_qr_as_json_and_png(api: httpx.AsyncClient, engine: ScriptedEngine) -> None:
    engine.add([QRCode(QR, 60)])
    await api.post("/api/sessions/provision", json={"id": "q1"})
    await _wait_state(api, "q1", "qr")
    r = await api.get("/api/sessions/q1/qr")
    assert r.status_code == 200
    body = r.json()
    assert (body["sessionId"], body["status"], body["qr"]) == ("q1", "qr_ready", QR)
    assert body["qrDataUrl"].startswith("data:image/png;base64,")
    png = base64.b64decode(body["qrDataUrl"].split(",", 1)[1])
    assert png.startswith(b"\x89PNG\r\n\x1a\n")
    assert body["expiresAt"] > body["generatedAt"]
    r = await api.get("/api/sessions/q1/qr", headers={"Accept": "image/png"})
    assert r.headers["content-type"] == "image/png"
    assert r.content == png


async def test_qr_when_connected_is_409(api: httpx.AsyncClient, engine: ScriptedEngine) -> None:
    engine.add([connected("6281111111")])
    await api.post("/api/sessions/provision", json={"id": "c1"})
    status = await _wait_state(api, "c1", "connected")
    assert (status["status"], status["phoneNumber"], status["isConnected"]) == (
        "connected",
        "6281111111",
        True,
    )
    r = await api.get("/api/sessions/c1/qr")
    assert r.status_code == 409 and "already connected" in r.json()["error"]["message"]


async def test_list_restart_and_delete(
    api: httpx.AsyncClient, engine: ScriptedEngine, gateway: Gateway
) -> None:
    engine.add([connected("6282222222")], [connected("6282222222")])
    await api.post("/api/sessions/provision", json={"id": "d1"})
    await _wait_state(api, "d1", "connected")
    await gateway.worker.auth("d1").save("creds", {"k": 1})
    listed = (await api.get("/api/sessions")).json()
    assert listed["total"] == 1 and listed["sessions"][0]["id"] == "d1"

    r = await api.post("/api/sessions/d1/restart")
    assert r.status_code == 200
    await _wait_state(api, "d1", "connected")
    assert len(engine.links) == 2

    r = await api.delete("/api/sessions/d1")
    assert r.status_code == 200
    assert r.json() == {
        "success": True,
        "id": "d1",
        "message": "Session deleted",
        "loggedOut": True,
    }
    assert engine.links[1].logged_out  # logged out through the engine
    assert (await gateway.worker.auth("d1").load("creds")) is None
    assert (await api.get("/api/sessions/d1/status")).status_code == 404
    assert not gateway.worker.is_running("d1")


async def test_audit_log_api(api: httpx.AsyncClient, engine: ScriptedEngine) -> None:
    engine.add([QRCode(QR, 60), connected("6283333333")])
    await api.post("/api/sessions/provision", json={"id": "au"})
    await _wait_state(api, "au", "connected")
    r = await api.get("/api/sessions/au/audit")
    assert r.status_code == 200
    events = [e["event"] for e in r.json()["entries"] if e["event"] != "discovery"]
    assert events == ["connect", "qr_generated"]
    only = await api.get("/api/sessions/au/audit", params={"event": "connect", "limit": 1})
    assert [e["event"] for e in only.json()["entries"]] == ["connect"]
    assert (await api.get("/api/sessions/au/audit", params={"limit": 0})).status_code == 422


async def test_restart_answers_with_what_the_new_runner_did(
    api: httpx.AsyncClient, engine: ScriptedEngine, gateway: Gateway
) -> None:
    engine.add([QRCode(QR, 60)])
    await gateway.services.sessions.create("r1")
    await gateway.sessions.update("r1", status=SessionState.LOGGED_OUT)
    r = await api.post("/api/sessions/r1/restart")
    assert r.status_code == 200
    body = r.json()
    assert (body["state"], body["status"], body["hasQr"]) == ("qr", "qr_ready", True)


async def _stopped_and_linked(
    api: httpx.AsyncClient, engine: ScriptedEngine, gateway: Gateway, sid: str
) -> None:
    engine.add([connected("6284444444")])
    await api.post("/api/sessions/provision", json={"id": sid})
    await _wait_state(api, sid, "connected")
    await gateway.worker.auth(sid).save("creds", {"k": 1})
    assert (await api.post(f"/api/sessions/{sid}/stop")).json()["state"] == "stopped"


async def test_delete_logs_out_a_stopped_linked_session(
    api: httpx.AsyncClient, engine: ScriptedEngine, gateway: Gateway
) -> None:
    await _stopped_and_linked(api, engine, gateway, "idle")
    engine.add([connected("6284444444")])
    r = await api.delete("/api/sessions/idle")
    assert r.status_code == 200
    assert r.json() == {
        "success": True,
        "id": "idle",
        "message": "Session deleted",
        "loggedOut": True,
    }
    assert len(engine.links) == 2 and engine.links[1].logged_out and engine.links[1].closed
    assert (await gateway.worker.auth("idle").load("creds")) is None
    assert (await api.get("/api/sessions/idle/status")).status_code == 404


async def test_delete_says_when_the_device_could_not_be_logged_out(
    api: httpx.AsyncClient, engine: ScriptedEngine, gateway: Gateway
) -> None:
    await _stopped_and_linked(api, engine, gateway, "far")
    engine.add(TransientError("network unreachable"))
    r = await api.delete("/api/sessions/far")
    assert r.status_code == 200
    assert (r.json()["success"], r.json()["loggedOut"]) == (True, False)
    assert (await gateway.worker.auth("far").load("creds")) is None
    assert (await api.get("/api/sessions/far/status")).status_code == 404
    errors = await gateway.audit.recent("far", event="error")
    assert [e.data["code"] for e in errors] == ["LOGOUT_FAILED"]
