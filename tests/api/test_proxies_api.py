"""``/api/v1/proxies`` over a gateway's app, and provision taking its proxy from the pool."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest

from wagate.clock import ManualClock
from wagate.control.proxy_pool import ProxyPool
from wagate.control.proxy_probe import socks_probe
from wagate.engine.base import QRCode
from wagate.roles.serve import Gateway
from wagate.settings import Settings
from wagate.testing import ScriptedEngine, eventually

from ..conftest import ClientFactory, GatewayFactory

P = "/api/v1/proxies"
PASSWORD = "pool-pass-42"
A = f"socks5h://wa:{PASSWORD}@10.0.0.1:1080"
B = f"socks5h://wa:{PASSWORD}@10.0.0.2:1080"
QR = "2@abc,def,ghi,jkl"


@dataclass
class FakeCheck:
    errors: dict[str, str | None] = field(default_factory=dict)
    asked: list[str] = field(default_factory=list)

    async def __call__(self, url: str) -> str | None:
        self.asked.append(url)
        return self.errors.get(url)


@dataclass
class Rig:
    gateway: Gateway
    engine: ScriptedEngine
    check: FakeCheck
    api: httpx.AsyncClient
    anon: httpx.AsyncClient

    @property
    def pool(self) -> ProxyPool:
        assert self.gateway.proxy_pool is not None
        return self.gateway.proxy_pool

    async def proxies(self) -> list[dict[str, Any]]:
        r = await self.api.get(P)
        assert r.status_code == 200, r.text
        found: list[dict[str, Any]] = r.json()["proxies"]
        return found

    async def provision(self, **body: Any) -> httpx.Response:
        self.engine.add([QRCode(QR, 60)])
        return await self.api.post("/api/sessions/provision", json=body)


@pytest.fixture
async def rig(
    gateways: GatewayFactory, api_clients: ClientFactory, settings: Settings, clock: ManualClock
) -> AsyncIterator[Rig]:
    given = settings.model_copy(update={"proxy_urls": [A], "max_sessions_per_proxy": 1})
    engine = ScriptedEngine()
    gateway = await gateways(given, engine=engine, clock=clock)
    check = FakeCheck()
    assert gateway.proxy_pool is not None
    gateway.proxy_pool._check = check
    yield Rig(
        gateway, engine, check, await api_clients(gateway), await api_clients(gateway, key=None)
    )


def _error(r: httpx.Response, status: int) -> dict[str, Any]:
    assert r.status_code == status, r.text
    error: dict[str, Any] = r.json()["error"]
    return error


async def test_the_list_shows_the_env_proxies_redacted(rig: Rig) -> None:
    r = await rig.api.get(P)
    assert r.status_code == 200
    body = r.json()
    assert body["total"] == 1
    (proxy,) = body["proxies"]
    assert proxy["url"] == "socks5h://wa:***@10.0.0.1:1080"
    assert (proxy["source"], proxy["status"], proxy["sessions"], proxy["capacity"]) == (
        "env",
        "unchecked",
        0,
        1,
    )
    assert PASSWORD not in r.text


async def test_an_added_proxy_is_checked_at_once(rig: Rig) -> None:
    r = await rig.api.post(P, json={"url": B, "label": "second"})
    assert r.status_code == 201, r.text
    out = r.json()
    assert (out["url"], out["label"], out["source"]) == (
        "socks5h://wa:***@10.0.0.2:1080",
        "second",
        "api",
    )
    assert (out["status"], out["failures"], out["lastError"]) == ("active", 0, None)
    assert out["lastCheckedAt"] is not None and out["lastOkAt"] is not None
    assert rig.check.asked == [B]
    assert PASSWORD not in r.text


async def test_an_added_proxy_that_fails_its_check_is_bad(rig: Rig) -> None:
    rig.check.errors[B] = "the proxy refused: auth failed"
    r = await rig.api.post(P, json={"url": B})
    assert r.status_code == 201, r.text
    out = r.json()
    assert (out["status"], out["failures"], out["lastError"]) == (
        "bad",
        1,
        "the proxy refused: auth failed",
    )


async def test_the_real_check_finds_a_closed_port_bad(rig: Rig) -> None:
    """The gateway's own check (a SOCKS5 handshake) against 127.0.0.1 on a port nobody
    listens on: refused at once, no network beyond the loopback."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    rig.pool._check = socks_probe(("127.0.0.1", 9), 5.0)
    r = await rig.api.post(P, json={"url": f"socks5h://u:{PASSWORD}@127.0.0.1:{port}"})
    assert r.status_code == 201, r.text
    out = r.json()
    assert out["status"] == "bad"
    assert out["lastError"].startswith("cannot reach the proxy")
    assert PASSWORD not in r.text


@pytest.mark.parametrize("url", ["http://10.0.0.3:8080", "socks5h://10.0.0.3", "junk"])
async def test_adding_anything_but_a_socks5_url_is_422_naming_url(rig: Rig, url: str) -> None:
    error = _error(await rig.api.post(P, json={"url": url}), 422)
    assert error["field"] == "url"
    assert len(await rig.proxies()) == 1


async def test_one_proxy_is_shown_by_its_id(rig: Rig) -> None:
    (listed,) = await rig.proxies()
    r = await rig.api.get(f"{P}/{listed['id']}")
    assert r.status_code == 200
    assert r.json() == listed


async def test_check_now_records_the_outcome(rig: Rig) -> None:
    (listed,) = await rig.proxies()
    rig.check.errors[A] = "no answer within 10s"
    r = await rig.api.post(f"{P}/{listed['id']}/check")
    assert r.status_code == 200, r.text
    assert (r.json()["status"], r.json()["lastError"]) == ("bad", "no answer within 10s")
    assert rig.check.asked == [A]


@pytest.mark.parametrize(("method", "suffix"), [("GET", ""), ("DELETE", ""), ("POST", "/check")])
async def test_an_unknown_proxy_is_404(rig: Rig, method: str, suffix: str) -> None:
    error = _error(await rig.api.request(method, f"{P}/999{suffix}"), 404)
    assert error["code"] == "not_found"


@pytest.mark.parametrize(("method", "suffix"), [("GET", ""), ("DELETE", ""), ("POST", "/check")])
@pytest.mark.parametrize("value", [str(2**63), "0", "-1"])
async def test_an_id_out_of_range_is_422(rig: Rig, method: str, suffix: str, value: str) -> None:
    error = _error(await rig.api.request(method, f"{P}/{value}{suffix}"), 422)
    assert error["field"] == "proxy_id"


@pytest.mark.parametrize(
    ("method", "suffix", "body"),
    [
        ("GET", "", None),
        ("POST", "", {"url": B}),
        ("GET", "/1", None),
        ("DELETE", "/1", None),
        ("POST", "/1/check", None),
    ],
)
async def test_every_proxy_route_needs_the_key(
    rig: Rig, method: str, suffix: str, body: dict[str, str] | None
) -> None:
    r = await rig.anon.request(method, f"{P}{suffix}", json=body)
    assert r.status_code == 401
    assert len(await rig.proxies()) == 1 and rig.check.asked == []


async def test_a_proxy_in_use_is_deleted_only_with_force(rig: Rig) -> None:
    assert (await rig.provision(id="p1")).status_code == 201
    (listed,) = await rig.proxies()
    assert listed["sessions"] == 1
    error = _error(await rig.api.delete(f"{P}/{listed['id']}"), 409)
    assert error["code"] == "proxy_in_use"
    assert PASSWORD not in error["message"]
    assert len(await rig.proxies()) == 1
    r = await rig.api.delete(f"{P}/{listed['id']}?force=true")
    assert r.status_code == 200, r.text
    assert r.json() == {"id": listed["id"], "removed": True}
    assert await rig.proxies() == []
    _error(await rig.api.get(f"{P}/{listed['id']}"), 404)


async def test_provision_without_a_proxy_takes_one_from_the_pool(rig: Rig) -> None:
    r = await rig.provision(id="p1", phone="+6281234567890")
    assert r.status_code == 201, r.text
    assert r.json()["proxy"] == "socks5h://wa:***@10.0.0.1:1080"
    assert PASSWORD not in r.text
    await eventually(lambda: bool(rig.engine.options))
    assert rig.engine.options[0].proxy == A  # the engine has the credentials
    got = await rig.api.get("/api/sessions/p1")
    assert got.json()["proxy"] == "socks5h://wa:***@10.0.0.1:1080"
    assert PASSWORD not in got.text
    (listed,) = await rig.proxies()
    assert listed["sessions"] == 1


async def test_provision_with_the_pool_full_is_409_no_proxy_available(rig: Rig) -> None:
    assert (await rig.provision(id="p1")).status_code == 201  # capacity 1: now full
    error = _error(await rig.provision(id="p2"), 409)
    assert error["code"] == "no_proxy_available"
    assert (await rig.api.get("/api/sessions/p2")).status_code == 404


async def test_provision_with_a_proxy_adds_it_to_the_pool(rig: Rig) -> None:
    r = await rig.provision(id="p1", proxy=B)
    assert r.status_code == 201, r.text
    assert r.json()["proxy"] == "socks5h://wa:***@10.0.0.2:1080"
    urls = {p["url"]: p for p in await rig.proxies()}
    added = urls["socks5h://wa:***@10.0.0.2:1080"]
    assert (added["source"], added["sessions"]) == ("provision", 1)
