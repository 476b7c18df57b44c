"""``POST /webhook``: seed 004's signed events, the signature as the only credential."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from wagate.clock import ManualClock
from wagate.domain.session import SessionState
from wagate.webhooks.seed004_signing import event_headers

from ..conftest import ClientFactory, GatewayFactory
from .reports_rig import SECRET, ReportsApp, reports_app

QR = {"type": "QR_CODE", "sessionId": "s1", "data": {"qr": "2@abc"}}


def _error(r: httpx.Response) -> dict[str, Any]:
    error: dict[str, Any] = r.json()["error"]
    return error


async def test_a_signed_event_is_applied_and_answers_success(control: ReportsApp) -> None:
    r = await control.signed(QR)
    assert (r.status_code, r.json()) == (200, {"success": True})
    row = await control.gateway.sessions.require("s1")
    assert (row.status, row.qr) == (SessionState.QR, "2@abc")
    assert [e["qr"] for e in control.outbox.of("session.qr")] == ["2@abc"]


async def test_each_event_type_reaches_the_record(control: ReportsApp) -> None:
    sessions = control.gateway.sessions
    await control.clock.advance(1)
    ok = await control.signed(
        {"type": "CONNECTED", "sessionId": "s1", "data": {"phoneNumber": "6281234567890"}}
    )
    assert ok.status_code == 200, ok.text
    assert (await sessions.require("s1")).status is SessionState.CONNECTED
    await control.clock.advance(1)
    data = {"reason": "Connection Failure", "code": 403}
    await control.signed({"type": "DISCONNECTED", "sessionId": "s1", "data": data})
    assert (await sessions.require("s1")).status is SessionState.FAILED
    await control.clock.advance(1)
    await control.signed(
        {"type": "PROXY_ERROR", "sessionId": "s1", "data": {"error": "socks refused"}}
    )
    assert (await sessions.require("s1")).status is SessionState.RECONNECTING
    await control.clock.advance(1)
    await control.signed({"type": "AUTH_FAILURE", "sessionId": "s1", "data": {"reason": "401"}})
    assert (await sessions.require("s1")).status is SessionState.LOGGED_OUT
    codes = [e.data["code"] for e in await control.gateway.audit.recent("s1", event="error")]
    assert codes == ["AUTH_FAILURE", "PROXY_ERROR"]


async def test_a_ping_shows_as_last_ping_in_the_session_json(
    control: ReportsApp, api_clients: ClientFactory
) -> None:
    await control.clock.advance(30)
    ms = round(control.clock.now().timestamp() * 1000)
    r = await control.signed({"type": "PING", "sessionId": "s1", "data": {"timestamp": ms}})
    assert r.status_code == 200, r.text
    api = await api_clients(control.gateway)
    session = (await api.get("/api/sessions/s1")).json()
    assert session["lastPing"] == "2026-01-01T00:00:30Z"
    await control.gateway.sessions.create("s2", engine="sandbox")
    assert (await api.get("/api/sessions/s2")).json()["lastPing"] is None


# --- refused: 401 ----------------------------------------------------------------------


async def test_unsigned_forged_stale_and_replayed_events_are_401(control: ReportsApp) -> None:
    body = json.dumps(QR).encode()
    now = int(control.clock.now().timestamp())
    unsigned = await control.client.post("/webhook", content=body)
    forged = await control.client.post(
        "/webhook", content=body, headers=event_headers("guess", now, body, "QR_CODE")
    )
    stale = await control.signed(QR, at=now - 301)
    assert (await control.signed(QR)).status_code == 200
    replayed = await control.signed(QR)
    for r, why in [
        (unsigned, "unsigned"),
        (forged, "invalid signature"),
        (stale, "stale"),
        (replayed, "replayed"),
    ]:
        assert r.status_code == 401, (why, r.text)
        assert why in _error(r)["message"]
        assert r.headers["www-authenticate"] == "Bearer"
    # nothing refused reached the record: one QR, once
    assert len(control.outbox.of("session.qr")) == 1


async def test_the_api_key_is_not_a_credential_here(control: ReportsApp) -> None:
    r = await control.client.post("/webhook", json=QR, headers={"X-Api-Key": "test-key"})
    assert r.status_code == 401


async def test_without_webhook_secret_the_endpoint_is_503_naming_it(
    gateways: GatewayFactory, clock: ManualClock
) -> None:
    async for control in reports_app(gateways, clock, verifier=None):
        r = await control.signed(QR)
        assert r.status_code == 503
        assert "WEBHOOK_SECRET" in _error(r)["message"]


async def test_the_plain_gateway_serves_no_webhook_route(api: httpx.AsyncClient) -> None:
    assert (await api.post("/webhook", json=QR)).status_code == 404
    assert (await api.post("/api/webhooks/session-status", json={})).status_code in (404, 405)


# --- refused: 422, 404, 413 ------------------------------------------------------------


@pytest.mark.parametrize(
    ("event", "field"),
    [
        ({"type": "SCANNED", "sessionId": "s1", "data": {}}, "type"),
        ({"sessionId": "s1", "data": {"qr": "2@x"}}, "type"),
        ({"type": "QR_CODE", "data": {"qr": "2@x"}}, "sessionId"),
        ({"type": "QR_CODE", "sessionId": "../etc", "data": {"qr": "2@x"}}, "sessionId"),
        ({"type": "QR_CODE", "sessionId": "s1"}, "data"),
        ({"type": "QR_CODE", "sessionId": "s1", "data": [1]}, "data"),
    ],
)
async def test_a_bad_envelope_is_422_naming_the_field(
    control: ReportsApp, event: dict[str, Any], field: str
) -> None:
    r = await control.signed(event)
    assert r.status_code == 422, r.text
    assert _error(r)["field"] == field


@pytest.mark.parametrize(
    ("kind", "data", "field"),
    [
        ("QR_CODE", {}, "data.qr"),
        ("QR_CODE", {"qr": 7}, "data.qr"),
        ("CONNECTED", {"phone": "6281234567890"}, "data.phoneNumber"),
        ("CONNECTED", {"phoneNumber": "6"}, "data.phoneNumber"),
        ("DISCONNECTED", {"code": 428}, "data.reason"),
        ("DISCONNECTED", {"reason": "x", "code": [401]}, "data.code"),
        ("PING", {"timestamp": "soon"}, "data.timestamp"),
        ("PING", {"timestamp": -1}, "data.timestamp"),
        ("PING", {"timestamp": 10**20}, "data.timestamp"),
        ("PROXY_ERROR", {"reason": "x"}, "data.error"),
        ("AUTH_FAILURE", {"reason": "a\x00b"}, "data.reason"),
    ],
)
async def test_bad_event_data_is_422_naming_the_field(
    control: ReportsApp, kind: str, data: dict[str, Any], field: str
) -> None:
    r = await control.signed({"type": kind, "sessionId": "s1", "data": data})
    assert r.status_code == 422, r.text
    assert _error(r)["field"] == field


@pytest.mark.parametrize("body", [b"", b"not json", b"[1, 2]", b'"QR_CODE"'])
async def test_a_body_that_is_no_json_object_is_422_naming_body(
    control: ReportsApp, body: bytes
) -> None:
    headers = event_headers(SECRET, int(control.clock.now().timestamp()), body, "QR_CODE")
    r = await control.client.post("/webhook", content=body, headers=headers)
    assert (r.status_code, _error(r)["field"]) == (422, "body")


async def test_a_refused_body_is_not_remembered_as_seen(control: ReportsApp) -> None:
    bad = {"type": "QR_CODE", "sessionId": "nope", "data": {"qr": "2@x"}}
    first = await control.signed(bad)
    again = await control.signed(bad)
    assert (first.status_code, again.status_code) == (404, 404)


async def test_an_unknown_session_is_404(control: ReportsApp) -> None:
    r = await control.signed({"type": "PING", "sessionId": "nope", "data": {"timestamp": 1}})
    assert r.status_code == 404


async def test_an_oversized_body_is_413(control: ReportsApp) -> None:
    r = await control.signed({**QR, "data": {"qr": "2@x", "padding": "x" * 70_000}})
    assert r.status_code == 413


BAD: list[Any] = [2**63, -(2**63) - 1, 10**30, [], {}, True, 1.5, "", "x" * 5_000, None, "a\x00b"]
FIELDS = {
    "QR_CODE": ["qr"],
    "CONNECTED": ["phoneNumber"],
    "DISCONNECTED": ["reason", "code"],
    "PING": ["timestamp"],
    "PROXY_ERROR": ["error"],
    "AUTH_FAILURE": ["reason"],
}


async def test_no_bad_value_in_any_field_is_a_5xx(control: ReportsApp) -> None:
    for kind, names in FIELDS.items():
        for name in names:
            for value in BAD:
                await control.clock.advance(1)  # each request a new event, not a replay
                event = {"type": kind, "sessionId": "s1", "data": {name: value}}
                r = await control.signed(event)
                assert r.status_code < 500, (kind, name, value, r.text)
                if value == "a\x00b":
                    assert (r.status_code, _error(r)["field"]) == (422, f"data.{name}")
