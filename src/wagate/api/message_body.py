"""Reading a send request: a JSON body, or a multipart form with the file uploaded.

Both forms become the same pydantic model, so validation (and its 422 naming
the field) is one path. Oversized bodies are refused (413) from
``Content-Length`` before they are read, and while they are read when it is
absent; an upload is read in chunks and refused past the cap.
"""

from __future__ import annotations

import json
from typing import Any, TypeVar

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ValidationError
from starlette.datastructures import FormData, UploadFile

from wagate.api.errors import BodyTooLarge
from wagate.api.nul import check_data, check_fields
from wagate.errors import InvalidInput
from wagate.outbound.media_fetch import MediaBytes, too_large

M = TypeVar("M", bound=BaseModel)

_FORM_TYPES = ("multipart/form-data", "application/x-www-form-urlencoded")
_OVERHEAD = 1024 * 1024  # room for the other fields around the media
_CHUNK = 256 * 1024
_FLAT = ("to", "type", "text", "caption", "message", "quotedId", "linkPreview", "idempotencyKey")
_NESTED = ("location", "contact", "reaction", "media")


async def read_send_body(
    request: Request, model: type[M], max_media_bytes: int
) -> tuple[M, MediaBytes | None]:
    """The request as ``model``, and the uploaded file (multipart only)."""
    content_type = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    is_form = content_type in _FORM_TYPES
    # base64 is 4/3 of the bytes it carries
    limit = (max_media_bytes if is_form else max_media_bytes * 4 // 3) + _OVERHEAD
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise BodyTooLarge(limit)
    if not is_form:
        return validate(model, await _json(request, limit)), None
    form = await request.form(max_files=1, max_fields=64)
    try:
        check_fields(form.multi_items())
        data, upload = await _from_form(form, max_media_bytes)
    finally:
        await form.close()
    return validate(model, data), upload


def validate(model: type[M], data: Any) -> M:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise RequestValidationError(exc.errors(include_url=False, include_context=False)) from None


async def _json(request: Request, limit: int) -> Any:
    raw = await read_limited(request, limit)
    data = decode_json(raw, missing="a JSON body (or a multipart form) is required")
    check_data(data)
    return data


def decode_json(raw: bytes, *, missing: str = "a JSON body is required") -> Any:
    """The JSON in ``raw``; a 422 naming ``body`` when there is none or it is not JSON."""
    if not raw.strip():
        raise InvalidInput("body", missing)
    try:
        return json.loads(raw)
    except ValueError:
        raise InvalidInput("body", "request body is not valid JSON") from None
    except RecursionError:
        raise InvalidInput("body", "request body is nested too deeply") from None


async def read_limited(request: Request, limit: int) -> bytes:
    """The raw body; :class:`BodyTooLarge` once it passes ``limit`` bytes."""
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge(limit)
        chunks.append(chunk)
    return b"".join(chunks)


async def _from_form(form: FormData, max_bytes: int) -> tuple[dict[str, Any], MediaBytes | None]:
    data: dict[str, Any] = {k: form[k] for k in _FLAT if isinstance(form.get(k), str)}
    for name in _NESTED:
        value = form.get(name)
        if isinstance(value, str) and value.strip():
            data[name] = _json_field(name, value)
    mentions = [
        m.strip() for v in form.getlist("mentions") if isinstance(v, str) for m in v.split(",")
    ]
    if any(mentions):
        data["mentions"] = [m for m in mentions if m]
    media = dict(data.get("media") or {})
    for name, key in (("mediaUrl", "url"), ("mimetype", "mimetype"), ("filename", "filename")):
        if isinstance(form.get(name), str) and form[name]:
            media[key] = form[name]
    upload = form.get("file")
    if media:
        data["media"] = media
    if isinstance(upload, UploadFile):
        return data, await _read_upload(upload, max_bytes)
    return data, None


def _json_field(name: str, value: str) -> Any:
    try:
        return json.loads(value)
    except (ValueError, RecursionError):
        raise InvalidInput(name, f"{name} must be a JSON object in a form") from None


async def _read_upload(upload: UploadFile, max_bytes: int) -> MediaBytes:
    chunks: list[bytes] = []
    size = 0
    while chunk := await upload.read(_CHUNK):
        size += len(chunk)
        if size > max_bytes:
            raise too_large("file", max_bytes)
        chunks.append(chunk)
    if size == 0:
        raise InvalidInput("file", "the uploaded file is empty")
    mimetype = upload.content_type
    if mimetype in (None, "", "application/octet-stream"):
        mimetype = None
    return MediaBytes(b"".join(chunks), mimetype, upload.filename)
