"""Group discovery, monitor toggles, runtime flags and the media download, over the API."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx

from tests.ingest.conftest import GroupsEngine
from wagate.domain.flag import EVERY_SESSION, Flag
from wagate.domain.group import GroupInfo
from wagate.domain.message import MediaRef, MessageKind
from wagate.engine.base import GroupEvent, MessageEvent, QRCode
from wagate.roles.serve import Gateway
from wagate.testing import ScriptedLink, connected, eventually

TEAM, SALES = "111@g.us", "222@g.us"


async def _link(
    api: httpx.AsyncClient, engine: GroupsEngine, groups: list[GroupInfo]
) -> ScriptedLink:
    engine.groups = groups  # the account's groups before it connects: the first discovery
    engine.add([connected("6281234567890")])
    await api.post("/api/sessions/provision", json={"id": "g1"})
    await eventually(lambda: bool(engine.links))
    return engine.links[0]


async def _groups(api: httpx.AsyncClient) -> dict[str, Any]:
    body = (await api.get("/api/sessions/g1/groups")).json()
    return {g["waGroupId"]: g for g in body["groups"]}


async def _audit(api: httpx.AsyncClient, event: str) -> list[dict[str, Any]]:
    r = await api.get("/api/sessions/g1/audit", params={"event": event})
    return list(r.json()["entries"])


async def _audit_n(api: httpx.AsyncClient, event: str, n: int) -> bool:
    return len(await _audit(api, event)) >= n


async def _until(check: Any, tries: int = 400) -> Any:
    for _ in range(tries):
        found = await check()
        if found:
            return found
        await asyncio.sleep(0.01)
    raise AssertionError("condition not met")


async def test_discovery_on_connect_and_on_request_keeps_monitor(
    api: httpx.AsyncClient, engine: GroupsEngine, gateway: Gateway
) -> None:
    link = await _link(api, engine, [GroupInfo(TEAM, "Team", 5), GroupInfo(SALES, "Sales", 9)])
    await _until(lambda: _audit(api, "discovery"))  # the whole pass, not its first group
    found = await _groups(api)
    assert set(found) == {TEAM, SALES}
    assert found[TEAM]["name"] == "Team" and found[TEAM]["monitor"] is False
    assert (await _audit(api, "discovery"))[0]["data"] == {"count": 2}

    r = await api.patch(f"/api/sessions/g1/groups/{TEAM}", json={"monitor": True})
    assert r.status_code == 200 and r.json()["monitor"] is True

    link.group_list = [GroupInfo(TEAM, "Team HQ", 6), GroupInfo(SALES, "Sales", 9)]
    r = await api.post("/api/sessions/g1/fetch-groups-now")
    assert r.status_code == 202 and r.json()["flag"] == "fetch_groups_requested"
    await gateway.flag_watcher.poll()
    await _until(lambda: _audit_n(api, "discovery", 2))
    found = await _groups(api)
    assert found[TEAM]["name"] == "Team HQ" and found[TEAM]["monitor"] is True  # kept
    renames = await _audit(api, "group_rename")
    assert renames[0]["data"] == {"from": "Team", "to": "Team HQ", "wa_group_id": TEAM}
    assert len(await _audit(api, "discovery")) == 2
    assert await gateway.flag_watcher.poll() == 0  # handled once per request


async def test_passes_that_overlap_record_a_rename_once(
    api: httpx.AsyncClient, engine: GroupsEngine, gateway: Gateway
) -> None:
    link = await _link(api, engine, [GroupInfo(TEAM, "Team", 5)])
    await _until(lambda: _audit(api, "discovery"))
    link.group_list = [GroupInfo(TEAM, "Team HQ", 6)]
    await asyncio.gather(*(gateway.ingest.discover("g1") for _ in range(4)))
    renames = await _audit(api, "group_rename")
    assert [r["data"]["to"] for r in renames] == ["Team HQ"]


async def test_live_group_events_upsert(api: httpx.AsyncClient, engine: GroupsEngine) -> None:
    link = await _link(api, engine, [])
    await _until(lambda: _audit(api, "discovery"))
    link.push(GroupEvent("333@g.us", "New group", "created"))
    found = await _until(lambda: _groups(api))
    assert found["333@g.us"]["name"] == "New group"


async def test_unknown_group_and_flag_are_clear_errors(
    api: httpx.AsyncClient, engine: GroupsEngine
) -> None:
    await _link(api, engine, [])
    r = await api.patch("/api/sessions/g1/groups/404@g.us", json={"monitor": True})
    assert r.status_code == 404
    r = await api.patch(f"/api/sessions/g1/groups/{TEAM}", json={"monitor": "maybe"})
    assert r.status_code == 422 and r.json()["error"]["field"] == "monitor"
    r = await api.post("/api/sessions/g1/flags/reboot_requested")
    assert r.status_code == 422 and "unknown flag" in r.json()["error"]["message"]
    assert (await api.post("/api/sessions/nope/fetch-groups-now")).status_code == 404


async def test_disconnect_flag_logs_out_and_clears(
    api: httpx.AsyncClient, engine: GroupsEngine, gateway: Gateway
) -> None:
    link = await _link(api, engine, [])
    await _until(lambda: _audit(api, "connect"))
    await gateway.worker.auth("g1").save("creds", {"x": 1})
    await gateway.flags.set(EVERY_SESSION, Flag.DISCONNECT)  # seed 003 writes it so
    assert await gateway.flag_watcher.poll() == 1
    assert link.logged_out
    status = (await api.get("/api/sessions/g1/status")).json()
    assert status["status"] == "disconnected" and status["isConnected"] is False
    assert (await gateway.worker.auth("g1").load("creds")) is None
    assert await gateway.flags.count() == 0
    assert len(await _audit(api, "disconnect")) == 1


async def test_refresh_qr_flag_restarts_a_waiting_session(
    api: httpx.AsyncClient, engine: GroupsEngine, gateway: Gateway
) -> None:
    engine.add([QRCode("2@one,a,b,c", 60)], [QRCode("2@two,a,b,c", 60)])
    await api.post("/api/sessions/provision", json={"id": "q"})
    await _until(lambda: _has_qr(api, "q", "2@one,a,b,c"))
    await api.post("/api/sessions/q/flags/wa_refresh_qr_requested")
    assert await gateway.flag_watcher.poll() == 1
    await _until(lambda: _has_qr(api, "q", "2@two,a,b,c"))
    assert await gateway.flags.count() == 0


async def _has_qr(api: httpx.AsyncClient, sid: str, code: str) -> bool:
    r = await api.get(f"/api/sessions/{sid}/qr")
    return r.status_code == 200 and r.json()["qr"] == code


async def test_media_api_streams_the_stored_object(
    api: httpx.AsyncClient, engine: GroupsEngine, gateway: Gateway
) -> None:
    link = await _link(api, engine, [])
    await _until(lambda: _audit(api, "connect"))
    data = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 100
    link.blobs["b1"] = data
    ref = MediaRef(MessageKind.IMAGE, "image/png", len(data), handle={"blob": "b1"})
    link.push(
        MessageEvent(
            "IMG",
            "6289999999999@s.whatsapp.net",
            "6289999999999@s.whatsapp.net",
            gateway.clock.now(),
            MessageKind.IMAGE,
            media=ref,
        )
    )

    async def stored() -> Any:
        m = await gateway.messages.by_wa_id("g1", "IMG")
        return m if m is not None and m.media_id is not None else None

    message = await _until(stored)
    r = await api.get(f"/api/media/{message.media_id}")
    assert r.status_code == 200 and r.content == data
    assert r.headers["content-type"] == "image/png"
    assert (await api.get("/api/media/99999")).status_code == 404
    assert (await api.get("/api/media/abc")).status_code == 422
    counts = (await api.get("/api/sessions/g1/ingest")).json()["counts"]
    assert counts["stored"] == 1 and counts["media_stored"] == 1
