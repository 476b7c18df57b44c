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
``text``/``body``/``message``, one object, an array, or ``{"data": [...]}``).
The exact bodies are in ``docs/edge.md``.
"""

from __future__ import annotations

import base64
import binascii
import logging
import math
import re
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from wagate.api.deps import Edge
from wagate.api.errors import status_for
from wagate.api.message_body import decode_json, read_limited
from wagate.api.nul import check_data
from wagate.control.edge import (
    FOREIGN_WORKER,
    STATUSES,
    EdgeBackend,
    Handed,
    InlineMedia,
    Received,
    SentReport,
    StatusReport,
    to_digits_or_jid,
)
from wagate.domain.lease import CLAIM_TTL_HEADER
from wagate.domain.message import MEDIA_KINDS, MessageKind
from wagate.errors import InvalidInput, WagateError
from wagate.ids import check_session_id

log = logging.getLogger(__name__)

router = APIRouter(tags=["seed 001 worker-proxy (edge workers)"])

_WORKER = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,58}$")
MAX_STATUS_BYTES = 512 * 1024  # a QR drawn as a PNG data URL is a few kilobytes
MAX_MARK_BYTES = 256 * 1024
_OVERHEAD = 1024 * 1024  # room around an inbound message's media
_TEXT_MAX = 65_536
_ID_MAX = 128
_LAST_S = 253_402_300_799  # 9999-12-31T23:59:59Z

_INSTANCE = ("instanceId", "instance_id")
Json = dict[str, Any]


# --- the endpoints ------------------------------------------------------------------


@router.get("/disconnected-instances", summary="Instances to connect, each claimed for the caller")
async def disconnected_instances(request: Request, edge: Edge) -> JSONResponse:
    async def work(worker: str) -> Any:
        limit = _limit(request.query_params.get("limit"))
        return [{"id": sid} for sid in await edge.disconnected(worker, limit=limit)]

    return await _answer(request, edge, work)


@router.post("/update-status", summary="An instance's status and QR")
async def update_status(request: Request, edge: Edge) -> JSONResponse:
    async def work(worker: str) -> Any:
        data = _object(await _read(request, MAX_STATUS_BYTES))
        await edge.update_status(worker, _status_report(data))
        return {"ok": True}

    return await _answer(request, edge, work)


@router.get(
    "/queued-messages", summary="An instance's queued messages, each claimed for the caller"
)
async def queued_messages(request: Request, edge: Edge) -> JSONResponse:
    async def work(worker: str) -> Any:
        instance_id = _instance(dict(request.query_params))
        return [_handed_json(h) for h in await edge.queued(worker, instance_id)]

    return await _answer(request, edge, work)


@router.post("/mark-sent", summary="A queued message was sent (or failed)")
async def mark_sent(request: Request, edge: Edge) -> JSONResponse:
    async def work(worker: str) -> Any:
        for item in _items(await _read(request, MAX_MARK_BYTES)):
            await edge.mark_sent(worker, _sent_report(item))
        return {"ok": True}

    return await _answer(request, edge, work)


@router.post("/inbound", summary="A message the instance received")
async def inbound(request: Request, edge: Edge) -> JSONResponse:
    async def work(worker: str) -> Any:
        limit = edge.max_media_bytes * 4 // 3 + _OVERHEAD  # base64 is 4/3 of its bytes
        for item in _items(await _read(request, limit)):
            await edge.inbound(worker, _received(item))
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
        headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
        return JSONResponse({"error": _message(exc)}, status_code=status, headers=headers)


def _limit(value: str | None) -> int | None:
    """``?limit=N``: how many more instances the worker can take (a wagate edge worker's)."""
    if value is None or value == "":
        return None
    if not value.isdigit() or int(value) > 100_000:
        raise InvalidInput("limit", "limit must be a whole number from 0 to 100000")
    return int(value)


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


# --- reading bodies -----------------------------------------------------------------


async def _read(request: Request, limit: int) -> Any:
    data = decode_json(await read_limited(request, limit))
    check_data(data)
    return data


def _object(data: Any) -> Json:
    if isinstance(data, dict) and isinstance(data.get("data"), dict):
        data = {**data, **data["data"]}
    if not isinstance(data, dict):
        raise InvalidInput("body", "request body must be a JSON object")
    return data


def _items(data: Any) -> list[Json]:
    """One object, an array of them, or ``{"data": …}`` / ``{"messages": [...]}`` around
    them (the wrapper's instance id is each item's default)."""
    outer: Json = {}
    if isinstance(data, dict):
        inner = data.get("data", data.get("messages"))
        if isinstance(inner, (list, dict)):
            outer = {k: data[k] for k in _INSTANCE if k in data}
            data = inner
    items = data if isinstance(data, list) else [data]
    if not items:
        raise InvalidInput("body", "the request holds no item")
    for i, item in enumerate(items):
        if not isinstance(item, dict):
            raise InvalidInput(f"body[{i}]" if isinstance(data, list) else "body", "not an object")
    return [outer | item for item in items]


def _pick(data: Json, names: tuple[str, ...]) -> tuple[str, Any]:
    for name in names:
        if data.get(name) is not None:
            return name, data[name]
    return names[0], None


def _text(
    data: Json, names: tuple[str, ...], field: str, *, required: bool = False, limit: int = _ID_MAX
) -> str | None:
    """The first of ``names`` given, as text (a number is taken as its digits)."""
    name, value = _pick(data, names)
    if value is None:
        if required:
            spelled = " or ".join(names)
            raise InvalidInput(field, f"{field} is required (send {spelled})")
        return None
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str):
        raise InvalidInput(name, f"{name} must be a string")
    if required and not value.strip():
        raise InvalidInput(name, f"{name} must not be empty")
    if len(value) > limit:
        raise InvalidInput(name, f"{name} is longer than {limit} characters")
    return value


def _instance(data: Json) -> str:
    """The instance's id: required, and a session id."""
    instance_id = _text(data, _INSTANCE, "instanceId", required=True)
    assert instance_id is not None
    name, _ = _pick(data, _INSTANCE)
    return check_session_id(instance_id, name)


def _flag(data: Json, names: tuple[str, ...]) -> bool:
    name, value = _pick(data, names)
    if value is None:
        return False
    if not isinstance(value, bool):
        raise InvalidInput(name, f"{name} must be true or false")
    return value


def _status_report(data: Json) -> StatusReport:
    instance_id = _instance(data)
    status = _text(data, ("status", "state"), "status", required=True)
    assert status is not None
    status = status.strip().upper()
    if status not in STATUSES:
        raise InvalidInput("status", f"unknown status {status[:40]!r}: use {', '.join(STATUSES)}")
    return StatusReport(
        instance_id=instance_id,
        status=status,
        qr_code=_text(data, ("qr_code", "qrCode"), "qr_code", limit=MAX_STATUS_BYTES),
        qr=_text(data, ("qr",), "qr", limit=4096),
        phone=_text(data, ("phone", "phoneNumber", "phone_number", "number"), "phone", limit=64),
        reason=_text(data, ("reason", "code"), "reason", limit=1000),
    )


def _sent_report(data: Json) -> SentReport:
    instance_id = _instance(data)
    message_id = _text(data, ("messageId", "message_id", "id"), "messageId", required=True)
    assert message_id is not None
    status = (_text(data, ("status",), "status") or "sent").strip().lower()
    if status not in ("sent", "failed"):
        raise InvalidInput("status", f"unknown status {status[:40]!r}: use sent or failed")
    return SentReport(
        instance_id=instance_id,
        message_id=message_id,
        sent=status == "sent",
        wa_message_id=_text(data, ("waMessageId", "wa_message_id", "waId"), "waMessageId"),
        error=_text(data, ("error", "reason"), "error", limit=1000),
    )


def _received(data: Json) -> Received:
    instance_id = _instance(data)
    message_id = _text(data, ("messageId", "message_id", "id"), "messageId", required=True)
    sender = _text(data, ("from", "sender", "phone", "number"), "from", required=True)
    assert message_id is not None and sender is not None
    return Received(
        instance_id=instance_id,
        message_id=message_id,
        sender=sender,
        chat=_text(data, ("chat", "chatId", "chat_id", "remoteJid"), "chat"),
        kind=_text(data, ("type", "messageType"), "type", limit=32),
        timestamp=_timestamp(data),
        text=_text(data, ("text", "body", "message", "caption"), "text", limit=_TEXT_MAX),
        push_name=_text(data, ("pushName", "push_name"), "pushName", limit=256),
        media=_media(data),
        from_me=_flag(data, ("fromMe", "from_me")),
        quoted_id=_text(data, ("quotedId", "quoted_id"), "quotedId"),
    )


def _timestamp(data: Json) -> datetime | None:
    """ISO 8601, or epoch seconds or milliseconds (a number or its digits); None: now."""
    name, value = _pick(data, ("timestamp", "messageTimestamp", "ts"))
    if value is None:
        return None
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value.strip())
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        seconds = value / 1000 if value > 10**11 else value  # ms from 1973 on; s until 5138
        if not math.isfinite(seconds) or not 0 <= seconds <= _LAST_S:
            raise InvalidInput(name, f"{name} is out of range")
        return datetime.fromtimestamp(seconds, UTC)
    if isinstance(value, str):
        try:
            at = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
        except ValueError:
            raise InvalidInput(name, f"{name} must be ISO 8601 or epoch seconds/ms") from None
        return at if at.tzinfo else at.replace(tzinfo=UTC)
    raise InvalidInput(name, f"{name} must be ISO 8601 or epoch seconds/ms")


def _media(data: Json) -> InlineMedia | None:
    name, media = _pick(data, ("media",))
    if media is None:
        return None
    if not isinstance(media, dict):
        raise InvalidInput(name, "media must be an object {base64, mimetype, filename?}")
    encoded = _text(media, ("base64", "data"), "media.base64", required=True, limit=2**31)
    assert encoded is not None
    if encoded.startswith("data:") and ";base64," in encoded:  # a data URL: its payload
        encoded = encoded.split(";base64,", 1)[1]
    try:
        raw = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        raise InvalidInput("media.base64", "media.base64 is not valid base64") from None
    return InlineMedia(
        data=raw,
        mimetype=_text(media, ("mimetype", "mimeType", "mime_type"), "media.mimetype"),
        filename=_text(media, ("filename", "fileName"), "media.filename", limit=256),
    )


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
