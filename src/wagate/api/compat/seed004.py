"""Seed 004's ``POST /webhook``: a session process's signed events.

Not behind the API key: the signature (``WEBHOOK_SECRET``, see
:mod:`wagate.webhooks.seed004_signing`) is the credential. The body is seed
004's ``{type, data}`` with the session named beside them::

    {"type": "CONNECTED", "sessionId": "sales-1", "data": {"phoneNumber": "6281234567890"}}
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, Request
from pydantic import BaseModel, ConfigDict, Field, field_validator

from wagate.api.compat.body import parse_json, validate_at
from wagate.api.deps import Reports
from wagate.api.message_body import read_limited
from wagate.control.session_reports import SessionReports
from wagate.domain.reports import EventType
from wagate.ids import SESSION_ID_PATTERN

router = APIRouter(tags=["seed 004 worker events"])

MAX_EVENT_BYTES = 64 * 1024
_TEXT = 1000
_LAST_MS = 253_402_300_799_999  # 9999-12-31T23:59:59.999Z


class _In(BaseModel):
    model_config = ConfigDict(extra="ignore")


class EventIn(_In):
    type: EventType
    sessionId: str = Field(pattern=SESSION_ID_PATTERN)
    data: dict[str, Any]


class QrCode(_In):
    qr: str = Field(min_length=1, max_length=4096)


class Connected(_In):
    phoneNumber: str = Field(min_length=1, max_length=64)


class Disconnected(_In):
    reason: str = Field(max_length=_TEXT)
    code: Any = Field(None, description="a disconnect kind's name, Baileys' number, or null")

    @field_validator("code")
    @classmethod
    def _code(cls, value: Any) -> int | str | None:
        if value is None or (isinstance(value, int) and not isinstance(value, bool)):
            return value
        if isinstance(value, str) and len(value) <= 64:
            return value
        raise ValueError("code must be a number, a name (at most 64 characters) or null")


class Ping(_In):
    timestamp: int = Field(ge=0, le=_LAST_MS, description="epoch milliseconds")


class ProxyError(_In):
    error: str = Field(max_length=_TEXT)


class AuthFailure(_In):
    reason: str = Field(max_length=_TEXT)


_DOC = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {
                "schema": EventIn.model_json_schema(),
                "example": {"type": "QR_CODE", "sessionId": "sales-1", "data": {"qr": "2@…"}},
            }
        },
    }
}


@router.post(
    "/webhook",
    summary="A session process's signed event (QR_CODE, CONNECTED, DISCONNECTED, PING, …)",
    openapi_extra=_DOC,
)
async def receive(request: Request, reports: Reports) -> dict[str, bool]:
    body = await read_limited(request, MAX_EVENT_BYTES)
    async with reports.signed_event(request.headers, body) as signed_at:
        await _apply(reports, validate_at(EventIn, parse_json(body)), signed_at)
    return {"success": True}


async def _apply(reports: SessionReports, event: EventIn, at: datetime) -> None:
    """``at``: when the event was signed (a PING carries its own time)."""
    sid, data = event.sessionId, event.data
    match event.type:
        case EventType.QR_CODE:
            await reports.qr_code(sid, validate_at(QrCode, data, "data").qr, at)
        case EventType.CONNECTED:
            await reports.connected(sid, validate_at(Connected, data, "data").phoneNumber, at)
        case EventType.DISCONNECTED:
            lost = validate_at(Disconnected, data, "data")
            await reports.disconnected(sid, lost.reason, lost.code, at)
        case EventType.PING:
            ms = validate_at(Ping, data, "data").timestamp
            await reports.ping(sid, datetime.fromtimestamp(ms / 1000, UTC))
        case EventType.PROXY_ERROR:
            await reports.proxy_error(sid, validate_at(ProxyError, data, "data").error, at)
        case EventType.AUTH_FAILURE:
            await reports.auth_failure(sid, validate_at(AuthFailure, data, "data").reason, at)
