from __future__ import annotations

import contextlib

import httpx
import pytest

from wagate.engine.base import QRCode
from wagate.testing import ScriptedEngine, connected, until


@pytest.mark.parametrize("path", ["/", "/health"])
async def test_health_satisfies_seeds_001_and_002_without_a_key(
    anon: httpx.AsyncClient, path: str
) -> None:
    r = await anon.get(path)
    assert r.status_code == 200
    body = r.json()
    # seed 001
    assert body["status"] == "ok"
    assert body["instances"] == {"connected": 0, "connecting": 0, "reconnecting": 0}
    # seed 002
    assert body["success"] is True
    data = body["data"]
    assert data["status"] == "online"
    for key in ("sessionCount", "cpuUsage", "memoryUsage", "uptime", "maxSessions"):
        assert isinstance(data[key], int | float), key


async def test_healthz_is_seed_003(anon: httpx.AsyncClient) -> None:
    r = await anon.get("/healthz")
    assert (r.status_code, r.json()) == (200, {"ok": True})


async def test_health_counts_sessions_by_state(
    api: httpx.AsyncClient, engine: ScriptedEngine
) -> None:
    engine.add([connected("111111111")], [QRCode("2@q,a,b,c", 60)])
    await api.post("/api/sessions/provision", json={"id": "one"})
    await api.post("/api/sessions/provision", json={"id": "two"})

    async def counts() -> dict[str, int]:
        return dict((await api.get("/health")).json()["instances"])

    seen: dict[str, int] = {}

    async def settled() -> bool:
        seen.update(await counts())
        return seen == {"connected": 1, "connecting": 1, "reconnecting": 0}

    with contextlib.suppress(TimeoutError):
        await until(settled)
    assert seen == {"connected": 1, "connecting": 1, "reconnecting": 0}
    assert (await api.get("/health")).json()["data"]["sessionCount"] == 2


class ReportingEngine(ScriptedEngine):
    """An engine with figures of its own (as neonize has): what ``health()`` answers."""

    def __init__(self) -> None:
        super().__init__()
        self.figures: dict[str, object] = {}

    def health(self) -> dict[str, object]:
        return dict(self.figures)


@pytest.fixture
def engine() -> ReportingEngine:
    return ReportingEngine()


async def test_an_engine_that_needs_a_restart_says_so_and_fails_healthz(
    anon: httpx.AsyncClient, engine: ReportingEngine
) -> None:
    assert (await anon.get("/health")).json()["needsRestart"] is False
    engine.figures = {"clientsSetAside": 21, "needsRestart": True}
    r = await anon.get("/healthz")
    assert (r.status_code, r.json()) == (503, {"ok": False})
    body = (await anon.get("/health")).json()
    assert (body["status"], body["success"], body["data"]["status"]) == ("ok", True, "online")
    assert body["needsRestart"] is True and body["data"]["needsRestart"] is True
    assert body["data"]["engine"]["clientsSetAside"] == 21
