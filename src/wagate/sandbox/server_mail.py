"""The control API's messaging routes: act as a phone that sends, reads and runs groups.

Relative routes, mounted by :func:`wagate.sandbox.server.create_app`::

    POST /control/send                 {"from", "to", "text"?, "mediaBase64"?, "mimetype"?,
                                        "filename"?, "caption"?, "kind"?, "quoteId"?,
                                        "reactTo"?, "id"?, "timestamp"?, "width"?, "height"?,
                                        "durationS"?}                    → {"ok", "id"}
    POST /control/phones               {"phone", "pushName"?}  a simulated phone joins
    GET  /control/inbox/{phone}        → {"messages": [...]}   what the phone received
    POST /control/read                 {"phone", "ids"}        the phone reads messages
    POST /control/groups               {"name", "owner", "members"}      → {"ok", "jid"}
    POST /control/groups/{jid}/rename  {"name"}
    POST /control/groups/{jid}/members {"add"?, "remove"?}
    GET  /control/blobs/{handle}       the media's bytes

``timestamp`` is ISO 8601 (a zone-less one is UTC) and backdates the message.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
from collections.abc import Awaitable, Callable
from datetime import datetime

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from wagate.errors import InvalidInput
from wagate.sandbox.bodies import Body, body_of, optional, required, strings
from wagate.sandbox.network import SandboxNetwork

Endpoint = Callable[[Request], Awaitable[Response]]
Guard = Callable[[Endpoint], Endpoint]

# How the network's parameter names read in this API's JSON.
JSON_FIELDS = {
    "quote_id": "quoteId",
    "react_to": "reactTo",
    "msg_id": "id",
    "duration_s": "durationS",
    "media": "mediaBase64",
}


def _media(body: Body) -> bytes | None:
    raw = optional(body, "mediaBase64")
    if raw is None:
        return None
    try:
        return base64.b64decode(raw, validate=True)
    except (binascii.Error, ValueError):
        raise InvalidInput("mediaBase64", "mediaBase64 is not valid base64") from None


def _timestamp(body: Body) -> datetime | None:
    raw = optional(body, "timestamp")
    if raw is None:
        return None
    try:
        return datetime.fromisoformat(raw)
    except ValueError:
        raise InvalidInput("timestamp", "timestamp must be ISO 8601") from None


class MailControl:
    """The messaging endpoints over one network."""

    def __init__(self, network: SandboxNetwork) -> None:
        self.network = network

    async def send(self, request: Request) -> Response:
        body = await body_of(request)
        media = _media(body)
        caption = optional(body, "caption")
        message_id = await self.network.phone_send(
            required(body, "from"),
            required(body, "to"),
            text=caption if media is not None and caption is not None else optional(body, "text"),
            media=media,
            mimetype=optional(body, "mimetype"),
            filename=optional(body, "filename"),
            kind=optional(body, "kind"),
            quote_id=optional(body, "quoteId"),
            react_to=optional(body, "reactTo"),
            msg_id=optional(body, "id"),
            timestamp=_timestamp(body),
            width=body.get("width"),
            height=body.get("height"),
            duration_s=body.get("durationS"),
        )
        return JSONResponse({"ok": True, "id": message_id})

    async def add_phone(self, request: Request) -> Response:
        body = await body_of(request)
        phone = required(body, "phone")
        account = await self.network.add_phone(phone, optional(body, "pushName"))
        return JSONResponse({"ok": True, **dataclasses.asdict(account)})

    async def inbox(self, request: Request) -> Response:
        messages = await self.network.inbox(request.path_params["phone"])
        return JSONResponse({"messages": messages})

    async def read(self, request: Request) -> Response:
        body = await body_of(request)
        await self.network.mark_read(required(body, "phone"), strings(body, "ids"))
        return JSONResponse({"ok": True})

    async def create_group(self, request: Request) -> Response:
        body = await body_of(request)
        jid = await self.network.create_group(
            required(body, "name"), required(body, "owner"), strings(body, "members")
        )
        return JSONResponse({"ok": True, "jid": jid})

    async def rename_group(self, request: Request) -> Response:
        name = required(await body_of(request), "name")
        await self.network.rename_group(request.path_params["jid"], name)
        return JSONResponse({"ok": True})

    async def members(self, request: Request) -> Response:
        body = await body_of(request)
        jid = request.path_params["jid"]
        added = strings(body, "add", allow_missing=True)
        removed = strings(body, "remove", allow_missing=True)
        if added:
            await self.network.add_members(jid, added)
        if removed:
            await self.network.remove_members(jid, removed)
        return JSONResponse({"ok": True})

    async def blob(self, request: Request) -> Response:
        data = await self.network.blob(request.path_params["handle"])
        return Response(data, media_type="application/octet-stream")


def mail_routes(network: SandboxNetwork, guard: Guard) -> list[Route]:
    """The messaging routes, each behind ``guard`` (the control token check)."""
    control = MailControl(network)
    table: list[tuple[str, str, Endpoint]] = [
        ("POST", "/control/send", control.send),
        ("POST", "/control/phones", control.add_phone),
        ("GET", "/control/inbox/{phone}", control.inbox),
        ("POST", "/control/read", control.read),
        ("POST", "/control/groups", control.create_group),
        ("POST", "/control/groups/{jid}/rename", control.rename_group),
        ("POST", "/control/groups/{jid}/members", control.members),
        ("GET", "/control/blobs/{handle}", control.blob),
    ]
    return [Route(path, guard(endpoint), methods=[method]) for method, path, endpoint in table]
