"""``/api/webhooks``: subscriptions, the delivery log and replay, through the HTTP API."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import timedelta
from types import SimpleNamespace
from typing import Any

import httpx
import pytest
from fastapi import Depends, FastAPI

from wagate.api import errors
from wagate.api.deps import require_key
from wagate.api.routes import webhooks as routes
from wagate.settings import Settings
from wagate.testing import until
from wagate.webhooks.events import Event

from .conftest import Hooks, HooksFactory, Receiver, Reply

Client = Callable[..., Awaitable[httpx.AsyncClient]]
PUBLIC = "http://93.184.216.34/hook"  # an IP literal: checked without DNS


@pytest.fixture
async def client(make_hooks: HooksFactory, hook_settings: Settings) -> AsyncIterator[Client]:
    """An API client over the webhook routes alone, made with the given settings overrides."""
    clients: list[httpx.AsyncClient] = []

    async def make(dispatch: bool = False, **overrides: Any) -> httpx.AsyncClient:
        settings = hook_settings.model_copy(update=overrides)
        hooks = await make_hooks(dispatch=dispatch, settings=settings)
        app = FastAPI()
        errors.install(app)
        # the routes see only the services façade (``api/deps.py``): here, just its webhooks
        app.state.services = SimpleNamespace(webhooks=hooks.admin)
        app.state.api_key = "test-key"
        app.include_router(routes.router, dependencies=[Depends(require_key)])
        c = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app),
            base_url="http://gw",
            headers={"X-Api-Key": "test-key"},
        )
        c.hooks = hooks  # type: ignore[attr-defined]
        clients.append(c)
        return c

    yield make
    for c in clients:
        await c.aclose()


def hooks_of(c: httpx.AsyncClient) -> Hooks:
    hooks: Hooks = c.hooks  # type: ignore[attr-defined]
    return hooks


async def create(c: httpx.AsyncClient, **body: Any) -> dict[str, Any]:
    response = await c.post("/api/webhooks", json={"url": PUBLIC, "events": ["*"], **body})
    assert response.status_code == 201, response.text
    data: dict[str, Any] = response.json()
    return data


def field_error(response: httpx.Response, status: int = 422) -> str:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["success"] is False
    field: str = body["error"].get("field", "")
    return field


# --- subscriptions ---------------------------------------------------------------------


async def test_a_generated_secret_is_shown_once(client: Client) -> None:
    c = await client()
    created = await create(c, description="CRM")
    assert created["secret"].startswith("whsec_") and created["hasSecret"] is True
    assert created["id"].startswith("wh_") and created["sessionId"] is None
    stored = await hooks_of(c).subscriptions.get(created["id"])
    assert stored is not None and stored.secret == created["secret"]
    shown = (await c.get(f"/api/webhooks/{created['id']}")).json()
    listed = (await c.get("/api/webhooks")).json()
    assert "secret" not in shown and shown["hasSecret"] is True
    assert listed["total"] == 1 and "secret" not in listed["webhooks"][0]
    assert created["secret"] not in (await c.get("/api/webhooks")).text


async def test_a_given_or_configured_secret_is_not_echoed(client: Client) -> None:
    c = await client()
    given = await create(c, secret="my-own-secret")
    assert given["secret"] is None
    c2 = await client(webhook_secret="seed-004-secret")
    configured = await create(c2)
    assert configured["secret"] is None
    stored = await hooks_of(c2).subscriptions.get(configured["id"])
    assert stored is not None and stored.secret == "seed-004-secret"


async def test_headers_are_shown_masked(client: Client) -> None:
    c = await client()
    created = await create(c, headers={"Authorization": "Bearer t0ken"}, sessionId="s1")
    assert created["headers"] == {"Authorization": "***"}
    assert created["sessionId"] == "s1"
    assert "t0ken" not in (await c.get("/api/webhooks")).text


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"url": "ftp://example.com/x"}, "url"),
        ({"url": "not a url"}, "url"),
        ({"url": "http://127.0.0.1:8080/hook"}, "url"),
        ({"url": "http://169.254.169.254/latest/meta-data"}, "url"),
        ({"url": "http://[::1]/hook"}, "url"),
        ({"url": "http://10.0.0.7/hook"}, "url"),
        ({"events": ["message.recieved"]}, "events"),
        ({"events": []}, "events"),
        ({"events": "message.received"}, "events"),
        ({"secret": "short"}, "secret"),
        ({"sessionId": "../etc"}, "sessionId"),
        ({"headers": {"Content-Type": "text/plain"}}, "headers"),
        ({"headers": {"X-Wagate-Signature": "v1=forged"}}, "headers"),
        ({"headers": {"Bad Name": "x"}}, "headers"),
        ({"headers": {"X-Ok": "line\r\nInjected: 1"}}, "headers"),
        ({"colour": "blue"}, "colour"),
    ],
)
async def test_bad_input_is_a_422_naming_the_field(
    client: Client, body: dict[str, Any], field: str
) -> None:
    c = await client(allow_private_urls=False)
    response = await c.post("/api/webhooks", json={"url": PUBLIC, "events": ["*"], **body})
    assert field_error(response) == field
    assert (await c.get("/api/webhooks")).json()["total"] == 0


async def test_a_missing_field_and_a_non_json_body_are_422(client: Client) -> None:
    c = await client()
    assert field_error(await c.post("/api/webhooks", json={"url": PUBLIC})) == "events"
    response = await c.post("/api/webhooks", content=b"{", headers={"Content-Type": "x/json"})
    assert response.status_code == 422


async def test_unknown_ids_are_404(client: Client) -> None:
    c = await client()
    for response in (
        await c.get("/api/webhooks/wh_nope"),
        await c.patch("/api/webhooks/wh_nope", json={"enabled": False}),
        await c.delete("/api/webhooks/wh_nope"),
        await c.get("/api/webhooks/deliveries/999"),
        await c.post("/api/webhooks/deliveries/999/replay"),
        await c.post("/api/webhooks/deliveries/replay-dead", json={"subscriptionId": "wh_x"}),
    ):
        assert response.status_code == 404, response.text
        assert response.json()["error"]["code"] == "not_found"
    assert field_error(await c.get("/api/webhooks/deliveries/abc")) == "delivery_id"


async def test_the_key_is_required(client: Client) -> None:
    c = await client()
    assert (await c.get("/api/webhooks", headers={"X-Api-Key": "wrong"})).status_code == 401


async def test_patch_changes_only_what_it_names(client: Client) -> None:
    c = await client()
    created = await create(c, headers={"X-A": "1"}, description="before")
    url = f"/api/webhooks/{created['id']}"
    patched = (await c.patch(url, json={"enabled": False, "events": ["session.status"]})).json()
    assert (patched["enabled"], patched["events"]) == (False, ["session.status"])
    assert (patched["description"], patched["headers"], patched["secret"]) == (
        "before",
        {"X-A": "***"},
        None,
    )
    moved = (await c.patch(url, json={"url": "http://93.184.216.35/new", "sessionId": "s9"})).json()
    assert (moved["url"], moved["sessionId"]) == ("http://93.184.216.35/new", "s9")
    back = (await c.patch(url, json={"sessionId": None, "headers": {}})).json()
    assert (back["sessionId"], back["headers"]) == (None, {})
    await c.patch(url, json={"sessionId": "s9"})
    assert (await c.patch(url, json={"sessionId": ""})).json()["sessionId"] is None


async def test_patch_rotates_or_sets_the_secret(client: Client) -> None:
    c = await client()
    created = await create(c)
    url = f"/api/webhooks/{created['id']}"
    rotated = (await c.patch(url, json={"rotateSecret": True})).json()
    assert rotated["secret"].startswith("whsec_") and rotated["secret"] != created["secret"]
    assert (await c.patch(url, json={"secret": "chosen-secret"})).json()["secret"] is None
    stored = await hooks_of(c).subscriptions.get(created["id"])
    assert stored is not None and stored.secret == "chosen-secret"
    both = {"secret": "chosen-secret-2", "rotateSecret": True}
    assert field_error(await c.patch(url, json=both)) == "secret"


async def test_patch_refuses_bad_values(client: Client) -> None:
    c = await client(allow_private_urls=False)
    url = f"/api/webhooks/{(await create(c))['id']}"
    assert field_error(await c.patch(url, json={"url": None})) == "url"
    assert field_error(await c.patch(url, json={"url": "http://127.0.0.1/x"})) == "url"
    assert field_error(await c.patch(url, json={"events": ["nope"]})) == "events"
    assert field_error(await c.patch(url, json={"enabled": "maybe"})) == "enabled"


async def test_delete_removes_the_subscription_and_its_log(client: Client) -> None:
    c = await client()
    created = await create(c)
    await hooks_of(c).emit(Event.MESSAGE_RECEIVED, "s1", {})
    response = await c.delete(f"/api/webhooks/{created['id']}")
    assert response.json() == {"success": True, "id": created["id"]}
    assert (await c.get(f"/api/webhooks/{created['id']}")).status_code == 404
    assert (await c.get("/api/webhooks/deliveries")).json()["deliveries"] == []


# --- the delivery log ---------------------------------------------------------------------


async def log_with_history(c: httpx.AsyncClient) -> tuple[str, str]:
    """Two subscriptions and five deliveries: three for ``a`` (one dead), two for ``b``."""
    a = (await create(c, sessionId="s1"))["id"]
    b = (await create(c, events=["session.status"]))["id"]
    hooks = hooks_of(c)
    await hooks.emit(Event.MESSAGE_RECEIVED, "s1", {"n": 1})
    await hooks.emit(Event.SESSION_STATUS, "s1", {"status": "connected"})
    await hooks.emit(Event.SESSION_STATUS, "s2", {"status": "qr"})
    first = (await hooks_of(c).deliveries.find(subscription_id=a))[-1]
    claim = (await hooks_of(c).deliveries.claim_due(1, timedelta(minutes=1)))[0]
    assert claim.delivery.id == first.id
    await hooks_of(c).deliveries.dead(claim.delivery, 410, "HTTP 410: gone")
    return a, b


async def test_the_log_filters_and_pages(client: Client) -> None:
    c = await client()
    a, b = await log_with_history(c)

    async def ids(**params: Any) -> list[int]:
        page = (await c.get("/api/webhooks/deliveries", params=params)).json()
        return [d["id"] for d in page["deliveries"]]

    everything = await ids()
    assert len(everything) == 4 and everything == sorted(everything, reverse=True)
    assert len(await ids(subscriptionId=a)) == 2
    assert len(await ids(subscriptionId=b)) == 2
    assert len(await ids(event="session.status")) == 3
    assert len(await ids(sessionId="s2")) == 1
    assert len(await ids(status="dead")) == 1
    assert len(await ids(status="pending", subscriptionId=a)) == 1

    page = (await c.get("/api/webhooks/deliveries", params={"limit": 3})).json()
    assert [d["id"] for d in page["deliveries"]] == everything[:3]
    rest = await ids(limit=3, before=page["next"])
    assert rest == everything[3:]
    assert field_error(await c.get("/api/webhooks/deliveries?status=lost")) == "status"
    assert field_error(await c.get("/api/webhooks/deliveries?event=nope")) == "event"
    assert field_error(await c.get("/api/webhooks/deliveries?limit=0")) == "limit"


async def test_one_delivery_shows_its_payload_and_outcome(client: Client) -> None:
    c = await client()
    await log_with_history(c)
    (dead,) = (await c.get("/api/webhooks/deliveries?status=dead")).json()["deliveries"]
    assert "payload" not in dead
    detail = (await c.get(f"/api/webhooks/deliveries/{dead['id']}")).json()
    assert (detail["status"], detail["lastStatus"], detail["lastError"]) == (
        "dead",
        410,
        "HTTP 410: gone",
    )
    assert detail["nextAttemptAt"] is None and detail["attempts"] == 1
    assert detail["payload"]["event"] == "message.received"
    assert detail["payload"]["data"] == {"n": 1}


async def test_replay_makes_it_pending_again_and_refuses_pending_ones(client: Client) -> None:
    c = await client()
    await log_with_history(c)
    (dead,) = (await c.get("/api/webhooks/deliveries?status=dead")).json()["deliveries"]
    replayed = (await c.post(f"/api/webhooks/deliveries/{dead['id']}/replay")).json()
    assert (replayed["status"], replayed["attempts"]) == ("pending", 0)
    assert replayed["nextAttemptAt"] is not None
    again = await c.post(f"/api/webhooks/deliveries/{dead['id']}/replay")
    assert again.status_code == 409 and again.json()["error"]["code"] == "conflict"


async def test_replay_dead_for_one_subscription_or_all(client: Client) -> None:
    c = await client()
    a, b = await log_with_history(c)
    url = "/api/webhooks/deliveries/replay-dead"
    assert (await c.post(url, json={"subscriptionId": b})).json()["replayed"] == 0
    assert (await c.post(url, params={"subscriptionId": a})).json()["replayed"] == 1
    assert (await c.post(url)).json()["replayed"] == 0
    log = await c.get("/api/webhooks/deliveries", params={"status": "dead"})
    assert log.json()["deliveries"] == []


async def test_replay_dead_delivers_them_for_real(client: Client, receiver: Receiver) -> None:
    receiver.default = Reply(410, body=b"gone")
    c = await client(dispatch=True)
    created = await create(c, url=receiver.url)
    for n in range(2):
        await hooks_of(c).emit(Event.MESSAGE_SENT, "s1", {"n": n})

    async def counts(status: str, n: int) -> bool:
        return (await hooks_of(c).deliveries.counts())[status] == n

    await until(lambda: counts("dead", 2))
    receiver.default = Reply(200)
    response = await c.post(
        "/api/webhooks/deliveries/replay-dead", json={"subscriptionId": created["id"]}
    )
    assert response.json() == {"success": True, "replayed": 2}
    await until(lambda: counts("delivered", 2))
    assert len(receiver.requests) == 4
