"""The WhatsApp boundary: what every engine offers the rest of wagate.

An :class:`Engine` opens a :class:`Link` for one session. A link is an async
context manager; while it is open it yields :data:`EngineEvent` values from
:meth:`Link.events` and accepts verbs. The event stream ends after exactly one
:class:`Disconnected` event (or when the link is closed by us). Everything
above this module is engine-agnostic.

Engines translate their own failures into :mod:`wagate.errors`:
opening a link may raise :class:`~wagate.errors.TransientError` (including
:class:`~wagate.errors.ProxyFailure`).

Credentials live in an :class:`AuthStore` the runtime hands to the engine: a
folder per session (``AUTH_DIR/<session_id>/``) by default, or rows in the
database (:mod:`wagate.storage.auth_state`).

A device that is logged out or banned is reported as a one-event stream
(``Disconnected(LOGGED_OUT | BANNED)``), not as an exception from opening.
Message types live in :mod:`wagate.domain.message`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from types import TracebackType
from typing import Any, Protocol, Self, runtime_checkable

from wagate.domain.group import GroupInfo
from wagate.domain.message import (
    ContactCard,
    Location,
    MediaRef,
    MessageKind,
    Outgoing,
    ReceiptStatus,
    SendResult,
)
from wagate.domain.session import DisconnectKind

# --- events -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class QRCode:
    """A QR to show the user. ``code`` is WhatsApp's raw ``2@…`` string."""

    code: str
    ttl_s: float


@dataclass(frozen=True, slots=True)
class PairCode:
    """A pairing code the user types on the phone (``ABCD-EFGH``)."""

    code: str


@dataclass(frozen=True, slots=True)
class Connected:
    """Logged in and online. ``jid`` is our own device JID (``phone:dev@s.whatsapp.net``)."""

    jid: str
    phone: str
    push_name: str | None = None
    device_name: str | None = None
    lid: str | None = None


@dataclass(frozen=True, slots=True)
class Disconnected:
    """The link is down; the last event of a link."""

    kind: DisconnectKind
    reason: str = ""
    detail: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class MessageEvent:
    """A message seen on the account: received, or sent by us from another device.

    ``sender`` is who sent it as WhatsApp addressed them (a phone JID or an
    ``@lid``); ``sender_pn`` is their phone JID and ``sender_lid`` their LID when
    the engine knows them. In a direct chat ``chat`` is the other party; in a
    group it is the group JID.
    """

    id: str
    chat: str
    sender: str
    timestamp: datetime
    kind: MessageKind
    text: str | None = None  # the text, the caption, or the reaction emoji
    from_me: bool = False
    sender_pn: str | None = None
    sender_lid: str | None = None
    push_name: str | None = None
    media: MediaRef | None = None
    location: Location | None = None
    contact: ContactCard | None = None
    quoted_id: str | None = None
    react_to: str | None = None
    mentions: tuple[str, ...] = ()
    raw: dict[str, Any] = field(default_factory=dict)

    @property
    def is_group(self) -> bool:
        return self.chat.endswith("@g.us")


@dataclass(frozen=True, slots=True)
class ReceiptEvent:
    """Delivery state of messages we sent: ``delivered``, ``read`` or ``played``."""

    chat: str
    message_ids: tuple[str, ...]
    status: ReceiptStatus
    timestamp: datetime
    by: str | None = None  # who read it (in a group)


@dataclass(frozen=True, slots=True)
class GroupEvent:
    """A group we are in was created, renamed, or its participants changed."""

    jid: str
    name: str | None
    change: str  # created | renamed | participants
    by: str | None = None


EngineEvent = (
    QRCode | PairCode | Connected | Disconnected | MessageEvent | ReceiptEvent | GroupEvent
)


# --- credentials --------------------------------------------------------------------


@runtime_checkable
class AuthStore(Protocol):
    """Where one session's engine credentials live (kept by :mod:`wagate.storage.auth_state`).

    Every method is async: a store on disk does its file I/O in a thread, one
    in the database makes a round trip; neither blocks the event loop.
    """

    session_id: str

    async def load(self, name: str) -> dict[str, Any] | None: ...

    async def save(self, name: str, data: dict[str, Any]) -> None:
        """Replace the record ``name``: durable when this returns, never half written."""
        ...

    async def exists(self) -> bool: ...

    async def clear(self) -> None:
        """Remove every record of the session (a logged-out device's keys)."""
        ...

    async def folder(self) -> Path | None:
        """A folder the engine may use for files of its own, or None if it has none."""
        ...


# --- the engine ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class LinkOptions:
    """How to open a link: the proxy URL and, for pairing by code, the phone number."""

    proxy: str | None = None
    pair_phone: str | None = None


class Link(Protocol):
    """One live connection of one session to WhatsApp."""

    async def __aenter__(self) -> Self: ...

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...

    def events(self) -> AsyncIterator[EngineEvent]:
        """Events until (and including) the one :class:`Disconnected`."""
        ...

    async def drain(self) -> None:
        """Stop intake, keep delivering what was already received, then end the stream.

        From now on the link takes no new events from WhatsApp, while every
        event the engine already received (and may have acknowledged) is
        still yielded by :meth:`events`. Once the last of them was handled
        (the consumer asked for the next event), :meth:`events` ends without
        a ``Disconnected``. Returns as soon as intake stopped; the caller keeps
        consuming :meth:`events` until it ends, within its own deadline, then
        leaves the link's context. Leaving without draining drops what is queued.
        """
        ...

    async def logout(self) -> None:
        """Unlink this device from the account; the stream then ends with ``logged_out``."""
        ...

    async def send(self, message: Outgoing) -> SendResult:
        """Send one message; raises :class:`~wagate.errors.EngineError` subclasses on failure.

        ``TransientError``: not sent, worth retrying once the link is back;
        ``InvalidInput`` (a RequestError): the message can never be sent as is.
        """
        ...

    def download(self, media: MediaRef) -> AsyncIterator[bytes]:
        """The decrypted bytes of received media, in chunks."""
        ...

    async def groups(self) -> list[GroupInfo]:
        """The groups this account is in (names only; members are not enumerated)."""
        ...

    async def set_presence(self, available: bool) -> None:
        """``available`` makes the phone stop notifying; ``unavailable`` restores it."""
        ...


class Engine(Protocol):
    """Opens links. One engine object serves every session of a process."""

    name: str

    def link(self, auth: AuthStore, options: LinkOptions) -> Link: ...

    async def aclose(self) -> None: ...
