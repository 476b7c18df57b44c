"""The quick start, as a new user runs it: serve, provision, scan, restart, still linked."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import DatabaseFactory
from tests.e2e.conftest import clean_env, free_port, poll, run_cli

pytestmark = pytest.mark.e2e

PHONE = "6281234567890"


def test_provision_scan_restart_stays_linked(
    databases: DatabaseFactory, tmp_path: Path, procs: Any, clients: Any
) -> None:
    port = free_port()
    data = tmp_path / "data"
    env = clean_env(WAGATE_DATA_DIR=data, DATABASE_URL=databases.new(), WAGATE_PORT=port)
    base = f"http://127.0.0.1:{port}"

    gw = procs(["serve", "--engine", "sandbox"], env, "gateway-1")
    gw.wait_http(f"{base}/healthz")
    assert api_get_json(f"{base}/healthz") == {"ok": True}
    key = (data / "api_key").read_text().strip()
    assert key in gw.output()  # printed once, at the start that generated it
    api = clients(httpx.Client(base_url=base, headers={"X-Api-Key": key}, timeout=10))

    r = api.post("/api/sessions/provision", json={})
    assert r.status_code == 201, r.text
    sid = r.json()["id"]

    qr = poll(lambda: _qr(api, sid), every=0.02)  # a QR comes without any step of the user's
    assert qr["qr"].startswith("2@") and qr["qrDataUrl"].startswith("data:image/png;base64,")

    scan = run_cli(["sandbox", "scan", sid, "--phone", f"+{PHONE}"], env)
    assert scan.returncode == 0, scan.stderr + scan.stdout

    status = poll(lambda: _connected(api, sid))
    assert status["phoneNumber"] == PHONE and status["status"] == "connected"
    assert status["isReady"] is True and status["hasQr"] is False
    poll(lambda: _audit_count(api, sid, "connect") == 1)  # audited just after the row
    qrs_before = _audit_count(api, sid, "qr_generated")
    assert (data / "auth" / sid).is_dir()

    gw.kill()  # kill -9: no chance to clean up
    gw2 = procs(["serve", "--engine", "sandbox"], env, "gateway-2")
    gw2.wait_http(f"{base}/healthz")
    assert key not in gw2.output()  # the key is printed only when it is generated
    status = poll(lambda: _connected(api, sid))
    assert status["phoneNumber"] == PHONE
    # the row says connected a moment before the connect is audited
    poll(lambda: _audit_count(api, sid, "connect") >= 2)
    assert _audit_count(api, sid, "qr_generated") == qrs_before  # no new QR
    assert _audit_count(api, sid, "connect") == 2


def _qr(api: httpx.Client, sid: str) -> dict[str, Any] | None:
    r = api.get(f"/api/sessions/{sid}/qr")
    return r.json() if r.status_code == 200 else None


def _connected(api: httpx.Client, sid: str) -> dict[str, Any] | None:
    body: dict[str, Any] = api.get(f"/api/sessions/{sid}/status").json()
    return body if body.get("state") == "connected" else None


def _audit_count(api: httpx.Client, sid: str, event: str) -> int:
    r = api.get(f"/api/sessions/{sid}/audit", params={"event": event, "limit": 1000})
    return len(r.json()["entries"])


def api_get_json(url: str) -> Any:
    with httpx.Client(timeout=5) as client:
        return client.get(url).json()
