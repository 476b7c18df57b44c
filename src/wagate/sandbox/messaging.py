"""Messaging on the sandbox network: the ops a logged-in session uses.

:class:`Messaging` answers the frames below; routing is the post office's
(:mod:`.office`), the phone's side of the same traffic is :mod:`.phones`.
Frames of a logged-in connection (``rid`` is the client's request id, echoed
in the answer; several requests may be in flight)::

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

from wagate.errors import Conflict, InvalidInput, NotFound
from wagate.sandbox import compose
from wagate.sandbox.accounts import Account, AccountBook
from wagate.sandbox.blobs import BlobStore, MediaTooLarge, Upload
from wagate.sandbox.connection import Connection, ConnState, OpHandler
from wagate.sandbox.envelope import Json, Media
from wagate.sandbox.groups import GroupBook
from wagate.sandbox.limits import SandboxLimits
from wagate.sandbox.mail import Mail
from wagate.sandbox.office import PostOffice
from wagate.sandbox.transport import Frame

MAX_CHUNK = 1024 * 1024  # decoded bytes in one upload or download frame


class NotLoggedIn(Conflict):
    code = "not_logged_in"


class Messaging:
    """Sending, uploads, downloads, groups, presence and confirmations of logged-in sessions."""

    def __init__(
        self,
        book: AccountBook,
        groups: GroupBook,
        mail: Mail,
        blobs: BlobStore,
        office: PostOffice,
        limits: SandboxLimits,
    ) -> None:
        self._book = book
        self._groups = groups
        self._mail = mail
        self._blobs = blobs
        self._office = office
        self._limits = limits

    def ops(self) -> dict[str, OpHandler]:
        return {
            "send": self._op_send,
            "upload": self._op_upload,
            "download": self._op_download,
            "groups": self._op_groups,
            "presence": self._op_presence,
            "handled": self._op_handled,
        }

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
            if len(conn.uploads) >= self._limits.uploads_per_connection:
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
            self._mail.handled(conn.device_id, upto)


async def _answer(conn: Connection, frame: Frame, fields: Json) -> None:
    await conn.send({"ev": "ack", "rid": frame.get("rid"), **fields})


def _b64(raw: object) -> bytes:
    if not isinstance(raw, str) or len(raw) > MAX_CHUNK * 4 // 3 + 4:
        raise InvalidInput("data", f"data must be base64 of at most {MAX_CHUNK} bytes")
    try:
        return base64.b64decode(raw, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise InvalidInput("data", f"data is not valid base64: {exc}") from None
