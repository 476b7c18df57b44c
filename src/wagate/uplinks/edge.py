"""Seed 001's worker-proxy as an edge worker calls it: :class:`EdgeClient`, and the bodies it reads.

Five calls, each with ``Authorization: Bearer <WORKER_SECRET>`` and
``X-Wagate-Worker: <worker id>`` (wagate's worker-proxy claims instances per
worker; a foreign one ignores the header)::

    GET  /disconnected-instances?limit=N   the instances to connect
    POST /update-status                    an instance's status and QR
    GET  /queued-messages?instanceId=ID    an instance's messages to send
    POST /mark-sent                        sent (or failed)
    POST /inbound                          a received message

A failure is one of two kinds. :class:`EdgeUnavailable`: no answer, a 5xx,
408, 425 or 429, and 401 or 403 (a secret being rotated: what waits must not
be dropped for it; logged as an error): the call is worth trying again
later. :class:`EdgeRefused`: any other 4xx: the worker-proxy read the request
and will never take it as it is (the caller drops what it was reporting,
after logging it).

The seed fixes the paths, not every body: the answers are read accepting the
spellings hand-written worker-proxies use (an array, or ``{"data": [...]}``;
``id``/``instanceId``/``instance_id``; ``to``/``phone``/``number``;
``text``/``body``/``message``). ``docs/edge.md`` has the bodies.
"""

from __future__ import annotations

import base64
import binascii
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import httpx

from wagate.domain.lease import CLAIM_TTL_HEADER, ERROR_CODE_HEADER, WORKER_HEADER
from wagate.domain.message import (
    MEDIA_KINDS,
    ContactCard,
    Location,
    MessageKind,
    Outgoing,
    OutgoingMedia,
    Quote,
)
from wagate.ids import USER_SERVER

log = logging.getLogger(__name__)

_RETRYABLE = frozenset({408, 425, 429})
_CREDENTIALS = frozenset({401, 403})  # retried: the secret may be changing on one side
_LIST_KEYS = ("data", "instances", "messages", "items", "rows")


class EdgeError(Exception):
    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class EdgeUnavailable(EdgeError):
    """No answer, or one that says "later" (5xx, 408, 429): try again."""


class EdgeRefused(EdgeError):
    """A 4xx the request will always get: do not try it again."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"{status}: {message}")
        self.status = status


@dataclass(frozen=True, slots=True)
class QueuedMessage:
    """One message ``/queued-messages`` handed out.

    ``outgoing`` is what to send, its media still to be fetched from
    ``media_url`` when given; None when the body cannot be sent as it is
    (``problem`` says why, and the message is reported failed).
    """

    id: str
    outgoing: Outgoing | None
    media_url: str | None = None
    problem: str | None = None


class EdgeClient:
    """The worker-proxy at ``base_url``, called as worker ``worker_id``."""

    def __init__(
        self,
        base_url: str,
        secret: str,
        worker_id: str,
        *,
        client: httpx.AsyncClient,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self._headers = {"Authorization": f"Bearer {secret}", WORKER_HEADER: worker_id}
        self._http = client
        # how long wagate's worker-proxy keeps an instance ours after a call about it;
        # None: the worker-proxy does not say (a foreign one: it keeps no claims)
        self.claim_ttl_s: float | None = None

    async def instances(self, limit: int) -> list[str]:
        """The ids of the instances to connect (wagate's worker-proxy offers at most
        ``limit`` new ones, and lists again those this worker holds)."""
        body = await self._call("GET", "/disconnected-instances", params={"limit": str(limit)})
        ids = []
        for item in _items(body, "/disconnected-instances"):
            found = item if isinstance(item, str) else None
            if isinstance(item, dict):
                found = _first(item, "id", "instanceId", "instance_id")
            if isinstance(found, str | int) and not isinstance(found, bool) and str(found).strip():
                ids.append(str(found).strip())
            else:
                log.warning("/disconnected-instances: cannot read an instance id in %.200r", item)
        return list(dict.fromkeys(ids))

    async def update_status(self, body: Mapping[str, Any]) -> None:
        await self._call("POST", "/update-status", json=body)

    async def queued(self, instance_id: str) -> list[QueuedMessage]:
        body = await self._call("GET", "/queued-messages", params={"instanceId": instance_id})
        messages = []
        for item in _items(body, "/queued-messages"):
            message = read_queued(item) if isinstance(item, dict) else None
            if message is None:
                log.warning("/queued-messages: cannot read a message id in %.200r", item)
                continue
            messages.append(message)
        return messages

    async def post(self, path: str, body: Mapping[str, Any]) -> None:
        """``/inbound`` or ``/mark-sent``: taken when this returns."""
        await self._call("POST", path, json=body)

    async def _call(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, str] | None = None,
        json: Mapping[str, Any] | None = None,
    ) -> Any:
        url = self.base_url + path
        try:
            answer = await self._http.request(
                method, url, params=params, json=json, headers=self._headers
            )
        except httpx.TimeoutException:
            raise EdgeUnavailable(f"{path}: no answer in time") from None
        except httpx.HTTPError as exc:
            raise EdgeUnavailable(f"{path}: {type(exc).__name__}: {exc}"[:300]) from None
        ttl = answer.headers.get(CLAIM_TTL_HEADER)
        if ttl and ttl.isascii() and ttl.isdigit():
            self.claim_ttl_s = int(ttl) / 1000
        if answer.is_success:
            return _json_or_none(answer)
        message = f"{path}: {_error_of(answer)}"
        code = answer.headers.get(ERROR_CODE_HEADER)
        if code:
            message += f" ({code[:64]})"
        status = answer.status_code
        if status in _CREDENTIALS:
            log.error("%s: the worker-proxy refuses WORKER_SECRET (%d): check it", path, status)
        if status >= 500 or status in _RETRYABLE or status in _CREDENTIALS:
            raise EdgeUnavailable(f"{status} {message}")
        raise EdgeRefused(status, message)


# --- reading what the worker-proxy answers ------------------------------------------------


def read_queued(item: Mapping[str, Any]) -> QueuedMessage | None:
    """A queued message in any of the common spellings; None without an id."""
    message_id = _first(item, "id", "messageId", "message_id")
    if not isinstance(message_id, str | int) or not str(message_id).strip():
        return None
    mid = str(message_id).strip()
    try:
        outgoing, media_url = _outgoing(item)
    except ValueError as exc:
        return QueuedMessage(mid, None, problem=str(exc))
    return QueuedMessage(mid, outgoing, media_url=media_url)


def _outgoing(item: Mapping[str, Any]) -> tuple[Outgoing, str | None]:
    to = _text(item, "jid", "to", "phone", "number", "chatId", "chat_id", "remoteJid", "chat")
    if not to:
        raise ValueError("no recipient (to, phone, number or jid)")
    media, media_url = _media(item.get("media"), item)
    kind = _kind(_text(item, "type", "messageType", "kind"), media is not None or bool(media_url))
    text = _text(item, "text", "body", "message", "content")
    caption = _text(item, "caption")
    if kind in MEDIA_KINDS:
        text = caption or text
        if media is None and not media_url:
            raise ValueError(f"a {kind} message without media (media.base64 or mediaUrl)")
    elif kind is MessageKind.TEXT and not text:
        raise ValueError("a text message without text (text, body or message)")
    quoted = _text(item, "quotedId", "quoted_id", "replyTo", "reply_to")
    outgoing = Outgoing(
        to=recipient_jid(to),
        kind=kind,
        text=text,
        media=media,
        location=_location(item.get("location")) if kind is MessageKind.LOCATION else None,
        contact=_contact(item.get("contact")) if kind is MessageKind.CONTACT else None,
        react_to=_text(item, "reactTo", "react_to") if kind is MessageKind.REACTION else None,
        quote=Quote(quoted) if quoted else None,
    )
    if kind is MessageKind.REACTION and not outgoing.react_to:
        raise ValueError("a reaction without reactTo")
    return outgoing, media_url


def recipient_jid(to: str) -> str:
    """A JID as it is; a phone number (``+``, spaces and dashes allowed) as a user JID."""
    to = to.strip()
    if "@" in to:
        return to
    digits = "".join(ch for ch in to if ch not in "+ -()")
    if not (digits.isascii() and digits.isdigit() and 5 <= len(digits) <= 20):
        raise ValueError(f"the recipient {to[:40]!r} is neither a JID nor a phone number")
    return f"{digits}@{USER_SERVER}"


def _media(value: Any, item: Mapping[str, Any]) -> tuple[OutgoingMedia | None, str | None]:
    url = _text(item, "mediaUrl", "media_url")
    if isinstance(value, str):  # a URL, or a data URL
        value = {"url": value} if not value.startswith("data:") else {"base64": value}
    if not isinstance(value, Mapping):
        return None, url
    url = _text(value, "url") or url
    data = _text(value, "base64", "data")
    mimetype = _text(value, "mimetype", "mimeType", "mime_type", "contentType")
    filename = _text(value, "filename", "fileName", "name")
    if not data:
        return None, url
    if data.startswith("data:"):
        header, _, data = data.partition(",")
        mimetype = mimetype or header.removeprefix("data:").split(";", 1)[0] or None
    try:
        raw = base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("media.base64 is not valid base64") from None
    return OutgoingMedia(raw, mimetype or "application/octet-stream", filename), None


_KINDS = {"chat": MessageKind.TEXT, "ptt": MessageKind.VOICE, "vcard": MessageKind.CONTACT}


def _kind(word: str | None, has_media: bool) -> MessageKind:
    if word:
        word = word.strip().lower()
        if word in _KINDS:
            return _KINDS[word]
        try:
            kind = MessageKind(word)
        except ValueError:
            kind = MessageKind.OTHER
        if kind is MessageKind.OTHER:  # nothing an engine can send
            raise ValueError(f"unknown message type {word[:40]!r}")
        return kind
    return MessageKind.DOCUMENT if has_media else MessageKind.TEXT


def _location(value: Any) -> Location:
    if not isinstance(value, Mapping):
        raise ValueError("a location message without location {latitude, longitude}")
    try:
        return Location(
            float(_first(value, "latitude", "lat")),
            float(_first(value, "longitude", "lng", "lon")),
            _text(value, "name"),
            _text(value, "address"),
        )
    except (TypeError, ValueError):
        raise ValueError("location needs numeric latitude and longitude") from None


def _contact(value: Any) -> ContactCard:
    if not isinstance(value, Mapping) or not _text(value, "name", "displayName"):
        raise ValueError("a contact message without contact {name, phone or vcard}")
    return ContactCard(
        _text(value, "name", "displayName") or "",
        _text(value, "phone", "number"),
        _text(value, "vcard"),
    )


def _items(body: Any, path: str) -> list[Any]:
    if isinstance(body, list):
        return body
    if isinstance(body, dict):
        for key in _LIST_KEYS:
            found = body.get(key)
            if isinstance(found, list):
                return found
    if body not in (None, {}):
        log.warning(
            "%s: cannot read the answer %.200r (want an array or {data: [...]})", path, body
        )
    return []


def _first(item: Mapping[str, Any], *keys: str) -> Any:
    """The first of ``keys`` given a value (an empty string is no value)."""
    for key in keys:
        value = item.get(key)
        if value is not None and value != "":
            return value
    return None


def _text(item: Mapping[str, Any], *keys: str) -> str | None:
    value = _first(item, *keys)
    if isinstance(value, int | float) and not isinstance(value, bool):
        value = str(value)
    return value if isinstance(value, str) else None


def _json_or_none(answer: httpx.Response) -> Any:
    if not answer.content:
        return None
    try:
        return answer.json()
    except ValueError:
        return None


def _error_of(answer: httpx.Response) -> str:
    body = _json_or_none(answer)
    if isinstance(body, dict):
        for key in ("error", "message", "detail"):
            found = body.get(key)
            if isinstance(found, str):
                return found[:300]
    return answer.text[:300] or answer.reason_phrase
