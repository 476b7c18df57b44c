"""What answers without a key: health and the API's description, nothing that acts or reveals."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from starlette.routing import Mount, Route, WebSocketRoute

from wagate.settings import Settings

from ..conftest import GatewayFactory

PUBLIC = {"/", "/health", "/healthz", "/docs", "/openapi.json", "/sandbox/healthz"}


@pytest.fixture
async def app(gateways: GatewayFactory) -> FastAPI:
    """The gateway with its in-process sandbox network (as ``wagate serve --engine sandbox``)."""
    gateway = await gateways()
    assert gateway.sandbox_network is not None
    return gateway.app()


def _every_route(app: FastAPI) -> list[tuple[str, set[str]]]:
    """The API's routes (from its schema) and everything else served: docs, the sandbox mount."""
    paths = app.openapi()["paths"]
    api = [(path, {m.upper() for m in methods}) for path, methods in paths.items()]
    return api + _routes(app.routes)


def _routes(routes: list[Any], prefix: str = "") -> list[tuple[str, set[str]]]:
    found: list[tuple[str, set[str]]] = []
    for route in routes:
        if isinstance(route, Mount):
            found += _routes(route.routes, prefix + route.path)
        elif isinstance(route, WebSocketRoute):
            found.append((prefix + route.path, {"WEBSOCKET"}))
        elif isinstance(route, Route):
            found.append((prefix + route.path, set(route.methods or ()) - {"HEAD"}))
    return found


def _concrete(path: str) -> str:
    return re.sub(r"\{([^}:]+)(:[^}]+)?\}", lambda m: "1" if "id" in m[1] else "x", path)


async def test_only_health_and_the_description_answer_without_a_key(app: FastAPI) -> None:
    transport = httpx.ASGITransport(app=app)
    opened = set()
    async with httpx.AsyncClient(transport=transport, base_url="http://gw") as anon:
        for path, methods in _every_route(app):
            for method in methods - {"WEBSOCKET"}:
                r = await anon.request(method, _concrete(path), json={})
                if r.status_code != 401:
                    opened.add(path)
    assert opened == PUBLIC
    assert len(_every_route(app)) > 40  # the walk saw the API and the sandbox mount


async def _ws(app: FastAPI, path: str, headers: dict[str, str]) -> list[dict[str, Any]]:
    """One websocket connection through the ASGI interface: what the app sent back."""
    inbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    await inbox.put({"type": "websocket.connect"})
    sent: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)
        if message["type"] == "websocket.accept":
            await inbox.put({"type": "websocket.disconnect", "code": 1000})

    scope = {
        "type": "websocket",
        "asgi": {"version": "3.0"},
        "scheme": "ws",
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": b"",
        "headers": [(k.lower().encode(), v.encode()) for k, v in headers.items()],
        "server": ("gw", 80),
        "client": ("127.0.0.1", 5000),
        "subprotocols": [],
    }
    await app(scope, inbox.get, send)
    return sent


@pytest.mark.parametrize(
    ("headers", "accepted"),
    [
        ({}, False),
        ({"X-Api-Key": "wrong"}, False),
        ({"X-Api-Key": "test-key"}, True),
        ({"Authorization": "Bearer test-key"}, True),
    ],
)
async def test_the_sandbox_websocket_needs_the_key(
    app: FastAPI, headers: dict[str, str], accepted: bool
) -> None:
    sent = await _ws(app, "/sandbox/ws", headers)
    assert sent[0]["type"] == ("websocket.accept" if accepted else "websocket.close")
    if not accepted:
        assert sent[0]["code"] == 1008


async def test_the_description_holds_no_secret(app: FastAPI, settings: Settings) -> None:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://gw") as anon:
        text = (await anon.get("/openapi.json")).text + (await anon.get("/docs")).text
    assert "test-key" not in text
    assert str(Path(settings.data_dir)) not in text
