"""The simulated phones of the sandbox network: what a test or a developer does as a phone.

:class:`Phones` is the phone's side of messaging: a phone joins the network,
sends to a phone, a ``@lid`` or a group, reads its inbox (marking messages
read sends receipts), fetches media, and runs groups. Sessions' own frames are
:mod:`.messaging`; both route through the post office (:mod:`.office`).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import asdict
from datetime import UTC, datetime
from typing import Any, TypedDict, Unpack

from wagate.domain.message import ContactCard, Location, MessageKind
from wagate.sandbox import compose
from wagate.sandbox.accounts import AccountBook, AccountInfo, phone_jid, phone_of
from wagate.sandbox.blobs import BlobStore
from wagate.sandbox.envelope import Content, Media
from wagate.sandbox.groups import GroupBook, check_subject
from wagate.sandbox.mail import Mail
from wagate.sandbox.office import PostOffice


class PhoneMessage(TypedDict, total=False):
    """What a simulated phone sends (every field optional; a text needs ``text``).

    ``kind`` defaults to text, or for media to what the mimetype says (image,
    video, audio, else document). ``timestamp`` backdates the message (the
    gateway drops messages older than 30 s); a naive one is UTC.
    """

    text: str | None  # the text, a caption, or a reaction's emoji
    media: bytes | None
    mimetype: str | None
    filename: str | None
    kind: str | None
    quote_id: str | None
    react_to: str | None
    width: int | None
    height: int | None
    duration_s: float | None
    msg_id: str | None  # a resend of an id the phone already sent is not delivered again
    timestamp: datetime | None
    location: Location | None
    contact: ContactCard | None
    mentions: Sequence[str]


class Phones:
    """Simulated phones: accounts with no linked device, acting through the control API."""

    def __init__(
        self,
        book: AccountBook,
        groups: GroupBook,
        mail: Mail,
        blobs: BlobStore,
        office: PostOffice,
    ) -> None:
        self._book = book
        self._groups = groups
        self._mail = mail
        self._blobs = blobs
        self._office = office

    async def add(self, phone: str, push_name: str | None = None) -> AccountInfo:
        """A simulated phone joins the network (an account with no linked device)."""
        return self._book.ensure(phone_of(phone), push_name).info(online=())

    async def send(self, from_phone: str, to: str, **message: Unpack[PhoneMessage]) -> str:
        """A simulated phone (created if new) sends to a phone, a ``@lid`` or a group.

        Returns the message id.
        """
        sender_phone = phone_of(from_phone, field_name="from")
        checked = compose.check_content(self._content(message))
        sender = self._book.ensure(sender_phone)  # only once the message itself is sound
        routed = self._office.route(
            sender,
            to,
            checked,
            msg_id=compose.message_id(message.get("msg_id"), "msg_id"),
            at=_utc(message.get("timestamp")),
            create=True,
        )
        if routed.receipt is not None:
            self._office.to_account(sender.phone, routed.receipt)
        return str(routed.ack["id"])

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
        phones = _phones(members)
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

    # --- what a phone's message says --------------------------------------------------

    def _content(self, message: PhoneMessage) -> Content:
        media = self._stored(message)
        location, contact = message.get("location"), message.get("contact")
        react_to = message.get("react_to")
        return Content(
            kind=_kind(message.get("kind"), media, location, contact, react_to),
            text=compose.text(message.get("text")),
            media=media,
            location=compose.location(asdict(location) if location else None),
            contact=compose.contact(asdict(contact) if contact else None),
            quoted_id=compose.message_id(message.get("quote_id"), "quote_id"),
            react_to=compose.message_id(react_to, "react_to"),
            mentions=compose.mentions(list(message.get("mentions", ()))),
        )

    def _stored(self, message: PhoneMessage) -> Media | None:
        """Store the message's media blob, described as a send frame's media would be."""
        data = message.get("media")
        if data is None:
            return None
        meta = {
            "mimetype": message.get("mimetype") or "application/octet-stream",
            "filename": message.get("filename"),
            "width": message.get("width"),
            "height": message.get("height"),
            "duration_s": message.get("duration_s"),
        }
        return compose.media_fields(meta, self._blobs.put(data), len(data))


def _kind(
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
