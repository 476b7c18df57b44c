"""``wagate serve`` on the neonize engine, offline: the session retries, the process holds.

The real console script, a temp data dir, no engine setting at all (neonize
is the default) and fast backoff settings; ``HTTPS_PROXY`` points at a closed
local port (whatsmeow honours it), so no dial gets anywhere on any machine.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import DatabaseFactory
from tests.e2e.conftest import Proc, clean_env, free_port, poll

pytestmark = [pytest.mark.e2e, pytest.mark.neonize_real]


@pytest.fixture
def gateway(databases: DatabaseFactory, tmp_path: Path) -> Iterator[tuple[Proc, str, Path]]:
    port = free_port()
    data = tmp_path / "data"
    env = clean_env(
        WAGATE_DATA_DIR=data,
        DATABASE_URL=databases.new(),
        WAGATE_PORT=port,
        WAGATE_BACKOFF_BASE_MS=100,
        WAGATE_BACKOFF_MAX_MS=800,
        WAGATE_BACKOFF_JITTER_MS=0,
        WAGATE_NEONIZE_CONNECT_BACKOFF_BASE_MS=100,
        WAGATE_NEONIZE_CONNECT_BACKOFF_MAX_MS=800,
        HTTPS_PROXY=f"http://127.0.0.1:{free_port()}",
    )
    proc = Proc(["serve"], env, tmp_path / "serve.log")
    base = f"http://127.0.0.1:{port}"
    try:
        proc.wait_http(f"{base}/healthz")
        yield proc, base, data
    finally:
        proc.kill(signal.SIGTERM)


@pytest.mark.timeout(90)
def test_an_offline_session_keeps_retrying_and_the_process_stays_healthy(
    gateway: tuple[Proc, str, Path],
) -> None:
    proc, base, data = gateway
    key = (data / "api_key").read_text().strip()
    with httpx.Client(base_url=base, headers={"X-Api-Key": key}, timeout=10) as api:
        created = api.post("/api/sessions/provision", json={})
        assert created.status_code == 201, created.text
        sid = created.json()["id"]
        lost = poll(lambda: _lost(api, sid), limit_s=20)
        assert lost["state"] in ("connecting", "reconnecting")
        samples = [_health(api) for _ in _every(0.5, seconds=8)]
        delays = [entry["data"]["delay_ms"] for entry in _audit(api, sid, "reconnect")]
    assert {h["data"]["engine"]["name"] for h in samples} == {"neonize"}, "the default engine"
    assert all(h["status"] == "ok" and h["data"]["status"] == "online" for h in samples)
    assert not any(h["needsRestart"] for h in samples), "a session that retries is no reason"
    assert httpx.get(f"{base}/healthz", timeout=10).json() == {"ok": True}
    threads = [h["data"]["threads"] for h in samples]
    assert max(threads) <= threads[0] + 6, f"threads grew: {threads}"
    assert len(delays) >= 6 and delays[-1] == 800 and delays[0] < delays[-1], delays
    assert proc.popen.poll() is None, proc.output()
    output = proc.output()
    assert "fatal error" not in output and "Traceback" not in output, output[-3000:]
    assert "Login event" not in output and "Press Ctrl+C" not in output
    started = time.monotonic()
    proc.kill(signal.SIGTERM)
    assert time.monotonic() - started < 15, "stopping must not wait on Go"


def _lost(api: httpx.Client, sid: str) -> dict[str, Any] | None:
    body: dict[str, Any] = api.get(f"/api/sessions/{sid}/status").json()
    return body if body.get("disconnectKind") == "connection_lost" else None


def _health(api: httpx.Client) -> dict[str, Any]:
    response = api.get("/health")
    assert response.status_code == 200
    body: dict[str, Any] = response.json()
    return body


def _audit(api: httpx.Client, sid: str, event: str) -> list[dict[str, Any]]:
    response = api.get(f"/api/sessions/{sid}/audit", params={"event": event, "limit": 1000})
    entries: list[dict[str, Any]] = response.json()["entries"]
    return sorted(entries, key=lambda entry: entry["id"])


def _every(interval_s: float, *, seconds: float) -> Iterator[None]:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        yield
        time.sleep(interval_s)
