"""Seed 004's session API under ``/api/sessions``, plus a list."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Query, Request, Response

from wagate.api.deps import Sessions
from wagate.api.params import RowId
from wagate.api.schemas import ProvisionIn, QROut, SessionOut
from wagate.domain.session import SEED_004
from wagate.qr_image import qr_data_url, qr_png

router = APIRouter(prefix="/api/sessions", tags=["sessions"])


@router.get("", summary="List sessions")
async def list_sessions(service: Sessions) -> dict[str, Any]:
    sessions = await service.list()
    return {"sessions": [SessionOut.of(s) for s in sessions], "total": len(sessions)}


@router.post("/provision", status_code=201, summary="Create a session and start linking it")
async def provision(
    service: Sessions, body: Annotated[ProvisionIn | None, Body()] = None
) -> SessionOut:
    body = body or ProvisionIn()
    session = await service.provision(
        body.id, phone=body.phone, proxy=body.proxy, pair=body.pairing_code, uplink=body.uplink
    )
    return SessionOut.of(session)


@router.get(
    "/{session_id}/qr",
    summary="The QR to scan (JSON, or a PNG with Accept: image/png)",
    response_model=QROut,
    responses={200: {"content": {"image/png": {}}}},
)
async def get_qr(session_id: str, service: Sessions, request: Request) -> Any:
    session = await service.qr(session_id)
    assert session.qr is not None
    accept = request.headers.get("accept", "")
    if "image/png" in accept and "application/json" not in accept:
        return Response(
            qr_png(session.qr), media_type="image/png", headers={"Cache-Control": "no-store"}
        )
    return QROut(
        sessionId=session.id,
        status=SEED_004[session.status],
        qr=session.qr,
        qrDataUrl=qr_data_url(session.qr),
        generatedAt=session.qr_generated_at,
        expiresAt=session.qr_expires_at,
    )


@router.get("/{session_id}/status", summary="Session status")
async def get_status(session_id: str, service: Sessions) -> SessionOut:
    return SessionOut.of(await service.get(session_id))


@router.get("/{session_id}", summary="Session")
async def get_session(session_id: str, service: Sessions) -> SessionOut:
    return SessionOut.of(await service.get(session_id))


@router.post("/{session_id}/restart", summary="Stop and start the session again")
async def restart(session_id: str, service: Sessions) -> SessionOut:
    return SessionOut.of(await service.restart(session_id))


@router.post("/{session_id}/stop", summary="Stop the session, keeping its link")
async def stop(session_id: str, service: Sessions) -> SessionOut:
    return SessionOut.of(await service.stop(session_id))


@router.delete("/{session_id}", summary="Log out, delete credentials and the session")
async def delete(session_id: str, service: Sessions) -> dict[str, Any]:
    outcome = await service.delete(session_id)
    # loggedOut false: the device could not be unlinked and may still show on the phone
    return {
        "success": True,
        "id": session_id,
        "message": "Session deleted",
        "loggedOut": outcome.unlinked,
    }


@router.get("/{session_id}/audit", summary="The session's audit log, newest first")
async def audit(
    session_id: str,
    service: Sessions,
    event: str | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    before: Annotated[RowId | None, Query(description="Entries older than this id")] = None,
) -> dict[str, Any]:
    entries = await service.audit_log(session_id, event=event, limit=limit, before_id=before)
    return {
        "entries": [
            {"id": e.id, "event": e.event, "data": e.data, "createdAt": e.created_at}
            for e in entries
        ],
        "next": entries[-1].id if len(entries) == limit else None,
    }
