"""A session's link through neonize: its event stream and its verbs (the ``Link`` protocol)."""

from __future__ import annotations

import asyncio
import base64
import binascii
import logging
import re
from collections.abc import AsyncIterator, Callable, Coroutine
from datetime import UTC, datetime
from types import TracebackType
from typing import Any, Self

from google.protobuf.message import DecodeError

from wagate.domain.group import GroupInfo
from wagate.domain.message import MEDIA_KINDS, MediaRef, Outgoing, SendResult
from wagate.domain.session import DisconnectKind
from wagate.engine.base import (
    AuthStore,
    Disconnected,
    EngineEvent,
    LinkOptions,
    PairCode,
    QRCode,
)
from wagate.engine.neonize import _loader as nz
from wagate.engine.neonize import client as codes
from wagate.engine.neonize import failures, inbound, outbound
from wagate.engine.neonize.client import ClientSlot
from wagate.engine.neonize.session import AUTH_RECORD, SessionClient
from wagate.errors import InvalidInput, ProxyFailure, TransientError

log = logging.getLogger(__name__)

FIRST_QR_TTL_S, NEXT_QR_TTL_S = 60.0, 20.0  # whatsmeow's qrchan.go: 60 s, then 20 s each
DOWNLOAD_CHUNK = 256 * 1024
KEEPALIVE_FAILURES = 2  # whatsmeow's KeepAliveTimeout.ErrorCount that counts as lost


class NeonizeLink:
    """One session's live connection through neonize (see :class:`wagate.engine.base.Link`)."""

    def __init__(
        self,
        session: SessionClient,
        auth: AuthStore,
        options: LinkOptions,
        *,
        device_name: str,
        reconnect_grace_s: float,
        dial_deadline_s: float,
    ) -> None:
        self._session = session
        self._auth = auth
        self._options = options
        self._device_name = device_name
        self._grace_s = reconnect_grace_s
        self._dial_deadline_s = dial_deadline_s
        self._dial_timer: asyncio.TimerHandle | None = None
        self._queue: asyncio.Queue[EngineEvent | None] = asyncio.Queue()
        self._slot: ClientSlot | None = None
        self._ended = False  # the one Disconnected is queued
        self._closed = False
        self._connected = False
        self._qrs = 0
        self._grace: asyncio.TimerHandle | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        # device record writes: in the order asked, and finished (never cancelled) at close
        self._record_lock = asyncio.Lock()
        self._writes: set[asyncio.Task[None]] = set()
        self._on_event: dict[int, Callable[[Any], None]] = {
            codes.CONNECTED: self._connected_event,
            codes.DISCONNECTED: lambda _: self._connection_trouble("the connection dropped"),
            codes.KEEPALIVE_TIMEOUT: self._keepalive_timeout,
            codes.KEEPALIVE_RESTORED: lambda _: self._recovered(),
            codes.LOGGED_OUT: self._logged_out,
            codes.STREAM_REPLACED: lambda _: self._replaced(),
            codes.TEMPORARY_BAN: lambda ev: self._push(inbound.temporary_ban(ev, _now())),
            codes.CONNECT_FAILURE: lambda ev: self._push(inbound.connect_failure(ev)),
            codes.CLIENT_OUTDATED: lambda _: self._push(inbound.client_outdated()),
            codes.MESSAGE: lambda ev: self._push(inbound.message(ev)),
            codes.RECEIPT: lambda ev: self._push(inbound.receipt(ev)),
            codes.GROUP_INFO: lambda ev: self._push(inbound.group_change(ev)),
            codes.JOINED_GROUP: lambda ev: self._push(inbound.joined_group(ev)),
        }

    # --- lifecycle --------------------------------------------------------------------

    async def __aenter__(self) -> Self:
        slot = await self._session.open(self, self._options, self._auth)
        self._watch_dial(slot)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._closed = True
        self._cancel_grace()
        if self._dial_timer is not None:
            self._dial_timer.cancel()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await asyncio.gather(*self._writes, return_exceptions=True)
        await self._session.close()

    async def events(self) -> AsyncIterator[EngineEvent]:
        """Events until (and including) the one :class:`Disconnected`."""
        while not self._closed:
            event = await self._queue.get()
            if event is None:  # drained
                return
            yield event
            if isinstance(event, Disconnected):
                return

    async def drain(self) -> None:
        """Stop intake: what is queued here is still yielded, then the stream ends."""
        if not self._ended and not self._closed:
            self._ended = True
            self._cancel_grace()
            self._queue.put_nowait(None)

    # --- what neonize says (the session's Sink) ----------------------------------------

    def attach(self, slot: ClientSlot) -> None:
        self._slot = slot

    def on_qr(self, code: str) -> None:
        self._qrs += 1
        self._push(QRCode(code, FIRST_QR_TTL_S if self._qrs == 1 else NEXT_QR_TTL_S))
        if self._qrs == 1 and self._options.pair_phone:
            # Once per pairing, now that the websocket is up; never again on later QRs.
            self._spawn(self._request_pair_code(self._options.pair_phone))

    def on_login_status(self, status: str) -> None:
        event = inbound.login_status(status)
        if event is None:
            self._session.log.info("login status: %s", status)
        self._push(event)

    def on_event(self, code: int, event: Any) -> None:
        handler = self._on_event.get(code)
        if handler is None:
            return
        try:
            handler(event)
        except (ValueError, TypeError, AttributeError) as exc:  # a proto we cannot read
            self._session.log.warning("cannot map neonize event %d: %r", code, exc)

    def on_ended(self, error: str | None) -> None:
        if self._connected:
            # Go's event pipeline is gone while logged in: nothing more will arrive.
            reason = f"neonize's event pipeline ended ({error or 'no error'}); restarting"
            self._end(DisconnectKind.CONNECTION_LOST, reason)
            return
        failure = failures.connect_error(error or "the connect task ended", self._options.proxy)
        kind = (
            DisconnectKind.PROXY_ERROR
            if isinstance(failure, ProxyFailure)
            else DisconnectKind.CONNECTION_LOST
        )
        self._end(kind, failure.message)

    # --- a dial that never gets anywhere ------------------------------------------------

    def _watch_dial(self, slot: ClientSlot) -> None:
        """End the link if the dial shows no sign of life in time.

        whatsmeow's dial has no deadline of its own through a SOCKS5 proxy that
        accepts and never answers (and takes a minute through an HTTP one): no
        QR, no event, no end of the connect task, ever. Without this the
        session would show "connecting" forever and its proxy would never be
        swapped.
        """
        if slot.alive.is_set():
            return
        loop = asyncio.get_running_loop()
        delay = max(0.0, slot.dialed_at + self._dial_deadline_s - loop.time())
        self._dial_timer = loop.call_later(delay, self._dial_expired, slot)

    def _dial_expired(self, slot: ClientSlot) -> None:
        self._dial_timer = None
        if slot.alive.is_set() or self._ended or self._closed:
            return
        self._session.dial_timed_out(slot)
        waited = f"within {self._dial_deadline_s:g}s"
        proxy = self._options.proxy
        if proxy:
            reason = f"proxy {failures.redact_url(proxy)} did not get through to WhatsApp {waited}"
            self._end(DisconnectKind.PROXY_ERROR, reason)
        else:
            self._end(DisconnectKind.CONNECTION_LOST, f"WhatsApp did not answer {waited}")

    # --- mapping that needs the link's state -------------------------------------------

    def _replaced(self) -> None:
        if self._session.excuse_replaced():
            self._end(DisconnectKind.CONNECTION_LOST, _REPLACED_BY_OURS)
        else:
            self._end(DisconnectKind.REPLACED, _REPLACED)

    def _connected_event(self, _event: Any) -> None:
        recovered = self._grace is not None
        self._cancel_grace()
        if self._connected:
            if recovered:
                self._session.log.info("whatsmeow reconnected by itself")
            return
        slot = self._require_slot()
        connected = inbound.connected(slot.client.me, self._device_name)
        self._connected = True
        self._remember_device(connected.jid, connected.lid)
        self._push(connected)

    def _remember_device(self, jid: str, lid: str | None) -> None:
        self._write_record({"jid": jid, "lid": lid})

    def _write_record(self, record: dict[str, Any]) -> None:
        """Save the device record after every write asked before it (see ``__aexit__``)."""

        async def write() -> None:
            async with self._record_lock:
                try:
                    await self._auth.save(AUTH_RECORD, record)
                except OSError as exc:  # the link works without it; PostgreSQL stores need it
                    self._session.log.warning("could not record the device JID: %s", exc)

        task = asyncio.get_running_loop().create_task(write())
        self._writes.add(task)
        task.add_done_callback(self._writes.discard)

    def _keepalive_timeout(self, event: Any) -> None:
        if event.ErrorCount >= KEEPALIVE_FAILURES:
            self._connection_trouble(f"{event.ErrorCount} keep-alive pings went unanswered")

    def _connection_trouble(self, reason: str) -> None:
        """whatsmeow reconnects by itself after a login; give it a moment before giving up."""
        if not self._connected or self._ended:
            return
        if self._grace_s <= 0:
            self._end(DisconnectKind.CONNECTION_LOST, reason)
        elif self._grace is None:
            loop = asyncio.get_running_loop()
            self._grace = loop.call_later(
                self._grace_s, self._end, DisconnectKind.CONNECTION_LOST, reason
            )

    def _recovered(self) -> None:
        self._cancel_grace()

    def _cancel_grace(self) -> None:
        if self._grace is not None:
            self._grace.cancel()
            self._grace = None

    def _logged_out(self, event: Any) -> None:
        self._forget_device()  # whatsmeow has deleted the device already
        self._push(inbound.logged_out(event))

    def _forget_device(self) -> None:
        self._write_record({})

    def _end(self, kind: DisconnectKind, reason: str) -> None:
        self._push(Disconnected(kind, reason))

    def _push(self, event: EngineEvent | None) -> None:
        if event is None or self._ended or self._closed:
            return
        if isinstance(event, Disconnected):
            self._ended = True
            self._cancel_grace()
        self._queue.put_nowait(event)

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and (exc := task.exception()) is not None:
            self._session.log.error("link task failed", exc_info=exc)

    async def _request_pair_code(self, phone: str) -> None:
        client = self._require_slot().client
        digits = re.sub(r"\D", "", phone)
        try:
            code = await client.PairPhone(
                digits,
                True,
                client_name=nz.nenum.ClientName.LINUX,
                client_type=nz.nenum.ClientType.CHROME,
            )
        except Exception as exc:  # the QR still works; the operator sees why the code did not
            self._session.log.warning("no pairing code: %s", failures.call_error("pair", exc))
            return
        self._push(PairCode(code))

    # --- verbs --------------------------------------------------------------------------

    def _require_slot(self) -> ClientSlot:
        if self._slot is None:
            raise RuntimeError("the link is not open; use it as an async context manager")
        return self._slot

    def _live(self) -> Any:
        slot = self._require_slot()
        if self._ended or self._closed or not slot.logged_in:
            raise TransientError(f"session {self._session.session_id} is not connected")
        return slot.client

    async def logout(self) -> None:
        """Unlink this device; the stream then ends with ``logged_out``."""
        if self._ended or self._closed:
            return
        try:
            await self._live().logout()
        except Exception as exc:
            raise failures.call_error("logout", exc) from exc
        self._forget_device()
        self._end(DisconnectKind.LOGGED_OUT, "logged out by request")

    async def send(self, message: Outgoing) -> SendResult:
        outbound.check(message)
        client = self._live()
        try:
            upload = None
            if message.kind in MEDIA_KINDS and message.media is not None:
                upload = await client.upload(message.media.data, outbound.upload_type(message.kind))
            me = client.me
            own = me.JID.User if me is not None else None
            proto = outbound.build(message, own_user=own, upload=upload)
            response = await client.send_message(outbound.parse_jid(message.to), proto)
        except Exception as exc:
            raise failures.call_error("send", exc) from exc
        sent_at = inbound.from_s(response.Timestamp) if response.Timestamp else _now()
        return SendResult(id=response.ID, timestamp=sent_at)

    async def download(self, media: MediaRef) -> AsyncIterator[bytes]:
        holder = _media_message(media)
        try:
            data = await self._live().download_any(holder)
        except Exception as exc:
            raise failures.call_error("download", exc) from exc
        for start in range(0, len(data), DOWNLOAD_CHUNK):
            yield data[start : start + DOWNLOAD_CHUNK]

    async def groups(self) -> list[GroupInfo]:
        try:
            found = await self._live().get_joined_groups()
        except Exception as exc:
            raise failures.call_error("groups", exc) from exc
        return [inbound.group_info(group) for group in found]

    async def group_info(self, jid: str) -> GroupInfo:
        """One group's name, owner and size (not part of the engine protocol yet)."""
        try:
            info = await self._live().get_group_info(outbound.parse_jid(jid, "jid"))
        except Exception as exc:
            raise failures.call_error("group info", exc) from exc
        return inbound.group_info(info)

    async def set_presence(self, available: bool) -> None:
        presence = nz.nenum.Presence.AVAILABLE if available else nz.nenum.Presence.UNAVAILABLE
        try:
            await self._live().send_presence(presence)
        except Exception as exc:
            raise failures.call_error("presence", exc) from exc

    async def is_connected(self) -> bool:
        """Whether Go's client has a live websocket (asks Go; safe in any state)."""
        slot = self._require_slot()
        return bool(await slot.calls.IsConnected(slot.uuid.encode()))


_REPLACED = "another client took over this device's connection (stream replaced)"
_REPLACED_BY_OURS = (
    "stream replaced by this session's own earlier client, whose stalled dial completed late; "
    "reconnecting"
)


def _now() -> datetime:
    return datetime.now(UTC)


def _media_message(media: MediaRef) -> Any:
    try:
        raw = base64.b64decode(media.handle["message"], validate=True)
        return nz.wae2e.Message.FromString(raw)
    except (KeyError, TypeError, ValueError, binascii.Error, DecodeError) as exc:
        raise InvalidInput(
            "media", "this media reference was not made by the neonize engine"
        ) from exc
