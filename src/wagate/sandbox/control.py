"""A client for the sandbox control API, for tests, demos and the CLI.

Acts as the phone and as fate on a sandbox server started elsewhere::

    async with SandboxControl("http://127.0.0.1:8081", api_key=token) as control:
        await control.scan(qr, "15551234567")
        msg_id = await control.send("15557654321", "15551234567", text="hi")
        await control.fault("drop", session="s1")

The server's 4xx answers come back as :mod:`wagate.errors` with its message
(404 → NotFound, 422 → InvalidInput, 401 → Unauthorized, 409 → Conflict); a
server that cannot be reached is a :class:`~wagate.errors.TransientError`.
"""

from __future__ import annotations

import base64
from datetime import datetime
from types import TracebackType
from typing import Any, Self
from urllib.parse import quote

import httpx

from wagate.errors import (
    Conflict,
    InvalidInput,
    NotFound,
    RequestError,
    TransientError,
    Unauthorized,
    WagateError,
)

Json = dict[str, Any]


class SandboxControl:
    """Async wrapper of the sandbox control API at ``base_url`` (which may carry a prefix)."""

    def __init__(
        self,
        base_url: str,
        *,
        api_key: str | None = None,
        timeout_s: float = 10.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._http = httpx.AsyncClient(
            base_url=base_url, headers=headers, timeout=timeout_s, transport=transport
        )

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    async def scan(self, qr: str, phone: str, push_name: str | None = None) -> Json:
        """A phone scans the QR; returns ``{"session", "phone", "jid"}`` of the new device."""
        body: Json = {"qr": qr, "phone": phone}
        if push_name is not None:
            body["pushName"] = push_name
        return await self._call("POST", "/control/scan", body)

    async def pair(self, code: str) -> Json:
        return await self._call("POST", "/control/pair", {"code": code})

    async def fault(
        self,
        kind: str,
        *,
        session: str | None = None,
        phone: str | None = None,
        delay_ms: int | None = None,
    ) -> int:
        """Inject a fault; returns how many live connections it touched."""
        body: Json = {"kind": kind, "session": session, "phone": phone}
        if delay_ms is not None:
            body["delayMs"] = delay_ms
        answer = await self._call("POST", "/control/fault", body)
        return int(answer["affected"])

    async def unban(self, phone: str) -> None:
        await self._call("POST", "/control/unban", {"phone": phone})

    async def outage(self, down: bool) -> None:
        await self._call("POST", "/control/outage", {"down": down})

    async def connections(self) -> list[Json]:
        answer = await self._call("GET", "/control/connections")
        return list(answer["connections"])

    async def stats(self) -> dict[str, int]:
        """Live connections, and how many streams were replaced by a second login."""
        answer = await self._call("GET", "/control/stats")
        return {k: int(v) for k, v in answer.items()}

    async def accounts(self) -> list[Json]:
        answer = await self._call("GET", "/control/accounts")
        return list(answer["accounts"])

    # --- messaging --------------------------------------------------------------------

    async def send(
        self,
        from_phone: str,
        to: str,
        *,
        text: str | None = None,
        media: bytes | None = None,
        mimetype: str | None = None,
        filename: str | None = None,
        caption: str | None = None,
        kind: str | None = None,
        quote_id: str | None = None,
        react_to: str | None = None,
        msg_id: str | None = None,
        timestamp: datetime | str | None = None,
    ) -> str:
        """A phone sends to a phone, a ``@lid`` or a group; returns the message id."""
        when = timestamp.isoformat() if isinstance(timestamp, datetime) else timestamp
        body: Json = {
            "from": from_phone,
            "to": to,
            "text": text,
            "mediaBase64": base64.b64encode(media).decode("ascii") if media is not None else None,
            "mimetype": mimetype,
            "filename": filename,
            "caption": caption,
            "kind": kind,
            "quoteId": quote_id,
            "reactTo": react_to,
            "id": msg_id,
            "timestamp": when,
        }
        answer = await self._call("POST", "/control/send", body)
        return str(answer["id"])

    async def add_phone(self, phone: str, push_name: str | None = None) -> Json:
        return await self._call("POST", "/control/phones", {"phone": phone, "pushName": push_name})

    async def inbox(self, phone: str) -> list[Json]:
        """What ``phone`` received, oldest first."""
        answer = await self._call("GET", f"/control/inbox/{quote(phone, safe='@')}")
        return list(answer["messages"])

    async def mark_read(self, phone: str, ids: list[str]) -> None:
        await self._call("POST", "/control/read", {"phone": phone, "ids": ids})

    async def create_group(self, name: str, owner: str, members: list[str]) -> str:
        body = {"name": name, "owner": owner, "members": members}
        return str((await self._call("POST", "/control/groups", body))["jid"])

    async def rename_group(self, jid: str, name: str) -> None:
        await self._call("POST", f"/control/groups/{quote(jid, safe='@')}/rename", {"name": name})

    async def change_members(
        self, jid: str, *, add: list[str] | None = None, remove: list[str] | None = None
    ) -> None:
        body = {"add": add, "remove": remove}
        await self._call("POST", f"/control/groups/{quote(jid, safe='@')}/members", body)

    async def blob(self, handle: str) -> bytes:
        """The bytes of a media blob (an inbox entry's ``media_handle``)."""
        response = await self._request("GET", f"/control/blobs/{quote(handle, safe='')}")
        return response.content

    async def _call(self, method: str, path: str, body: Json | None = None) -> Json:
        answer = (await self._request(method, path, body)).json()
        if not isinstance(answer, dict):
            raise TransientError(f"sandbox control API answered {answer!r}")
        return answer

    async def _request(self, method: str, path: str, body: Json | None = None) -> httpx.Response:
        try:
            response = await self._http.request(method, path, json=body)
        except httpx.TransportError as exc:
            raise TransientError(f"sandbox control API unreachable: {exc!r}") from exc
        if response.is_error:
            raise _error(response)
        return response


def _error(response: httpx.Response) -> WagateError:
    try:
        error = response.json()["error"]
        message, field = str(error["message"]), str(error.get("field") or "body")
    except (ValueError, KeyError, TypeError):
        message, field = response.text or response.reason_phrase, "body"
    status = response.status_code
    message = f"sandbox control API: {message} (HTTP {status})"
    if status == 404:
        return NotFound(message)
    if status == 422:
        return InvalidInput(field, message)
    if status in (401, 403):
        return Unauthorized(message)
    if status == 409:
        return Conflict(message)
    if status >= 500:
        return TransientError(message)
    return RequestError(message)
