"""Liveness without a key: ``/`` and ``/health`` (seeds 001 and 002 at once), ``/healthz`` (003).

When the engine asks for its process to be recycled (neonize: descriptors
past their bound, a stop stuck in Go, too many clients set aside), ``/health``
says so in ``needsRestart`` (its seed shapes unchanged) and ``/healthz``
answers 503 ``{"ok": false}``, which a container health check acts on; the
sessions resume in the new process.
"""

from __future__ import annotations

import time
from typing import Any

import psutil
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from wagate.domain.session import health_bucket

router = APIRouter(tags=["health"])

_process = psutil.Process()
_started = time.monotonic()


def health_body(request: Request) -> dict[str, Any]:
    gw = request.app.state.gateway
    instances = {"connected": 0, "connecting": 0, "reconnecting": 0}
    running = gw.worker.running()
    for session_id in running:
        state = gw.worker.runner_state(session_id)
        bucket = health_bucket(state) if state is not None else None
        if bucket is not None:
            instances[bucket] += 1
    engine = _engine_health(gw.engine)
    needs_restart = bool(engine.get("needsRestart", False))
    return {
        # seed 001
        "status": "ok",
        "instances": instances,
        "needsRestart": needs_restart,
        # seed 002
        "success": True,
        "data": {
            "status": "online",
            "needsRestart": needs_restart,
            "workerId": gw.settings.worker_id,
            "sessionCount": len(running),
            "cpuUsage": round(_process.cpu_percent(None) / (psutil.cpu_count() or 1), 1),
            "memoryUsage": round(_process.memory_percent(), 1),
            "uptime": round(time.monotonic() - _started),
            "maxSessions": gw.settings.worker_max_sessions,
            "openFiles": _process.num_fds(),
            "threads": _process.num_threads(),
            "engine": engine,
        },
    }


def _engine_health(engine: object) -> dict[str, Any]:
    """The engine's name, and its own figures when it reports any (neonize does)."""
    report = getattr(engine, "health", None)
    figures = report() if callable(report) else {}
    return {"name": getattr(engine, "name", "unknown"), **(figures or {})}


@router.get("/", summary="Health (seeds 001 + 002)")
async def root(request: Request) -> dict[str, Any]:
    return health_body(request)


@router.get("/health", summary="Health (seeds 001 + 002)")
async def health(request: Request) -> dict[str, Any]:
    return health_body(request)


@router.get("/healthz", summary="Liveness (seed 003); 503 when the process needs a restart")
async def healthz(request: Request) -> JSONResponse:
    if _engine_health(request.app.state.gateway.engine).get("needsRestart"):
        return JSONResponse({"ok": False}, status_code=503)
    return JSONResponse({"ok": True})
