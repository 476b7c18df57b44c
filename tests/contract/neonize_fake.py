"""A fake of neonize's FFI boundary: the object ``neonize.aioze.client.gocode`` names.

Everything above it is neonize's real Python: ``NewAClient``, its ctypes
callbacks, ``Event.execute``, the protobuf classes. The fake answers the Go
functions wagate calls with real neonize protobuf bytes, and talks back
through the very callbacks ``NewAClient.connect`` hands to ``Neonize`` (QR,
login status, events), from its own thread, the way Go does. So a wrong
field name, a wrong unit or a wrong event code fails a test.

Inbound events travel the way goneonize moves them (``main.go``): what
WhatsApp sends waits on the "wire" until whatsmeow reads it; whatsmeow's
event handler (goneonize's ``eventHandler``) pushes each event into the
client's Go channel (``eventChannel[id]``, capacity :data:`CHANNEL_CAPACITY`),
blocking while it is full, and whatsmeow acknowledges the event to WhatsApp
as soon as that handler returns (:attr:`FakeClient.acked`). One goroutine,
``CallbackFunction``, takes the events out of the channel one at a time and
calls Python's callback with each, on the thread that called ``Neonize``:
while Python holds that thread, nothing leaves the channel. ``Disconnect``
stops whatsmeow reading the wire (what it had not read is never acknowledged:
WhatsApp delivers it again later); a handler blocked on the full channel
finishes in the background, unacknowledged. ``Stop`` cancels the goroutine's
context, and Go's ``select`` then picks at random between that and a waiting
event: what is left in the channel is lost.

It also plays Go's referee: goneonize keeps its clients in unlocked maps, so
a start or stop overlapping any other call, a ``Stop`` while the client's
goroutine will still read its map entry, or a call that dereferences a
missing or logged-out client are recorded in :attr:`FakeGo.violations`
(where the real library would abort the process). Go's own reads count too:
the goroutine of every client reads the maps again on its way into
``CallbackFunction`` (after its QR loop ends, or right after a logged-in
dial), outside any call, and a start's map writes last as long as its store
takes to open (:attr:`FakeGo.open_delay_s`).
"""

from __future__ import annotations

import collections
import ctypes
import hashlib
import itertools
import os
import queue
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from tests.contract import neonize_go as go
from tests.contract.neonize_go import jid_text
from wagate.engine.neonize import _loader as nz

P = nz.nproto
E = nz.wae2e

# Functions goneonize implements as ``clients[id].Store…``: a missing client panics.
_PANICS_WITHOUT_CLIENT = frozenset(
    {"GetMe", "GetLIDFromPN", "GetPNFromLID", "GetContact", "GetAllContacts", "PutPushName"}
)
# How long each fake Go call takes: long enough that unsafe overlaps show.
CALL_TIME_S = 0.002
CHANNEL_CAPACITY = 100  # goneonize: ``eventChan := make(chan *MessageEvent, 100)``


@dataclass
class Sent:
    """One message a client sent, as the fake WhatsApp received it."""

    uuid: str
    to: str
    message: Any
    id: str
    at: datetime


@dataclass
class FakeClient:
    """What Go holds for one uuid, and the goroutine that runs its ``Neonize`` call."""

    uuid: str
    db: str
    proxy: str | None
    qr_cb: Any
    login_cb: Any
    event_cb: Any
    subscribed: set[int]
    new_device: bool = False
    jid: str = ""
    commands: queue.Queue[tuple[str, tuple[Any, ...]]] = field(default_factory=queue.Queue)
    phase: str = "dialing"  # dialing | qr | pipeline | ended
    stopped: bool = False
    disconnected: bool = False
    logged_in: bool = False
    qrs: list[str] = field(default_factory=list)
    # The event path (see the module docstring); every field below is guarded by ``cv``.
    cv: threading.Condition = field(default_factory=threading.Condition)
    wire: collections.deque[tuple[int, Any]] = field(default_factory=collections.deque)
    channel: collections.deque[tuple[int, Any]] = field(default_factory=collections.deque)
    acked: list[Any] = field(default_factory=list)  # whatsmeow's handler returned, socket up
    handed: list[Any] = field(default_factory=list)  # CallbackFunction called Python with it
    handler_blocked: bool = False  # whatsmeow's handler waits for room in the channel
    in_callback: bool = False  # CallbackFunction is inside Python's callback
    cancelled: bool = False  # Stop cancelled CallbackFunction's context
    end_error: str | None = None  # CallbackFunction returns this at once (a test's "end")

    def post(self, command: str, *args: Any) -> None:
        if command == "end":
            with self.cv:
                self.end_error = str(args[0]) if args and args[0] else ""
                self.cv.notify_all()
        self.commands.put((command, args))

    def send(self, code: int, message: Any) -> None:
        """WhatsApp sends ``message``: it waits on the wire until whatsmeow reads it."""
        with self.cv:
            self.wire.append((code, message))
            self.cv.notify_all()

    def wait(self, condition: Callable[[FakeClient], bool], within_s: float = 5.0) -> bool:
        """On a thread that is not the event loop: wait until ``condition(self)`` holds."""
        with self.cv:
            return self.cv.wait_for(lambda: condition(self), within_s)

    def stalled(self) -> bool:
        """Held up by Python: its thread is in the callback, the channel is full, and
        whatsmeow's handler waits for room (so nothing more is acknowledged)."""
        with self.cv:
            full = len(self.channel) >= CHANNEL_CAPACITY
            return self.in_callback and full and self.handler_blocked

    def idle(self) -> bool:
        """Nothing left to hand over: the channel is empty and no handler or callback runs."""
        with self.cv:
            reading = bool(self.wire) and not self.disconnected
            busy = self.in_callback or self.handler_blocked
            return not self.channel and not busy and not reading


class FakeGo:
    """Stands in for neonize's ctypes library (see the module docstring)."""

    def __init__(self) -> None:
        self.clients: dict[str, FakeClient] = {}  # Go's ``clients`` map
        self.by_uuid: dict[str, FakeClient] = {}  # every client ever started, by uuid
        self.devices: dict[str, dict[str, str]] = {}  # the whatsmeow stores, by db name
        self.violations: list[str] = []
        self.calls: list[tuple[str, str]] = []
        self.sent: list[Sent] = []
        self.blobs: dict[str, bytes] = {}
        self.groups: dict[str, Any] = {}
        self.dial_error: str | None = None
        self.presence: list[tuple[str, bytes]] = []
        self.started = threading.Condition()
        self._lock = threading.Lock()
        self._active: dict[str, int] = {"read": 0, "write": 0}
        self._ids = itertools.count(1)
        self._shutdown = threading.Event()
        self.stop_delay_s = 0.0
        self.qr_timeout_after: int | None = None  # show this many QRs, then "timeout"
        self.send_error: str | None = None
        self.pair_requests: list[str] = []
        self.open_delay_s = 0.0  # how long a start's store takes to open (its writes last)
        self.opening = threading.Event()  # set while a start is in its map writes
        self.stall_dials = False  # dials hang until the test posts "dialed" (or "end")
        self.rng = random.Random()  # Go's select among ready cases

    def close(self) -> None:
        """Release every goroutine that would otherwise wait forever (``FetchMe``)."""
        self._shutdown.set()
        for client in list(self.by_uuid.values()):
            client.post("end", "")

    # --- Go's referee -----------------------------------------------------------------

    def _enter(self, mode: str, name: str) -> None:
        with self._lock:
            busy = self._active["write"] or (mode == "write" and self._active["read"])
            if busy:
                self.violations.append(f"concurrent map {mode} in {name}")
            self._active[mode] += 1

    def _leave(self, mode: str) -> None:
        with self._lock:
            self._active[mode] -= 1

    def _op(self, mode: str, name: str, uuid: bytes) -> str:
        key = uuid.decode()
        self.calls.append((name, key))
        self._enter(mode, name)
        time.sleep(CALL_TIME_S)
        self._leave(mode)
        return key

    def _client(self, name: str, uuid: bytes, *, login: bool = True) -> FakeClient | None:
        key = self._op("read", name, uuid)
        client = self.clients.get(key)
        if name in _PANICS_WITHOUT_CLIENT and (client is None or not client.logged_in):
            self.violations.append(f"{name} on a client that is not logged in (Go panics)")
        if login and (client is None or not client.logged_in):
            return None
        return client

    # --- the connect task ---------------------------------------------------------------

    def Neonize(self, db: bytes, uuid: bytes, jidbuf: bytes, jidsize: int, new_device: int,
                _level: bytes, qr_cb: Any, login_cb: Any, event_cb: Any, _log_cb: Any,
                subscribers: Any, nsubs: int, _props: bytes, _nprops: int, _pair: bytes,
                _npair: int, proxy_ref: Any) -> bytes:  # fmt: skip
        key = uuid.decode()
        self.calls.append(("Neonize", key))
        self._enter("write", "Neonize")
        self.opening.set()
        time.sleep(CALL_TIME_S * 3 + self.open_delay_s)  # the map writes and the store's open
        proxy = proxy_ref._obj.proxyAddress.decode() if proxy_ref is not None else None
        subscribed = set(bytes(subscribers)[:nsubs])
        client = FakeClient(key, db.decode(), proxy, qr_cb, login_cb, event_cb, subscribed)
        client.new_device = bool(new_device)
        client.jid = jid_text(P.JID.FromString(jidbuf)) if jidsize else ""
        self.clients[key] = client
        self.by_uuid[key] = client
        self.opening.clear()
        self._leave("write")
        with self.started:
            self.started.notify_all()
        if self.dial_error is not None:
            client.phase = "ended"
            return self.dial_error.encode()
        if self.stall_dials and not self._dialed(client):
            client.phase = "ended"
            return b""
        store = self.devices.get(client.db) if not new_device else None
        if store is None:
            return self._pair(client)
        return self._after_dial(client, store)

    def _dialed(self, client: FakeClient) -> bool:
        """A stalled dial: wait for the test to let it complete ("dialed") or end it."""
        while True:
            command, _ = client.commands.get()
            if command == "dialed":
                return True
            if command == "end":
                return False

    def _pair(self, client: FakeClient) -> bytes:
        client.phase = "qr"
        self.show_qr(client)
        while True:
            command, args = self._next_pairing_command(client)
            if command == "qr":
                self.show_qr(client)
            elif command == "scan":
                self._login_status(client, "success")
                store = {"phone": args[0], "push_name": args[1], "lid": args[2]}
                self.devices[client.db] = store
                return self._after_qr(client, store)
            elif command == "late_pipeline":  # a dial that completed after all
                return self._after_dial(client, self.devices[client.db])
            elif command in ("status", "timeout"):
                self._login_status(client, args[0] if args else "timeout")
                return self._after_qr(client, None)
            elif command == "end":
                client.phase = "ended"
                return b""

    def _next_pairing_command(self, client: FakeClient) -> tuple[str, tuple[Any, ...]]:
        if self.qr_timeout_after is None:
            return client.commands.get()
        try:
            return client.commands.get(timeout=0.05)
        except queue.Empty:
            return ("qr", ()) if len(client.qrs) < self.qr_timeout_after else ("timeout", ())

    def _after_qr(self, client: FakeClient, store: dict[str, str] | None) -> bytes:
        if not self._callback_reads(client):
            return b""
        if store is None or client.disconnected:
            client.phase = "fetchme"  # FetchMe waits forever for a device ID
            self._shutdown.wait()
            return b""
        return self._pipeline(client, store)

    def _after_dial(self, client: FakeClient, store: dict[str, str]) -> bytes:
        """A logged-in client's dial returned: straight into CallbackFunction."""
        if not self._callback_reads(client):
            return b""
        return self._pipeline(client, store)

    def _callback_reads(self, client: FakeClient) -> bool:
        """CallbackFunction: ``eventChannel[id]``, then FetchMe reads ``clients[id].Store``."""
        self._op("read", "CallbackFunction", client.uuid.encode())
        if client.uuid not in self.clients:
            self.violations.append(f"{client.uuid}: goroutine read a deleted client (nil panic)")
            return False
        return True

    def _pipeline(self, client: FakeClient, store: dict[str, str]) -> bytes:
        """``CallbackFunction``: the device first (``FetchMe``), then the channel until Stop."""
        client.phase = "pipeline"
        with client.cv:
            client.logged_in = True
            client.channel.append((3, go.connected()))  # whatsmeow's login, through the handler
        threading.Thread(target=self._whatsmeow, args=(client,), daemon=True).start()
        self._event(client, 0, go.device(store["phone"], store["lid"], store["push_name"]))
        while True:
            with client.cv:
                client.cv.wait_for(
                    lambda: bool(client.channel) or client.cancelled or client.end_error is not None
                )
                if client.end_error is not None or self._select_done(client):
                    client.phase = "ended"
                    client.logged_in = False
                    return (client.end_error or "").encode()
                code, message = client.channel.popleft()
                client.in_callback = True
                client.handed.append(message)
                client.cv.notify_all()  # room in the channel for whatsmeow's handler
            try:
                self._event(client, code, message)
            finally:
                with client.cv:
                    client.in_callback = False
                    client.cv.notify_all()

    def _select_done(self, client: FakeClient) -> bool:
        """Go's ``select`` on ``ctx.Done()`` and the channel: at random when both are ready."""
        ready = (["done"] if client.cancelled else []) + (["event"] if client.channel else [])
        return self.rng.choice(ready) == "done"

    def _whatsmeow(self, client: FakeClient) -> None:
        """whatsmeow reading the wire: each event through goneonize's handler, then the ack."""
        cv = client.cv
        while True:
            with cv:
                cv.wait_for(lambda: self._stopping(client) or bool(client.wire))
                if self._stopping(client):
                    return
                code, message = client.wire.popleft()
                client.handler_blocked = len(client.channel) >= CHANNEL_CAPACITY
                cv.wait_for(lambda: len(client.channel) < CHANNEL_CAPACITY or self._gone(client))
                client.handler_blocked = False
                if self._gone(client):
                    return  # in Go the handler waits forever; nothing more is acknowledged
                client.channel.append((code, message))
                if not client.disconnected:  # the handler returned: the receipt goes out
                    client.acked.append(message)
                cv.notify_all()

    def _stopping(self, client: FakeClient) -> bool:
        return client.disconnected or self._gone(client)

    def _gone(self, client: FakeClient) -> bool:
        ended = client.cancelled or client.end_error is not None
        return ended or self._shutdown.is_set()

    # --- Go → Python, through neonize's real entry points ----------------------------

    def show_qr(self, client: FakeClient) -> str:
        code = f"2@fake{next(self._ids)}{os.urandom(6).hex()},{client.uuid},ikey,adv"
        client.qrs.append(code)
        buf_uuid = ctypes.create_string_buffer(client.uuid.encode())
        buf_code = ctypes.create_string_buffer(code.encode())
        client.qr_cb(ctypes.addressof(buf_uuid), ctypes.addressof(buf_code))
        return code

    def _login_status(self, client: FakeClient, status: str) -> None:
        buf_uuid = ctypes.create_string_buffer(client.uuid.encode())
        buf = ctypes.create_string_buffer(status.encode())
        client.login_cb(ctypes.addressof(buf_uuid), ctypes.addressof(buf))

    def _event(self, client: FakeClient, code: int, message: Any) -> None:
        if code != 0 and code not in client.subscribed:
            return  # Go only forwards what the Python side subscribed to
        data = message.SerializeToString()
        buf = ctypes.create_string_buffer(data, len(data) or 1)
        client.event_cb(client.uuid.encode(), ctypes.addressof(buf), len(data), code)

    # --- a client's end -------------------------------------------------------------------

    def Stop(self, uuid: bytes) -> None:
        key = self._op("write", "Stop", uuid)
        time.sleep(self.stop_delay_s)
        client = self.clients.pop(key, None)
        if client is None:
            return
        if client.phase in ("dialing", "qr"):
            self.violations.append(f"Stop({key}) while its goroutine will still read the map")
        client.stopped = True
        with client.cv:  # goneonize's Stop: client.Disconnect(), then the context's cancel
            client.disconnected = True
            client.cancelled = True
            client.cv.notify_all()
        client.commands.put(("end", ("",)))  # a goroutine still dialing or pairing ends too

    def Disconnect(self, uuid: bytes) -> None:
        key = self._op("read", "Disconnect", uuid)
        client = self.clients.get(key)
        if client is not None:
            with client.cv:  # whatsmeow reads no more from the wire
                client.disconnected = True
                client.cv.notify_all()

    def IsConnected(self, uuid: bytes) -> bool:
        key = self._op("read", "IsConnected", uuid)
        client = self.clients.get(key)
        return client is not None and client.phase == "pipeline" and not client.disconnected

    def GetMe(self, uuid: bytes) -> bytes:
        client = self._client("GetMe", uuid, login=False)
        store = self.devices.get(client.db) if client is not None else None
        phone, lid = (store["phone"], store["lid"]) if store else ("", "")
        return go.device(phone, lid, "").SerializeToString()

    # --- verbs ----------------------------------------------------------------------------

    def PairPhone(self, uuid: bytes, payload: bytes, _size: int) -> bytes:
        key = self._op("read", "PairPhone", uuid)
        client = self.clients.get(key)
        params = P.PairPhoneParams.FromString(payload)
        self.pair_requests.append(params.phone)
        if client is None or client.phase != "qr":
            return P.PairPhoneReturnFunction(Error="not showing QR codes").SerializeToString()
        code = f"{params.phone[-4:]:0>4}-PAIR"
        return P.PairPhoneReturnFunction(Code=code).SerializeToString()

    def SendMessage(self, uuid: bytes, to: bytes, _n: int, message: bytes, _m: int) -> bytes:
        client = self._client("SendMessage", uuid)
        if client is None:
            return P.SendMessageReturnFunction(Error="websocket not connected").SerializeToString()
        target = P.JID.FromString(to)
        if self.send_error is not None:
            return P.SendMessageReturnFunction(Error=self.send_error).SerializeToString()
        msg_id = f"3EB0{next(self._ids):08X}"
        now = datetime.now(UTC)
        sent = Sent(client.uuid, jid_text(target), E.Message.FromString(message), msg_id, now)
        self.sent.append(sent)
        response = go.send_response(msg_id, now)
        return P.SendMessageReturnFunction(SendResponse=response).SerializeToString()

    def Upload(self, uuid: bytes, data: bytes, size: int, media_type: int) -> bytes:
        if self._client("Upload", uuid) is None:
            return P.UploadReturnFunction(Error="websocket not connected").SerializeToString()
        body = bytes(data[:size])
        path = f"/v/t62/fake-{next(self._ids)}-{media_type}"
        self.blobs[path] = body
        digest = hashlib.sha256(body).digest()
        response = P.UploadResponse(
            url=f"https://mmg.whatsapp.net{path}",
            DirectPath=path,
            Handle="",
            MediaKey=os.urandom(32),
            FileEncSHA256=hashlib.sha256(b"enc" + body).digest(),
            FileSHA256=digest,
            FileLength=len(body),
        )
        return P.UploadReturnFunction(UploadResponse=response).SerializeToString()

    def DownloadAny(self, uuid: bytes, message: bytes, _size: int) -> bytes:
        if self._client("DownloadAny", uuid) is None:
            return P.DownloadReturnFunction(Error="websocket not connected").SerializeToString()
        msg = E.Message.FromString(message)
        for part, _ in msg.ListFields():
            path = getattr(getattr(msg, part.name), "directPath", "")
            if path in self.blobs:
                return P.DownloadReturnFunction(Binary=self.blobs[path]).SerializeToString()
        return P.DownloadReturnFunction(Error="no downloadable media").SerializeToString()

    def GetJoinedGroups(self, uuid: bytes) -> bytes:
        client = self._client("GetJoinedGroups", uuid)
        if client is None:
            return P.GetJoinedGroupsReturnFunction(Error="not connected").SerializeToString()
        phone = self.devices[client.db]["phone"] + "@s.whatsapp.net"
        mine = [g for g in self.groups.values() if any(
            jid_text(p.JID) == phone for p in g.Participants
        )]  # fmt: skip
        return P.GetJoinedGroupsReturnFunction(Group=mine).SerializeToString()

    def GetGroupInfo(self, uuid: bytes, group: bytes, _size: int) -> bytes:
        if self._client("GetGroupInfo", uuid) is None:
            return P.GetGroupInfoReturnFunction(Error="not connected").SerializeToString()
        info = self.groups.get(jid_text(P.JID.FromString(group)))
        if info is None:
            return P.GetGroupInfoReturnFunction(Error="item-not-found").SerializeToString()
        return P.GetGroupInfoReturnFunction(GroupInfo=info).SerializeToString()

    def SendPresence(self, uuid: bytes, presence: bytes) -> bytes:
        if self._client("SendPresence", uuid) is None:
            return b"websocket not connected"
        self.presence.append((uuid.decode(), presence))
        return b""

    def Logout(self, uuid: bytes) -> bytes:
        client = self._client("Logout", uuid)
        if client is None:
            return b"not logged in"
        self.devices.pop(client.db, None)
        client.logged_in = False
        return b""

    # --- the test's handles ---------------------------------------------------------------

    def client(self, uuid: str) -> FakeClient:
        return self.by_uuid[uuid]

    def wait_started(self, uuid: str, within_s: float = 5.0) -> FakeClient:
        deadline = time.monotonic() + within_s
        with self.started:
            while uuid not in self.by_uuid:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"{uuid} never started")
                self.started.wait(left)
        return self.by_uuid[uuid]

    def find_qr(self, code: str) -> FakeClient:
        for client in self.by_uuid.values():
            if code in client.qrs and client.phase == "qr":
                return client
        raise LookupError("unknown or expired QR code")

    def linked(self, phone: str) -> list[FakeClient]:
        """Live clients whose device belongs to ``phone``."""
        return [
            c
            for c in self.clients.values()
            if c.phase == "pipeline" and self.devices.get(c.db, {}).get("phone") == phone
        ]

    def emit(self, client: FakeClient, code: int, message: Any) -> None:
        client.send(code, message)


def patch_ffi(fake: FakeGo, setattr_: Callable[[Any, str, Any], None]) -> None:
    """Put ``fake`` where neonize looks its FFI object up (with ``monkeypatch.setattr``)."""
    setattr_(nz.aioze_client, "gocode", fake)
    setattr_(nz.binder, "gocode", fake)
