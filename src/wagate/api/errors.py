"""One table from wagate's error tree to HTTP statuses, and the JSON error body.

Every error body is ``{"success": false, "error": {"code", "message", "field"?}}``
(seed 002's envelope), whatever route produced it; no traceback ever leaves.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from wagate import errors as e

log = logging.getLogger(__name__)


class BodyTooLarge(e.InvalidInput):
    """The request body is past what the route accepts (HTTP 413)."""

    code = "body_too_large"

    def __init__(self, limit: int) -> None:
        super().__init__("body", f"the request body is larger than the limit of {limit} bytes")


STATUS: list[tuple[type[e.WagateError], int]] = [
    (BodyTooLarge, 413),
    (e.InvalidInput, 422),
    (e.Unauthorized, 401),
    (e.NotFound, 404),
    (e.Conflict, 409),
    (e.RequestError, 400),
    (e.RelinkRequired, 409),
    (e.AccountBlocked, 409),
    (e.TransientError, 503),
    (e.StorageUnavailable, 503),
    (e.StaleLease, 409),
    (e.WorkerUnavailable, 503),
    (e.NotConfigured, 503),
    (e.EngineError, 502),
    (e.WagateError, 500),
]


def status_for(exc: e.WagateError) -> int:
    return next(code for cls, code in STATUS if isinstance(exc, cls))


def error_body(code: str, message: str, field: str | None = None, **extra: Any) -> dict[str, Any]:
    error: dict[str, Any] = {"code": code, "message": message}
    if field is not None:
        error["field"] = field
    error.update(extra)
    return {"success": False, "error": error}


async def _wagate_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, e.WagateError)
    status = status_for(exc)
    if status >= 500:
        log.error("request failed: %s", exc.message)
    body = error_body(exc.code, exc.message, getattr(exc, "field", None))
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    return JSONResponse(body, status_code=status, headers=headers)


async def _validation_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    problems = [_problem(err) for err in exc.errors()]
    first = problems[0] if problems else {"field": None, "message": "invalid request"}
    message = "; ".join(
        f"{p['field']}: {p['message']}" if p["field"] else p["message"] for p in problems
    )
    return JSONResponse(
        error_body("invalid_input", message, first["field"], details=problems), status_code=422
    )


def _problem(err: Any) -> dict[str, Any]:
    loc = [str(part) for part in err.get("loc", ()) if part not in ("body", "query", "path")]
    field = ".".join(loc) or None
    msg = str(err.get("msg", "invalid value"))
    if err.get("type") == "json_invalid":
        field, msg = "body", "request body is not valid JSON"
    return {"field": field, "message": msg}


async def _http_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    code = {404: "not_found", 405: "method_not_allowed", 401: "unauthorized"}.get(
        exc.status_code, "http_error"
    )
    return JSONResponse(
        error_body(code, str(exc.detail)), status_code=exc.status_code, headers=exc.headers
    )


async def _unexpected(_request: Request, exc: Exception) -> JSONResponse:
    log.error("unhandled error", exc_info=exc)
    return JSONResponse(
        error_body("internal_error", "internal error; the server log has the details"),
        status_code=500,
    )


def install(app: FastAPI) -> None:
    app.add_exception_handler(e.WagateError, _wagate_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(Exception, _unexpected)
