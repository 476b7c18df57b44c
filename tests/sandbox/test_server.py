"""The sandbox as a real network service: websocket sessions and the HTTP control API."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sys

import httpx
import pytest
from starlette.applications import Starlette
from starlette.routing import Mount

from wagate.domain.session import DisconnectKind
from wagate.engine.base import Connected, Disconnected, LinkOptions, QRCode
from wagate.engine.sandbox import SandboxEngine
from wagate.errors import Conflict, InvalidInput, NotFound, TransientError, Unauthorized
from wagate.sandbox import SandboxControl, create_app, run_server
from wagate.storage.auth_state import MemoryAuthStore

PHONE = "15550001111"
NO_OPTIONS = LinkOptions()
TOKEN = "s3cret-token"


def asgi_client(app: Starlette, **headers: str) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://sandbox", headers=headers
    )


async def test_qr_rotation_then_timeout_over_a_real_websocket(served, watch, clock) -> None:
    engine = SandboxEngine(url=served.ws())
    async with engine.link(MemoryAuthStore("s1"), NO_OPTIONS) as link:
        events = watch(link)
        qrs = []
        for _ in range(6):
            qrs.append(await events.expect(QRCode))
            await clock.wait_for_sleepers()
            await clock.advance(qrs[-1].ttl_s)
        (ended,) = await events.rest()
    assert len({qr.code.split(",")[0] for qr in qrs}) == 6
    assert all(qr.code.startswith("2@") for qr in qrs)
    assert isinstance(ended, Disconnected) and ended.kind is DisconnectKind.QR_TIMEOUT


async def test_scan_through_the_control_api_links_a_websocket_session(network, served, watch):
    auth = MemoryAuthStore("s1")
    engine = SandboxEngine(url=served.ws(), client="gw-7")
    async with SandboxControl(served.base) as control, engine.link(auth, NO_OPTIONS) as link:
        events = watch(link)
        qr = await events.expect(QRCode)
        linked = await control.scan(qr.code, PHONE, push_name="Bob")
        connected = await events.expect(Connected)
        (conn,) = await control.connections()
        accounts = await control.accounts()
        stats = await control.stats()
    assert stats == {"connections": 1, "replacedStreams": 0}
    assert linked["jid"] == connected.jid == f"{PHONE}:1@s.whatsapp.net"
    assert connected.push_name == "Bob"
    assert conn["session"] == "s1" and conn["client"] == "gw-7" and conn["state"] == "connected"
    assert accounts[0]["phone"] == PHONE and len(accounts[0]["devices"]) == 1
    assert (await auth.load("creds"))["secret"] not in str(accounts), "no secret in API answers"
    async with engine.link(auth, NO_OPTIONS) as link:
        assert await watch(link).expect(Connected) == connected


@pytest.mark.parametrize(
    ("fault", "kind"),
    [("drop", DisconnectKind.CONNECTION_LOST), ("proxy_error", DisconnectKind.PROXY_ERROR)],
)
async def test_faults_over_a_websocket(fault, kind, network, served, watch) -> None:
    engine = SandboxEngine(url=served.ws())
    async with SandboxControl(served.base) as control:
        async with engine.link(MemoryAuthStore("s1"), NO_OPTIONS) as link:
            events = watch(link)
            await events.expect(QRCode)
            assert await control.fault(fault, session="s1") == 1
            (ended,) = await events.rest()
    assert isinstance(ended, Disconnected) and ended.kind is kind


async def test_an_outage_is_a_transient_error_on_connect(network, served) -> None:
    engine = SandboxEngine(url=served.ws())
    async with SandboxControl(served.base) as control:
        await control.outage(True)
        with pytest.raises(TransientError, match="outage"):
            async with engine.link(MemoryAuthStore("s1"), NO_OPTIONS):
                pass
        await control.outage(False)
    async with engine.link(MemoryAuthStore("s1"), NO_OPTIONS):
        pass


async def test_a_server_that_is_not_there_is_a_transient_error(closed_port: int) -> None:
    async with SandboxControl(f"http://127.0.0.1:{closed_port}") as control:
        with pytest.raises(TransientError):
            await control.accounts()


async def test_unknown_qr_is_a_404_with_a_message(network) -> None:
    async with asgi_client(create_app(network)) as http:
        response = await http.post("/control/scan", json={"qr": "2@gone,a,b,c", "phone": PHONE})
    assert response.status_code == 404
    assert response.json()["error"]["message"] == "unknown or expired QR code"
    control = SandboxControl("http://sandbox", transport=httpx.ASGITransport(create_app(network)))
    async with control:
        with pytest.raises(NotFound, match="unknown or expired QR code"):
            await control.scan("2@gone", PHONE)


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        ("/control/scan", {"phone": PHONE}, "qr"),
        ("/control/scan", {"qr": "2@x", "phone": "not a phone"}, "phone"),
        ("/control/scan", {"qr": "2@x", "phone": PHONE, "pushName": 5}, "pushName"),
        ("/control/scan", [1, 2], "body"),
        ("/control/pair", {}, "code"),
        ("/control/fault", {"kind": "meteor", "session": "s1"}, "kind"),
        ("/control/fault", {"kind": "slow", "session": "s1", "delayMs": "fast"}, "delayMs"),
        ("/control/fault", {"kind": "slow", "session": "s1", "delayMs": -5}, "delayMs"),
        ("/control/fault", {"kind": "drop"}, "session"),
        ("/control/unban", {"phone": None}, "phone"),
        ("/control/outage", {"down": "yes"}, "down"),
    ],
)
async def test_bad_fields_are_422_naming_the_field(path, body, field, network) -> None:
    async with asgi_client(create_app(network)) as http:
        response = await http.post(path, json=body)
    assert response.status_code == 422, response.text
    assert response.json()["error"]["field"] == field


async def test_malformed_json_is_422_not_500(network) -> None:
    async with asgi_client(create_app(network)) as http:
        response = await http.post("/control/scan", content=b"{oops")
        wrong_method = await http.get("/control/scan")
        missing = await http.get("/control/nothing")
    assert response.status_code == 422 and response.json()["error"]["field"] == "body"
    assert wrong_method.status_code == 405 and "error" in wrong_method.json()
    assert missing.status_code == 404 and "error" in missing.json()


async def test_control_errors_map_to_our_error_tree(network) -> None:
    transport = httpx.ASGITransport(create_app(network))
    async with SandboxControl("http://sandbox", transport=transport) as control:
        with pytest.raises(InvalidInput) as bad:
            await control.fault("meteor", session="s1")
        with pytest.raises(NotFound, match="no live connection"):
            await control.fault("drop", session="nobody")
    assert bad.value.field == "kind" and "unknown fault kind" in bad.value.message


async def test_scanning_with_a_banned_phone_is_409(engine, network, watch) -> None:
    transport = httpx.ASGITransport(create_app(network))
    async with engine.link(MemoryAuthStore("s1"), NO_OPTIONS) as link:
        events = watch(link)
        await network.scan((await events.expect(QRCode)).code, PHONE)
        await events.expect(Connected)
    async with SandboxControl("http://sandbox", transport=transport) as control:
        await control.fault("ban", phone=PHONE)
        async with engine.link(MemoryAuthStore("s2"), NO_OPTIONS) as link:
            qr = await watch(link).expect(QRCode)
            with pytest.raises(Conflict, match="banned"):
                await control.scan(qr.code, PHONE)
        await control.unban(PHONE)
        assert not (await control.accounts())[0]["banned"]


async def test_the_control_token_is_enforced(network) -> None:
    app = create_app(network, control_token=TOKEN)
    async with asgi_client(app) as http:
        assert (await http.get("/healthz")).json() == {"ok": True}
        nothing = await http.get("/control/accounts")
        wrong = await http.get("/control/accounts", headers={"X-Api-Key": "nope"})
        bearer = await http.get("/control/accounts", headers={"Authorization": f"Bearer {TOKEN}"})
        api_key = await http.get("/control/accounts", headers={"X-Api-Key": TOKEN})
        post = await http.post("/control/outage", json={"down": True})
    assert (nothing.status_code, wrong.status_code, post.status_code) == (401, 401, 401)
    assert nothing.json()["error"]["code"] == "unauthorized"
    assert (bearer.status_code, api_key.status_code) == (200, 200)
    assert not network.is_down
    transport = httpx.ASGITransport(app)
    async with SandboxControl("http://sandbox", transport=transport) as anonymous:
        with pytest.raises(Unauthorized):
            await anonymous.accounts()
    async with SandboxControl("http://sandbox", api_key=TOKEN, transport=transport) as keyed:
        assert await keyed.accounts() == []


async def test_the_app_mounts_under_a_prefix(network, serve_app, watch) -> None:
    gateway = Starlette(routes=[Mount("/sandbox", app=create_app(network, control_token=TOKEN))])
    served = await serve_app(gateway)
    engine = SandboxEngine(url=served.ws("/sandbox/ws"), key=TOKEN)
    control = SandboxControl(served.base + "/sandbox", api_key=TOKEN)
    async with control, engine.link(MemoryAuthStore("s1"), NO_OPTIONS) as link:
        events = watch(link)
        qr = await events.expect(QRCode)
        await control.scan(qr.code, PHONE)
        await events.expect(Connected)
        async with httpx.AsyncClient() as http:
            health = await http.get(served.base + "/sandbox/healthz")
    assert health.json() == {"ok": True}


async def test_run_server_serves_until_cancelled(network, watch) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    running = asyncio.create_task(run_server(network, "127.0.0.1", port, control_token=TOKEN))
    base = f"http://127.0.0.1:{port}"
    async with httpx.AsyncClient() as http:
        async with asyncio.timeout(5):
            while True:
                try:
                    if (await http.get(base + "/healthz")).status_code == 200:
                        break
                except httpx.TransportError:
                    await asyncio.sleep(0.01)
    engine = SandboxEngine(url=f"ws://127.0.0.1:{port}/ws", key=TOKEN)
    async with engine.link(MemoryAuthStore("s1"), NO_OPTIONS) as link:
        events = watch(link)
        await events.expect(QRCode)
        running.cancel()
        (ended,) = await events.rest()
    assert isinstance(ended, Disconnected) and ended.kind is DisconnectKind.CONNECTION_LOST
    with pytest.raises(asyncio.CancelledError):
        await running


_PEER = """
import asyncio, sys
from wagate.engine.base import LinkOptions
from wagate.engine.sandbox import SandboxEngine
from wagate.storage.auth_state import MemoryAuthStore

async def main():
    engine = SandboxEngine(url=sys.argv[1], key=sys.argv[2])
    async with engine.link(MemoryAuthStore("paused"), LinkOptions()) as link:
        async for event in link.events():
            print(type(event).__name__, flush=True)
            await asyncio.sleep(3600)

asyncio.run(main())
"""


async def _serving(network, **pings: float) -> tuple[asyncio.Task[None], int]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    running = asyncio.create_task(
        run_server(network, "127.0.0.1", port, control_token=TOKEN, **pings)
    )
    async with httpx.AsyncClient() as http, asyncio.timeout(10):
        while True:
            try:
                if (await http.get(f"http://127.0.0.1:{port}/healthz")).status_code == 200:
                    return running, port
            except httpx.TransportError:
                await asyncio.sleep(0.01)


@pytest.mark.timeout(60)
async def test_a_paused_peer_is_dropped_after_the_ping_timeout(network) -> None:
    """A process that stops answering (SIGSTOP) loses its connection, as WhatsApp drops it."""
    running, port = await _serving(network, ws_ping_interval_s=0.2, ws_ping_timeout_s=0.5)
    peer = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        _PEER,
        f"ws://127.0.0.1:{port}/ws",
        TOKEN,
        stdout=asyncio.subprocess.PIPE,
    )
    try:
        assert peer.stdout is not None
        first = await asyncio.wait_for(peer.stdout.readline(), 30)
        assert first.strip() == b"QRCode"
        assert len(await network.connections()) == 1
        os.kill(peer.pid, signal.SIGSTOP)
        async with asyncio.timeout(30):  # bounded: the drop comes after ~0.7 s
            await network.wait_connections(lambda live: not live)
        assert (await network.stats())["replacedStreams"] == 0
    finally:
        os.kill(peer.pid, signal.SIGCONT)
        peer.kill()
        await peer.communicate()
        running.cancel()
        with pytest.raises(asyncio.CancelledError):
            await running
