"""One session's neonize clients over the life of the process, and what we know of each's Go side.

What neonize 0.5.2's Go side (goneonize ``main.go``) does with a client, and
what follows for us:

- ``Neonize()`` (the connect task) registers the client in Go's maps (after
  opening its store: with PostgreSQL that can take a while, hence a longer
  start window), dials, then either shows QR codes (``for evt := range
  qrChan``) or goes straight on; then ``CallbackFunction`` reads the maps
  again (``eventChannel[id]``, ``FetchMe``: ``clients[id].Store``, then waits
  until the device has an ID), sends the ``Device`` (event 0) and pumps
  events until ``Stop`` cancels it. The QR loop's last word is the login
  status, called on that goroutine's thread right before those reads: it
  waits there for the gate. A logged-in client's dial has no such moment; it
  is covered only while the start holds the gate.
- ``Stop()`` deletes the client from those maps. Stopping a client whose
  goroutine has not yet reached ``CallbackFunction`` (still dialing, or
  showing QR codes) lets that goroutine later read a deleted entry and panic
  on a nil client, killing the process. So such a client is only
  *disconnected* and set aside (:attr:`ClientSlot.abandoned`); its goroutine
  then waits forever in ``FetchMe`` (a thread, no harm) or, if it ever shows
  life, is stopped then.
- An abandoned client's uuid is never used again: the session's next client
  gets a new one (``<session>~<n>``), because connecting a ``NewAClient``
  again while its connect task runs would drop the ctypes callbacks Go still
  holds, and two clients with one uuid share one Go map entry.
- ``NewAClient`` stops its Go client from a ``weakref.finalize`` when garbage
  collected, outside any gate: every client we make is kept, and that
  finalizer detached.
- ``CallbackFunction`` calls Python with each event on the thread that called
  ``Neonize``, one at a time; every event it hands over has been acknowledged
  to WhatsApp already. Each passes the slot's :class:`~.intake.Intake` there
  first (back-pressure), and carries the place it holds to the link, which
  gives it back once its consumer has handled the event.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import functools
import logging
import threading
from collections.abc import Coroutine
from typing import Any, Protocol

from wagate.engine.neonize import _loader as nz
from wagate.engine.neonize.calls import GoCalls, Runtime
from wagate.engine.neonize.gate import Hold
from wagate.engine.neonize.intake import Intake
from wagate.errors import TransientError

log = logging.getLogger(__name__)

# neonize's event codes (``neonize/events.py`` EVENT_TO_INT) for what we map.
DEVICE, CONNECTED, KEEPALIVE_TIMEOUT, KEEPALIVE_RESTORED, LOGGED_OUT = 0, 3, 4, 5, 6
STREAM_REPLACED, TEMPORARY_BAN, CONNECT_FAILURE, CLIENT_OUTDATED = 7, 8, 9, 10
DISCONNECTED, MESSAGE, RECEIPT, JOINED_GROUP, GROUP_INFO = 12, 17, 18, 21, 22

# Subscribing to fewer events means less crosses the FFI; QR codes come through their
# own callback, and an unconsumed QR event (code 1) would only fill Go's channel.
_SUBSCRIBED = (
    CONNECTED,
    KEEPALIVE_TIMEOUT,
    KEEPALIVE_RESTORED,
    LOGGED_OUT,
    STREAM_REPLACED,
    TEMPORARY_BAN,
    CONNECT_FAILURE,
    CLIENT_OUTDATED,
    DISCONNECTED,
    MESSAGE,
    RECEIPT,
    JOINED_GROUP,
    GROUP_INFO,
)
# Calls Go answers without dereferencing a client that may not exist.
_SAFE_WITHOUT_LOGIN = frozenset({"IsConnected", "Disconnect"})


class Sink(Protocol):
    """Where the session's open link hears from neonize (always on the event loop)."""

    def attach(self, slot: ClientSlot) -> None:
        """The client this link drives; given before it connects."""
        ...

    def on_qr(self, code: str) -> None: ...

    def on_login_status(self, status: str) -> None: ...

    def on_event(self, code: int, event: Any, held: Intake | None) -> None:
        """One event from Go's channel; ``held``: the intake it holds a place in (release it)."""
        ...

    def on_ended(self, error: str | None) -> None: ...

    async def drain(self) -> None:
        """Stop intake; the stream goes on until what was received is handled."""
        ...

    async def finished(self) -> None:
        """Return once the stream has ended or the link has closed."""
        ...


class Owner(Protocol):
    """The :class:`SessionClient` a slot belongs to, as the slot sees it."""

    session_id: str

    def deliver(self, slot: ClientSlot, kind: str, *payload: Any) -> None: ...


class ClientSlot:
    """One ``NewAClient`` (one Go-side uuid) and the adapter's view of its Go state."""

    def __init__(
        self, owner: Owner, uuid: str, runtime: Runtime, device_name: str, inbound_bound: int
    ) -> None:
        self.uuid = uuid
        self._owner = owner
        self._runtime = runtime
        self._bound = inbound_bound
        self._go = threading.local()  # per Go thread: the intake place its current event holds
        self.calls = GoCalls(runtime, self, uuid)
        self.client = self._make_client(device_name)
        self.task: asyncio.Task[Any] | None = None
        self.abandoned = False
        self.stuck = False
        self.reaping = False
        self.excused = False  # a "stream replaced" it caused was taken as a reconnect
        self.resuming = False  # its last dial was with a linked device (no QR needed)
        self.dialed_at = 0.0  # the engine clock's monotonic time of the last connect
        self._reset()

    def _reset(self) -> None:
        self.exists = False  # Go has (or is making) this client in its maps
        self.qr_seen = False  # the websocket is up and showing QR codes
        self.pipeline_up = False  # Go's CallbackFunction runs: Stop is safe
        self.logged_in = False  # a Connected event came: every call is safe
        self.alive = asyncio.Event()
        self._hold: Hold | None = None
        self._read_hold: Hold | None = None  # held while Go reads its maps after the QR loop
        self.intake = Intake(self._bound)

    def _make_client(self, device_name: str) -> Any:
        props = nz.wacompanion.DeviceProps(
            os=device_name, platformType=nz.wacompanion.DeviceProps.CHROME
        )
        client = nz.aioze_client.NewAClient(self.uuid, props=props, uuid=self.uuid)
        client._stop_finalizer.detach()
        client._NewAClient__client = self.calls
        # aioze drops the login status (its ``__onLoginStatus`` is ``pass``); we want it.
        client._NewAClient__onLoginStatus = self._login_status_from_go
        client.event.execute = functools.partial(self._execute, client.event.execute)
        client.event.qr(self._on_qr)
        for code in _SUBSCRIBED:
            client.event.list_func[code] = functools.partial(self._handler, code)
        return client

    # --- calls into Go --------------------------------------------------------------

    def check(self, name: str) -> None:
        """Refuse a call that could make Go dereference a client that does not exist."""
        if name in _SAFE_WITHOUT_LOGIN:
            return
        if not self.abandoned and (self.logged_in or (name == "PairPhone" and self.qr_seen)):
            return
        raise TransientError(f"session {self._owner.session_id} is not connected to WhatsApp")

    def starting(self, hold: Hold) -> None:
        self.exists = True
        self._hold = hold
        if self.alive.is_set():
            hold.release()

    def stop_stuck(self) -> None:
        self.stuck = True

    async def connect(
        self, db_name: str, proxy: Any, jid: Any, new_device: bool, *, resuming: bool = False
    ) -> None:
        """Start the connect task (neonize's ``connect``); never while the last one runs.

        ``resuming``: the session has a linked device, so this dial logs in by itself.
        """
        if self.task is not None and not self.task.done():
            raise RuntimeError("the previous connect task of this client still runs")
        self._reset()
        self.resuming = resuming
        self.client.name = db_name  # the SQLite path or PostgreSQL URL Go opens
        self.client.jid = jid
        self.client.new_device = new_device
        self.task = await self.client.connect(proxy)
        self.task.add_done_callback(self._task_done)

    def may_log_in(self) -> bool:
        """A dial with the session's device that still runs: it may yet log in by itself."""
        running = self.task is not None and not self.task.done()
        return running and self.resuming and not self.pipeline_up

    async def stop_intake(self) -> None:
        """Close the websocket: whatsmeow reads (and acknowledges) nothing more from WhatsApp.

        The goroutine goes on handing over what Go's channel holds; only a stop ends it.
        """
        if self.task is None or self.task.done():
            return
        if not self.exists:
            # Its start still waits at the gate: it never reached Go, so it can just go.
            self.task.cancel()
            await asyncio.wait({self.task})
            return
        await self.client.disconnect()

    async def shut(self, timeout_s: float) -> bool:
        """Let go of the Go client; True if its goroutine is gone, False if set aside."""
        self.intake.close()  # first: a Go thread waiting for room must never hold a stop
        if self.task is None:
            return True
        if self.task.done():
            if self.exists:
                await self.client.stop()  # removes the map entries; nothing reads them any more
                self.exists = False
            return True
        if not self.exists:
            # Its start still waits at the gate: it never reached Go, so it can just go.
            self.task.cancel()
            await asyncio.wait({self.task})
            return True
        if self.pipeline_up:
            await self.client.stop()
            self.exists = False
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(self.task), timeout_s)
            return self.task.done()
        # Dialing or showing QRs: only close the socket (see the module docstring).
        await self.client.disconnect()
        return False

    # --- signals from Go (Go threads → the loop) ----------------------------------------

    def _from_go(self, coro: Coroutine[Any, Any, None]) -> None:
        try:
            asyncio.run_coroutine_threadsafe(coro, self._runtime.loop)
        except RuntimeError:  # the loop is closed: nobody listens any more
            coro.close()

    def _login_status_from_go(self, _uuid: int | None, status: int | None) -> None:
        text = ctypes.string_at(status).decode("utf-8", "replace") if status else ""
        self._from_go(self._on_login_status(text))
        # Go's QR loop is ending: once this returns, its goroutine reads the client
        # maps (``CallbackFunction``), long after the start's exclusive hold ended.
        self._runtime.hold_for_go_reads(self._reading)

    def _reading(self, hold: Hold) -> None:
        self._read_hold = hold  # released early by the Device event: Go has read by then

    def _execute(self, execute: Any, uuid: bytes, binary: int, size: int, code: int) -> None:
        """Go's thread hands over one event (see :mod:`.intake`); back-pressure happens here."""
        if code == DEVICE:  # FetchMe's, before the channel: not an acknowledged event
            execute(uuid, binary, size, code)  # neonize's own: sets ``client.me``
            self._from_go(self._on_device())
            return
        intake = self.intake
        on_loop = asyncio._get_running_loop() is not None  # never wait on a loop's thread
        self._go.held = intake if intake.admit(wait=not on_loop) else None
        try:
            execute(uuid, binary, size, code)  # neonize's own: calls ``_handler`` right here
        finally:
            held, self._go.held = getattr(self._go, "held", None), None
            if held is not None:  # no handler took it (an event neonize could not read)
                held.release()

    def _handler(self, code: int, _client: Any, event: Any) -> Coroutine[Any, Any, None]:
        """neonize makes the coroutine it runs on the loop here, on Go's thread."""
        held, self._go.held = getattr(self._go, "held", None), None
        return self._on_event(code, event, held)

    def _signal(self) -> None:
        self.alive.set()
        if self._hold is not None:
            self._hold.release()

    async def _on_qr(self, _client: Any, data: bytes) -> None:
        self.qr_seen = True
        self._signal()
        self._owner.deliver(self, "qr", data.decode("utf-8", "replace"))

    async def _on_login_status(self, status: str) -> None:
        self._signal()
        self._owner.deliver(self, "status", status)

    async def _on_device(self) -> None:
        self.pipeline_up = True
        if self._read_hold is not None:
            self._read_hold.release()
        self._signal()
        self._owner.deliver(self, "pipeline")

    async def _on_event(self, code: int, event: Any, held: Intake | None) -> None:
        if code == CONNECTED:
            self.logged_in = True
        elif code in (LOGGED_OUT, STREAM_REPLACED):
            self.logged_in = False
        self._signal()
        self._owner.deliver(self, "event", code, event, held)

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        error: str | None = None
        if task.cancelled():
            error = "cancelled"
        elif (exc := task.exception()) is not None:
            error = str(exc) or type(exc).__name__
        self.logged_in = False
        self.intake.close()  # its Go thread is gone
        self._signal()
        self._owner.deliver(self, "ended", error)
