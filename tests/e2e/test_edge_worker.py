"""Seed 001's pair, as people deploy it: ``wagate serve`` as the worker-proxy, and
``wagate worker --uplink edge`` hosting its instances on the standalone sandbox."""

from __future__ import annotations

import base64
import json
import signal
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import DatabaseFactory
from tests.e2e.conftest import Proc, clean_env, free_port, poll, run_cli
from tests.e2e.test_webhooks_e2e import Receiver

pytestmark = pytest.mark.e2e

SECRET = "edge-worker-secret"
API_KEY = "edge-api-key"
PHONE, PEER = "6281355500001", "6281355500002"
FAST = {
    "INSTANCE_POLL_MS": 300,
    "MSG_POLL_MS": 200,
    "WAGATE_EDGE_RETRY_BASE_MS": 100,
    "WAGATE_EDGE_RETRY_MAX_MS": 500,
    "WAGATE_SEND_INTERVAL_MS": 0,
    "WAGATE_STOP_TIMEOUT_MS": 3000,
}


class Pair:
    """A gateway serving the worker-proxy, edge workers, and the sandbox they all use."""

    def __init__(self, procs: Any, tmp: Path, sandbox: str, database_url: str) -> None:
        self.procs = procs
        self.tmp = tmp
        self.sandbox = sandbox
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.env = clean_env(
            DATABASE_URL=database_url,
            WAGATE_DATA_DIR=tmp / "gateway",
            PORT=self.port,
            API_KEY=API_KEY,
            WORKER_SECRET=SECRET,
            WAGATE_ENGINE="sandbox",
            SANDBOX_URL=sandbox,
            WAGATE_ALLOW_PRIVATE_URLS="true",
            WAGATE_WEBHOOK_POLL_MS=100,
            WAGATE_EDGE_CLAIM_TTL_MS=6000,
        )
        self.api = httpx.Client(base_url=self.base, headers={"X-Api-Key": API_KEY}, timeout=10)
        self.gateway: Proc | None = None

    def start_gateway(self, name: str = "gateway") -> Proc:
        self.gateway = self.procs(["serve"], self.env, name)
        self.gateway.wait_http(f"{self.base}/healthz")
        return self.gateway

    def worker_env(self, name: str, edge_url: str | None = None, **extra: Any) -> dict[str, str]:
        return clean_env(
            EDGE_BASE_URL=edge_url or f"{self.base}/worker-proxy",
            WORKER_SECRET=SECRET,
            WORKER_ID=name,
            AUTH_DIR=self.tmp / name / "auth",
            DATA_DIR=self.tmp / name,
            WAGATE_ENGINE="sandbox",
            SANDBOX_URL=self.sandbox,
            **{**FAST, **extra},
        )

    def start_worker(
        self, name: str, edge_url: str | None = None, **extra: Any
    ) -> tuple[Proc, int]:
        port = free_port()
        env = self.worker_env(name, edge_url, PORT=port, **extra)
        proc = self.procs(["worker", "--uplink", "edge"], env, name)
        proc.wait_http(f"http://127.0.0.1:{port}/health")
        return proc, port

    def scan(self, session_id: str, phone: str) -> None:
        env = clean_env(WAGATE_URL=self.base, API_KEY=API_KEY, SANDBOX_URL=self.sandbox)
        scanned = run_cli(["sandbox", "scan", session_id, "--phone", phone], env)
        assert scanned.returncode == 0, scanned.stderr + scanned.stdout

    def peer_sends(self, text: str, to: str = PHONE) -> None:
        env = clean_env(WAGATE_URL=self.base, API_KEY=API_KEY, SANDBOX_URL=self.sandbox)
        sent = run_cli(["sandbox", "send", "--from", PEER, "--to", to, "--text", text], env)
        assert sent.returncode == 0, sent.stderr + sent.stdout

    def status(self, session_id: str) -> dict[str, Any]:
        body: dict[str, Any] = self.api.get(f"/api/sessions/{session_id}/status").json()
        return body

    def add_phone(self, phone: str) -> None:
        with httpx.Client(timeout=10) as client:
            client.post(f"{self.sandbox}/control/phones", json={"phone": phone}).raise_for_status()

    def inbox(self, phone: str) -> list[str]:
        with httpx.Client(timeout=10) as client:
            found = client.get(f"{self.sandbox}/control/inbox/{phone}").json()["messages"]
        return [m.get("text") or m.get("caption") for m in found]

    def messages(self, session_id: str, direction: str) -> list[dict[str, Any]]:
        answer = self.api.get(
            f"/api/sessions/{session_id}/messages", params={"direction": direction}
        )
        assert answer.status_code == 200, answer.text
        body = answer.json()
        return list(body["messages"] if isinstance(body, dict) else body)

    def proxy(self, path: str, **kw: Any) -> httpx.Response:
        headers = {"Authorization": f"Bearer {SECRET}"}
        return httpx.get(f"{self.base}/worker-proxy{path}", headers=headers, timeout=10, **kw)


@pytest.fixture
def pair(databases: DatabaseFactory, tmp_path: Path, procs: Any, sandbox_url: str) -> Any:
    p = Pair(procs, tmp_path, sandbox_url, databases.new())
    yield p
    p.api.close()


def test_serve_as_the_worker_proxy_and_an_edge_worker_link_and_exchange_messages(
    pair: Pair, tmp_path: Path
) -> None:
    receiver = Receiver(free_port())
    receiver.start()
    try:
        pair.start_gateway()
        hook = {
            "url": f"http://127.0.0.1:{receiver.port}/hook",
            "events": ["*"],
            "secret": "whsec-e2e-edge",
        }
        assert pair.api.post("/api/webhooks", json=hook).status_code == 201
        made = pair.api.post("/api/sessions/provision", json={"id": "shop", "uplink": "edge"})
        assert made.status_code in (200, 201), made.text
        assert made.json()["uplink"] == "edge"
        # the instance waits for an edge worker: DISCONNECTED or CONNECTING in seed 001's words
        assert {"id": "shop"} in pair.proxy("/disconnected-instances").json()

        worker, worker_port = pair.start_worker("edge-1")
        qr = poll(lambda: _qr(pair, "shop"), limit_s=20)
        assert qr["qr"].startswith("2@")  # the raw QR: wagate sandbox scan works on it
        png = base64.b64decode(qr["qrDataUrl"].removeprefix("data:image/png;base64,"))
        assert png.startswith(b"\x89PNG")
        pair.scan("shop", PHONE)
        status = poll(lambda: _connected(pair, "shop"), limit_s=20)
        assert status["phoneNumber"] == PHONE

        health = httpx.get(f"http://127.0.0.1:{worker_port}/health", timeout=5).json()
        assert health["status"] == "ok"
        assert health["instances"] == {"connected": 1, "connecting": 0, "reconnecting": 0}

        # a message sent through the public API reaches the peer once, and is marked sent
        pair.add_phone(PEER)
        sent = pair.api.post("/api/sessions/shop/messages", json={"to": PEER, "text": "hi"})
        assert sent.status_code in (200, 201, 202), sent.text
        poll(lambda: pair.inbox(PEER) == ["hi"], limit_s=20)
        poll(lambda: _out_status(pair, "shop", "hi") == "sent", limit_s=20)

        # a message from the peer reaches the gateway's database and its webhook
        pair.peer_sends("hello from the peer")
        poll(lambda: _received(receiver, "hello from the peer"), limit_s=20)
        texts = [m.get("text") for m in pair.messages("shop", "in")]
        assert texts.count("hello from the peer") == 1

        assert pair.inbox(PEER) == ["hi"]  # still once
        worker.kill(signal.SIGTERM)
        # a stopping worker says so: the instance is DISCONNECTED, offered to the next worker
        poll(lambda: pair.status("shop")["state"] == "reconnecting", limit_s=20)
    finally:
        receiver.stop()


def _qr(pair: Pair, session_id: str) -> dict[str, Any] | None:
    answer = pair.api.get(f"/api/sessions/{session_id}/qr")
    return answer.json() if answer.status_code == 200 else None


def _connected(pair: Pair, session_id: str) -> dict[str, Any] | None:
    status = pair.status(session_id)
    return status if status.get("state") == "connected" else None


def _out_status(pair: Pair, session_id: str, text: str) -> str | None:
    for message in pair.messages(session_id, "out"):
        if message.get("text") == text:
            return str(message.get("status"))
    return None


def _received(receiver: Receiver, text: str) -> bool:
    for event in receiver.events():
        if event.get("event") == "message.received" and text in json.dumps(event):
            return True
    return False


def test_two_edge_workers_never_run_one_instance_and_an_operators_stop_is_obeyed(
    pair: Pair,
) -> None:
    pair.start_gateway()
    for sid in ("one", "two"):
        made = pair.api.post("/api/sessions/provision", json={"id": sid, "uplink": "edge"})
        assert made.status_code == 201, made.text
    _, port_a = pair.start_worker("edge-a", WORKER_MAX_SESSIONS=1)
    _, port_b = pair.start_worker("edge-b", WORKER_MAX_SESSIONS=1)
    poll(lambda: _qr(pair, "one") and _qr(pair, "two"), limit_s=20)
    hosts = {
        sid: [w for w, port in (("a", port_a), ("b", port_b)) if _hosts(port, sid)]
        for sid in ("one", "two")
    }
    assert sorted(len(v) for v in hosts.values()) == [1, 1], hosts  # each on exactly one
    pair.scan("one", PHONE)
    poll(lambda: _connected(pair, "one"), limit_s=20)

    # an operator stops it: its worker is told 409 at its next call and lets go of it
    assert pair.api.post("/api/sessions/one/stop").status_code == 200
    poll(lambda: _live_connections(pair, "one") == 0, limit_s=20)
    assert pair.status("one")["state"] == "stopped"
    # ... and a restart has an edge worker take it back, linked without a new QR
    assert pair.api.post("/api/sessions/one/restart").status_code == 200
    poll(lambda: _connected(pair, "one"), limit_s=30)
    assert _replaced_streams(pair) == 0  # never two connections on one account


def test_the_worker_proxy_dies_and_comes_back_and_the_instance_with_it(pair: Pair) -> None:
    pair.start_gateway("gateway-1")
    made = pair.api.post("/api/sessions/provision", json={"id": "shop", "uplink": "edge"})
    assert made.status_code == 201, made.text
    worker, worker_port = pair.start_worker("edge-1")
    poll(lambda: _qr(pair, "shop"), limit_s=20)
    pair.scan("shop", PHONE)
    poll(lambda: _connected(pair, "shop"), limit_s=20)
    pair.add_phone(PEER)

    assert pair.gateway is not None
    pair.gateway.kill()  # kill -9 of the worker-proxy
    pair.peer_sends("while the proxy was down")
    # its claim could not be renewed: the worker lets go of the instance before it lapses
    health = f"http://127.0.0.1:{worker_port}/health"
    poll(lambda: httpx.get(health, timeout=5).json()["instances"]["connected"] == 0, limit_s=20)

    pair.start_gateway("gateway-2")
    poll(lambda: _connected(pair, "shop"), limit_s=30)
    poll(lambda: _texts_in(pair, "shop").count("while the proxy was down") == 1, limit_s=30)
    sent = pair.api.post("/api/sessions/shop/messages", json={"to": PEER, "text": "back"})
    assert sent.status_code == 201, sent.text
    poll(lambda: _out_status(pair, "shop", "back") == "sent", limit_s=20)
    assert pair.inbox(PEER) == ["back"]
    assert _replaced_streams(pair) == 0
    assert worker.output().count("letting go") >= 1


def _hosts(port: int, session_id: str) -> bool:
    body = httpx.get(f"http://127.0.0.1:{port}/health", timeout=5).json()
    return session_id in body["running"]


def _live_connections(pair: Pair, session_id: str) -> int:
    with httpx.Client(timeout=10) as client:
        live = client.get(f"{pair.sandbox}/control/connections").json()["connections"]
    return sum(1 for c in live if c.get("session") == session_id)


def _replaced_streams(pair: Pair) -> int:
    with httpx.Client(timeout=10) as client:
        return int(client.get(f"{pair.sandbox}/control/stats").json()["replacedStreams"])


def _texts_in(pair: Pair, session_id: str) -> list[Any]:
    return [m.get("text") for m in pair.messages(session_id, "in")]
