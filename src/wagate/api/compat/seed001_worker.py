"""Seed 001's edge worker answers one thing over HTTP: its health, at ``/`` and ``/health``.

``{"status": "ok", "instances": {"connected", "connecting", "reconnecting"}}``
as the seed shows, with wagate's figures beside it (the worker-proxy's
reachability, what waits in the edge spool, the engine's own figures).
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
        return JSONResponse(await health())

    app.add_api_route("/", answer, methods=["GET"], summary="Seed 001's health check")
    app.add_api_route("/health", answer, methods=["GET"], summary="Seed 001's health check")
    return app
