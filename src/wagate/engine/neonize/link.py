"""A session's link through neonize: its event stream and its verbs (the ``Link`` protocol).

Inbound events reach the stream (:mod:`.stream`) through the client's
:class:`~.intake.Intake`: Python holds at most ``inbound_bound`` of them that
nobody has handled yet, and Go waits for room beyond that (whatsmeow then
acknowledges nothing more). :meth:`NeonizeLink.drain` stops intake and lets
the stream run out; leaving the link's context without it drops what was
received and not handled, as a stop always has.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import logging
import re
from collections.abc import AsyncIterator, Callable, Coroutine
from types import TracebackType
from typing import Any, Self

from google.protobuf.message import DecodeError

from wagate.clock import Clock
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
from wagate.engine.neonize.intake import Intake
from wagate.engine.neonize.session import AUTH_RECORD, SessionClient
from wagate.engine.neonize.stream import EventStream
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
        drain_settle_s: float,
        clock: Clock,
    ) -> None:
        self._session = session
        self._auth = auth
        self._options = options
        self._device_name = device_name
        self._grace_s = reconnect_grace_s
        self._dial_deadline_s = dial_deadline_s
        self._clock = clock
        self._dial_timer: asyncio.Task[None] | None = None
        self._stream = EventStream(clock, drain_settle_s, self._pumping)
        self._slot: ClientSlot | None = None
        self._go_done = False  # the client's connect task ended: Go hands over nothing more
        self._connected = False
        self._qrs = 0
        self._grace: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        # device record writes: in the order asked, and finished (never cancelled) at close
        self._record_lock = asyncio.Lock()
        self._writes: set[asyncio.Task[None]] = set()
        self._on_event: dict[int, Callable[[Any], EngineEvent | None]] = {
            codes.CONNECTED: self._connected_event,
            codes.DISCONNECTED: lambda _: self._connection_trouble("the connection dropped"),
            codes.KEEPALIVE_TIMEOUT: self._keepalive_timeout,
            codes.KEEPALIVE_RESTORED: lambda _: self._recovered(),
            codes.LOGGED_OUT: self._logged_out,
            codes.STREAM_REPLACED: lambda _: self._replaced(),
            codes.TEMPORARY_BAN: lambda ev: inbound.temporary_ban(ev, self._clock.now()),
            codes.CONNECT_FAILURE: inbound.connect_failure,
            codes.CLIENT_OUTDATED: lambda _: inbound.client_outdated(),
            codes.MESSAGE: inbound.message,
            codes.RECEIPT: inbound.receipt,
            codes.GROUP_INFO: inbound.group_change,
            codes.JOINED_GROUP: inbound.joined_group,
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
        unhandled = self._stream.close()
        self._cancel_grace()
        self._cancel_dial_timer()
        if unhandled:
            self._session.log.warning(
                "closing with %d event(s) from WhatsApp not handled: WhatsApp has "
                "acknowledged them and will not send them again",
                unhandled,
            )
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await asyncio.gather(*self._writes, return_exceptions=True)
        await self._session.close()  # its first step lets a Go thread waiting for room go

    def events(self) -> AsyncIterator[EngineEvent]:
        """Events until (and including) the one :class:`Disconnected`, or a drain's end.

        The place an event holds in the intake is given back when the consumer
        asks for the next one: Go hands over more only as events are handled.
        """
        return aiter(self._stream)

    async def drain(self) -> None:
        """Stop intake, and let the stream run out.

        From now on the link takes no new events from WhatsApp: the client's
        websocket is disconnected, so whatsmeow reads and acknowledges nothing
        more (WhatsApp keeps what it had not delivered, for the next link).
        Every event the engine had already received, in Go's channel or in
        Python, is still yielded by :meth:`events`; once the last of them has
        been handled (the consumer asked for the next event), :meth:`events`
        ends without a :class:`Disconnected`. Events the link would raise by
        itself (QR codes, its own verdict that the connection is lost) are
        not: the stop is ours. An event Go's channel held that ends the link
        (a logout, a ban) still does, as always.

        Returns as soon as intake has stopped (within ``stop_timeout_s``: Go's
        ``Disconnect`` is bounded like a stop). The caller keeps consuming
        :meth:`events` until it ends, within its own deadline, then leaves the
        link's context; leaving earlier drops what is left, as without a drain.

        neonize cannot tell when Go's channel is empty: see :mod:`.stream` for
        when the stream takes it to be (``drain_settle_s``).
        """
        if self._stream.draining or self._stream.closed:
            return
        self._stream.stop_intake()
        self._cancel_grace()
        self._cancel_dial_timer()
        if self._slot is not None and not self._stream.ended:
            await self._session.stop_intake(self._slot)

    async def finished(self) -> None:
        """Return once :meth:`events` has ended or the link has closed."""
        await self._stream.finished()

    def _pumping(self) -> Intake | None:
        """The intake Go still hands events over through; None when no goroutine does."""
        slot = self._slot
        if slot is None or self._go_done or not slot.pipeline_up:
            return None  # still dialing or pairing, or its connect task ended
        return slot.intake

    # --- what neonize says (the session's Sink) ----------------------------------------

    def attach(self, slot: ClientSlot) -> None:
        self._slot = slot

    def on_qr(self, code: str) -> None:
        self._qrs += 1
        self._signal(QRCode(code, FIRST_QR_TTL_S if self._qrs == 1 else NEXT_QR_TTL_S))
        if self._qrs == 1 and self._options.pair_phone and not self._stream.draining:
            # Once per pairing, now that the websocket is up; never again on later QRs.
            self._spawn(self._request_pair_code(self._options.pair_phone))

    def on_login_status(self, status: str) -> None:
        event = inbound.login_status(status)
        if event is None:
            self._session.log.info("login status: %s", status)
        self._signal(event)

    def on_event(self, code: int, event: Any, held: Intake | None) -> None:
        mapped: EngineEvent | None = None
        handler = self._on_event.get(code)
        if handler is not None:
            try:
                mapped = handler(event)
            except (ValueError, TypeError, AttributeError) as exc:  # a proto we cannot read
                self._session.log.warning("cannot map neonize event %d: %r", code, exc)
        self._push(mapped, held)

    def on_ended(self, error: str | None) -> None:
        self._go_done = True
        self._stream.moved()
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
        delay = max(0.0, slot.dialed_at + self._dial_deadline_s - self._clock.monotonic())
        self._dial_timer = self._after(delay, lambda: self._dial_expired(slot))

    def _dial_expired(self, slot: ClientSlot) -> None:
        self._dial_timer = None
        if slot.alive.is_set() or self._stream.ended or self._stream.closed:
            return
        self._session.dial_timed_out(slot)
        waited = f"within {self._dial_deadline_s:g}s"
        proxy = self._options.proxy
        if proxy:
            reason = f"proxy {failures.redact_url(proxy)} did not get through to WhatsApp {waited}"
            self._end(DisconnectKind.PROXY_ERROR, reason)
        else:
            self._end(DisconnectKind.CONNECTION_LOST, f"WhatsApp did not answer {waited}")

    def _cancel_dial_timer(self) -> None:
        if self._dial_timer is not None:
            self._dial_timer.cancel()
            self._dial_timer = None

    # --- mapping that needs the link's state -------------------------------------------

    def _replaced(self) -> Disconnected:
        if self._session.excuse_replaced():
            return Disconnected(DisconnectKind.CONNECTION_LOST, _REPLACED_BY_OURS)
        return Disconnected(DisconnectKind.REPLACED, _REPLACED)

    def _connected_event(self, _event: Any) -> EngineEvent | None:
        recovered = self._grace is not None
        self._cancel_grace()
        if self._connected:
            if recovered:
                self._session.log.info("whatsmeow reconnected by itself")
            return None
        slot = self._require_slot()
        connected = inbound.connected(slot.client.me, self._device_name)
        self._connected = True
        self._remember_device(connected.jid, connected.lid)
        return connected

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

    def _keepalive_timeout(self, event: Any) -> Disconnected | None:
        if event.ErrorCount >= KEEPALIVE_FAILURES:
            return self._connection_trouble(f"{event.ErrorCount} keep-alive pings went unanswered")
        return None

    def _connection_trouble(self, reason: str) -> Disconnected | None:
        """whatsmeow reconnects by itself after a login; give it a moment before giving up."""
        if not self._connected or self._stream.ended or self._stream.draining:
            return None
        if self._grace_s <= 0:
            return Disconnected(DisconnectKind.CONNECTION_LOST, reason)
        if self._grace is None:
            self._grace = self._after(self._grace_s, lambda: self._grace_over(reason))
        return None

    def _grace_over(self, reason: str) -> None:
        self._grace = None
        self._end(DisconnectKind.CONNECTION_LOST, reason)

    def _recovered(self) -> None:
        self._cancel_grace()

    def _cancel_grace(self) -> None:
        if self._grace is not None:
            self._grace.cancel()
            self._grace = None

    def _logged_out(self, event: Any) -> Disconnected:
        self._forget_device()  # whatsmeow has deleted the device already
        return inbound.logged_out(event)

    def _forget_device(self) -> None:
        self._write_record({})

    def _end(self, kind: DisconnectKind, reason: str) -> None:
        self._signal(Disconnected(kind, reason))

    def _signal(self, event: EngineEvent | None) -> None:
        """An event of the link's own (not from Go's channel): none once we stop intake."""
        if not self._stream.draining:
            self._push(event)

    def _push(self, event: EngineEvent | None, held: Intake | None = None) -> None:
        if isinstance(event, Disconnected):
            self._cancel_grace()
        self._stream.push(event, held)

    def _after(self, delay_s: float, action: Callable[[], None]) -> asyncio.Task[None]:
        """Run ``action`` after ``delay_s`` on the engine's clock (cancel the task to call off)."""

        async def fire() -> None:
            await self._clock.sleep(delay_s)
            action()

        return self._spawn(fire())

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

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
        self._signal(PairCode(code))

    # --- verbs --------------------------------------------------------------------------

    def _require_slot(self) -> ClientSlot:
        if self._slot is None:
            raise RuntimeError("the link is not open; use it as an async context manager")
        return self._slot

    def _live(self) -> Any:
        slot = self._require_slot()
        stream = self._stream
        if stream.ended or stream.closed or stream.draining or not slot.logged_in:
            raise TransientError(f"session {self._session.session_id} is not connected")
        return slot.client

    async def logout(self) -> None:
        """Unlink this device; the stream then ends with ``logged_out``."""
        if self._stream.ended or self._stream.closed:
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
        sent_at = inbound.from_s(response.Timestamp) if response.Timestamp else self._clock.now()
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


def _media_message(media: MediaRef) -> Any:
    try:
        raw = base64.b64decode(media.handle["message"], validate=True)
        return nz.wae2e.Message.FromString(raw)
    except (KeyError, TypeError, ValueError, binascii.Error, DecodeError) as exc:
        raise InvalidInput(
            "media", "this media reference was not made by the neonize engine"
        ) from exc
