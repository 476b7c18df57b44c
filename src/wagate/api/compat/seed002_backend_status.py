"""Seed 002's ``POST /api/webhooks/session-status``: a worker reports a session's status.

Not behind the API key: the worker's ``Authorization: Bearer <WORKER_AUTH_TOKEN>``
is the credential. The body is seed 002's::

    {"sessionId": "user123-personal", "status": "connected",
     "phoneNumber": "+6281234567890", "qrCode": "data:image/png;base64,…",
     "timestamp": "2024-01-15T10:30:00Z"}
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, ConfigDict, Field

from wagate.api.compat.body import parse_json, validate_at
from wagate.api.deps import Reports
from wagate.api.message_body import read_limited
from wagate.domain.reports import SEED_002_REPORTED
from wagate.ids import SESSION_ID_PATTERN

router = APIRouter(tags=["seed 002 backend"])

# a QR drawn as a PNG data URL is a few kilobytes; leave room
MAX_STATUS_BYTES = 512 * 1024

_bearer = HTTPBearer(auto_error=False)


class StatusIn(BaseModel):
    model_config = ConfigDict(extra="ignore")

    sessionId: str = Field(pattern=SESSION_ID_PATTERN)
    status: str = Field(max_length=32, description=" | ".join(SEED_002_REPORTED))
    phoneNumber: str | None = Field(None, max_length=64)
    # shown by the worker's own API; the record keeps WhatsApp's QR text, which a PNG is not
    qrCode: str | None = None
    timestamp: datetime


_DOC = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {
                "schema": StatusIn.model_json_schema(),
                "example": {
                    "sessionId": "user123-personal",
                    "status": "connected",
                    "phoneNumber": "+6281234567890",
                    "timestamp": "2024-01-15T10:30:00Z",
                },
            }
        },
    }
}


@router.post(
    "/api/webhooks/session-status",
    summary="A worker's report of a session's status (Bearer WORKER_AUTH_TOKEN)",
    openapi_extra=_DOC,
)
async def session_status(
    request: Request,
    reports: Reports,
    bearer: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> dict[str, bool]:
    reports.check_worker_token(bearer.credentials if bearer else None)
    body = validate_at(StatusIn, parse_json(await read_limited(request, MAX_STATUS_BYTES)))
    at = body.timestamp if body.timestamp.tzinfo else body.timestamp.replace(tzinfo=UTC)
    await reports.status(body.sessionId, body.status, body.phoneNumber, at)
    return {"success": True}
