"""Messaging on the sandbox network: the ops sessions use and the phone's side of it.

Mixed into :class:`~wagate.sandbox.network.SandboxNetwork`, like the
faults. Frames of a logged-in connection (``rid`` is the client's request id,
echoed in the answer; several requests may be in flight)::

    {"op": "upload", "rid", "upload": "<client's id>", "data": "<base64>", "last": bool}
        → {"ev": "ack", "rid", "received": n}, or on the last chunk
          {"ev": "ack", "rid", "handle": "<sha256>", "size": n}
    {"op": "send", "rid", "to", "kind", "id"?, "text"?, "media"?: {"blob", "mimetype",
     "filename"?, "width"?, "height"?, "duration_s"?}, "location"?, "contact"?,
     "react_to"?, "quote"?: {"id"}, "mentions"?: [...]}
        → {"ev": "ack", "rid", "id", "ts"}
    {"op": "download", "rid", "blob", "offset", "size"} → {"ev": "ack", "rid", "data", "total"}
    {"op": "groups", "rid"}                     → {"ev": "ack", "rid", "groups": [...]}
    {"op": "presence", "rid", "available": bool} → {"ev": "ack", "rid"}
    {"op": "handled", "q": n}                  # every event up to q was taken; no answer

A refused request is answered ``{"ev": "error", "rid", "code", "message",
"field"?}``: ``invalid_input``, ``media_too_large``, ``not_found`` (unknown
recipient, group or blob) or ``not_logged_in``. Events, each with its queue
number ``q``::

    {"ev": "message", "q", "id", "chat", "sender", "sender_pn", "sender_lid",
     "push_name", "from_me", "ts", "kind", "text", "media", "location", "contact",
     "quoted_id", "react_to", "mentions"}
    {"ev": "receipt", "q", "chat", "ids", "status", "ts", "by"}
    {"ev": "group", "q", "jid", "name", "change", "by"}
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import asdict
from datetime import UTC, datetime
from typing import Any

from wagate.domain.message import ContactCard, Location, MessageKind
from wagate.errors import Conflict, InvalidInput, NotFound
from wagate.sandbox import compose
from wagate.sandbox.accounts import Account, AccountBook, AccountInfo, phone_jid, phone_of
from wagate.sandbox.blobs import BlobStore, MediaTooLarge, Upload
from wagate.sandbox.connection import Connection, ConnState
from wagate.sandbox.envelope import Content, Json, Media
from wagate.sandbox.groups import GroupBook, check_subject
from wagate.sandbox.limits import SandboxLimits
from wagate.sandbox.mail import Mail
from wagate.sandbox.office import PostOffice
from wagate.sandbox.state import StateFile
from wagate.sandbox.transport import Frame

MAX_CHUNK = 1024 * 1024  # decoded bytes in one upload or download frame

OpHandler = Callable[[Connection, Frame], Awaitable[None]]


class NotLoggedIn(Conflict):
    code = "not_logged_in"


class MessagingMixin:
    """Sending, receiving, media, groups and receipts: the network's messaging side."""

    limits: SandboxLimits
    _book: AccountBook
    _groups: GroupBook
    _mail: Mail
    _blobs: BlobStore
    _office: PostOffice
    _state: StateFile

    def _messaging_ops(self) -> dict[str, OpHandler]:
        return {
            "send": self._op_send,
            "upload": self._op_upload,
            "download": self._op_download,
            "groups": self._op_groups,
            "presence": self._op_presence,
            "handled": self._op_handled,
        }

    # --- the phone's side ---------------------------------------------------------------

    async def add_phone(self, phone: str, push_name: str | None = None) -> AccountInfo:
        """A simulated phone joins the network (an account with no linked device)."""
        return self._book.ensure(phone_of(phone), push_name).info(online=())

    async def phone_send(
        self,
        from_phone: str,
        to: str,
        *,
        text: str | None = None,
        media: bytes | None = None,
        mimetype: str | None = None,
        filename: str | None = None,
        kind: str | None = None,
        quote_id: str | None = None,
        react_to: str | None = None,
        width: int | None = None,
        height: int | None = None,
        duration_s: float | None = None,
        msg_id: str | None = None,
        timestamp: datetime | None = None,
        location: Location | None = None,
        contact: ContactCard | None = None,
        mentions: Sequence[str] = (),
    ) -> str:
        """A simulated phone (created if new) sends to a phone, a ``@lid`` or a group.

        ``kind`` defaults to text, or for media to what the mimetype says (image,
        video, audio, else document). ``timestamp`` backdates the message (the
        gateway drops messages older than 30 s). Returns the message id.
        """
        sender_phone = phone_of(from_phone, field_name="from")
        stored = None
        if media is not None:
            meta = {"mimetype": mimetype or "application/octet-stream", "filename": filename}
            stored = self._stored(
                media, meta | {"width": width, "height": height, "duration_s": duration_s}
            )
        content = Content(
            kind=_phone_kind(kind, stored, location, contact, react_to),
            text=compose.text(text),
            media=stored,
            location=compose.location(asdict(location) if location else None),
            contact=compose.contact(asdict(contact) if contact else None),
            quoted_id=compose.message_id(quote_id, "quote_id"),
            react_to=compose.message_id(react_to, "react_to"),
            mentions=compose.mentions(list(mentions)),
        )
        checked = compose.check_content(content)
        sender = self._book.ensure(sender_phone)  # only once the message itself is sound
        routed = self._office.route(
            sender,
            to,
            checked,
            msg_id=compose.message_id(msg_id, "msg_id"),
            at=_utc(timestamp),
            create=True,
        )
        if routed.receipt is not None:
            self._office.to_account(sender.phone, routed.receipt)
        return str(routed.ack["id"])

    def _stored(self, data: bytes, meta: Json) -> Media:
        """Store a phone's media blob; ``meta`` as a send frame's media would carry it."""
        return compose.media_fields(meta, self._blobs.put(data), len(data))

    async def inbox(self, phone: str) -> list[dict[str, Any]]:
        """What ``phone`` received, oldest first (at most ``limits.inbox_size``)."""
        return [dict(entry) for entry in self._mail.inbox(phone_of(phone))]

    async def mark_read(self, phone: str, message_ids: list[str]) -> None:
        """``phone`` reads messages of its inbox; each sender's devices get receipts."""
        self._office.mark_read(phone_of(phone), [str(each) for each in message_ids])

    async def blob(self, handle: str) -> bytes:
        """The bytes of a media blob; :class:`NotFound` if the network has none by that handle."""
        return self._blobs.read(handle)

    # --- groups -----------------------------------------------------------------------

    async def create_group(self, name: str, owner: str, members: list[str]) -> str:
        """Create a group (accounts are created for new phones); returns its JID."""
        subject = check_subject(name)
        owner_phone = phone_of(owner, field_name="owner")
        phones = [phone_of(member, field_name="members") for member in members]
        for phone in (owner_phone, *phones):
            self._book.ensure(phone)
        group = self._groups.create(subject, owner_phone, phones)
        self._office.group_changed(group, "created", by=phone_jid(owner_phone))
        return group.jid

    async def rename_group(self, jid: str, name: str) -> None:
        group = self._groups.rename(jid, name)
        self._office.group_changed(group, "renamed", by=phone_jid(group.owner))

    async def add_members(self, jid: str, members: list[str]) -> None:
        phones = _phones(members)
        for phone in phones:
            self._book.ensure(phone)
        self._office.group_changed(self._groups.add(jid, phones), "participants")

    async def remove_members(self, jid: str, members: list[str]) -> None:
        phones = _phones(members)
        self._office.group_changed(self._groups.remove(jid, phones), "participants", also=phones)

    # --- ops of logged-in connections -------------------------------------------------

    def _logged_in(self, conn: Connection) -> Account:
        if conn.state is not ConnState.CONNECTED or conn.phone is None:
            raise NotLoggedIn("log in first: this connection has no account yet")
        return self._book.require(conn.phone)

    async def _op_send(self, conn: Connection, frame: Frame) -> None:
        sender = self._logged_in(conn)
        to = compose.optional_str(frame.get("to"), "to", 128)
        if to is None:
            raise InvalidInput("to", "to must name a phone, a @lid or a group")
        content = compose.content_from_frame(frame, self._uploaded)
        msg_id = compose.message_id(frame.get("id"))
        routed = self._office.route(sender, to, content, msg_id=msg_id, device_id=conn.device_id)
        await _answer(conn, frame, routed.ack)
        if routed.receipt is not None:  # after the ack: the client learns the id first
            self._office.to_account(sender.phone, routed.receipt)

    def _uploaded(self, raw: Json) -> Media:
        handle = raw.get("blob")
        if not isinstance(handle, str):
            raise InvalidInput("media", "media must name an uploaded blob")
        try:
            size = self._blobs.size(handle)
        except NotFound:
            raise InvalidInput("media", f"no uploaded blob {handle[:80]!r}") from None
        return compose.media_fields(raw, handle, size)

    async def _op_upload(self, conn: Connection, frame: Frame) -> None:
        self._logged_in(conn)
        upload_id = compose.optional_str(frame.get("upload"), "upload", 64) or ""
        chunk = _b64(frame.get("data"))
        upload = conn.uploads.get(upload_id)
        if upload is None:
            if len(conn.uploads) >= self.limits.uploads_per_connection:
                raise InvalidInput("upload", "too many uploads in progress on this connection")
            upload = conn.uploads[upload_id] = Upload(self._blobs.max_bytes)
        try:
            upload.add(chunk)
        except MediaTooLarge:
            del conn.uploads[upload_id]
            raise
        if frame.get("last") is not True:
            await _answer(conn, frame, {"received": upload.size})
            return
        del conn.uploads[upload_id]
        handle = self._blobs.put(upload.data())
        await _answer(conn, frame, {"handle": handle, "size": upload.size})

    async def _op_download(self, conn: Connection, frame: Frame) -> None:
        self._logged_in(conn)
        handle = str(frame.get("blob") or "")  # anything but a known handle is not found
        offset = compose.optional_number(frame.get("offset", 0), "offset", integer=True)
        size = compose.optional_number(frame.get("size", MAX_CHUNK), "size", integer=True)
        total = self._blobs.size(handle)
        data = self._blobs.read(handle, offset, min(size, MAX_CHUNK))
        await _answer(conn, frame, {"data": base64.b64encode(data).decode(), "total": total})

    async def _op_groups(self, conn: Connection, frame: Frame) -> None:
        account = self._logged_in(conn)
        found = [group.info() for group in self._groups.of(account.phone)]
        await _answer(conn, frame, {"groups": found})

    async def _op_presence(self, conn: Connection, frame: Frame) -> None:
        self._logged_in(conn)
        available = frame.get("available")
        if not isinstance(available, bool):
            raise InvalidInput("available", "available must be true or false")
        conn.presence = "available" if available else "unavailable"
        await _answer(conn, frame, {})

    async def _op_handled(self, conn: Connection, frame: Frame) -> None:
        self._logged_in(conn)
        upto = compose.optional_number(frame.get("q"), "q", integer=True)
        if upto is not None and conn.device_id is not None:
            self._mail.queue(conn.device_id).handled(upto)
            self._state.save_soon()


async def _answer(conn: Connection, frame: Frame, fields: Json) -> None:
    await conn.send({"ev": "ack", "rid": frame.get("rid"), **fields})


def _b64(raw: object) -> bytes:
    if not isinstance(raw, str) or len(raw) > MAX_CHUNK * 4 // 3 + 4:
        raise InvalidInput("data", f"data must be base64 of at most {MAX_CHUNK} bytes")
    try:
        return base64.b64decode(raw, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise InvalidInput("data", f"data is not valid base64: {exc}") from None


def _phone_kind(
    kind: str | None, media: Media | None, location: object, contact: object, react_to: object
) -> MessageKind:
    """The kind asked for, else the one the content implies."""
    if kind:
        return compose.kind_of(kind)
    if media is not None:
        return compose.kind_for_mimetype(media.mimetype)
    if location is not None:
        return MessageKind.LOCATION
    if contact is not None:
        return MessageKind.CONTACT
    return MessageKind.REACTION if react_to is not None else MessageKind.TEXT


def _utc(moment: datetime | None) -> datetime | None:
    if moment is None:
        return None
    # A naive time is taken as UTC, the only zone the network speaks.
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _phones(members: Iterable[str]) -> list[str]:
    return [phone_of(member, field_name="members") for member in members]
