"""Reading the control API's JSON bodies: every bad field is an InvalidInput naming it."""

from __future__ import annotations

import json
from typing import Any

from starlette.requests import Request

from wagate.errors import InvalidInput

Body = dict[str, Any]


async def body_of(request: Request) -> Body:
    try:
        body = json.loads(await request.body() or b"{}")
    except ValueError as exc:
        raise InvalidInput("body", f"body is not valid JSON: {exc}") from exc
    if not isinstance(body, dict):
        raise InvalidInput("body", "body must be a JSON object")
    return body


def required(body: Body, key: str) -> str:
    value = body.get(key)
    if not isinstance(value, str) or not value.strip():
        raise InvalidInput(key, f"{key} must be a non-empty string")
    return value


def optional(body: Body, key: str) -> str | None:
    return None if body.get(key) is None else required(body, key)


def integer(body: Body, key: str, default: int) -> int:
    value = body.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidInput(key, f"{key} must be an integer")
    return value


def optional_int(body: Body, key: str) -> int | None:
    return None if body.get(key) is None else integer(body, key, 0)


def strings(body: Body, key: str, *, allow_missing: bool = False) -> list[str]:
    """A list of non-empty strings (``[]`` when absent, if ``allow_missing``)."""
    value = body.get(key)
    if value is None and allow_missing:
        return []
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise InvalidInput(key, f"{key} must be a list of non-empty strings")
    return list(value)
