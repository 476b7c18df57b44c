"""Seed 002's worker endpoints, with its exact envelopes (``{"success": true, "data": …}``)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Query, Request

from wagate.api.deps import Messages, Sending, SendLimits, Sessions
from wagate.api.message_body import read_send_body
from wagate.api.message_schemas import Seed002SendIn, iso_z
from wagate.api.params import Offset
from wagate.api.routes.messages import IdempotencyKey, inline_schema
from wagate.api.schemas import Seed002CreateIn, ok, phone_plus
from wagate.domain.message import Message
from wagate.domain.session import SEED_002, Session
from wagate.errors import InvalidInput
from wagate.ids import user_jid
from wagate.qr_image import qr_data_url

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
        body.sessionId, user_id=body.userId, session_name=body.sessionName, uplink=body.uplink
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


# --- messages ---------------------------------------------------------------------------


_SEND_DOC = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {
                "schema": inline_schema(Seed002SendIn.model_json_schema()),
                "example": {"to": "6281234567890@s.whatsapp.net", "type": "text", "message": "Hi"},
            }
        },
    }
}


@router.post(
    "/{session_id}/send", summary="Send a message (queued durably)", openapi_extra=_SEND_DOC
)
async def send(
    session_id: str,
    request: Request,
    sending: Sending,
    limits: SendLimits,
    idempotency_key: IdempotencyKey = None,
) -> dict[str, Any]:
    body, upload = await read_send_body(request, Seed002SendIn, limits.media_max_bytes)
    try:
        message, _ = await sending.send(session_id, body.to_request(upload, idempotency_key))
    except InvalidInput as exc:
        if exc.field in ("text", "caption"):  # seed 002 calls both of them "message"
            raise InvalidInput("message", _renamed(exc.message, exc.field)) from None
        raise
    return ok(
        {"messageId": message.wa_msg_id, "status": message.status, "timestamp": iso_z(message.ts)}
    )


def _renamed(message: str, field: str) -> str:
    """``text is required for messages of type text`` → ``message is required … type text``."""
    if message.startswith(field + " "):
        return "message" + message[len(field) :]
    return message


@router.get("/{session_id}/messages", summary="Message history, newest first")
async def messages(
    session_id: str,
    history: Messages,
    limit: Annotated[int, Query(ge=1, le=1000)] = 50,
    offset: Annotated[Offset, Query()] = 0,
) -> dict[str, Any]:
    session, found, total = await history.page(session_id, limit, offset)
    me = user_jid(session.phone_number) if session.phone_number else None
    return ok(
        {
            "messages": [_seed002_message(m, me) for m in found],
            "pagination": {"total": total, "limit": limit, "offset": offset},
        }
    )


def _seed002_message(m: Message, me: str | None) -> dict[str, Any]:
    sender: str | None
    recipient: str | None
    if m.direction == "out":
        sender, recipient = m.sender or me, m.chat_id
    else:
        sender, recipient = m.sender or m.chat_id, me
    return {
        "id": m.wa_msg_id,
        "from": sender,
        "to": recipient,
        "type": m.kind,
        "content": m.text,
        "timestamp": iso_z(m.ts),
        "status": m.status,
    }
