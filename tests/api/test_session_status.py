"""``POST /api/webhooks/session-status``: seed 002's status reports, behind the worker token."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import httpx
import pytest

from wagate.clock import ManualClock
from wagate.domain.session import SessionState

from ..conftest import GatewayFactory
from .reports_rig import TOKEN, ReportsApp, reports_app

PATH = "/api/webhooks/session-status"
BEARER = {"Authorization": f"Bearer {TOKEN}"}


def _report(control: ReportsApp, **fields: Any) -> dict[str, Any]:
    at = control.clock.now() + timedelta(seconds=1)
    body = {"sessionId": "s1", "status": "connected", "timestamp": at.isoformat()}
    body.update(fields)
    return body


def _error(r: httpx.Response) -> dict[str, Any]:
    error: dict[str, Any] = r.json()["error"]
    return error


async def test_a_report_with_the_worker_token_drives_the_record(control: ReportsApp) -> None:
    await control.clock.advance(5)
    body = _report(control, phoneNumber="+6281234567890")
    r = await control.client.post(PATH, json=body, headers=BEARER)
    assert (r.status_code, r.json()) == (200, {"success": True})
    row = await control.gateway.sessions.require("s1")
    assert (row.status, row.phone_number) == (SessionState.CONNECTED, "6281234567890")
    assert control.outbox.of("session.status")[-1]["state"] == "connected"


async def test_seed_002s_own_example_body_is_taken(control: ReportsApp) -> None:
    # its timestamp is long past: the row (created now) is fresher, so nothing changes
    body = {
        "sessionId": "s1",
        "status": "connected",
        "phoneNumber": "+6281234567890",
        "timestamp": "2024-01-15T10:30:00Z",
    }
    r = await control.client.post(PATH, json=body, headers=BEARER)
    assert r.status_code == 200, r.text
    assert (await control.gateway.sessions.require("s1")).status is SessionState.CREATED


async def test_a_qr_report_with_its_png_is_taken(control: ReportsApp) -> None:
    await control.clock.advance(5)
    body = _report(control, status="qr_required", qrCode="data:image/png;base64,iVBORw0KGgo=")
    r = await control.client.post(PATH, json=body, headers=BEARER)
    assert r.status_code == 200, r.text
    assert (await control.gateway.sessions.require("s1")).status is SessionState.QR


async def test_a_naive_timestamp_is_utc(control: ReportsApp) -> None:
    await control.clock.advance(5)
    at = control.clock.now().replace(tzinfo=None).isoformat()
    r = await control.client.post(PATH, json=_report(control, timestamp=at), headers=BEARER)
    assert r.status_code == 200, r.text
    row = await control.gateway.sessions.require("s1")
    assert row.updated_at == control.clock.now()


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer wrong"},
        {"Authorization": f"Basic {TOKEN}"},
        {"Authorization": f"Bearer {TOKEN}x"},
        {"X-Api-Key": "test-key"},
        {"Authorization": "Bearer test-key"},
    ],
)
async def test_a_missing_or_wrong_token_is_401(
    control: ReportsApp, headers: dict[str, str]
) -> None:
    r = await control.client.post(PATH, json=_report(control), headers=headers)
    assert r.status_code == 401, r.text
    assert (await control.gateway.sessions.require("s1")).status is SessionState.CREATED


async def test_without_worker_auth_token_the_endpoint_is_503_naming_it(
    gateways: GatewayFactory, clock: ManualClock
) -> None:
    async for control in reports_app(gateways, clock, worker_token=None):
        r = await control.client.post(PATH, json=_report(control), headers=BEARER)
        assert r.status_code == 503
        assert "WORKER_AUTH_TOKEN" in _error(r)["message"]


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"status": "online"}, "status"),
        ({"status": None}, "status"),
        ({"sessionId": None}, "sessionId"),
        ({"sessionId": "a/b"}, "sessionId"),
        ({"timestamp": "yesterday"}, "timestamp"),
        ({"timestamp": None}, "timestamp"),
        ({"phoneNumber": "+1"}, "phoneNumber"),
        ({"phoneNumber": 6281234567890}, "phoneNumber"),
        ({"phoneNumber": "+62\x00"}, "phoneNumber"),
    ],
)
async def test_a_bad_body_is_422_naming_the_field(
    control: ReportsApp, fields: dict[str, Any], field: str
) -> None:
    body = {k: v for k, v in _report(control, **fields).items() if v is not None}
    r = await control.client.post(PATH, json=body, headers=BEARER)
    assert r.status_code == 422, r.text
    assert _error(r)["field"] == field


async def test_an_unknown_session_is_404(control: ReportsApp) -> None:
    r = await control.client.post(PATH, json=_report(control, sessionId="nope"), headers=BEARER)
    assert r.status_code == 404


async def test_the_token_is_checked_before_the_body(control: ReportsApp) -> None:
    r = await control.client.post(PATH, content=b"not json")
    assert r.status_code == 401


BAD: list[Any] = [2**63, -(2**63) - 1, 10**30, [], {}, True, 1.5, "", "x" * 5_000, None, "a\x00b"]


async def test_no_bad_value_in_any_field_is_a_5xx(control: ReportsApp) -> None:
    for name in ("sessionId", "status", "phoneNumber", "qrCode", "timestamp", "extra"):
        for value in BAD:
            body = _report(control, **{name: value})
            r = await control.client.post(PATH, json=body, headers=BEARER)
            assert r.status_code < 500, (name, value, r.text)
            if value == "a\x00b":
                assert (r.status_code, _error(r)["field"]) == (422, name)
