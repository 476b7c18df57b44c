"""Queued messages survive kill -9 of the gateway and reach each recipient exactly once, in order.

A linked session is stopped so that 500 messages to five chats pile up in the
queue; then it is restarted, and the gateway is killed with SIGKILL while it
drains (paced, so the kill lands mid-way). A new gateway on the same data
resumes the session and sends the rest with no pacing. The sandbox network,
a separate process, is the witness: every recipient's inbox must hold each
message once, in the order it was queued.
"""

from __future__ import annotations

import signal
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import DatabaseFactory
from tests.e2e.conftest import clean_env, free_port, poll, run_cli

pytestmark = pytest.mark.e2e

OURS = "6281000000001"
CHATS = [f"628300000000{i}" for i in range(1, 6)]
TOTAL = 500


def test_queued_messages_are_sent_exactly_once_across_kill_9(
    databases: DatabaseFactory, tmp_path: Path, procs: Any, clients: Any, sandbox_url: str
) -> None:
    control = clients(httpx.Client(base_url=sandbox_url, timeout=30))
    for phone in CHATS:
        control.post("/control/phones", json={"phone": phone}).raise_for_status()

    port = free_port()
    env = clean_env(
        WAGATE_DATA_DIR=tmp_path / "gateway",
        DATABASE_URL=databases.new(),
        WAGATE_PORT=port,
        API_KEY="key",
        SANDBOX_URL=sandbox_url,
        # slow enough for the kill to land mid-queue with seconds to spare (all 500: 10 s)
        WAGATE_SEND_INTERVAL_MS=20,
        WAGATE_SEND_JITTER_MS=0,
    )
    first = procs(["serve", "--engine", "sandbox"], env, "gateway-1")
    first.wait_http(f"http://127.0.0.1:{port}/healthz")
    api = clients(
        httpx.Client(base_url=f"http://127.0.0.1:{port}", headers={"X-Api-Key": "key"}, timeout=30)
    )
    _link(api, env)

    assert api.post("/api/sessions/sender/stop").status_code == 200
    expected: dict[str, list[tuple[str, str]]] = {phone: [] for phone in CHATS}
    for i in range(TOTAL):
        phone = CHATS[i % len(CHATS)]
        text = f"{phone[-1]}/{i:03d}"
        r = api.post("/api/sessions/sender/messages", json={"to": phone, "text": text})
        assert r.status_code == 201, r.text
        expected[phone].append((r.json()["messageId"], text))
    assert _received(control) == 0

    assert api.post("/api/sessions/sender/restart").status_code == 200
    poll(lambda: _received(control) >= 25, limit_s=30, every=0.01)
    first.kill(signal.SIGKILL)
    at_kill = _received(control)
    assert 0 < at_kill < TOTAL, f"the kill should land mid-queue ({at_kill} were delivered)"

    second = procs(
        ["serve", "--engine", "sandbox"], {**env, "WAGATE_SEND_INTERVAL_MS": "0"}, "gateway-2"
    )
    second.wait_http(f"http://127.0.0.1:{port}/healthz")
    poll(lambda: _received(control) >= TOTAL, limit_s=60, every=0.1)
    # nothing is queued any more, and the first gateway is gone: no send can follow, so the
    # inboxes are final (a send is recorded only once the network has taken it)
    statuses = poll(lambda: _all_settled(api), limit_s=30)
    assert statuses <= {"sent", "delivered", "read"}

    for phone in CHATS:
        inbox = control.get(f"/control/inbox/{phone}").json()["messages"]
        got = [(m["id"], m["text"]) for m in inbox]
        assert got == expected[phone], f"inbox of {phone} differs"
        assert {m["from"] for m in inbox} == {f"{OURS}@s.whatsapp.net"}


def _link(api: httpx.Client, env: dict[str, str]) -> None:
    assert api.post("/api/sessions/provision", json={"id": "sender"}).status_code == 201
    poll(lambda: api.get("/api/sessions/sender/qr").is_success)
    scan = run_cli(["sandbox", "scan", "sender", "--phone", OURS], env)
    assert scan.returncode == 0, scan.stderr + scan.stdout
    poll(lambda: api.get("/api/sessions/sender/status").json().get("state") == "connected")


def _received(control: httpx.Client) -> int:
    return sum(len(control.get(f"/control/inbox/{p}").json()["messages"]) for p in CHATS)


def _all_settled(api: httpx.Client) -> set[str] | None:
    statuses: set[str] = set()
    params: dict[str, Any] = {"direction": "out", "limit": 500}
    while True:
        page = api.get("/api/sessions/sender/messages", params=params).json()
        statuses |= {m["status"] for m in page["messages"]}
        if page["next"] is None:
            break
        params["before"] = page["next"]
    return statuses if statuses.isdisjoint({"queued", "failed"}) else None
