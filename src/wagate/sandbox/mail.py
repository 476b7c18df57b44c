"""Where messages wait on the sandbox network: inboxes, device queues, sent ids.

- An account's **inbox** keeps what it received (oldest first), for the
  control API: it is how a test reads what a session sent to a phone.
- A linked device's **queue** holds the events (messages, receipts, group
  changes) the device has not yet confirmed, in order. A live connection
  streams the queue; the client confirms with ``handled`` after its consumer
  took the event, and only then is the event dropped. A device that is offline,
  or that vanished before confirming, gets the rest when it connects again
  (WhatsApp's offline queue: at least once, in order).
- Each account's **sent ids** map a message id to its original ack, so a
  resend of the same id is answered with it and not delivered twice.

All three are the ``mail`` section of the state file, each bounded (the
oldest entry goes first).
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict, deque
from typing import Any

from wagate.sandbox.limits import SandboxLimits
from wagate.sandbox.state import StateFile

log = logging.getLogger(__name__)

Json = dict[str, Any]


class DeviceQueue:
    """Events for one linked device, numbered in order, kept until confirmed."""

    def __init__(self, size: int, frames: list[Json] | None = None) -> None:
        self._size = size
        self._items: deque[tuple[int, Json]] = deque()
        self._seq = 0
        self._changed = asyncio.Event()
        self._overflowed = False  # warn once per queue, not once per dropped event
        for frame in frames or ():
            self.push(frame)

    def __len__(self) -> int:
        return len(self._items)

    def push(self, frame: Json) -> None:
        self._seq += 1
        self._items.append((self._seq, frame))
        if len(self._items) > self._size:
            self._items.popleft()
            if not self._overflowed:
                self._overflowed = True
                log.warning("a device queue is full: its oldest events are being dropped")
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()

    async def next_after(self, cursor: int) -> tuple[int, Json]:
        """The first event numbered after ``cursor``, waiting for one if need be."""
        while not self._items or self._items[-1][0] <= cursor:
            await self._changed.wait()
        return next(item for item in self._items if item[0] > cursor)

    def handled(self, upto: int) -> None:
        """The device took every event up to ``upto``: forget them."""
        while self._items and self._items[0][0] <= upto:
            self._items.popleft()

    def frames(self) -> list[Json]:
        return [frame for _, frame in self._items]


class Mail:
    """Inboxes by phone, queues by device id, sent ids by phone."""

    def __init__(self, state: StateFile, limits: SandboxLimits) -> None:
        self._state = state
        self._limits = limits
        self._inboxes: dict[str, deque[Json]] = {}
        self._queues: dict[str, DeviceQueue] = {}
        self._sent: dict[str, OrderedDict[str, Json]] = {}
        state.load("mail", self._load, None)
        state.register("mail", self._dump)

    # --- inboxes ----------------------------------------------------------------------

    def receive(self, phone: str, entry: Json) -> None:
        inbox = self._inboxes.get(phone)
        if inbox is None:
            inbox = self._inboxes[phone] = deque(maxlen=self._limits.inbox_size)
        inbox.append(entry)

    def inbox(self, phone: str) -> list[Json]:
        return list(self._inboxes.get(phone, ()))

    def find(self, phone: str, ids: list[str]) -> list[Json]:
        """The inbox entries of ``phone`` with these ids, in inbox order."""
        wanted = set(ids)
        return [entry for entry in self._inboxes.get(phone, ()) if entry["id"] in wanted]

    # --- device queues ----------------------------------------------------------------

    def queue(self, device_id: str) -> DeviceQueue:
        found = self._queues.get(device_id)
        if found is None:
            found = self._queues[device_id] = DeviceQueue(self._limits.queue_size)
        return found

    def handled(self, device_id: str, upto: int) -> None:
        """The device confirmed every event up to ``upto``: drop them (saved soon)."""
        self.queue(device_id).handled(upto)
        self._state.save_soon()

    def forget_device(self, device_id: str) -> None:
        self._queues.pop(device_id, None)

    # --- sent ids -----------------------------------------------------------------------

    def sent(self, phone: str, message_id: str) -> Json | None:
        """The ack of ``message_id`` if ``phone`` already sent a message with that id."""
        sent = self._sent.get(phone)
        return None if sent is None else sent.get(message_id)

    def remember_sent(self, phone: str, message_id: str, ack: Json) -> None:
        sent = self._sent.setdefault(phone, OrderedDict())
        sent[message_id] = ack
        while len(sent) > self._limits.sent_ids:
            sent.popitem(last=False)

    # --- persistence ------------------------------------------------------------------

    def _dump(self) -> Json:
        return {
            "inboxes": {phone: list(inbox) for phone, inbox in self._inboxes.items()},
            "queues": {device: q.frames() for device, q in self._queues.items() if len(q)},
            "sent": {phone: list(sent.items()) for phone, sent in self._sent.items()},
        }

    def _load(self, raw: Json) -> None:
        size = self._limits
        for phone, entries in raw["inboxes"].items():
            self._inboxes[phone] = deque(map(dict, entries), maxlen=size.inbox_size)
        for device, frames in raw["queues"].items():
            self._queues[device] = DeviceQueue(size.queue_size, [dict(f) for f in frames])
        for phone, pairs in raw["sent"].items():
            self._sent[phone] = OrderedDict((str(key), dict(ack)) for key, ack in pairs)
