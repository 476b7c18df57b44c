"""Liveness without a key: ``/`` and ``/health`` (seeds 001 and 002 at once), ``/healthz`` (003).

When the engine asks for its process to be recycled (neonize: descriptors
past their bound, a stop stuck in Go, too many clients set aside), ``/health``
says so in ``needsRestart`` (its seed shapes unchanged) and ``/healthz``
answers 503 ``{"ok": false}``, which a container health check acts on; the
sessions resume in the new process.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from wagate.api.deps import Health

router = APIRouter(tags=["health"])


@router.get("/", summary="Health (seeds 001 + 002)")
async def root(health: Health) -> dict[str, Any]:
    return await health.report()


@router.get("/health", summary="Health (seeds 001 + 002)")
async def health_report(health: Health) -> dict[str, Any]:
    return await health.report()


@router.get("/healthz", summary="Liveness (seed 003); 503 when the process needs a restart")
async def healthz(health: Health) -> JSONResponse:
    if health.needs_restart():
        return JSONResponse({"ok": False}, status_code=503)
    return JSONResponse({"ok": True})
