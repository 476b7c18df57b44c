"""Input at the edges: NUL characters, integers past 64 bits, extreme times, odd bodies."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from wagate.engine.base import QRCode
from wagate.settings import Settings
from wagate.testing import ScriptedEngine

from ..conftest import ClientFactory, GatewayFactory

ALICE = "6281111111111"
QR = "2@ref,noise,identity,adv"


async def provision(api: httpx.AsyncClient, engine: ScriptedEngine, session_id: str) -> str:
    engine.add([QRCode(QR, 60)])
    r = await api.post("/api/sessions/provision", json={"id": session_id})
    assert r.status_code == 201, r.text
    return session_id


@pytest.fixture
async def s1(api: httpx.AsyncClient, engine: ScriptedEngine) -> str:
    return await provision(api, engine, "s1")


def _error(r: httpx.Response, status: int) -> dict[str, Any]:
    assert r.status_code == status, r.text
    body = r.json()
    assert body["success"] is False
    error: dict[str, Any] = body["error"]
    return error


# --- NUL ---------------------------------------------------------------------------


HOOK = {"url": "https://93.184.216.34/h", "events": ["*"], "enabled": False}


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        ("/api/sessions/provision", {"proxy": "socks5h://a\x00b:c@h:1"}, "proxy"),
        ("/session/create", {"userId": "a\x00b"}, "userId"),
        ("/session/create", {"sessionName": "x\x00"}, "sessionName"),
        ("/api/sessions/s1/messages", {"to": ALICE, "text": "a\x00b"}, "text"),
        ("/api/sessions/s1/messages", {"to": ALICE, "media": {"url": "\x00"}}, "media.url"),
        ("/session/s1/send", {"to": ALICE, "message": "a\x00b"}, "message"),
        (
            "/session/s1/send",
            {"to": ALICE, "message": "hi", "idempotencyKey": "\x00"},
            "idempotencyKey",
        ),
        ("/api/webhooks", {**HOOK, "headers": {"a\x00": "b"}}, "headers.a\\0"),
        ("/api/webhooks", {**HOOK, "description": "\x00"}, "description"),
    ],
)
async def test_nul_in_a_json_field_is_422_naming_it(
    api: httpx.AsyncClient, s1: str, path: str, body: dict[str, Any], field: str
) -> None:
    error = _error(await api.post(path, json=body), 422)
    assert error["field"] == field
    assert "NUL" in error["message"]


@pytest.mark.parametrize("encoding", ["utf-16", "utf-32-le"])
async def test_nul_in_a_body_in_another_unicode_encoding_is_422(
    api: httpx.AsyncClient, encoding: str
) -> None:
    raw = '{"userId": "a\\u0000b"}'.encode(encoding)
    r = await api.post("/session/create", content=raw, headers={"Content-Type": "application/json"})
    assert _error(r, 422)["field"] == "userId"


@pytest.mark.parametrize(
    ("url", "field"),
    [
        ("/api/sessions/s1/audit?event=a%00b", "event"),
        ("/api/sessions/s1/messages?chat=%00", "chat"),
        ("/api/webhooks/deliveries?subscriptionId=wh%00", "subscriptionId"),
        ("/api/webhooks/wh%00", "webhook_id"),
        ("/api/sessions/s1/messages/3EB0%00", "message_id"),
    ],
)
async def test_nul_in_a_parameter_is_422_naming_it(
    api: httpx.AsyncClient, s1: str, url: str, field: str
) -> None:
    assert _error(await api.get(url), 422)["field"] == field


async def test_nul_in_a_form_field_or_file_name_is_422(api: httpx.AsyncClient, s1: str) -> None:
    png = b"\x89PNG\r\n\x1a\n" + b"0" * 64
    form = {"to": ALICE, "type": "image", "caption": "a\x00b"}
    r = await api.post("/api/sessions/s1/messages", data=form, files={"file": ("a.png", png)})
    assert _error(r, 422)["field"] == "caption"
    # written by hand: httpx would escape the NUL in the file name
    raw = (
        b'--B\r\nContent-Disposition: form-data; name="to"\r\n\r\n' + ALICE.encode() + b"\r\n"
        b'--B\r\nContent-Disposition: form-data; name="file"; filename="a\x00.png"\r\n'
        b"Content-Type: image/png\r\n\r\n" + png + b"\r\n--B--\r\n"
    )
    headers = {"Content-Type": "multipart/form-data; boundary=B"}
    r = await api.post("/api/sessions/s1/messages", content=raw, headers=headers)
    assert _error(r, 422)["field"] == "file"


# --- integers, times ------------------------------------------------------------------


@pytest.mark.parametrize("value", [str(2**63), str(2**64 + 5), "-1", str(-(2**63) - 1)])
@pytest.mark.parametrize(
    ("method", "url", "field"),
    [
        ("GET", "/api/sessions/s1/messages?before={}", "before"),
        ("GET", "/session/s1/messages?offset={}", "offset"),
        ("GET", "/api/media/{}", "media_id"),
        ("GET", "/api/webhooks/deliveries/{}", "delivery_id"),
        ("GET", "/api/webhooks/deliveries?before={}", "before"),
        ("POST", "/api/webhooks/deliveries/{}/replay", "delivery_id"),
        ("GET", "/api/sessions/s1/audit?before={}", "before"),
    ],
)
async def test_an_integer_out_of_range_is_422(
    api: httpx.AsyncClient, s1: str, method: str, url: str, field: str, value: str
) -> None:
    error = _error(await api.request(method, url.format(value)), 422)
    assert error["field"] == field


async def test_the_largest_id_is_a_plain_not_found(api: httpx.AsyncClient, s1: str) -> None:
    largest = 2**63 - 1
    assert _error(await api.get(f"/api/media/{largest}"), 404)["code"] == "not_found"
    r = await api.get(f"/session/s1/messages?offset={largest}")
    assert r.status_code == 200 and r.json()["data"]["messages"] == []


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("since=9999-12-31T23:59:59-05:00", "since"),
        ("until=0001-01-01T00:00:00%2B05:00", "until"),
    ],
)
async def test_a_time_out_of_range_in_utc_is_422(
    api: httpx.AsyncClient, s1: str, query: str, field: str
) -> None:
    error = _error(await api.get(f"/api/sessions/s1/messages?{query}"), 422)
    assert error["field"] == field and "out of range" in error["message"]


async def test_a_time_without_a_zone_is_utc(api: httpx.AsyncClient, s1: str) -> None:
    r = await api.get("/api/sessions/s1/messages?since=2024-01-01T00:00:00&until=9999-12-31")
    assert r.status_code == 200, r.text


# --- bodies -----------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/api/sessions/s1/messages", "/session/s1/send"])
async def test_deeply_nested_json_is_a_4xx(api: httpx.AsyncClient, s1: str, path: str) -> None:
    headers = {"Content-Type": "application/json"}
    r = await api.post(path, content=b"[" * 100_000, headers=headers)
    assert _error(r, 422)["field"] == "body"
    deep = b'{"to": "' + ALICE.encode() + b'", "mentions": ' + b"[" * 900 + b"]" * 900 + b"}"
    assert 400 <= (await api.post(path, content=deep, headers=headers)).status_code < 500


@pytest.mark.parametrize("path", ["/api/sessions/s1/messages", "/session/s1/send"])
async def test_a_declared_length_past_the_limit_is_413(
    api: httpx.AsyncClient, s1: str, path: str
) -> None:
    headers = {"Content-Type": "application/json", "Content-Length": str(10**12)}
    error = _error(await api.post(path, content=b"{}", headers=headers), 413)
    assert (error["code"], error["field"]) == ("body_too_large", "body")


async def test_a_body_past_the_limit_without_a_length_is_413(
    gateways: GatewayFactory,
    api_clients: ClientFactory,
    settings: Settings,
    engine: ScriptedEngine,
) -> None:
    small = settings.model_copy(update={"send_media_max_bytes": 1024})
    api = await api_clients(await gateways(small, engine=engine))
    await provision(api, engine, "s1")

    async def chunks() -> Any:
        yield b'{"to": "' + ALICE.encode() + b'", "text": "'
        for _ in range(64):
            yield b"x" * 65_536
        yield b'"}'

    r = await api.post("/api/sessions/s1/messages", content=chunks())
    assert _error(r, 413)["field"] == "body"


@pytest.mark.parametrize("path", ["/api/sessions/provision", "/session/create", "/api/webhooks"])
async def test_invalid_json_names_the_body(api: httpx.AsyncClient, path: str) -> None:
    r = await api.post(path, content=b"{not json", headers={"Content-Type": "application/json"})
    error = _error(r, 422)
    assert error["field"] == "body"
    assert error["message"] == "body: request body is not valid JSON"


async def test_seed002_missing_message_says_so_in_seed002_words(
    api: httpx.AsyncClient, s1: str
) -> None:
    r = await api.post("/session/s1/send", json={"to": ALICE, "type": "text"})
    error = _error(r, 422)
    assert error["field"] == "message"
    assert error["message"] == "message is required for messages of type text"


# --- provision without a body, ids, proxies ------------------------------------------


@pytest.mark.parametrize(
    "kw", [{}, {"content": b""}, {"content": b"", "headers": {"Content-Type": "application/json"}}]
)
async def test_provision_needs_no_body(
    api: httpx.AsyncClient, engine: ScriptedEngine, kw: dict[str, Any]
) -> None:
    engine.add([QRCode(QR, 60)])
    r = await api.post("/api/sessions/provision", **kw)
    assert r.status_code == 201, r.text
    assert r.json()["id"].startswith("s-")


@pytest.mark.parametrize("bad", ["abc%0A", "abc%0D", "a%0Ab", "%20a"])
async def test_a_session_id_must_match_in_full(api: httpx.AsyncClient, bad: str) -> None:
    assert _error(await api.get(f"/api/sessions/{bad}/status"), 422)["field"] == "id"


async def test_double_dots_inside_an_id_are_allowed(
    api: httpx.AsyncClient, engine: ScriptedEngine
) -> None:
    engine.add([QRCode(QR, 60)])
    r = await api.post("/api/sessions/provision", json={"id": "a..b"})
    assert r.status_code == 201, r.text
    assert (await api.get("/api/sessions/a..b/status")).json()["id"] == "a..b"


@pytest.mark.parametrize("proxy", ["socks5h://h:0", "socks5h://h:65536", "socks5h://u:p@h:0"])
async def test_a_proxy_port_must_be_1_to_65535(api: httpx.AsyncClient, proxy: str) -> None:
    error = _error(await api.post("/api/sessions/provision", json={"proxy": proxy}), 422)
    assert error["field"] == "proxy"
