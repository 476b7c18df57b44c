"""Seed 002's worker endpoints, with its exact envelopes (``{"success": true, "data": …}``)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body

from wagate.api.deps import Sessions
from wagate.api.schemas import Seed002CreateIn, ok, phone_plus, qr_data_url
from wagate.domain.session import SEED_002, Session

router = APIRouter(prefix="/session", tags=["seed 002 worker API"])


def _last_activity(s: Session) -> str | None:
    at = s.last_activity_at or s.last_connected_at or s.updated_at
    return at.isoformat().replace("+00:00", "Z") if at else None


@router.post("/create", summary="Create a session record; does not connect")
async def create(
    service: Sessions, body: Annotated[Seed002CreateIn | None, Body()] = None
) -> dict[str, Any]:
    body = body or Seed002CreateIn()
    session = await service.create(
        body.sessionId, user_id=body.userId, session_name=body.sessionName
    )
    return ok(
        {
            "sessionId": session.id,
            "status": SEED_002[session.status],
            "message": "Session created successfully",
        }
    )


@router.post("/{session_id}/connect", summary="Connect; returns the QR as a PNG data URL")
async def connect(session_id: str, service: Sessions) -> dict[str, Any]:
    session = await service.connect(session_id)
    data: dict[str, Any] = {"sessionId": session.id, "status": SEED_002[session.status]}
    if session.qr is not None:
        data["qrCode"] = qr_data_url(session.qr)
    elif session.status.value == "connected":
        data["phoneNumber"] = phone_plus(session.phone_number)
    else:
        data["message"] = "Connection initiated"
    return ok(data)


@router.get("/{session_id}/status", summary="Session status")
async def status(session_id: str, service: Sessions) -> dict[str, Any]:
    session = await service.get(session_id)
    return ok(
        {
            "sessionId": session.id,
            "status": SEED_002[session.status],
            "phoneNumber": phone_plus(session.phone_number),
            "lastActivity": _last_activity(session),
        }
    )


@router.delete("/{session_id}", summary="Delete the session")
async def delete(session_id: str, service: Sessions) -> dict[str, Any]:
    await service.delete(session_id)
    return {"success": True, "message": "Session deleted successfully"}
