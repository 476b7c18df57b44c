"""``wagate worker --uplink edge`` against a foreign worker-proxy (a few lines of Starlette,
as seed 001's Edge Function is written), and against its faults: 500s, timeouts, an
outage, a kill -9 with undelivered messages."""

from __future__ import annotations

import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.conftest import Proc, clean_env, free_port, poll, run_cli
from tests.e2e.foreign_edge import ForeignEdge

pytestmark = pytest.mark.e2e

SECRET = "a-foreign-edge-secret"
PHONE, PEER = "6281355500011", "6281355500012"
FAST = {
    "INSTANCE_POLL_MS": 300,
    "MSG_POLL_MS": 200,
    "WAGATE_EDGE_RETRY_BASE_MS": 100,
    "WAGATE_EDGE_RETRY_MAX_MS": 400,
    "WAGATE_EDGE_REQUEST_TIMEOUT_MS": 1000,
    "WAGATE_SEND_INTERVAL_MS": 0,
    "WAGATE_STOP_TIMEOUT_MS": 3000,
}


@pytest.fixture
def edge() -> Iterator[ForeignEdge]:
    proxy = ForeignEdge(SECRET).up()
    yield proxy
    proxy.down()


class EdgeWorker:
    def __init__(self, procs: Any, tmp: Path, sandbox: str, edge: ForeignEdge) -> None:
        self.procs, self.tmp, self.sandbox, self.edge = procs, tmp, sandbox, edge
        self.port = free_port()
        self.proc: Proc | None = None
        self.starts = 0

    def start(self) -> Proc:
        self.starts += 1
        env = clean_env(
            EDGE_BASE_URL=self.edge.url,  # selects the edge uplink: no DATABASE_URL
            WORKER_SECRET=SECRET,
            PORT=self.port,
            DATA_DIR=self.tmp / "edge",
            AUTH_DIR=self.tmp / "edge" / "auth",
            WAGATE_ENGINE="sandbox",
            SANDBOX_URL=self.sandbox,
            **FAST,
        )
        self.proc = self.procs(["worker"], env, f"edge-worker-{self.starts}")
        self.proc.wait_http(f"http://127.0.0.1:{self.port}/health")
        return self.proc

    def health(self) -> dict[str, Any]:
        body: dict[str, Any] = httpx.get(f"http://127.0.0.1:{self.port}/", timeout=5).json()
        return body


def _net(sandbox: str, method: str, path: str, body: Any = None) -> Any:
    with httpx.Client(base_url=sandbox, timeout=10) as client:
        answer = client.request(method, path, json=body)
    assert answer.is_success, answer.text
    return answer.json()


def _peer_sends(sandbox: str, text: str) -> None:
    _net(sandbox, "POST", "/control/send", {"from": PEER, "to": PHONE, "text": text})


def _inbox(sandbox: str, phone: str) -> list[str]:
    found = _net(sandbox, "GET", f"/control/inbox/{phone}")["messages"]
    return [m.get("text") for m in found]


def _link(edge: ForeignEdge, sandbox: str, instance: str) -> None:
    edge.sql("INSERT INTO instances (id, status) VALUES (?, 'DISCONNECTED')", instance)
    row = poll(lambda: _with_qr(edge, instance), limit_s=20)
    assert row["status"] == "CONNECTING"
    assert row["qr_code"].startswith("data:image/png;base64,")
    _net(sandbox, "POST", "/control/scan", {"qr": row["qr"], "phone": PHONE})
    poll(lambda: (edge.instance(instance) or {}).get("status") == "CONNECTED", limit_s=20)


def _first_seen(texts: list[str]) -> list[str]:
    return list(dict.fromkeys(texts))


def _with_qr(edge: ForeignEdge, instance: str) -> dict[str, Any] | None:
    row = edge.instance(instance)
    return row if row and row["qr_code"] else None


@pytest.fixture
def worker(procs: Any, tmp_path: Path, sandbox_url: str, edge: ForeignEdge) -> EdgeWorker:
    _net(sandbox_url, "POST", "/control/phones", {"phone": PEER})
    return EdgeWorker(procs, tmp_path, sandbox_url, edge)


def test_a_foreign_worker_proxy_links_sends_and_receives(
    worker: EdgeWorker, edge: ForeignEdge, sandbox_url: str
) -> None:
    worker.start()
    _link(edge, sandbox_url, "inst-1")
    assert edge.instance("inst-1") == {
        "status": "CONNECTED",
        "qr_code": None,
        "qr": None,
        "phone": PHONE,
    }
    # its own spellings: {"data": [...]}, "phone", "body"
    edge.queue("m-1", "inst-1", f"+{PEER}", "from the foreign edge")
    poll(lambda: edge.sql("SELECT status, wa_id FROM messages WHERE id = 'm-1'")[0][0] == "sent")
    assert _inbox(sandbox_url, PEER) == ["from the foreign edge"]
    _peer_sends(sandbox_url, "back at you")
    poll(lambda: edge.received("inst-1") == ["back at you"])
    health = worker.health()
    assert health["instances"] == {"connected": 1, "connecting": 0, "reconnecting": 0}
    assert health["edge"]["claimTtlS"] is None  # a foreign worker-proxy keeps no claims
    # every call carried the secret; a wrong one would have been refused (see the edge)
    assert edge.count("GET", "/disconnected-instances") >= 1


def test_errors_timeouts_and_an_outage_lose_nothing_and_send_nothing_twice(
    worker: EdgeWorker, edge: ForeignEdge, sandbox_url: str
) -> None:
    worker.start()
    _link(edge, sandbox_url, "inst-1")

    # mark-sent answers 500: the message is sent once, handed out again and again meanwhile
    edge.faults["mark-sent"] = "500"
    edge.queue("m-1", "inst-1", PEER, "once only")
    poll(lambda: edge.count("POST", "/mark-sent") >= 3, limit_s=20)
    poll(lambda: edge.count("GET", "/queued-messages") >= 10, limit_s=20)
    assert _inbox(sandbox_url, PEER) == ["once only"]

    # inbound answers 500: kept and tried again; a 500 took nothing, so it arrives once
    edge.faults["inbound"] = "500"
    _peer_sends(sandbox_url, "one")
    poll(lambda: edge.count("POST", "/inbound") >= 2, limit_s=20)
    assert edge.received("inst-1") == []
    del edge.faults["inbound"]
    poll(lambda: edge.received("inst-1") == ["one"], limit_s=20)

    # then too slowly (the worker's request times out), then the whole worker-proxy is down
    edge.faults["inbound"] = "slow"
    _peer_sends(sandbox_url, "two")
    poll(lambda: worker.health()["edge"]["spooled"] >= 2, limit_s=20)  # m-1's ack, two
    edge.down()
    _peer_sends(sandbox_url, "three")
    poll(lambda: worker.health()["edge"]["spooled"] >= 3, limit_s=20)
    assert worker.health()["instances"]["connected"] == 1  # a foreign edge's silence: kept
    edge.faults.clear()
    edge.up()

    # nothing lost, in order; a post whose answer came too late may have been taken and is
    # posted again (a receiver dedupes by messageId)
    poll(lambda: _first_seen(edge.received("inst-1")) == ["one", "two", "three"], limit_s=30)
    assert edge.received("inst-1").count("one") == 1
    poll(lambda: edge.sql("SELECT status FROM messages WHERE id = 'm-1'")[0][0] == "sent")
    poll(lambda: worker.health()["edge"]["spooled"] == 0, limit_s=20)
    assert _inbox(sandbox_url, PEER) == ["once only"]
    assert (edge.instance("inst-1") or {})["status"] == "CONNECTED"


def test_a_refused_post_is_dropped_after_audit_and_the_rest_goes_on(
    worker: EdgeWorker, edge: ForeignEdge, sandbox_url: str
) -> None:
    worker.start()
    _link(edge, sandbox_url, "inst-1")
    edge.faults["inbound"] = "422"
    _peer_sends(sandbox_url, "refused")
    poll(lambda: worker.health()["edge"]["dropped"] == 1, limit_s=20)
    edge.faults.clear()
    _peer_sends(sandbox_url, "taken")
    poll(lambda: edge.received("inst-1") == ["taken"], limit_s=20)
    assert worker.proc is not None and "refused, dropped" in worker.proc.output()


def test_kill_9_with_spooled_messages_delivers_them_after_the_restart(
    worker: EdgeWorker, edge: ForeignEdge, sandbox_url: str
) -> None:
    proc = worker.start()
    _link(edge, sandbox_url, "inst-1")
    edge.faults["inbound"] = "500"
    _peer_sends(sandbox_url, "spooled 1")
    _peer_sends(sandbox_url, "spooled 2")
    poll(lambda: worker.health()["edge"]["spooled"] == 2, limit_s=20)
    proc.kill(signal.SIGKILL)
    edge.faults.clear()
    assert edge.received("inst-1") == []

    worker.start()  # the same DATA_DIR: the spool is where it was
    poll(lambda: edge.received("inst-1") == ["spooled 1", "spooled 2"], limit_s=20)
    # the instance's row still says CONNECTED (nobody told the edge): as seed 001's proxy,
    # it offers it again once someone marks it DISCONNECTED; then it links without a QR
    edge.sql("UPDATE instances SET status = 'DISCONNECTED' WHERE id = 'inst-1'")
    poll(lambda: (edge.instance("inst-1") or {}).get("status") == "CONNECTED", limit_s=20)
    assert (edge.instance("inst-1") or {})["qr_code"] is None


def test_a_missing_secret_or_base_url_is_one_line_and_exit_1(tmp_path: Path) -> None:
    base = {"DATA_DIR": tmp_path / "d", "AUTH_DIR": tmp_path / "d" / "auth"}
    no_secret = run_cli(
        ["worker", "--uplink", "edge"], clean_env(EDGE_BASE_URL="http://127.0.0.1:9", **base)
    )
    assert no_secret.returncode == 1
    assert "WORKER_SECRET" in no_secret.stderr and len(no_secret.stderr.splitlines()) == 1
    no_url = run_cli(["worker", "--uplink", "edge"], clean_env(WORKER_SECRET="s", **base))
    assert no_url.returncode == 1
    assert "EDGE_BASE_URL" in no_url.stderr and len(no_url.stderr.splitlines()) == 1


def test_logged_out_on_the_phone_clears_the_credentials_and_a_fresh_qr_follows(
    worker: EdgeWorker, edge: ForeignEdge, sandbox_url: str, tmp_path: Path
) -> None:
    worker.start()
    _link(edge, sandbox_url, "inst-1")
    auth = tmp_path / "edge" / "auth" / "inst-1"
    assert auth.is_dir() and any(auth.iterdir())
    _net(sandbox_url, "POST", "/control/fault", {"kind": "logout", "session": "inst-1"})
    # seed 001's proxy stores DISCONNECTED and offers it again: a new QR, the old keys gone
    row = poll(lambda: _with_qr(edge, "inst-1"), limit_s=30)
    assert row["status"] == "CONNECTING"
    assert not auth.exists() or not any(auth.iterdir())
    logged_out = [
        body
        for method, path, body in edge.calls
        if path.endswith("/update-status") and body.get("reason") == "logged_out"
    ]
    assert logged_out and logged_out[0]["status"] == "DISCONNECTED"
    _net(sandbox_url, "POST", "/control/scan", {"qr": row["qr"], "phone": PHONE})
    poll(lambda: (edge.instance("inst-1") or {}).get("status") == "CONNECTED", limit_s=20)
