"""At most MAX_SESSIONS_PER_PHONE sessions per phone (seed 004: 4, WhatsApp's companion
devices), even when provisions race past the check."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from wagate.engine.base import QRCode
from wagate.settings import Settings
from wagate.testing import ScriptedEngine

from ..conftest import ClientFactory, GatewayFactory

QR = "2@ref,noise,identity,adv"


@pytest.fixture
async def one_per_phone(
    gateways: GatewayFactory, api_clients: ClientFactory, settings: Settings, engine: ScriptedEngine
) -> httpx.AsyncClient:
    given = settings.model_copy(update={"max_sessions_per_phone": 1})
    return await api_clients(await gateways(given, engine=engine))


async def test_concurrent_provisions_of_one_phone_register_it_once(
    one_per_phone: httpx.AsyncClient, engine: ScriptedEngine
) -> None:
    api = one_per_phone
    engine.add(*[[QRCode(QR, 60)] for _ in range(5)])
    answers = await asyncio.gather(
        *[
            api.post("/api/sessions/provision", json={"id": f"p{i}", "phone": "+6281234567890"})
            for i in range(5)
        ]
    )
    statuses = sorted(r.status_code for r in answers)
    assert statuses == [201, 409, 409, 409, 409], [r.text for r in answers]
    winner = next(r.json()["id"] for r in answers if r.status_code == 201)
    for r in answers:
        if r.status_code == 409:
            assert r.json()["error"] == {
                "code": "phone_registered",
                "message": f"phone +6281234567890 is already registered to session {winner!r}",
            }
    listed = (await api.get("/api/sessions")).json()
    assert [s["id"] for s in listed["sessions"]] == [winner]


async def test_a_deleted_sessions_phone_can_be_provisioned_again(
    api: httpx.AsyncClient, engine: ScriptedEngine
) -> None:
    engine.add([QRCode(QR, 60)], [QRCode(QR, 60)])
    body = {"id": "first", "phone": "+6281234567890"}
    assert (await api.post("/api/sessions/provision", json=body)).status_code == 201
    assert (await api.delete("/api/sessions/first")).status_code == 200
    body["id"] = "second"
    assert (await api.post("/api/sessions/provision", json=body)).status_code == 201


async def test_a_phone_takes_up_to_four_sessions_by_default_even_when_they_race(
    api: httpx.AsyncClient, engine: ScriptedEngine
) -> None:
    engine.add(*[[QRCode(QR, 60)] for _ in range(6)])
    answers = await asyncio.gather(
        *[
            api.post("/api/sessions/provision", json={"id": f"p{i}", "phone": "+6281234567890"})
            for i in range(6)
        ]
    )
    statuses = sorted(r.status_code for r in answers)
    assert statuses == [201, 201, 201, 201, 409, 409], [r.text for r in answers]
    refused = next(r.json()["error"] for r in answers if r.status_code == 409)
    assert refused["code"] == "phone_registered"
    assert "MAX_SESSIONS_PER_PHONE is 4" in refused["message"]
    listed = (await api.get("/api/sessions")).json()["sessions"]
    assert len(listed) == 4
