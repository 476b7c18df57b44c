"""Webhook subscriptions and the delivery log under ``/api/webhooks``.

A subscription's secret appears once, in the response that created or
rotated it (when wagate generated it); afterwards only ``hasSecret``. Extra
headers are shown by name with their values masked: they often carry tokens.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query
from pydantic import BaseModel, Field

from wagate.api.deps import Webhooks
from wagate.api.params import RowId
from wagate.api.schemas import Strict
from wagate.domain.webhook import PENDING, Delivery, Subscription
from wagate.errors import InvalidInput
from wagate.webhooks.admin import MAX_URL, Saved

router = APIRouter(prefix="/api/webhooks", tags=["webhooks"])

MASK = "***"


Admin = Webhooks


# --- bodies ---------------------------------------------------------------------------


class WebhookIn(Strict):
    url: str = Field(max_length=MAX_URL, description="Where to POST events (http or https)")
    events: list[str] = Field(description='Event names to receive, or ["*"] for all')
    secret: str | None = Field(
        None, description="Signing secret; generated (and shown once) when absent"
    )
    sessionId: str | None = Field(None, description="Only this session's events; absent: all")
    headers: dict[str, str] | None = Field(None, description="Extra request headers")
    description: str | None = Field(None, max_length=1000)
    enabled: bool = True


class WebhookPatch(Strict):
    url: str | None = Field(None, max_length=MAX_URL)
    events: list[str] | None = None
    sessionId: str | None = Field(None, description="null: every session")
    headers: dict[str, str] | None = Field(None, description="Replaces the extra headers")
    description: str | None = Field(None, max_length=1000)
    enabled: bool | None = None
    secret: str | None = Field(None, description="Set this secret (not shown back)")
    rotateSecret: bool = Field(False, description="Generate a new secret, shown once")


class ReplayDeadIn(Strict):
    subscriptionId: str | None = None


class WebhookOut(BaseModel):
    id: str
    url: str
    events: list[str]
    sessionId: str | None
    headers: dict[str, str] = Field(description="Extra headers, values masked")
    enabled: bool
    description: str | None
    hasSecret: bool
    createdAt: datetime
    updatedAt: datetime

    @classmethod
    def of(cls, sub: Subscription) -> WebhookOut:
        return cls(
            id=sub.id,
            url=sub.url,
            events=sub.events,
            sessionId=sub.session_id,
            headers={name: MASK for name in sub.headers},
            enabled=sub.enabled,
            description=sub.description,
            hasSecret=bool(sub.secret),
            createdAt=sub.created_at,
            updatedAt=sub.updated_at,
        )


class WebhookSaved(WebhookOut):
    secret: str | None = Field(
        description="The secret wagate generated: shown now, never again (null otherwise)"
    )

    @classmethod
    def saved(cls, saved: Saved) -> WebhookSaved:
        out = WebhookOut.of(saved.subscription)
        return cls(**out.model_dump(), secret=saved.new_secret)


class DeliveryOut(BaseModel):
    id: int
    subscriptionId: str
    event: str
    sessionId: str | None
    status: str = Field(description="pending | delivered | dead")
    attempts: int
    nextAttemptAt: datetime | None = Field(description="When pending: the next try")
    lastAttemptAt: datetime | None
    lastStatus: int | None = Field(description="The receiver's last HTTP status")
    lastError: str | None
    createdAt: datetime
    deliveredAt: datetime | None

    @classmethod
    def fields_of(cls, d: Delivery) -> dict[str, Any]:
        return {
            "id": d.id,
            "subscriptionId": d.subscription_id,
            "event": d.event,
            "sessionId": d.session_id,
            "status": d.status,
            "attempts": d.attempts,
            "nextAttemptAt": d.next_attempt_at if d.status == PENDING else None,
            "lastAttemptAt": d.last_attempt_at,
            "lastStatus": d.last_status,
            "lastError": d.last_error,
            "createdAt": d.created_at,
            "deliveredAt": d.delivered_at,
        }

    @classmethod
    def of(cls, d: Delivery) -> DeliveryOut:
        return cls(**cls.fields_of(d))


class DeliveryDetail(DeliveryOut):
    payload: dict[str, Any] = Field(description="The envelope, exactly as sent")

    @classmethod
    def detail(cls, d: Delivery) -> DeliveryDetail:
        return cls(**cls.fields_of(d), payload=d.payload)


class DeliveryPage(BaseModel):
    deliveries: list[DeliveryOut]
    next: int | None = Field(description="Pass as `before` for the next (older) page")


# --- the delivery log (before /{webhook_id}, which would match "deliveries") --------------


@router.get("/deliveries", summary="The delivery log, newest first")
async def list_deliveries(
    admin: Admin,
    status: Literal["pending", "delivered", "dead"] | None = None,
    event: str | None = None,
    session_id: Annotated[str | None, Query(alias="sessionId")] = None,
    subscription_id: Annotated[str | None, Query(alias="subscriptionId")] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    before: Annotated[RowId | None, Query(description="Deliveries older than this id")] = None,
) -> DeliveryPage:
    found = await admin.deliveries(
        status=status,
        event=event,
        session_id=session_id,
        subscription_id=subscription_id,
        before_id=before,
        limit=limit,
    )
    return DeliveryPage(
        deliveries=[DeliveryOut.of(d) for d in found],
        next=found[-1].id if len(found) == limit else None,
    )


@router.post("/deliveries/replay-dead", summary="Send every dead delivery again")
async def replay_dead(
    admin: Admin,
    body: ReplayDeadIn | None = None,
    subscription_id: Annotated[str | None, Query(alias="subscriptionId")] = None,
) -> dict[str, Any]:
    target = (body.subscriptionId if body else None) or subscription_id
    return {"success": True, "replayed": await admin.replay_dead(target)}


@router.get("/deliveries/{delivery_id}", summary="One delivery, with its payload")
async def get_delivery(delivery_id: RowId, admin: Admin) -> DeliveryDetail:
    return DeliveryDetail.detail(await admin.delivery(delivery_id))


@router.post("/deliveries/{delivery_id}/replay", summary="Send a delivered or dead delivery again")
async def replay(delivery_id: RowId, admin: Admin) -> DeliveryOut:
    return DeliveryOut.of(await admin.replay(delivery_id))


# --- subscriptions ----------------------------------------------------------------------


@router.post("", status_code=201, summary="Subscribe a URL to events")
async def create(body: WebhookIn, admin: Admin) -> WebhookSaved:
    saved = await admin.create(
        url=body.url,
        events=body.events,
        secret=body.secret,
        session_id=body.sessionId,
        headers=body.headers,
        description=body.description,
        enabled=body.enabled,
    )
    return WebhookSaved.saved(saved)


@router.get("", summary="List subscriptions")
async def list_webhooks(
    admin: Admin, session_id: Annotated[str | None, Query(alias="sessionId")] = None
) -> dict[str, Any]:
    subs = await admin.find(session_id=session_id)
    return {"webhooks": [WebhookOut.of(s) for s in subs], "total": len(subs)}


@router.get("/{webhook_id}", summary="One subscription")
async def get_webhook(webhook_id: str, admin: Admin) -> WebhookOut:
    return WebhookOut.of(await admin.get(webhook_id))


_PATCH_COLUMNS = {
    "url": "url",
    "events": "events",
    "sessionId": "session_id",
    "headers": "headers",
    "description": "description",
    "enabled": "enabled",
}
_NOT_NULL = ("url", "events", "enabled")


@router.patch("/{webhook_id}", summary="Change, enable/disable, or rotate the secret")
async def update(webhook_id: str, body: WebhookPatch, admin: Admin) -> WebhookSaved:
    given = body.model_fields_set
    changes: dict[str, Any] = {}
    for name, column in _PATCH_COLUMNS.items():
        if name not in given:
            continue
        value = getattr(body, name)
        if value is None and name in _NOT_NULL:
            raise InvalidInput(name, f"{name} cannot be null")
        changes[column] = value
    saved = await admin.update(
        webhook_id, secret=body.secret, rotate_secret=body.rotateSecret, **changes
    )
    return WebhookSaved.saved(saved)


@router.delete("/{webhook_id}", summary="Delete a subscription and its delivery log")
async def delete(webhook_id: str, admin: Admin) -> dict[str, Any]:
    await admin.delete(webhook_id)
    return {"success": True, "id": webhook_id}
