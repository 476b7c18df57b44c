from __future__ import annotations

import httpx
import pytest
from fastapi import FastAPI

from wagate.api import errors
from wagate.errors import StorageUnavailable


@pytest.mark.parametrize("path", ["/api/sessions", "/api/sessions/x/status", "/session/x/status"])
async def test_missing_key_is_401_json(anon: httpx.AsyncClient, path: str) -> None:
    r = await anon.get(path)
    assert r.status_code == 401
    assert r.json() == {
        "success": False,
        "error": {
            "code": "unauthorized",
            "message": "missing API key: send X-Api-Key or Authorization: Bearer",
        },
    }


async def test_wrong_key_is_401(anon: httpx.AsyncClient) -> None:
    r = await anon.get("/api/sessions", headers={"X-Api-Key": "nope"})
    assert (r.status_code, r.json()["error"]["message"]) == (401, "wrong API key")


async def test_bearer_and_header_both_work(anon: httpx.AsyncClient) -> None:
    assert (await anon.get("/api/sessions", headers={"X-Api-Key": "test-key"})).status_code == 200
    bearer = {"Authorization": "Bearer test-key"}
    assert (await anon.get("/api/sessions", headers=bearer)).status_code == 200


async def test_unknown_session_is_404(api: httpx.AsyncClient) -> None:
    for path in ("/api/sessions/ghost/status", "/api/sessions/ghost/qr", "/session/ghost/status"):
        r = await api.get(path)
        assert r.status_code == 404, path
        assert r.json()["error"] == {"code": "not_found", "message": "session 'ghost' not found"}
    assert (await api.delete("/api/sessions/ghost")).status_code == 404
    assert (await api.post("/api/sessions/ghost/restart")).status_code == 404


@pytest.mark.parametrize("bad", ["bad$id", "-dash", "x" * 65, "abc%0A"])
async def test_invalid_session_id_is_422(api: httpx.AsyncClient, bad: str) -> None:
    r = await api.get(f"/api/sessions/{bad}/status")
    assert r.status_code == 422
    assert r.json()["error"]["field"] == "id"
    assert "invalid session id" in r.json()["error"]["message"]


async def test_unknown_route_is_json_404(api: httpx.AsyncClient) -> None:
    r = await api.get("/nothing/here")
    assert r.status_code == 404 and r.json()["success"] is False


async def test_malformed_json_is_422(api: httpx.AsyncClient) -> None:
    r = await api.post(
        "/api/sessions/provision",
        content=b"{not json",
        headers={"Content-Type": "application/json"},
    )
    assert r.status_code == 422
    assert "not valid JSON" in r.json()["error"]["message"]


async def test_a_database_that_cannot_be_reached_is_503_naming_why() -> None:
    app = FastAPI()
    errors.install(app)

    @app.get("/probe")
    async def probe() -> None:
        raise StorageUnavailable("database unavailable: connection refused")

    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://gw") as client:
        r = await client.get("/probe")
    assert r.status_code == 503, r.text
    assert r.json()["error"]["code"] == "storage_unavailable"
    assert "connection refused" in r.json()["error"]["message"]
