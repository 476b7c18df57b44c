"""The sandbox network as a web service: a websocket for sessions, a control API for people.

Routes (relative, so the app can be mounted under a prefix such as ``/sandbox``)::

    WS   /ws                    sessions connect here (frames: wagate.sandbox.network)
    POST /control/scan          {"qr", "phone", "pushName"?}   a phone scans a QR
    POST /control/pair          {"code"}                        a phone confirms a pairing code
    POST /control/fault         {"kind", "session"?, "phone"?, "delayMs"?}
    POST /control/unban         {"phone"}
    POST /control/outage        {"down": bool}
    GET  /control/connections   live connections
    GET  /control/accounts      accounts and their linked devices (never secrets)
    GET  /healthz               {"ok": true}

plus the messaging routes of :mod:`wagate.sandbox.server_mail` (send as a
phone, read an inbox, mark read, groups, media blobs).

Errors are JSON, ``{"error": {"code", "message", "field"?}}``, with 401, 404,
409 or 422; never a 500 for bad input. With a ``control_token`` every route
but ``/healthz`` (the control API and the websocket alike) wants
``Authorization: Bearer <token>`` or ``X-Api-Key: <token>``; a websocket
without it is refused before the handshake (HTTP 403).
"""

from __future__ import annotations

import asyncio
import dataclasses
import hmac
import logging
import socket
from collections.abc import Awaitable, Callable

import uvicorn
from starlette.applications import Starlette
from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket

from wagate.errors import Conflict, InvalidInput, NotFound, Unauthorized, WagateError
from wagate.sandbox.bodies import Body, body_of, integer, optional, required
from wagate.sandbox.network import SandboxNetwork
from wagate.sandbox.server_mail import JSON_FIELDS, mail_routes
from wagate.sandbox.transport import StarletteChannel
from wagate.serving import Server

log = logging.getLogger(__name__)

Endpoint = Callable[[Request], Awaitable[Response]]

_STATUS: dict[type[WagateError], int] = {
    InvalidInput: 422,
    Unauthorized: 401,
    NotFound: 404,
    Conflict: 409,
}


# The network names fields as Python does; the control API's JSON spells some in camelCase.
_JSON_FIELDS = {"delay_ms": "delayMs", "push_name": "pushName", **JSON_FIELDS}


def _status_of(exc: WagateError) -> int:
    for kind, status in _STATUS.items():
        if isinstance(exc, kind):
            return status
    return 400


async def _wagate_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, WagateError)
    error: Body = {"code": exc.code, "message": exc.message}
    if isinstance(exc, InvalidInput):
        error["field"] = _JSON_FIELDS.get(exc.field, exc.field)
    return JSONResponse({"error": error}, status_code=_status_of(exc))


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    error = {"code": "http_error", "message": exc.detail}
    return JSONResponse({"error": error}, status_code=exc.status_code, headers=exc.headers)


class _Control:
    """The control endpoints over one network."""

    def __init__(self, network: SandboxNetwork) -> None:
        self.network = network

    async def scan(self, request: Request) -> Response:
        body = await body_of(request)
        push_name = optional(body, "pushName")
        linked = await self.network.scan(required(body, "qr"), required(body, "phone"), push_name)
        return JSONResponse({"ok": True, **linked})

    async def pair(self, request: Request) -> Response:
        code = required(await body_of(request), "code")
        return JSONResponse({"ok": True, **await self.network.pair(code)})

    async def fault(self, request: Request) -> Response:
        body = await body_of(request)
        affected = await self.network.fault(
            required(body, "kind"),
            session=optional(body, "session"),
            phone=optional(body, "phone"),
            delay_ms=integer(body, "delayMs", 500),
        )
        return JSONResponse({"ok": True, "affected": affected})

    async def unban(self, request: Request) -> Response:
        phone = required(await body_of(request), "phone")
        await self.network.unban(phone)
        return JSONResponse({"ok": True})

    async def outage(self, request: Request) -> Response:
        down = (await body_of(request)).get("down")
        if not isinstance(down, bool):
            raise InvalidInput("down", "down must be true or false")
        await self.network.set_outage(down)
        return JSONResponse({"ok": True, "down": down})

    async def connections(self, request: Request) -> Response:
        found = [dataclasses.asdict(info) for info in await self.network.connections()]
        return JSONResponse({"connections": found})

    async def stats(self, request: Request) -> Response:
        return JSONResponse(await self.network.stats())

    async def accounts(self, request: Request) -> Response:
        found = [dataclasses.asdict(info) for info in await self.network.accounts()]
        return JSONResponse({"accounts": found})


def _authorized(headers: Headers, token: str | None) -> bool:
    if token is None:
        return True
    bearer = headers.get("authorization", "")
    given = bearer[7:] if bearer[:7].lower() == "bearer " else headers.get("x-api-key")
    return given is not None and hmac.compare_digest(given.encode("utf-8"), token.encode("utf-8"))


def _guarded(endpoint: Endpoint, token: str | None) -> Endpoint:
    """Wrap a control endpoint so it needs the control token, when there is one."""
    if token is None:
        return endpoint

    async def guarded(request: Request) -> Response:
        if not _authorized(request.headers, token):
            raise Unauthorized("the sandbox control API needs a valid token")
        return await endpoint(request)

    return guarded


def create_app(network: SandboxNetwork, *, control_token: str | None = None) -> Starlette:
    """The sandbox server as an ASGI app; mountable under any prefix."""
    control = _Control(network)

    async def websocket(ws: WebSocket) -> None:
        if not _authorized(ws.headers, control_token):
            await ws.close(code=1008, reason="the sandbox needs a valid token")
            return
        await ws.accept()
        await network.serve(StarletteChannel(ws))

    async def healthz(request: Request) -> Response:
        return JSONResponse({"ok": True})

    post = {
        "scan": control.scan,
        "pair": control.pair,
        "fault": control.fault,
        "unban": control.unban,
        "outage": control.outage,
    }
    get = {
        "connections": control.connections,
        "accounts": control.accounts,
        "stats": control.stats,
    }

    def guard(endpoint: Endpoint) -> Endpoint:
        return _guarded(endpoint, control_token)

    routes: list[Route | WebSocketRoute] = [
        WebSocketRoute("/ws", websocket),
        Route("/healthz", healthz, methods=["GET"]),
    ]
    for methods, table in ((["POST"], post), (["GET"], get)):
        routes += [
            Route(f"/control/{name}", guard(endpoint), methods=methods)
            for name, endpoint in table.items()
        ]
    routes += mail_routes(network, guard)
    return Starlette(
        routes=routes,
        exception_handlers={WagateError: _wagate_error, HTTPException: _http_error},
    )


async def run_server(
    network: SandboxNetwork,
    host: str,
    port: int,
    control_token: str | None = None,
    sock: socket.socket | None = None,
    ws_ping_interval_s: float = 20.0,
    ws_ping_timeout_s: float = 20.0,
) -> None:
    """Serve the sandbox network until cancelled or signalled (``wagate sandbox``).

    ``sock``, when given, is already bound to host:port (the CLI binds it first, so a
    port in use is one clear line rather than uvicorn's exit).
    """
    config = uvicorn.Config(
        create_app(network, control_token=control_token),
        host=host,
        port=port,
        lifespan="off",
        log_level="info",
        ws_ping_interval=ws_ping_interval_s,
        ws_ping_timeout=ws_ping_timeout_s,
        timeout_graceful_shutdown=5,
    )
    server = Server(config)  # a signal ends serving; the network is then saved and closed
    log.info("sandbox network listening on ws://%s:%d/ws", host, port)
    sockets = [sock] if sock is not None else None
    serving = asyncio.create_task(server.serve(sockets=sockets), name="sandbox-server")
    try:
        # Shielded so that cancelling us becomes uvicorn's own orderly shutdown.
        await asyncio.shield(serving)
    except asyncio.CancelledError:
        server.should_exit = True
        await network.aclose()  # sessions see connection_lost now, not after the grace period
        await serving
        raise
    finally:
        await network.aclose()
