"""Seed 001's worker-proxy: the five endpoints its edge workers call, under ``EDGE_PREFIX``.

Not behind the API key: ``Authorization: Bearer <WORKER_SECRET>`` is the
credential, checked before anything else on every endpoint. A wagate edge
worker names itself with ``X-Wagate-Worker``; a foreign one sends none and is
the worker ``edge``. Errors are seed 001's ``{"error": message}``: 401 (the
secret), 503 (``WORKER_SECRET`` unset), 413/422 (a body it cannot read, a
missing instance id: the message names the field), 404 (an unknown instance
or message), 409 (an instance another worker holds).

The seed fixes the paths, not every body: each body is read accepting the
spellings hand-written edge functions use (``instanceId``/``instance_id``,
``text``/``body``/``message``, one object, an array, or ``{"data": [...]}``);
the readers are in :mod:`wagate.api.compat.seed001_bodies`. The exact bodies
are in ``docs/edge.md``.
"""

from __future__ import annotations

import base64
import logging
import re
from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from wagate.api.compat.seed001_bodies import (
    MAX_MARK_BYTES,
    MAX_STATUS_BYTES,
    OVERHEAD,
    Json,
    instance_of,
    items,
    limit_of,
    object_of,
    read_body,
    received,
    sent_report,
    status_report,
)
from wagate.api.deps import Edge
from wagate.api.errors import status_for
from wagate.control.edge import FOREIGN_WORKER, EdgeBackend
from wagate.control.edge_bodies import Handed, to_digits_or_jid
from wagate.domain.lease import CLAIM_TTL_HEADER, ERROR_CODE_HEADER
from wagate.domain.message import MEDIA_KINDS, MessageKind
from wagate.errors import InvalidInput, WagateError

log = logging.getLogger(__name__)

router = APIRouter(tags=["seed 001 worker-proxy (edge workers)"])

_WORKER = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,58}$")


# --- the endpoints ------------------------------------------------------------------


@router.get("/disconnected-instances", summary="Instances to connect, each claimed for the caller")
async def disconnected_instances(request: Request, edge: Edge) -> JSONResponse:
    async def work(worker: str) -> Any:
        limit = limit_of(request.query_params.get("limit"))
        return [{"id": sid} for sid in await edge.disconnected(worker, limit=limit)]

    return await _answer(request, edge, work)


@router.post("/update-status", summary="An instance's status and QR")
async def update_status(request: Request, edge: Edge) -> JSONResponse:
    async def work(worker: str) -> Any:
        data = object_of(await read_body(request, MAX_STATUS_BYTES))
        await edge.update_status(worker, status_report(data))
        return {"ok": True}

    return await _answer(request, edge, work)


@router.get(
    "/queued-messages", summary="An instance's queued messages, each claimed for the caller"
)
async def queued_messages(request: Request, edge: Edge) -> JSONResponse:
    async def work(worker: str) -> Any:
        instance_id = instance_of(dict(request.query_params))
        return [_handed_json(h) for h in await edge.queued(worker, instance_id)]

    return await _answer(request, edge, work)


@router.post("/mark-sent", summary="A queued message was sent (or failed)")
async def mark_sent(request: Request, edge: Edge) -> JSONResponse:
    async def work(worker: str) -> Any:
        for item in items(await read_body(request, MAX_MARK_BYTES)):
            await edge.mark_sent(worker, sent_report(item))
        return {"ok": True}

    return await _answer(request, edge, work)


@router.post("/inbound", summary="A message the instance received")
async def inbound(request: Request, edge: Edge) -> JSONResponse:
    async def work(worker: str) -> Any:
        limit = edge.max_media_bytes * 4 // 3 + OVERHEAD  # base64 is 4/3 of its bytes
        for item in items(await read_body(request, limit)):
            await edge.inbound(worker, received(item))
        return {"ok": True}

    return await _answer(request, edge, work)


# --- one answer ---------------------------------------------------------------------


async def _answer(
    request: Request, edge: EdgeBackend, work: Callable[[str], Awaitable[Any]]
) -> JSONResponse:
    """The secret first, then the work; a :class:`WagateError` as ``{"error": message}``."""
    worker = FOREIGN_WORKER
    try:
        edge.check_secret(_bearer(request))
        worker = _worker(request)
        # how long a claim lasts: a wagate edge worker lets go of an instance it could not
        # renew in time, so that no account ever has two connections
        claim = {CLAIM_TTL_HEADER: str(edge.claim_ttl_ms)}
        return JSONResponse(await work(worker), headers=claim)
    except WagateError as exc:
        status = status_for(exc)
        _log_refusal(request, worker, exc, status)
        # seed 001's body; which refusal it is (instance_at_rest, …) rides in a header
        headers = {ERROR_CODE_HEADER: exc.code}
        if status == 401:
            headers["WWW-Authenticate"] = "Bearer"
        return JSONResponse({"error": _message(exc)}, status_code=status, headers=headers)


def _message(exc: WagateError) -> str:
    """The error's message; a field's, with the field named (seed 001 has no other place)."""
    field = getattr(exc, "field", None)
    if field and field not in exc.message:
        return f"{field}: {exc.message}"
    return exc.message


def _log_refusal(request: Request, worker: str, exc: WagateError, status: int) -> None:
    where = f"{request.method} {request.url.path}"
    if status >= 500:
        log.error("worker-proxy %s (worker %s): %s", where, worker, exc.message)
    elif isinstance(exc, InvalidInput):  # an edge function's body we cannot read: say which
        log.warning(
            "worker-proxy %s (worker %s): cannot read the request: %s: %s",
            where,
            worker,
            exc.field,
            exc.message,
        )
    else:
        log.info("worker-proxy %s (worker %s): %d %s", where, worker, status, exc.message)


def _bearer(request: Request) -> str | None:
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    return token.strip() or None if scheme.lower() == "bearer" else None


def _worker(request: Request) -> str:
    name = request.headers.get("x-wagate-worker")
    if name is None:
        return FOREIGN_WORKER
    if not _WORKER.fullmatch(name):
        raise InvalidInput(
            "X-Wagate-Worker", "X-Wagate-Worker must be 1-59 letters, digits, '_', '.', ':', '-'"
        )
    return name


# --- what is handed out -------------------------------------------------------------


def _handed_json(handed: Handed) -> Json:
    message, out = handed.message, handed.outgoing
    is_media = out.kind in MEDIA_KINDS
    media = None
    if out.media is not None:
        media = {
            "base64": base64.b64encode(out.media.data).decode("ascii"),
            "mimetype": out.media.mimetype,
            "filename": out.media.filename,
        }
    item: Json = {
        "id": message.wa_msg_id,
        "messageId": message.wa_msg_id,
        "instanceId": message.session_id,
        "to": to_digits_or_jid(out.to),
        "jid": out.to,
        "type": out.kind.value,
        "text": None if is_media else out.text,
        "caption": out.text if is_media else None,
        "media": media,
        "quotedId": out.quote.id if out.quote else message.quoted_id,
    }
    if out.kind is MessageKind.REACTION:
        item["reactTo"] = out.react_to
    if out.location is not None:
        loc = out.location
        item["location"] = {
            "latitude": loc.latitude,
            "longitude": loc.longitude,
            "name": loc.name,
            "address": loc.address,
        }
    if out.contact is not None:
        card = out.contact
        item["contact"] = {"name": card.name, "phone": card.phone, "vcard": card.vcard}
    return item
