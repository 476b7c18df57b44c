"""Seed 001's edge worker answers one thing over HTTP: its health, at ``/`` and ``/health``.

``{"status": "ok", "instances": {"connected", "connecting", "reconnecting"}}``
as the seed shows, with wagate's figures beside it (the worker-proxy's
reachability, what waits in the edge spool, the engine's own figures). When
the engine asks for a process restart (neonize's ``needsRestart``) the status
is ``"degraded"`` and the answer 503, so a container's health check restarts
it; ``/healthz`` is that alone (``{"ok": bool}``), as the gateway's is.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import FastAPI
from fastapi.responses import JSONResponse

Health = Callable[[], Awaitable[dict[str, Any]]]


def edge_worker_app(health: Health) -> FastAPI:
    app = FastAPI(title="wagate edge worker", docs_url=None, redoc_url=None, openapi_url=None)

    async def answer() -> JSONResponse:
        body = await health()
        return JSONResponse(body, status_code=200 if body.get("status") == "ok" else 503)

    async def healthz() -> JSONResponse:
        ok = (await health()).get("status") == "ok"
        return JSONResponse({"ok": ok}, status_code=200 if ok else 503)

    app.add_api_route("/", answer, methods=["GET"], summary="Seed 001's health check")
    app.add_api_route("/health", answer, methods=["GET"], summary="Seed 001's health check")
    app.add_api_route("/healthz", healthz, methods=["GET"], summary="Whether to restart it")
    return app
