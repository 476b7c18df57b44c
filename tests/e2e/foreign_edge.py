"""A worker-proxy written the way people write seed 001's Edge Function: a few handlers
over an ``instances`` table, with its own spellings, no claims, and faults on demand.

It mirrors the seed's TypeScript: ``/disconnected-instances`` selects the ids
whose ``status`` is DISCONNECTED or CONNECTING; ``/update-status`` writes
``status`` and ``qr_code``; queued messages are rows of ``messages``, answered
as ``{"data": [...]}`` with ``phone`` and ``body``; ``/mark-sent`` and
``/inbound`` write what they are told. Each path can be made to fail: any
status (``"500"``), ``slow`` (answers after ``slow_s``), or the whole server
``down``.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import threading
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from tests.e2e.conftest import free_port, poll

SCHEMA = """
CREATE TABLE instances (id TEXT PRIMARY KEY, status TEXT NOT NULL, qr_code TEXT, qr TEXT,
                        phone TEXT);
CREATE TABLE messages (id TEXT PRIMARY KEY, instance_id TEXT, phone TEXT, body TEXT,
                       status TEXT NOT NULL DEFAULT 'queued', wa_id TEXT, error TEXT);
CREATE TABLE inbound (seq INTEGER PRIMARY KEY AUTOINCREMENT, instance_id TEXT,
                      message_id TEXT, sender TEXT, text TEXT, body TEXT);
"""


class ForeignEdge:
    def __init__(self, secret: str) -> None:
        self.secret = secret
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/functions/v1/worker-proxy"
        self.db = sqlite3.connect(":memory:", check_same_thread=False)
        self.db.executescript(SCHEMA)
        self.lock = threading.Lock()
        self.faults: dict[str, str] = {}  # last path segment → a status ("500") or "slow"
        self.slow_s = 3.0
        self.calls: list[tuple[str, str, Any]] = []  # method, path, body
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None

    # --- the server ------------------------------------------------------------------

    def up(self) -> ForeignEdge:
        base = "/functions/v1/worker-proxy"
        app = Starlette(
            routes=[
                Route(f"{base}/disconnected-instances", self._disconnected, methods=["GET"]),
                Route(f"{base}/update-status", self._update_status, methods=["POST"]),
                Route(f"{base}/queued-messages", self._queued, methods=["GET"]),
                Route(f"{base}/mark-sent", self._mark_sent, methods=["POST"]),
                Route(f"{base}/inbound", self._inbound, methods=["POST"]),
            ]
        )
        config = uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning")
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, daemon=True)
        self._thread.start()
        poll(lambda: self._server is not None and self._server.started, limit_s=10)
        return self

    def down(self) -> None:
        if self._server is not None and self._thread is not None:
            self._server.should_exit = True
            self._thread.join(timeout=10)
        self._server = None

    # --- the tables ------------------------------------------------------------------

    def sql(self, query: str, *args: Any) -> list[tuple[Any, ...]]:
        with self.lock:
            rows = self.db.execute(query, args).fetchall()
            self.db.commit()
        return rows

    def instance(self, instance_id: str) -> dict[str, Any] | None:
        rows = self.sql(
            "SELECT status, qr_code, qr, phone FROM instances WHERE id = ?", instance_id
        )
        if not rows:
            return None
        status, qr_code, qr, phone = rows[0]
        return {"status": status, "qr_code": qr_code, "qr": qr, "phone": phone}

    def queue(self, message_id: str, instance_id: str, phone: str, body: str) -> None:
        self.sql(
            "INSERT INTO messages (id, instance_id, phone, body) VALUES (?, ?, ?, ?)",
            message_id,
            instance_id,
            phone,
            body,
        )

    def received(self, instance_id: str) -> list[str]:
        rows = self.sql("SELECT text FROM inbound WHERE instance_id = ? ORDER BY seq", instance_id)
        return [r[0] for r in rows]

    def count(self, method: str, path: str) -> int:
        return sum(1 for m, p, _ in self.calls if m == method and p.endswith(path))

    # --- the handlers ----------------------------------------------------------------

    async def _guard(self, request: Request) -> JSONResponse | None:
        body = await request.body()
        self.calls.append((request.method, request.url.path, json.loads(body) if body else None))
        if request.headers.get("authorization") != f"Bearer {self.secret}":
            return JSONResponse({"error": "unauthorized"}, status_code=401)
        fault = self.faults.get(request.url.path.rsplit("/", 1)[-1])
        if fault is not None and fault.isdigit():
            return JSONResponse({"error": f"refused with {fault}"}, status_code=int(fault))
        if fault == "slow":
            await asyncio.sleep(self.slow_s)
        return None

    async def _disconnected(self, request: Request) -> JSONResponse:
        if (refused := await self._guard(request)) is not None:
            return refused
        rows = self.sql("SELECT id FROM instances WHERE status IN ('DISCONNECTED', 'CONNECTING')")
        return JSONResponse([{"id": r[0]} for r in rows])

    async def _update_status(self, request: Request) -> JSONResponse:
        if (refused := await self._guard(request)) is not None:
            return refused
        body = await request.json()
        self.sql(
            "UPDATE instances SET status = ?, qr_code = ?, qr = ?, phone = COALESCE(?, phone)"
            " WHERE id = ?",
            body["status"],
            body.get("qr_code"),
            body.get("qr"),
            body.get("phone"),
            body["instanceId"],
        )
        return JSONResponse({"ok": True})

    async def _queued(self, request: Request) -> JSONResponse:
        if (refused := await self._guard(request)) is not None:
            return refused
        instance_id = request.query_params["instanceId"]
        rows = self.sql(
            "SELECT id, phone, body FROM messages WHERE instance_id = ? AND status = 'queued'"
            " ORDER BY rowid",
            instance_id,
        )
        return JSONResponse({"data": [{"id": i, "phone": p, "body": b} for i, p, b in rows]})

    async def _mark_sent(self, request: Request) -> JSONResponse:
        if (refused := await self._guard(request)) is not None:
            return refused
        body = await request.json()
        self.sql(
            "UPDATE messages SET status = ?, wa_id = ?, error = ? WHERE id = ?",
            body.get("status", "sent"),
            body.get("waMessageId"),
            body.get("error"),
            body["messageId"],
        )
        return JSONResponse({"ok": True})

    async def _inbound(self, request: Request) -> JSONResponse:
        if (refused := await self._guard(request)) is not None:
            return refused
        body = await request.json()
        self.sql(
            "INSERT INTO inbound (instance_id, message_id, sender, text, body)"
            " VALUES (?, ?, ?, ?, ?)",
            body["instanceId"],
            body["messageId"],
            body["from"],
            body.get("text"),
            json.dumps(body),
        )
        return JSONResponse({"ok": True})
