"""Webhooks through real processes: the receiver is down, the gateway dies, nothing is lost."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import DatabaseFactory
from tests.e2e.conftest import clean_env, free_port, poll, run_cli
from wagate.webhooks import verify_signature

pytestmark = pytest.mark.e2e

SECRET = "whsec-e2e"
LEASE_S = 10 + 60  # WAGATE_WEBHOOK_TIMEOUT_MS plus the dispatcher's lease margin
ME, FRIEND = "6281300000001", "6281300000002"


class Receiver:
    """A webhook endpoint on 127.0.0.1 that can be started late."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.calls: list[tuple[dict[str, str], bytes]] = []
        self._server: ThreadingHTTPServer | None = None

    def start(self) -> None:
        calls = self.calls

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - the http.server API
                body = self.rfile.read(int(self.headers["Content-Length"]))
                calls.append(({k: v for k, v in self.headers.items()}, body))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                return None

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    def events(self) -> list[dict[str, Any]]:
        return [json.loads(body) for _, body in self.calls]


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver(free_port())
    yield r
    r.stop()


@pytest.mark.timeout(60 + LEASE_S)  # room for a lease a kill may leave behind
def test_deliveries_survive_an_outage_and_a_gateway_crash(
    databases: DatabaseFactory, tmp_path: Path, procs: Any, clients: Any, receiver: Receiver
) -> None:
    port = free_port()
    env = clean_env(
        WAGATE_DATA_DIR=tmp_path / "data",
        DATABASE_URL=databases.new(),
        PORT=port,
        API_KEY="k",
        WAGATE_ALLOW_PRIVATE_URLS="true",
        WAGATE_SEND_INTERVAL_MS=0,
        WAGATE_WEBHOOK_BACKOFF_BASE_MS=200,
        WAGATE_WEBHOOK_BACKOFF_MAX_MS=1500,
        WAGATE_WEBHOOK_POLL_MS=100,
        WAGATE_WEBHOOK_MAX_ATTEMPTS=50,
    )
    base = f"http://127.0.0.1:{port}"
    gw = procs(["serve", "--engine", "sandbox"], env, "gateway-1")
    gw.wait_http(f"{base}/healthz")
    api = clients(httpx.Client(base_url=base, headers={"X-Api-Key": "k"}, timeout=10))
    sub = api.post(
        "/api/webhooks",
        json={
            "url": f"http://127.0.0.1:{receiver.port}/hook",
            "events": ["*"],
            "secret": SECRET,
        },
    )
    assert sub.status_code == 201, sub.text

    assert api.post("/api/sessions/provision", json={"id": "wh"}).status_code == 201
    poll(lambda: api.get("/api/sessions/wh/qr").is_success)
    assert run_cli(["sandbox", "scan", "wh", "--phone", ME], env).returncode == 0
    poll(lambda: api.get("/api/sessions/wh/status").json()["state"] == "connected")
    sent = run_cli(["sandbox", "send", "--from", FRIEND, "--to", ME, "--text", "ping"], env)
    assert sent.returncode == 0, sent.stderr

    # the receiver is down: deliveries are attempted again and again, with growing gaps
    def retried() -> Any:
        log = api.get("/api/webhooks/deliveries", params={"event": "message.received"}).json()
        found = log["deliveries"]
        # an attempt in flight holds its row leased (the timeout plus a minute): wait for one
        # that is settled, waiting for its next try, so the kill below leaves no lease behind
        return found if found and found[0]["attempts"] >= 3 and _settled(found[0]) else None

    delivery = poll(retried, limit_s=30)[0]
    assert delivery["status"] == "pending" and delivery["lastError"]

    gw.kill()  # kill -9 while deliveries are pending
    gw2 = procs(["serve", "--engine", "sandbox"], env, "gateway-2")
    gw2.wait_http(f"{base}/healthz")
    receiver.start()

    # each pending delivery keeps its own backoff, so they arrive in no fixed order
    def delivered() -> Any:
        names = {e["event"] for e in receiver.events()}
        return names if {"session.qr", "session.status", "message.received"} <= names else None

    # a kill that still caught an attempt in flight leaves its lease to run out first
    poll(delivered, limit_s=30 + LEASE_S)
    received = [e for e in receiver.events() if e["event"] == "message.received"]
    assert len(received) == 1  # once, not once per attempt or per process
    assert received[0]["data"]["text"] == "ping" and received[0]["sessionId"] == "wh"
    for headers, body in receiver.calls:
        assert verify_signature(SECRET, headers, body)
    ids = [h["X-Wagate-Delivery"] for h, _ in receiver.calls]
    assert len(ids) == len(set(ids))


def _settled(delivery: dict[str, Any]) -> bool:
    """Pending, and its next try is a backoff away, not a lease (an attempt in flight)."""
    next_at = delivery.get("nextAttemptAt")
    if delivery.get("status") != "pending" or not next_at:
        return False
    wait = datetime.fromisoformat(next_at.replace("Z", "+00:00")) - datetime.now(UTC)
    return wait.total_seconds() < 30
