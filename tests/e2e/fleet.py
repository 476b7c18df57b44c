"""A fleet of real processes on loopback: ``wagate sandbox``, ``wagate control`` and workers.

On the PostgreSQL of ``WAGATE_TEST_DATABASE_URL`` (a fresh database per
fleet) and the Redis on 127.0.0.1:6379 (a fresh key prefix per fleet, whose
keys are deleted after). Timings are short, so failures show in seconds.
"""

from __future__ import annotations

import os
import secrets
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import redis

from tests.e2e.conftest import Proc, clean_env, free_port, poll

REDIS_URL = os.environ.get("WAGATE_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
API_KEY = "fleet-api-key"
TOKEN = "fleet-worker-token"
JWT_SECRET = "fleet-jwt-secret-of-at-least-32-characters"
ADMIN = ("admin", "admin-password-1")

TIMINGS = {
    "WAGATE_HEARTBEAT_INTERVAL_MS": 500,
    "WAGATE_WORKER_TIMEOUT_MS": 4000,
    "WAGATE_LEASE_TTL_MS": 3000,
    "WAGATE_LEASE_RENEW_MS": 500,
    "WAGATE_LEASE_MARGIN_MS": 1000,
    "WAGATE_LEADER_LEASE_TTL_MS": 2000,
    "WAGATE_SCHEDULE_INTERVAL_MS": 300,
    "WAGATE_SEND_POLL_MS": 500,
    "WAGATE_STOP_TIMEOUT_MS": 3000,
}
WORKER_TIMEOUT_S = TIMINGS["WAGATE_WORKER_TIMEOUT_MS"] / 1000


class Fleet:
    """Starts the processes of a fleet and speaks to them the way an operator would."""

    def __init__(self, start: Callable[..., Proc], tmp: Path, database_url: str) -> None:
        self._start = start
        self.tmp = tmp
        self.database_url = database_url
        self.prefix = f"fleet-{secrets.token_hex(4)}:"
        self.sandbox_port = free_port()
        self.sandbox = f"http://127.0.0.1:{self.sandbox_port}"
        self.controls: dict[str, tuple[Proc, int]] = {}
        self.workers: dict[str, tuple[Proc, int]] = {}
        self.redis = redis.Redis.from_url(REDIS_URL)
        self._clients: list[httpx.Client] = []

    def env(self, **extra: Any) -> dict[str, str]:
        return clean_env(
            DATABASE_URL=self.database_url,
            REDIS_URL=REDIS_URL,
            WAGATE_REDIS_PREFIX=self.prefix,
            API_KEY=API_KEY,
            WORKER_AUTH_TOKEN=TOKEN,
            WAGATE_JWT_SECRET=JWT_SECRET,
            WAGATE_ADMIN_USER=ADMIN[0],
            WAGATE_ADMIN_PASSWORD=ADMIN[1],
            WAGATE_ENGINE="sandbox",
            SANDBOX_URL=self.sandbox,
            **TIMINGS,
            **extra,
        )

    # --- processes -------------------------------------------------------------------

    def start_sandbox(self) -> None:
        proc = self._start(
            ["sandbox", "--port", str(self.sandbox_port), "--state", str(self.tmp / "net.json")],
            self.env(
                WAGATE_DATA_DIR=self.tmp / "sandbox",
                WAGATE_SANDBOX_WS_PING_INTERVAL_MS=300,
                WAGATE_SANDBOX_WS_PING_TIMEOUT_MS=700,
            ),
            "sandbox",
        )
        proc.wait_http(f"{self.sandbox}/healthz")

    def start_control(self, name: str = "control", **extra: Any) -> int:
        port = free_port()
        env = self.env(WAGATE_DATA_DIR=self.tmp / name, **extra)
        proc = self._start(["control", "--port", str(port)], env, name)
        proc.wait_http(f"http://127.0.0.1:{port}/healthz")
        self.controls[name] = (proc, port)
        return port

    def start_worker(self, worker_id: str, max_sessions: int, *, wait: bool = True) -> Proc:
        port = free_port()
        backend = next(iter(self.controls.values()))[1]
        env = self.env(
            WORKER_ID=worker_id,
            WORKER_PORT=port,
            WORKER_MAX_SESSIONS=max_sessions,
            BACKEND_URL=f"http://127.0.0.1:{backend}",
            WAGATE_DATA_DIR=self.tmp / f"{worker_id}-{port}",
        )
        proc = self._start(["worker"], env, f"{worker_id}-{port}")
        if wait:
            proc.wait_http(f"http://127.0.0.1:{port}/healthz")
            poll(lambda: self.worker_row(worker_id, "live"), limit_s=20)
            self.workers[worker_id] = (proc, port)
        return proc

    def stop_all(self) -> None:
        for client in self._clients:
            client.close()
        for proc, _ in [*self.workers.values(), *self.controls.values()]:
            proc.kill(signal.SIGKILL)
        keys = list(self.redis.scan_iter(match=f"{self.prefix}*", count=1000))
        if keys:
            self.redis.delete(*keys)
        self.redis.close()

    # --- speaking to it ----------------------------------------------------------------

    def _port(self, control: str | None) -> int:
        return self.controls[control][1] if control else next(iter(self.controls.values()))[1]

    def api(self, control: str | None = None) -> httpx.Client:
        port = self._port(control)
        client = httpx.Client(
            base_url=f"http://127.0.0.1:{port}", headers={"X-Api-Key": API_KEY}, timeout=30
        )
        self._clients.append(client)  # closed with the fleet, whatever the test did
        return client

    def admin(self, control: str | None = None) -> httpx.Client:
        port = self._port(control)
        base = f"http://127.0.0.1:{port}"
        with httpx.Client(base_url=base, timeout=30) as anon:
            credentials = {"username": ADMIN[0], "password": ADMIN[1]}
            login = anon.post("/api/v1/auth/login", json=credentials)
        assert login.status_code == 200, login.text
        token = login.json()["data"]["token"]
        return httpx.Client(base_url=base, headers={"Authorization": f"Bearer {token}"}, timeout=30)

    def net(self, method: str, path: str, body: Any = None) -> Any:
        with httpx.Client(base_url=self.sandbox, timeout=30) as client:
            answer = client.request(method, path, json=body)
        assert answer.is_success, answer.text
        return answer.json()

    def worker_row(self, worker_id: str, status: str) -> bool:
        with self.admin() as admin:
            rows = admin.get("/api/v1/workers").json()["data"]
        return any(w["workerId"] == worker_id and w["status"] == status for w in rows)

    def link(self, api: httpx.Client, session_id: str, phone: str) -> None:
        """Provision a session and scan its QR as ``phone``."""
        answer = api.post("/api/sessions/provision", json={"id": session_id})
        assert answer.status_code == 201, answer.text
        qr = poll(lambda: _qr(api, session_id), limit_s=30)
        self.net("POST", "/control/scan", {"qr": qr, "phone": phone})

    def states(self, api: httpx.Client) -> dict[str, str]:
        body = api.get("/api/sessions").json()
        sessions = body["sessions"] if isinstance(body, dict) else body
        return {s["id"]: s["state"] for s in sessions}

    def owners(self) -> dict[str, str]:
        """Session → the worker whose live connection the network sees for it."""
        live = self.net("GET", "/control/connections")["connections"]
        return {c["session"]: c["client"] for c in live if c.get("state") == "connected"}

    def replaced_streams(self) -> int:
        return int(self.net("GET", "/control/stats")["replacedStreams"])

    def inbox_texts(self, phone: str) -> list[str]:
        found = self.net("GET", f"/control/inbox/{phone}")["messages"]
        return [m.get("text") or m.get("caption") for m in found]


def _qr(api: httpx.Client, session_id: str) -> str | None:
    answer = api.get(f"/api/sessions/{session_id}/qr")
    return answer.json()["qr"] if answer.status_code == 200 else None


def until(check: Callable[[], Any], limit_s: float) -> float:
    """Seconds it took ``check()`` to hold (an AssertionError past ``limit_s``)."""
    started = time.monotonic()
    poll(check, limit_s=limit_s, every=0.1)
    return time.monotonic() - started
