"""Two gateway processes on one standalone sandbox network, each holding a linked session."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import DatabaseFactory
from tests.e2e.conftest import clean_env, free_port, poll, run_cli

pytestmark = pytest.mark.e2e


def test_two_gateways_share_one_sandbox_server(
    databases: DatabaseFactory, tmp_path: Path, procs: Any, clients: Any, sandbox_url: str
) -> None:

    gateways = []
    for name, phone in (("a", "6281111111111"), ("b", "6282222222222")):
        port = free_port()
        env = clean_env(
            WAGATE_DATA_DIR=tmp_path / name,
            DATABASE_URL=databases.new(),
            WAGATE_PORT=port,
            API_KEY=f"key-{name}",
            SANDBOX_URL=sandbox_url,
        )
        proc = procs(["serve", "--engine", "sandbox"], env, f"gateway-{name}")
        gateways.append((name, phone, port, env, proc))
    for _, _, port, _, proc in gateways:
        proc.wait_http(f"http://127.0.0.1:{port}/healthz")

    for name, phone, port, env, _ in gateways:
        api = clients(_client(port, name))
        assert api.post("/api/sessions/provision", json={"id": f"sess-{name}"}).status_code == 201
        poll(lambda api=api, sid=f"sess-{name}": api.get(f"/api/sessions/{sid}/qr").is_success)
        scan = run_cli(["sandbox", "scan", f"sess-{name}", "--phone", phone], env)
        assert scan.returncode == 0, scan.stderr + scan.stdout

    for name, phone, port, _, _ in gateways:
        api = clients(_client(port, name))
        status = poll(lambda api=api, sid=f"sess-{name}": _connected(api, sid))
        assert status["phoneNumber"] == phone

    with httpx.Client() as client:
        live = client.get(f"{sandbox_url}/control/connections").json()
    phones = {c.get("phone") for c in _connections(live)}
    assert {"6281111111111", "6282222222222"} <= phones


def _client(port: int, name: str) -> httpx.Client:
    return httpx.Client(base_url=f"http://127.0.0.1:{port}", headers={"X-Api-Key": f"key-{name}"})


def _connected(api: httpx.Client, sid: str) -> dict[str, Any] | None:
    body: dict[str, Any] = api.get(f"/api/sessions/{sid}/status").json()
    return body if body.get("state") == "connected" else None


def _connections(body: Any) -> list[dict[str, Any]]:
    return list(body["connections"] if isinstance(body, dict) else body)
