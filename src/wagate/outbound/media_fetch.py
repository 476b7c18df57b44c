"""Media to send, however the caller gives it: a URL we fetch, base64, or an upload.

Fetching a URL the caller chose is a classic way into a private network, so
:class:`MediaFetcher` is careful: every hop of a redirect chain is checked by
:func:`wagate.netguard.check_url` before it is requested, and the address the
connection actually reached is checked again (a DNS answer can change between
our lookup and the client's). The body is streamed under a size cap and a
total deadline, and aborted as soon as it passes the cap.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import ipaddress
import posixpath
import re
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

import httpx

from wagate.errors import InvalidInput
from wagate.netguard import check_url, is_public

_DATA_URL = re.compile(r"^data:(?P<mime>[\w.+-]+/[\w.+-]+)?(?:;[\w-]+=[^;,]*)*;base64,", re.I)
_WHITESPACE = re.compile(r"\s+")


class MediaTooLarge(InvalidInput):
    """The media is larger than ``WAGATE_SEND_MEDIA_MAX_BYTES``."""

    code = "media_too_large"


@dataclass(frozen=True, slots=True)
class MediaBytes:
    """Media in hand, with what its source said about it (a claim: see :mod:`.media_types`)."""

    data: bytes
    mimetype: str | None = None
    filename: str | None = None
    url: str | None = None  # where it came from, after redirects


def too_large(field: str, max_bytes: int) -> MediaTooLarge:
    return MediaTooLarge(field, f"{field} is larger than the limit of {max_bytes} bytes")


def decode_base64(value: str, field: str, max_bytes: int) -> MediaBytes:
    """Plain base64 or a ``data:<mime>;base64,`` URL; InvalidInput naming ``field`` if neither."""
    mimetype = None
    match = _DATA_URL.match(value)
    if match:
        mimetype = match.group("mime")
        value = value[match.end() :]
    compact = _WHITESPACE.sub("", value)
    if len(compact) * 3 // 4 > max_bytes + 2:  # refuse before decoding a huge string
        raise too_large(field, max_bytes)
    try:
        data = base64.b64decode(compact, validate=True)
    except (binascii.Error, ValueError):
        raise InvalidInput(field, f"{field} is not valid base64") from None
    if not data:
        raise InvalidInput(field, f"{field} is empty")
    if len(data) > max_bytes:
        raise too_large(field, max_bytes)
    return MediaBytes(data, mimetype)


class MediaFetcher:
    """Downloads media from caller-given URLs; see the module docstring for the guards."""

    def __init__(
        self,
        *,
        max_bytes: int,
        timeout_s: float,
        max_redirects: int = 5,
        allow_private: bool = False,
        truncate: bool = False,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.max_bytes = max_bytes
        self.timeout_s = timeout_s
        self.max_redirects = max_redirects
        self.allow_private = allow_private
        self.truncate = truncate  # keep the first max_bytes (a page's head) instead of refusing
        self._transport = transport

    async def fetch(self, url: str, field: str) -> MediaBytes:
        """The body at ``url``; InvalidInput (or :class:`MediaTooLarge`) naming ``field``."""
        try:
            async with asyncio.timeout(self.timeout_s):
                return await self._follow(url, field)
        except TimeoutError:
            raise InvalidInput(
                field, f"{field} did not answer completely within {self.timeout_s:g}s"
            ) from None
        except httpx.HTTPError as exc:
            raise InvalidInput(field, f"{field} could not be fetched: {_describe(exc)}") from None

    async def _follow(self, url: str, field: str) -> MediaBytes:
        async with httpx.AsyncClient(
            transport=self._transport,
            follow_redirects=False,  # we follow by hand, checking every hop
            trust_env=False,  # an environment proxy would hide the real target from the guard
            timeout=self.timeout_s,
        ) as client:
            for _ in range(self.max_redirects + 1):
                await check_url(url, field, allow_private=self.allow_private)
                async with client.stream("GET", url) as response:
                    self._check_peer(response, field)
                    if response.next_request is not None:
                        url = str(response.next_request.url)
                        continue
                    return await self._body(response, url, field)
        raise InvalidInput(field, f"{field} redirected more than {self.max_redirects} times")

    def _check_peer(self, response: httpx.Response, field: str) -> None:
        if self.allow_private:
            return
        stream = response.extensions.get("network_stream")
        address = stream.get_extra_info("server_addr") if stream is not None else None
        if not address:
            return
        try:
            ip = ipaddress.ip_address(address[0])
        except ValueError:
            return
        if not is_public(ip):
            raise InvalidInput(
                field, f"{field} points at an internal address ({ip}); that is not allowed"
            )

    async def _body(self, response: httpx.Response, url: str, field: str) -> MediaBytes:
        if not response.is_success:
            raise InvalidInput(field, f"{field} answered HTTP {response.status_code}")
        declared = response.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > self.max_bytes and not self.truncate:
            raise too_large(field, self.max_bytes)
        data = await self._read(response, field)
        if not data:
            raise InvalidInput(field, f"{field} answered with an empty body")
        content_type = response.headers.get("content-type", "").split(";", 1)[0].strip()
        return MediaBytes(data, content_type or None, _filename(url), url)

    async def _read(self, response: httpx.Response, field: str) -> bytes:
        chunks: list[bytes] = []
        size = 0
        async for chunk in response.aiter_bytes():
            size += len(chunk)
            chunks.append(chunk)
            if size > self.max_bytes:
                if not self.truncate:
                    raise too_large(field, self.max_bytes)
                break  # leaving the stream closes the connection: the rest is never read
        return b"".join(chunks)[: self.max_bytes]


def _filename(url: str) -> str | None:
    name = posixpath.basename(unquote(urlsplit(url).path))
    return name or None


def _describe(exc: httpx.HTTPError) -> str:
    # the kind of failure, without echoing internals such as resolver details
    names = {
        httpx.ConnectError: "connection failed",
        httpx.ReadError: "the connection broke",
        httpx.RemoteProtocolError: "the server broke the HTTP protocol",
        httpx.UnsupportedProtocol: "unsupported URL scheme",
        httpx.InvalidURL: "invalid URL",
    }
    return next((text for cls, text in names.items() if isinstance(exc, cls)), type(exc).__name__)
