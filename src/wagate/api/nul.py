"""NUL characters (``\\u0000``): refused in every string the API takes.

PostgreSQL cannot store NUL in text or JSONB, and no field of ours has a use
for it, so a NUL anywhere (path or query parameter, JSON body, form field,
upload file name) is a 422 naming the field, on every database alike.
:func:`reject_nul` is an application-wide dependency, so it covers every
route, including ones added later; the send endpoints read their own bodies
(:mod:`wagate.api.message_body`) and check them with :func:`check_data`.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from fastapi import Request
from fastapi.routing import APIRoute
from starlette.datastructures import UploadFile

from wagate.errors import InvalidInput

NUL = "\x00"
# how UTF-8 JSON writes a NUL; a body in UTF-16 or UTF-32 (which JSON parsers accept)
# has NUL bytes throughout, and a raw NUL in UTF-8 is not valid JSON
_MARKERS = (b"\\u0000", b"\x00")


def nul_error(field: str) -> InvalidInput:
    return InvalidInput(field, f"{field} must not contain NUL characters (\\u0000)")


def _name(key: str) -> str:
    return key.replace(NUL, "\\0")


def find_nul(value: Any) -> str | None:
    """The dotted path of the first string in parsed JSON that holds a NUL, or None.

    A loop, not recursion: JSON nested as deep as the parser allows is walked too.
    """
    stack: list[tuple[str, Any]] = [("", value)]
    while stack:
        path, item = stack.pop()
        if isinstance(item, str) and NUL in item:
            return path or "body"
        if isinstance(item, dict):
            bad_key = next((k for k in item if NUL in k), None)
            if bad_key is not None:
                return _join(path, _name(bad_key))
            stack.extend(reversed([(_join(path, k), v) for k, v in item.items()]))
        elif isinstance(item, list):
            stack.extend(reversed([(_join(path, str(i)), v) for i, v in enumerate(item)]))
    return None


def _join(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


def check_data(data: Any) -> None:
    """InvalidInput naming the first field of parsed input that holds a NUL."""
    field = find_nul(data)
    if field is not None:
        raise nul_error(field)


def check_fields(items: Iterable[tuple[str, str | UploadFile]]) -> None:
    """The same for form fields (and the names and types of uploaded files)."""
    for key, value in items:
        texts = [value] if isinstance(value, str) else [value.filename, value.content_type]
        if NUL in key or any(NUL in (text or "") for text in texts):
            raise nul_error(_name(key))


async def reject_nul(request: Request) -> None:
    """Path and query parameters, and the body when the route declares one."""
    check_fields((k, str(v)) for k, v in request.path_params.items())
    check_fields(request.query_params.multi_items())
    route = request.scope.get("route")
    # only a body FastAPI has already read: the send endpoints cap theirs as they read it
    if isinstance(route, APIRoute) and route.body_field is not None:
        await _check_body(request)


async def _check_body(request: Request) -> None:
    content_type = request.headers.get("content-type", "")
    if content_type.startswith(("multipart/form-data", "application/x-www-form-urlencoded")):
        check_fields((await request.form()).multi_items())
        return
    raw = await request.body()
    if not any(marker in raw for marker in _MARKERS):
        return
    try:
        data = json.loads(raw)
    except (ValueError, RecursionError):
        return  # not JSON: the route's own validation says so
    check_data(data)
