"""A session's link to the sandbox network: events in, verbs out.

:class:`SandboxLink` speaks the frames of :mod:`wagate.sandbox.network`
and :mod:`wagate.sandbox.messaging` over a
:class:`~wagate.sandbox.transport.Channel` that
:class:`~wagate.engine.sandbox.client.SandboxEngine` opens for it.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import re
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable
from types import TracebackType
from typing import Self, TypeVar

from wagate.domain.group import GroupInfo
from wagate.domain.message import MediaRef, Outgoing, OutgoingMedia, SendResult
from wagate.domain.session import DisconnectKind
from wagate.engine.base import AuthStore, Connected, Disconnected, EngineEvent, LinkOptions
from wagate.engine.sandbox import codec
from wagate.engine.sandbox.calls import Calls, Refused
from wagate.errors import EngineError, InvalidInput, NotFound, TransientError, WagateError
from wagate.sandbox.transport import BadFrame, Channel, ChannelClosed, Frame

log = logging.getLogger(__name__)

T = TypeVar("T")
Opener = Callable[[LinkOptions], Awaitable[Channel]]
FrameHandler = Callable[[Frame], EngineEvent | None]

_TRANSIENT_CODES = frozenset({"unavailable", "hello_timeout"})
# Raw bytes per frame: base64 makes them a third larger, under websockets' 1 MiB default.
# events read ahead of the consumer at most; past it the reader waits (and the network with it)
INBOUND_MAX = 64
UPLOAD_CHUNK = 256 * 1024
DOWNLOAD_CHUNK = 256 * 1024


class SandboxLink:
    """One session's connection to the sandbox network (see :class:`wagate.engine.base.Link`).

    While open, a reader task owned by the link sorts incoming frames: answers
    to requests go to the waiting verb (:class:`~.calls.Calls`), everything else
    to :meth:`events`. After the consumer has taken a queued event (a message,
    receipt or group change) the link confirms it with ``handled``; an event
    never confirmed is delivered again on the next connection, so a crash
    between receiving and handling an event loses nothing.

    Verbs raise :class:`~wagate.errors.TransientError` while the link is down or
    not logged in, :class:`~wagate.errors.InvalidInput` for a message the network
    refuses (unknown recipient, group or blob, media too large), and
    :class:`~wagate.errors.NotFound` from :meth:`download` for an unknown blob.
    """

    def __init__(
        self,
        opener: Opener,
        auth: AuthStore,
        options: LinkOptions,
        *,
        client: str | None,
        device_name: str,
        open_timeout_s: float,
        request_timeout_s: float = 30.0,
    ) -> None:
        self._opener = opener
        self._auth = auth
        self._options = options
        self._client = client
        self._device_name = device_name
        self._open_timeout_s = open_timeout_s
        self._channel: Channel | None = None
        self._reader: asyncio.Task[None] | None = None
        self._inbound: asyncio.Queue[Frame] = asyncio.Queue(maxsize=INBOUND_MAX)
        self._draining = False
        self._calls = Calls(request_timeout_s)
        self._logged_in = False
        self._finished = False  # the one Disconnected was yielded, or we closed the link
        self._handlers: dict[str, FrameHandler] = {
            "qr": codec.qr,
            "pair_code": codec.pair_code,
            "connected": self._on_connected,
            "disconnected": codec.disconnected,
            "error": self._on_error,
            "message": codec.message,
            "receipt": codec.receipt,
            "group": codec.group,
        }

    async def __aenter__(self) -> Self:
        channel = await self._opener(self._options)
        try:
            first = await self._handshake(channel)
        except BaseException:
            await channel.close()
            raise
        self._channel = channel
        self._inbound.put_nowait(first)
        name = f"sandbox-link-{self._auth.session_id}"
        self._reader = asyncio.create_task(self._read(channel), name=name)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._finished = True
        self._calls.fail_all("the sandbox link is closed")
        if self._channel is not None:
            await self._channel.close()
        if self._reader is not None:
            self._reader.cancel()
            await asyncio.wait([self._reader])
            if not self._reader.cancelled() and self._reader.exception() is not None:
                log.error("sandbox link reader failed", exc_info=self._reader.exception())
        with contextlib.suppress(asyncio.QueueFull):
            self._inbound.put_nowait({})  # wakes events() so it ends quietly

    async def _handshake(self, channel: Channel) -> Frame:
        """Say hello and wait for the network's first answer; refusals become errors."""
        try:
            await channel.send(await self._hello())
        except ChannelClosed:
            pass  # refused before our hello went out: the reason is waiting to be read
        try:
            async with asyncio.timeout(self._open_timeout_s):
                first = await channel.recv()
        except (ChannelClosed, BadFrame, TimeoutError) as exc:
            raise TransientError(f"sandbox handshake failed: {str(exc) or 'timed out'}") from exc
        if first.get("ev") == "error":
            code, message = str(first.get("code")), str(first.get("message"))
            if code in _TRANSIENT_CODES:
                raise TransientError(message)
            raise EngineError(message, code=code)
        return first

    async def _hello(self) -> Frame:
        creds = await self._auth.load("creds")
        if creds is not None and creds.get("engine") != "sandbox":
            log.warning("session %s: ignoring creds of another engine", self._auth.session_id)
            creds = None
        pair_phone = self._options.pair_phone
        return {
            "op": "hello",
            "session": self._auth.session_id,
            "client": self._client,
            "device_name": self._device_name,
            "creds": creds,
            "pair_phone": re.sub(r"\D", "", pair_phone) if pair_phone else None,
        }

    async def _read(self, channel: Channel) -> None:
        """Sort frames until the channel ends: answers to their requests, the rest to events."""
        while True:
            try:
                frame = await channel.recv()
            except (ChannelClosed, BadFrame) as exc:
                reason = f"connection lost: {exc}" if str(exc) else "connection lost"
                self._calls.fail_all(reason)
                lost = {
                    "ev": "disconnected",
                    "kind": DisconnectKind.CONNECTION_LOST,
                    "reason": reason,
                }
                await self._inbound.put(lost)
                return
            if "rid" in frame:
                self._calls.answer(frame)
            elif not self._draining:  # after a drain: unconfirmed, so the network keeps it
                await self._inbound.put(frame)

    async def drain(self) -> None:
        """Stop intake: frames already read are still yielded (and confirmed), then the end.

        Events arriving later are not confirmed: the network delivers them
        again on the next connection (its offline queue).
        """
        self._draining = True
        with contextlib.suppress(asyncio.QueueFull):
            self._inbound.put_nowait({})  # wakes events() if it waits on an empty queue

    async def events(self) -> AsyncIterator[EngineEvent]:
        """Events until (and including) the one :class:`Disconnected`."""
        while not self._finished:
            if self._draining and self._inbound.empty():
                return
            frame = await self._inbound.get()
            if self._finished:  # closed by us while waiting: end quietly
                return
            if not frame:  # a wake-up
                continue
            event = (
                await self._paired(frame) if frame.get("ev") == "paired" else self._decode(frame)
            )
            if isinstance(event, Disconnected):
                self._finished = True
                self._calls.fail_all(f"the sandbox link is down: {event.kind}")
                await self._require_channel().close()
            if event is not None:
                yield event
            # Confirmed only once the consumer asks for the next event: it handled this one.
            seq = frame.get("q")
            if isinstance(seq, int) and not self._finished:
                await self._confirm(seq)

    def _decode(self, frame: Frame) -> EngineEvent | None:
        name = frame.get("ev")
        handler = self._handlers.get(str(name))
        if handler is None:
            return None
        try:
            return handler(frame)
        except (KeyError, ValueError, TypeError) as exc:
            return self._malformed(frame, exc)

    def _malformed(self, frame: Frame, exc: Exception) -> Disconnected | None:
        # Only the frame's name is logged: a paired frame carries secrets.
        name = frame.get("ev")
        log.warning("session %s: malformed %r frame: %r", self._auth.session_id, name, exc)
        if "q" in frame:
            return None  # one bad queued event is skipped (and confirmed), not fatal
        return Disconnected(DisconnectKind.CONNECTION_LOST, "malformed frame from the network")

    async def _confirm(self, seq: int) -> None:
        with contextlib.suppress(ChannelClosed):
            await self._require_channel().send({"op": "handled", "q": seq})

    def _require_channel(self) -> Channel:
        if self._channel is None:
            raise RuntimeError("the link is not open; use it as an async context manager")
        return self._channel

    # --- verbs ------------------------------------------------------------------------

    async def logout(self) -> None:
        """Unlink this device; the stream then ends with ``logged_out``."""
        if self._finished:
            return
        try:
            await self._require_channel().send({"op": "logout"})
        except ChannelClosed:
            pass  # already gone: the stream reports connection_lost

    async def send(self, message: Outgoing) -> SendResult:
        """Send one message (uploading its media first); see the class docstring for errors."""
        blob = await self._upload(message.media) if message.media is not None else None
        return await self._call(codec.send_frame(message, blob), codec.send_result, "send")

    async def _upload(self, media: OutgoingMedia) -> str:
        data, upload_id = media.data, secrets.token_hex(8)
        if not data:
            raise InvalidInput("media", "media must not be empty")
        handle = ""
        for start in range(0, len(data), UPLOAD_CHUNK):
            piece = base64.b64encode(data[start : start + UPLOAD_CHUNK]).decode("ascii")
            last = start + UPLOAD_CHUNK >= len(data)
            frame = {"op": "upload", "upload": upload_id, "data": piece, "last": last}
            reply = await self._call(frame, _as_is, "send")
            handle = codec.handle(reply) if last else handle
        return handle

    async def download(self, media: MediaRef) -> AsyncIterator[bytes]:
        """The media's bytes, in chunks fetched one at a time."""
        handle = media.handle.get("blob")
        if not isinstance(handle, str):
            raise NotFound("this media has no sandbox blob handle")
        offset, total = 0, 1
        while offset < total:
            frame = {"op": "download", "blob": handle, "offset": offset, "size": DOWNLOAD_CHUNK}
            piece, total = await self._call(frame, codec.chunk, "download")
            if not piece:
                if offset < total:
                    raise TransientError(f"the sandbox cut media {handle} short at {offset}")
                return
            offset += len(piece)
            yield piece

    async def groups(self) -> list[GroupInfo]:
        return await self._call({"op": "groups"}, codec.group_infos, "groups")

    async def set_presence(self, available: bool) -> None:
        await self._call({"op": "presence", "available": available}, _as_is, "presence")

    async def _call(self, frame: Frame, parse: Callable[[Frame], T], verb: str) -> T:
        if self._finished or self._channel is None:
            raise TransientError(f"cannot {verb}: the sandbox link is down")
        if not self._logged_in:
            raise TransientError(f"cannot {verb}: the sandbox link is not logged in yet")
        try:
            return parse(await self._calls.call(self._channel, frame))
        except Refused as exc:
            raise _translate(exc, verb) from None
        except (KeyError, ValueError, TypeError) as exc:
            raise EngineError(f"malformed answer from the sandbox to {verb}: {exc!r}") from exc

    # --- frames with side effects -------------------------------------------------------

    def _on_connected(self, frame: Frame) -> Connected:
        event = codec.connected(frame)
        self._logged_in = True
        return event

    async def _paired(self, frame: Frame) -> Disconnected | None:
        """Keep the credentials the network gave at pairing; None, or why the link ends."""
        creds = frame.get("creds")
        if not isinstance(creds, dict):
            return self._malformed(frame, TypeError("creds must be an object"))
        await self._auth.save("creds", creds)
        log.info("session %s: paired, creds saved", self._auth.session_id)
        return None

    def _on_error(self, frame: Frame) -> None:
        log.warning(
            "session %s: network error %s: %s",
            self._auth.session_id,
            frame.get("code"),
            frame.get("message"),
        )


def _as_is(reply: Frame) -> Frame:
    return reply


# Refusals that mean the request itself is wrong; the rest are the network's trouble.
_REQUEST_CODES = frozenset({"invalid_input", "media_too_large", "not_found", "conflict"})
_FIELDS = {"send": "message", "download": "media", "presence": "available"}


def _translate(refused: Refused, verb: str) -> WagateError:
    message = f"sandbox {verb}: {refused.message}"
    if refused.code == "not_found" and verb == "download":
        return NotFound(message)
    if refused.code in _REQUEST_CODES:
        # A send's only unknowns are its recipient (the blob is checked as media).
        missing = "to" if refused.code == "not_found" and verb == "send" else None
        return InvalidInput(refused.field or missing or _FIELDS.get(verb, verb), message)
    if refused.code == "not_logged_in":
        return TransientError(message)
    return EngineError(message, code=refused.code)
