"""The sandbox network's post office: where each message, receipt and group change goes.

Routing is synchronous on purpose: checking a resend's id, recording the
message in inboxes and queueing it for devices happen with no ``await`` in
between, so two sends can never interleave halfway. Devices get everything
through their queues (:mod:`.mail`), online or not.

- To an account (by phone JID or ``@lid``): the account's inbox and every
  linked device; the sender's other devices get a ``from_me`` copy.
- To a group: every member account but the sender's.
- Receipts go to every device of the sending account: ``delivered`` once the
  message is routed (recipients always exist by then), ``read`` (and
  ``played`` for voice notes, audio and video) when a recipient marks it read.

Messages and receipts are stamped by the network's clock (a phone may backdate
its own message).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from wagate.clock import Clock
from wagate.domain.message import MessageKind
from wagate.errors import InvalidInput, NotFound
from wagate.sandbox.accounts import Account, AccountBook, phone_jid, phone_of
from wagate.sandbox.envelope import (
    Content,
    Envelope,
    Json,
    Party,
    group_frame,
    is_group,
    new_message_id,
    receipt_frame,
)
from wagate.sandbox.groups import Group, GroupBook
from wagate.sandbox.mail import Mail
from wagate.sandbox.state import StateFile

_PLAYABLE = frozenset({MessageKind.VOICE.value, MessageKind.AUDIO.value, MessageKind.VIDEO.value})


@dataclass(frozen=True, slots=True)
class Routed:
    """What routing a message produced: the sender's ack and the receipt to post after it."""

    ack: Json  # {"id", "ts"}
    receipt: Json | None  # None when the send repeated an id already routed


class PostOffice:
    """Routes messages, receipts and group changes into inboxes and device queues."""

    def __init__(
        self, book: AccountBook, groups: GroupBook, mail: Mail, state: StateFile, clock: Clock
    ) -> None:
        self._book = book
        self._groups = groups
        self._mail = mail
        self._state = state
        self._clock = clock

    def route(
        self,
        sender: Account,
        to: str,
        content: Content,
        *,
        msg_id: str | None = None,
        at: datetime | None = None,
        device_id: str | None = None,
        create: bool = False,
    ) -> Routed:
        """Route one message from ``sender`` (its device ``device_id``, None for the phone).

        A resend of an id ``sender`` already routed returns the original ack and
        delivers nothing. ``create`` lets a simulated phone write to numbers new
        to the network (sessions get :class:`NotFound` instead).
        """
        if msg_id is not None and (ack := self._mail.sent(sender.phone, msg_id)) is not None:
            return Routed(ack, None)
        chat, recipients = self._resolve(sender, to, create=create)
        now = self._clock.now()
        party = Party(sender.phone, sender.lid, sender.push_name)
        envelope = Envelope(msg_id or new_message_id(), party, chat, at or now, content)
        for phone in recipients:
            self._mail.receive(phone, envelope.inbox_entry())
            self.to_account(phone, envelope.frame(from_me=False))
        self.to_account(sender.phone, envelope.frame(from_me=True), skip=device_id)
        ack = {"id": envelope.id, "ts": envelope.timestamp.isoformat()}
        self._mail.remember_sent(sender.phone, envelope.id, ack)
        self._state.save_soon()
        return Routed(ack, receipt_frame(chat, [envelope.id], "delivered", now))

    def to_account(self, phone: str, frame: Json, *, skip: str | None = None) -> None:
        """Queue ``frame`` for every device linked to ``phone`` (but ``skip``)."""
        account = self._book.get(phone)
        if account is None:
            return
        for device_id in account.devices:
            if device_id != skip:
                self._mail.queue(device_id).push(frame)
        self._state.save_soon()

    def group_changed(
        self, group: Group, change: str, *, by: str | None = None, also: Iterable[str] = ()
    ) -> None:
        """Tell every member (and ``also``: members just removed) about a change."""
        frame = group_frame(group.jid, group.name, change, by)
        for phone in dict.fromkeys([*group.members, *also]):
            self.to_account(phone, frame)

    def mark_read(self, phone: str, ids: list[str]) -> None:
        """``phone`` read these messages of its inbox: their senders get receipts."""
        entries = self._mail.find(phone, ids)
        missing = set(ids) - {entry["id"] for entry in entries}
        if missing:
            raise NotFound(f"not in the inbox of {phone}: {', '.join(sorted(missing)[:5])}")
        now = self._clock.now()
        by_chat: dict[tuple[str, str], list[Json]] = {}
        for entry in entries:
            by_chat.setdefault((phone_of(entry["from"]), entry["to"]), []).append(entry)
        for (sender, chat), read in by_chat.items():
            reader = phone_jid(phone)
            self.to_account(sender, receipt_frame(chat, _ids(read), "read", now, reader))
            played = [entry for entry in read if entry["kind"] in _PLAYABLE]
            if played:
                self.to_account(sender, receipt_frame(chat, _ids(played), "played", now, reader))

    def _resolve(self, sender: Account, to: str, *, create: bool) -> tuple[str, list[str]]:
        """The chat JID as addressed, and the phones that receive (never the sender's)."""
        jid = to.strip()
        if is_group(jid):
            group = self._groups.require(jid)
            if sender.phone not in group.members:
                raise InvalidInput("to", f"{sender.phone} is not a participant of {jid}")
            return jid, [phone for phone in group.members if phone != sender.phone]
        if jid.endswith("@lid"):
            account = self._book.by_lid(jid)
            if account is None:
                raise NotFound(f"no account has the LID {jid[:80]!r}")
            return jid, [account.phone] if account.phone != sender.phone else []
        phone = phone_of(jid, field_name="to")
        if self._book.get(phone) is None:
            if not create:
                raise NotFound(f"{phone} is not on the sandbox network")
            self._book.ensure(phone)
        return phone_jid(phone), [phone] if phone != sender.phone else []


def _ids(entries: list[Json]) -> list[str]:
    return [str(entry["id"]) for entry in entries]
