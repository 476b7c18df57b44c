"""Seed 002's backend: workers register and beat here; admins manage them here.

Three routers, with the seed's paths and ``{"success": true, "data": …}``
envelopes:

- the worker-facing ``POST /api/v1/workers/register`` and
  ``PUT /api/v1/workers/{id}/heartbeat``, which want ``WORKER_AUTH_TOKEN``;
- ``POST /api/v1/auth/login``, which gives an admin a JWT;
- the admin API under ``/api/v1/workers``, which wants that JWT (or the API key).
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path
from pydantic import BaseModel, ConfigDict, Field

from wagate.api.deps import Admins, Registry, require_admin, require_worker
from wagate.api.message_schemas import iso_z
from wagate.api.schemas import ok
from wagate.control import registry as r
from wagate.control.admins import MAX_PASSWORD
from wagate.domain.worker import Worker

worker_router = APIRouter(
    prefix="/api/v1/workers",
    tags=["seed 002 backend: workers"],
    dependencies=[Depends(require_worker)],
)
auth_router = APIRouter(prefix="/api/v1/auth", tags=["seed 002 backend: admin"])
admin_router = APIRouter(
    prefix="/api/v1/workers",
    tags=["seed 002 backend: admin"],
    dependencies=[Depends(require_admin)],
)

WorkerId = Annotated[str, Path(description="The worker's id")]
_MAX_TEXT = 4_096  # no field here is longer; the registry checks each one's own rule


class _Body(BaseModel):
    """JSON types as they are (no "5" for 5); fields the seed does not name are ignored."""

    model_config = ConfigDict(extra="ignore", strict=True)


class RegisterIn(_Body):
    workerId: str = Field(max_length=_MAX_TEXT, examples=["worker-001"])
    endpoint: str = Field(max_length=_MAX_TEXT, examples=["http://192.168.1.100:8001"])
    maxSessions: int = Field(examples=[50])
    description: str | None = Field(None, max_length=_MAX_TEXT)
    instance: str | None = Field(
        None,
        max_length=_MAX_TEXT,
        description="wagate workers: a random id per process (a second live process is refused)",
    )


class HeartbeatIn(_Body):
    status: str = Field("online", max_length=_MAX_TEXT, description="online | draining")
    sessionCount: int | None = None
    cpuUsage: float | None = None
    memoryUsage: float | None = None
    uptime: float | None = Field(None, description="seconds")
    messageCount: int | None = None
    instance: str | None = Field(None, max_length=_MAX_TEXT)


class LoginIn(_Body):
    username: str = Field(max_length=_MAX_TEXT)
    password: str = Field(max_length=MAX_PASSWORD)


class AddIn(_Body):
    endpoint: str = Field(max_length=_MAX_TEXT, examples=["http://203.0.113.45:8001"])
    maxSessions: int = Field(examples=[20])
    description: str | None = Field(None, max_length=_MAX_TEXT)


class TestIn(_Body):
    endpoint: str = Field(max_length=_MAX_TEXT, examples=["http://192.168.1.100:8001"])


def worker_json(w: Worker) -> dict[str, Any]:
    return {
        "workerId": w.id,
        "endpoint": w.endpoint,
        "maxSessions": w.max_sessions,
        "description": w.description,
        "status": w.status.value,
        "sessionCount": w.session_count,
        "cpuUsage": w.cpu_usage,
        "memoryUsage": w.memory_usage,
        "uptime": w.uptime_s,
        "messageCount": w.message_count,
        "lastHeartbeat": iso_z(w.last_heartbeat_at),
        "registeredAt": iso_z(w.registered_at),
    }


# --- the workers' side ----------------------------------------------------------------


@worker_router.post("/register", summary="A worker registers (on start)")
async def register(body: RegisterIn, registry: Registry) -> dict[str, Any]:
    worker = await registry.register(
        r.Registration(
            worker_id=body.workerId,
            endpoint=body.endpoint,
            max_sessions=body.maxSessions,
            description=body.description,
            instance=body.instance,
        )
    )
    interval_ms = round(registry.settings.heartbeat_interval_s * 1000)
    return ok(worker_json(worker) | {"heartbeatIntervalMs": interval_ms})


@worker_router.put("/{worker_id}/heartbeat", summary="A worker's heartbeat and figures")
async def heartbeat(worker_id: WorkerId, body: HeartbeatIn, registry: Registry) -> dict[str, Any]:
    beat = r.Heartbeat(
        status=body.status,
        session_count=body.sessionCount,
        cpu_usage=body.cpuUsage,
        memory_usage=body.memoryUsage,
        uptime=body.uptime,
        message_count=body.messageCount,
        instance=body.instance,
    )
    return ok(worker_json(await registry.heartbeat(worker_id, beat)))


# --- admins ---------------------------------------------------------------------------


@auth_router.post("/login", summary="An admin's JWT")
async def login(body: LoginIn, admins: Admins) -> dict[str, Any]:
    signed = await admins.sign_in(body.username, body.password)
    return ok({"token": signed.token, "expiresAt": iso_z(signed.expires_at)})


@admin_router.get("", summary="Every worker")
async def list_workers(registry: Registry) -> dict[str, Any]:
    return ok([worker_json(w) for w in await registry.list()])


@admin_router.post("", status_code=201, summary="Add a worker by its endpoint")
async def add(body: AddIn, registry: Registry) -> dict[str, Any]:
    added = r.NewWorker(
        endpoint=body.endpoint, max_sessions=body.maxSessions, description=body.description
    )
    return ok(worker_json(await registry.add(added)))


@admin_router.get("/statistics", summary="The fleet's figures")
async def statistics(registry: Registry) -> dict[str, Any]:
    s = await registry.statistics()
    return ok(
        {
            "workers": s.workers,
            "sessions": {"capacity": s.capacity, "used": s.sessions, "free": s.free},
            "messages": s.messages,
            "averageCpuUsage": s.cpu_usage,
            "averageMemoryUsage": s.memory_usage,
        }
    )


@admin_router.post("/test", summary="Reach a worker's /health")
async def test(body: TestIn, registry: Registry) -> dict[str, Any]:
    probe = await registry.test(body.endpoint)
    return ok(
        {
            "endpoint": probe.endpoint,
            "reachable": probe.reachable,
            "latencyMs": probe.latency_ms,
            "statusCode": probe.status_code,
            "health": probe.health,
            "error": probe.error,
        }
    )


def _monitor_json(m: r.MonitorStatus) -> dict[str, Any]:
    return {
        "enabled": m.enabled,
        "intervalMs": round(m.interval_s * 1000),
        "timeoutMs": round(m.timeout_s * 1000),
        "changedAt": iso_z(m.changed_at),
        "lastCheckAt": iso_z(m.checked_at),
        "lastDead": list(m.last_dead),
        "workers": m.workers,
    }


@admin_router.post("/health/start", summary="Switch the health monitor on")
async def health_start(registry: Registry) -> dict[str, Any]:
    return ok(_monitor_json(await registry.start_monitor()))


@admin_router.post("/health/stop", summary="Switch the health monitor off")
async def health_stop(registry: Registry) -> dict[str, Any]:
    return ok(_monitor_json(await registry.stop_monitor()))


@admin_router.get("/health/status", summary="The health monitor")
async def health_status(registry: Registry) -> dict[str, Any]:
    return ok(_monitor_json(await registry.monitor_status()))


@admin_router.post("/{worker_id}/drain", summary="Move a worker's sessions elsewhere")
async def drain(worker_id: WorkerId, registry: Registry) -> dict[str, Any]:
    return ok(worker_json(await registry.drain(worker_id)))


@admin_router.delete("/{worker_id}", summary="Drain a worker and forget it")
async def remove(worker_id: WorkerId, registry: Registry) -> dict[str, Any]:
    await registry.remove(worker_id)
    data = {"workerId": worker_id}
    return {"success": True, "message": "Worker removed successfully", "data": data}
