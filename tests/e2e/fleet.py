"""A fleet of real processes on loopback: ``wagate sandbox``, ``wagate control`` and workers.

On the PostgreSQL of ``WAGATE_TEST_DATABASE_URL`` (a fresh database per
fleet) and the Redis on 127.0.0.1:6379 (a fresh key prefix per fleet, whose
keys are deleted after). Timings are short, so failures show in seconds.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import redis
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from tests.e2e.conftest import Proc, clean_env, free_port, poll

REDIS_URL = os.environ.get("WAGATE_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
API_KEY = "fleet-api-key"
TOKEN = "fleet-worker-token"
JWT_SECRET = "fleet-jwt-secret-of-at-least-32-characters"
ADMIN = ("admin", "admin-password-1")

TIMINGS = {
    "WAGATE_HEARTBEAT_INTERVAL_MS": 500,
    "WAGATE_WORKER_TIMEOUT_MS": 5000,
    # an owner keeps a link 3 s after a renewal: room for a loaded machine's pauses
    "WAGATE_LEASE_TTL_MS": 4000,
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
        self.stack = contextlib.ExitStack()  # what a test adds, closed with the fleet

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

    def start_worker(
        self, worker_id: str, max_sessions: int, *, wait: bool = True, backend: str | None = None
    ) -> Proc:
        port = free_port()
        backend = backend or f"http://127.0.0.1:{next(iter(self.controls.values()))[1]}"
        env = self.env(
            WORKER_ID=worker_id,
            WORKER_PORT=port,
            WORKER_MAX_SESSIONS=max_sessions,
            BACKEND_URL=backend,
            WAGATE_DATA_DIR=self.tmp / f"{worker_id}-{port}",
        )
        proc = self._start(["worker"], env, f"{worker_id}-{port}")
        if wait:
            proc.wait_http(f"http://127.0.0.1:{port}/healthz")
            poll(lambda: self.worker_row(worker_id, "live"), limit_s=20)
            self.workers[worker_id] = (proc, port)
        return proc

    def stop_all(self) -> None:
        self.stack.close()
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


class RecordingProxy:
    """A reverse proxy in front of the control plane that keeps every request it forwards.

    What a worker says to its backend, as it crossed the wire (seed 002's bodies).
    """

    def __init__(self, target: str) -> None:
        self.target = target
        self.seen: list[tuple[str, str, Any, str | None]] = []
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        app = Starlette(
            routes=[Route("/{path:path}", self._forward, methods=["GET", "POST", "PUT"])]
        )
        config = uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning")
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, daemon=True)

    def __enter__(self) -> RecordingProxy:
        self._thread.start()
        poll(lambda: self._server.started, limit_s=10)
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=10)

    async def _forward(self, request: Request) -> Response:
        body = await request.body()
        try:
            parsed: Any = json.loads(body) if body else None
        except ValueError:
            parsed = body
        auth = request.headers.get("authorization")
        self.seen.append((request.method, request.url.path, parsed, auth))
        headers = {
            k: v for k, v in request.headers.items() if k.lower() not in ("host", "content-length")
        }
        async with httpx.AsyncClient(timeout=30) as client:
            answer = await client.request(
                request.method, self.target + request.url.path, content=body, headers=headers
            )
        return Response(
            answer.content, status_code=answer.status_code, media_type="application/json"
        )

    def bodies(self, method: str, path_start: str) -> list[Any]:
        return [
            body for m, path, body, _ in self.seen if m == method and path.startswith(path_start)
        ]
