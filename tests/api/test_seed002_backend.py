"""Seed 002's backend over HTTP: worker registration and heartbeats, the JWT admin API."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from argon2 import PasswordHasher

from wagate.api.app import create_app
from wagate.clock import ManualClock
from wagate.control.admins import AdminAuth
from wagate.roles.registry import worker_registry
from wagate.roles.serve import Gateway
from wagate.storage.db import Database
from wagate.storage.repos.admins import AdminRepo
from wagate.testing import settings_for_tests

from ..control.health_server import HealthServer, closed_port_url, seed002_health
from .test_route_walk import _problem, body_cases, operations, param_cases

TOKEN = "worker-secret-token"
WORKER = {"Authorization": f"Bearer {TOKEN}"}
REGISTER = {  # seed 002, "Worker Registration (On Startup)"
    "workerId": "worker-001",
    "endpoint": "http://192.168.1.100:8001",
    "maxSessions": 50,
    "description": "Primary worker instance",
}
HEARTBEAT = {  # seed 002, "Heartbeat (Every 30 seconds)"
    "status": "online",
    "sessionCount": 25,
    "cpuUsage": 45.5,
    "memoryUsage": 67.8,
    "uptime": 3600,
    "messageCount": 1250,
}
WORKER_FIELDS = {
    "workerId",
    "endpoint",
    "maxSessions",
    "description",
    "status",
    "sessionCount",
    "cpuUsage",
    "memoryUsage",
    "uptime",
    "messageCount",
    "lastHeartbeat",
    "registeredAt",
}
Backend = Callable[..., Any]


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient() as client:
        yield client


@pytest.fixture
async def backends(
    gateway: Gateway,
    db: Database,
    clock: ManualClock,
    tmp_path: Path,
    database_url: str,
    http: httpx.AsyncClient,
) -> AsyncIterator[Backend]:
    """``await backends(**settings)``: an HTTP client of a control plane's app (seed 002's backend).

    The app is ``create_app`` over the gateway's services plus a registry and admin users on
    a manual clock; the client sends no credentials of its own.
    """
    clients: list[httpx.AsyncClient] = []

    async def make(**overrides: Any) -> httpx.AsyncClient:
        values = {"database_url": database_url, "worker_auth_token": TOKEN} | overrides
        settings = settings_for_tests(tmp_path / "cp", **values)
        registry = worker_registry(db, clock, settings, http)
        hasher = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)
        admins = AdminAuth(
            AdminRepo(db, clock),
            clock,
            secret="j" * 48,
            ttl=settings.cluster.jwt_ttl,
            hasher=hasher,
        )
        services = dataclasses.replace(gateway.services, registry=registry, admins=admins)
        app = create_app(services, api_key="test-key")
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        client = httpx.AsyncClient(transport=transport, base_url="http://cp")
        clients.append(client)
        if not await admins_exist(db, clock):
            await admins.create_user("admin", "correct horse")
        return client

    yield make
    for client in clients:
        await client.aclose()


async def admins_exist(db: Database, clock: ManualClock) -> bool:
    return await AdminRepo(db, clock).get("admin") is not None


@pytest.fixture
async def cp(backends: Backend) -> httpx.AsyncClient:
    client: httpx.AsyncClient = await backends()
    return client


async def _jwt(cp: httpx.AsyncClient) -> dict[str, str]:
    r = await cp.post("/api/v1/auth/login", json={"username": "admin", "password": "correct horse"})
    assert r.status_code == 200, r.text
    return {"Authorization": f"Bearer {r.json()['data']['token']}"}


def _error(r: httpx.Response, status: int) -> dict[str, Any]:
    assert r.status_code == status, r.text
    body = r.json()
    assert body["success"] is False
    error: dict[str, Any] = body["error"]
    return error


# --- the workers' side ------------------------------------------------------------------


async def test_register_and_heartbeat_with_the_seeds_bodies(
    cp: httpx.AsyncClient, clock: ManualClock
) -> None:
    r = await cp.post("/api/v1/workers/register", json=REGISTER, headers=WORKER)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["success"] is True
    assert set(body["data"]) == WORKER_FIELDS | {"heartbeatIntervalMs"}
    assert body["data"]["heartbeatIntervalMs"] == 30_000
    assert {k: body["data"][k] for k in REGISTER} == REGISTER
    assert (body["data"]["status"], body["data"]["sessionCount"]) == ("live", 0)
    assert body["data"]["registeredAt"] == "2026-01-01T00:00:00.000Z"

    await clock.advance(30)
    r = await cp.put("/api/v1/workers/worker-001/heartbeat", json=HEARTBEAT, headers=WORKER)
    assert r.status_code == 200, r.text
    data = r.json()["data"]
    assert set(data) == WORKER_FIELDS
    assert {k: data[k] for k in HEARTBEAT if k != "status"} == {
        k: v for k, v in HEARTBEAT.items() if k != "status"
    }
    assert (data["status"], data["lastHeartbeat"]) == ("live", "2026-01-01T00:00:30.000Z")


async def test_the_seeds_startup_code_body_registers_too(cp: httpx.AsyncClient) -> None:
    """``registerWithBackend()`` and ``process.uptime()``: a float uptime, no description."""
    body = {"workerId": "worker-002", "endpoint": "http://localhost:8002", "maxSessions": 50}
    assert (await cp.post("/api/v1/workers/register", json=body, headers=WORKER)).status_code == 200
    beat = HEARTBEAT | {"uptime": 12.345678, "extra": "ignored"}
    r = await cp.put("/api/v1/workers/worker-002/heartbeat", json=beat, headers=WORKER)
    assert r.status_code == 200 and r.json()["data"]["uptime"] == 12


@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Bearer nope"}, {"Authorization": TOKEN}, {"X-Api-Key": "test-key"}],
)
async def test_a_missing_or_wrong_worker_token_is_401(
    cp: httpx.AsyncClient, headers: dict[str, str]
) -> None:
    r = await cp.post("/api/v1/workers/register", json=REGISTER, headers=headers)
    assert _error(r, 401)["code"] == "unauthorized"
    r = await cp.put("/api/v1/workers/worker-001/heartbeat", json=HEARTBEAT, headers=headers)
    assert _error(r, 401)["code"] == "unauthorized"


async def test_the_admin_token_is_not_a_worker_token(cp: httpx.AsyncClient) -> None:
    r = await cp.post("/api/v1/workers/register", json=REGISTER, headers=await _jwt(cp))
    _error(r, 401)


async def test_without_worker_auth_token_the_worker_endpoints_answer_503(
    backends: Backend,
) -> None:
    cp = await backends(worker_auth_token=None)
    r = await cp.post("/api/v1/workers/register", json=REGISTER, headers=WORKER)
    error = _error(r, 503)
    assert error["code"] == "not_configured" and "WORKER_AUTH_TOKEN" in error["message"]


async def test_heartbeat_of_an_unknown_worker_is_404(cp: httpx.AsyncClient) -> None:
    r = await cp.put("/api/v1/workers/ghost/heartbeat", json=HEARTBEAT, headers=WORKER)
    error = _error(r, 404)
    assert error["code"] == "not_found" and "ghost" in error["message"]


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"endpoint": "192.168.1.100:8001"}, "endpoint"),
        ({"endpoint": "http://"}, "endpoint"),
        ({"endpoint": 8001}, "endpoint"),
        ({"workerId": "worker 001"}, "workerId"),
        ({"maxSessions": "50"}, "maxSessions"),
        ({"maxSessions": 0}, "maxSessions"),
        ({"maxSessions": True}, "maxSessions"),
    ],
)
async def test_a_malformed_registration_is_422_naming_the_field(
    cp: httpx.AsyncClient, change: dict[str, Any], field: str
) -> None:
    r = await cp.post("/api/v1/workers/register", json=REGISTER | change, headers=WORKER)
    assert _error(r, 422)["field"] == field


async def test_a_missing_field_is_422(cp: httpx.AsyncClient) -> None:
    body = {k: v for k, v in REGISTER.items() if k != "workerId"}
    r = await cp.post("/api/v1/workers/register", json=body, headers=WORKER)
    assert _error(r, 422)["field"] == "workerId"


async def test_a_bad_heartbeat_is_422_naming_the_field(cp: httpx.AsyncClient) -> None:
    await cp.post("/api/v1/workers/register", json=REGISTER, headers=WORKER)
    for change, field in [
        ({"cpuUsage": "45.5"}, "cpuUsage"),
        ({"sessionCount": -1}, "sessionCount"),
        ({"status": "asleep"}, "status"),
    ]:
        r = await cp.put(
            "/api/v1/workers/worker-001/heartbeat", json=HEARTBEAT | change, headers=WORKER
        )
        assert _error(r, 422)["field"] == field


async def test_an_id_in_use_by_a_live_process_is_409_and_free_once_it_is_gone(
    cp: httpx.AsyncClient,
) -> None:
    async with HealthServer(seed002_health(instance="proc-a")) as old:
        first = REGISTER | {"endpoint": old.url, "instance": "proc-a"}
        assert (await cp.post("/api/v1/workers/register", json=first, headers=WORKER)).is_success
        second = REGISTER | {"endpoint": "http://10.0.0.2:8001", "instance": "proc-b"}
        r = await cp.post("/api/v1/workers/register", json=second, headers=WORKER)
        error = _error(r, 409)
        assert error["code"] == "worker_id_in_use"
        assert "worker-001" in error["message"] and old.url in error["message"]
        old.body = seed002_health(instance="proc-z")  # another process answers there now
        r = await cp.post("/api/v1/workers/register", json=second, headers=WORKER)
        assert r.status_code == 200 and r.json()["data"]["endpoint"] == "http://10.0.0.2:8001"


async def test_an_id_is_taken_over_when_the_old_process_does_not_answer(
    cp: httpx.AsyncClient,
) -> None:
    first = REGISTER | {"endpoint": closed_port_url(), "instance": "proc-a"}
    assert (await cp.post("/api/v1/workers/register", json=first, headers=WORKER)).is_success
    second = REGISTER | {"instance": "proc-b"}
    r = await cp.post("/api/v1/workers/register", json=second, headers=WORKER)
    assert r.status_code == 200 and r.json()["data"]["endpoint"] == REGISTER["endpoint"]
    beat = HEARTBEAT | {"instance": "proc-a"}  # the old process learns it was replaced
    r = await cp.put("/api/v1/workers/worker-001/heartbeat", json=beat, headers=WORKER)
    assert _error(r, 409)["code"] == "worker_replaced"


# --- admins ------------------------------------------------------------------------------


async def test_login_gives_a_token_that_lists_the_workers(cp: httpx.AsyncClient) -> None:
    await cp.post("/api/v1/workers/register", json=REGISTER, headers=WORKER)
    r = await cp.post("/api/v1/auth/login", json={"username": "admin", "password": "correct horse"})
    assert r.status_code == 200
    data = r.json()["data"]
    assert set(data) == {"token", "expiresAt"}
    assert data["expiresAt"] == "2026-01-01T01:00:00.000Z"
    r = await cp.get("/api/v1/workers", headers={"Authorization": f"Bearer {data['token']}"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["success"] is True
    assert [w["workerId"] for w in body["data"]] == ["worker-001"]
    assert set(body["data"][0]) == WORKER_FIELDS


async def test_a_wrong_login_is_one_401_whatever_was_wrong(cp: httpx.AsyncClient) -> None:
    answers = []
    for username, password in [("admin", "wrong horse"), ("nobody", "correct horse")]:
        r = await cp.post("/api/v1/auth/login", json={"username": username, "password": password})
        answers.append(_error(r, 401))
    assert answers[0] == answers[1]
    r = await cp.post("/api/v1/auth/login", json={"username": "admin"})
    assert _error(r, 422)["field"] == "password"


async def test_a_token_expires(cp: httpx.AsyncClient, clock: ManualClock) -> None:
    headers = await _jwt(cp)
    await clock.advance(3599)
    assert (await cp.get("/api/v1/workers", headers=headers)).status_code == 200
    await clock.advance(1)
    error = _error(await cp.get("/api/v1/workers", headers=headers), 401)
    assert "expired" in error["message"]


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer not-a-jwt"},
        {"Authorization": f"Bearer {TOKEN}"},
        {"X-Api-Key": "nope"},
    ],
)
async def test_admin_routes_want_a_jwt_or_the_api_key(
    cp: httpx.AsyncClient, headers: dict[str, str]
) -> None:
    for method, path in [
        ("GET", "/api/v1/workers"),
        ("POST", "/api/v1/workers"),
        ("DELETE", "/api/v1/workers/x"),
        ("GET", "/api/v1/workers/statistics"),
        ("POST", "/api/v1/workers/test"),
        ("POST", "/api/v1/workers/health/start"),
        ("POST", "/api/v1/workers/health/stop"),
        ("GET", "/api/v1/workers/health/status"),
        ("POST", "/api/v1/workers/x/drain"),
    ]:
        _error(await cp.request(method, path, headers=headers), 401)


async def test_the_api_key_is_accepted_as_an_admin(cp: httpx.AsyncClient) -> None:
    for headers in ({"X-Api-Key": "test-key"}, {"Authorization": "Bearer test-key"}):
        assert (await cp.get("/api/v1/workers", headers=headers)).status_code == 200


async def test_add_drain_and_remove_a_worker(cp: httpx.AsyncClient) -> None:
    admin = await _jwt(cp)
    body = {"endpoint": "http://203.0.113.45:8001", "maxSessions": 20, "description": "VPS"}
    r = await cp.post("/api/v1/workers", json=body, headers=admin)
    assert r.status_code == 201, r.text
    added = r.json()["data"]
    assert added["workerId"].startswith("w-") and added["maxSessions"] == 20
    worker_id = added["workerId"]
    r = await cp.post(f"/api/v1/workers/{worker_id}/drain", headers=admin)
    assert r.status_code == 200 and r.json()["data"]["status"] == "draining"
    r = await cp.delete(f"/api/v1/workers/{worker_id}", headers=admin)
    assert r.status_code == 200
    assert r.json() == {
        "success": True,
        "message": "Worker removed successfully",
        "data": {"workerId": worker_id},
    }
    assert (await cp.get("/api/v1/workers", headers=admin)).json()["data"] == []
    _error(await cp.delete(f"/api/v1/workers/{worker_id}", headers=admin), 404)
    _error(await cp.post("/api/v1/workers/ghost/drain", headers=admin), 404)
    r = await cp.post("/api/v1/workers", json=body | {"endpoint": "nope"}, headers=admin)
    assert _error(r, 422)["field"] == "endpoint"


async def test_statistics(cp: httpx.AsyncClient) -> None:
    await cp.post("/api/v1/workers/register", json=REGISTER, headers=WORKER)
    await cp.put("/api/v1/workers/worker-001/heartbeat", json=HEARTBEAT, headers=WORKER)
    r = await cp.get("/api/v1/workers/statistics", headers=await _jwt(cp))
    assert r.status_code == 200
    assert r.json()["data"] == {
        "workers": {"live": 1, "draining": 0, "dead": 0, "total": 1},
        "sessions": {"capacity": 50, "used": 25, "free": 25},
        "messages": 1250,
        "averageCpuUsage": 45.5,
        "averageMemoryUsage": 67.8,
    }


async def test_test_refuses_an_internal_address_naming_the_setting(cp: httpx.AsyncClient) -> None:
    admin = await _jwt(cp)
    for endpoint in ("http://192.168.1.100:8001", "http://169.254.169.254", "http://[::1]:8001"):
        r = await cp.post("/api/v1/workers/test", json={"endpoint": endpoint}, headers=admin)
        error = _error(r, 422)
        assert error["field"] == "endpoint"
        assert "WAGATE_ALLOW_PRIVATE_URLS" in error["message"]


async def test_test_answers_whether_the_worker_is_reachable(backends: Backend) -> None:
    cp = await backends(allow_private_urls=True)
    admin = await _jwt(cp)
    async with HealthServer() as server:
        r = await cp.post("/api/v1/workers/test", json={"endpoint": server.url}, headers=admin)
    assert r.status_code == 200, r.text
    data = r.json()["data"]
    assert (data["reachable"], data["statusCode"], data["error"]) == (True, 200, None)
    assert data["health"] == seed002_health()
    assert isinstance(data["latencyMs"], int)
    r = await cp.post("/api/v1/workers/test", json={"endpoint": closed_port_url()}, headers=admin)
    assert r.status_code == 200 and r.json()["data"]["reachable"] is False


async def test_health_monitoring_start_stop_status(
    cp: httpx.AsyncClient, clock: ManualClock
) -> None:
    admin = await _jwt(cp)
    r = await cp.get("/api/v1/workers/health/status", headers=admin)
    assert r.status_code == 200
    assert r.json()["data"] == {
        "enabled": True,
        "intervalMs": 30_000,
        "timeoutMs": 90_000,
        "changedAt": None,
        "lastCheckAt": None,
        "lastDead": [],
        "workers": {"live": 0, "draining": 0, "dead": 0, "total": 0},
    }
    r = await cp.post("/api/v1/workers/health/stop", headers=admin)
    assert r.json()["data"]["enabled"] is False
    assert r.json()["data"]["changedAt"] == "2026-01-01T00:00:00.000Z"
    assert (await cp.get("/api/v1/workers/health/status", headers=admin)).json()["data"][
        "enabled"
    ] is False
    r = await cp.post("/api/v1/workers/health/start", headers=admin)
    assert r.json()["data"]["enabled"] is True


async def test_serve_has_no_backend_routes(api: httpx.AsyncClient) -> None:
    """``wagate serve`` gives the app no registry: the routes are not there at all."""
    for method, path in [
        ("POST", "/api/v1/workers/register"),
        ("GET", "/api/v1/workers"),
        ("POST", "/api/v1/auth/login"),
    ]:
        _error(await api.request(method, path, json={}), 404)
    paths = (await api.get("/openapi.json")).json()["paths"]
    assert not [p for p in paths if p.startswith(("/api/v1/workers", "/api/v1/auth"))]
    assert [p for p in paths if p.startswith("/api/v1/")] == [
        "/api/v1/proxies",  # seed 004's proxy pool is served by wagate serve too
        "/api/v1/proxies/{proxy_id}",
        "/api/v1/proxies/{proxy_id}/check",
    ]


async def test_every_backend_route_rejects_bad_values_with_a_4xx(
    cp: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    from . import test_route_walk as walk

    good = {
        ("post", "/api/v1/workers/register"): REGISTER | {"endpoint": "http://93.184.216.34:1"},
        ("put", "/api/v1/workers/{worker_id}/heartbeat"): HEARTBEAT,
        ("post", "/api/v1/auth/login"): {"username": "admin", "password": "correct horse"},
        ("post", "/api/v1/workers"): {"endpoint": "http://93.184.216.34:1", "maxSessions": 1},
    }
    for key, body in good.items():
        monkeypatch.setitem(walk.GOOD_BODY, key, body)
    monkeypatch.setitem(walk.GOOD_PATH, "worker_id", "worker-001")
    registered = good[("post", "/api/v1/workers/register")]
    assert (await cp.post("/api/v1/workers/register", json=registered, headers=WORKER)).is_success
    cp.headers.update(WORKER | {"X-Api-Key": "test-key"})  # a worker's token and an admin's key
    root = (await cp.get("/openapi.json")).json()
    backend = ("/api/v1/workers", "/api/v1/auth")  # the proxy pool's routes have their own walk
    ops = [op for op in operations(root, "1") if op.path.startswith(backend)]
    assert len(ops) == 12
    problems, count = [], 0
    for op in ops:
        for case in [*param_cases(op), *body_cases(op)]:
            count += 1
            problem = _problem(case, await case.send(cp))
            if problem:
                problems.append(problem)
    assert count > 100
    assert not problems, f"{len(problems)} of {count}:\n" + "\n".join(problems)
