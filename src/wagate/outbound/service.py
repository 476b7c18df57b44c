"""Sending messages: validation → the message to send → the durable queue.

:meth:`SendService.send` answers only once the message is recorded
(``queued``, with its media bytes durable and its WhatsApp id chosen), so an
acknowledged message survives a crash; the worker's sender does the rest
(:mod:`wagate.outbound.sender`). An idempotency key makes a repeated request
return the first message instead of sending twice; the same key with a
different request is a conflict.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from wagate.domain.message import (
    ContactCard,
    Location,
    Message,
    MessageKind,
    Outgoing,
    OutgoingMedia,
    Quote,
)
from wagate.domain.session import Session
from wagate.errors import Conflict, InvalidInput
from wagate.ids import phone_of_jid, user_jid
from wagate.media_types import (
    claimed,
    default_filename,
    guess_from_name,
    sendable_mimetype,
)
from wagate.outbound import queue
from wagate.outbound.media_fetch import MediaBytes, MediaFetcher, decode_base64
from wagate.outbound.rules import (
    MediaInput,
    SendRequest,
    check_fields,
    check_media_source,
    media_field,
    message_kind,
    new_wa_id,
    recipient_jid,
)
from wagate.storage.repos.messages import MessageRepo
from wagate.storage.repos.outbound import NewOutbound, OutboundRepo
from wagate.storage.repos.sessions import SessionRepo
from wagate.storage.spool import MediaSpool

log = logging.getLogger(__name__)

MAX_KEY = 256
Wake = Callable[[str], None]


def _no_wake(_session_id: str) -> None:
    return None


class SendService:
    """Queues messages to send, for every API door; ``wake`` rings the sender's doorbell."""

    def __init__(
        self,
        outbound: OutboundRepo,
        messages: MessageRepo,
        sessions: SessionRepo,
        spool: MediaSpool,
        fetcher: MediaFetcher,
        *,
        wake: Wake = _no_wake,
    ) -> None:
        self.outbound = outbound
        self.messages = messages
        self.sessions = sessions
        self.spool = spool
        self.fetcher = fetcher
        self.wake = wake

    # --- sending -------------------------------------------------------------------

    async def send(self, session_id: str, request: SendRequest) -> tuple[Message, bool]:
        """Queue ``request``; ``(message, True)``, or ``(earlier message, False)`` on a replay."""
        session = await self.session(session_id)
        kind = message_kind(request.type)
        check_fields(kind, request)
        key = _check_key(request.idempotency_key)
        draft = await self._draft(session, kind, request)
        local = self._local_media(request.media)
        fingerprint = _fingerprint(draft, request.media, local)
        if key is not None:
            existing = await self.outbound.by_idempotency_key(session.id, key)
            if existing is not None:
                return _replay(existing, fingerprint), False
        if request.media is not None:
            draft = await self._with_media(draft, kind, request.media, local)
        return await self._enqueue(session, draft, fingerprint, key)

    async def _enqueue(
        self, session: Session, draft: Outgoing, fingerprint: str, key: str | None
    ) -> tuple[Message, bool]:
        wa_id = new_wa_id()
        ref = await self.spool.put(session.id, wa_id, draft.media.data) if draft.media else None
        payload = queue.payload(draft, fingerprint=fingerprint, media=ref)
        new = NewOutbound(
            session_id=session.id,
            wa_msg_id=wa_id,
            chat_id=draft.to,
            kind=draft.kind.value,
            text=draft.text,
            payload=payload,
            sender=user_jid(session.phone_number) if session.phone_number else None,
            quoted_id=draft.quote.id if draft.quote else None,
            idempotency_key=key,
        )
        try:
            message, created = await self.outbound.enqueue(new)
        except BaseException:
            if ref is not None:
                await self.spool.discard(ref)
            raise
        if not created:  # a concurrent request with the same key won the race
            if ref is not None:
                await self.spool.discard(ref)
            return _replay(message, fingerprint), False
        self.wake(session.id)
        return message, True

    async def _draft(self, session: Session, kind: MessageKind, request: SendRequest) -> Outgoing:
        """The message without its media bytes (those may still need fetching)."""
        to = recipient_jid(request.to, "to")
        mentions = tuple(
            recipient_jid(m, f"mentions[{i}]", groups=False) for i, m in enumerate(request.mentions)
        )
        draft = Outgoing(
            to=to,
            kind=kind,
            text=request.text if request.text is not None else request.caption,
            location=_location(request.location),
            contact=_contact(request),
            mentions=mentions,
            link_preview=request.link_preview and kind is MessageKind.TEXT,
        )
        if request.quoted_id:
            draft = replace(draft, quote=await self._quote(session, request.quoted_id))
        if request.reaction is not None:
            target = await self.messages.find(session.id, request.reaction.message_id)
            draft = replace(
                draft,
                text=request.reaction.emoji,
                react_to=target.wa_msg_id if target else request.reaction.message_id,
                react_to_sender=_author(target, session) if target else None,
            )
        return draft

    async def _quote(self, session: Session, ident: str) -> Quote:
        # a quote shows its author and text; we have them when we stored the message
        target = await self.messages.find(session.id, ident)
        if target is None:
            return Quote(id=ident)
        return Quote(id=target.wa_msg_id, sender=_author(target, session), text=target.text)

    def _local_media(self, media: MediaInput | None) -> MediaBytes | None:
        if media is None:
            return None
        check_media_source(media)
        if media.base64 is not None:
            return decode_base64(media.base64, "media.base64", self.fetcher.max_bytes)
        if media.upload is not None and len(media.upload.data) > self.fetcher.max_bytes:
            raise InvalidInput("media", f"the file is larger than {self.fetcher.max_bytes} bytes")
        return media.upload

    async def _with_media(
        self, draft: Outgoing, kind: MessageKind, media: MediaInput, local: MediaBytes | None
    ) -> Outgoing:
        got = local
        if got is None:
            assert media.url is not None
            got = await self.fetcher.fetch(media.url, "media.url")
        filename = media.filename or got.filename
        claim = (
            claimed(media.mimetype) or claimed(got.mimetype) or claimed(guess_from_name(filename))
        )
        mimetype = sendable_mimetype(kind, got.data, claim, media_field(media))
        if kind is MessageKind.DOCUMENT and not filename:
            filename = default_filename(mimetype)
        return replace(draft, media=OutgoingMedia(got.data, mimetype, filename))

    async def session(self, session_id: str) -> Session:
        return await self.sessions.require(session_id)


def _check_key(key: str | None) -> str | None:
    if key is None:
        return None
    key = key.strip()
    if not key or len(key) > MAX_KEY:
        raise InvalidInput("idempotencyKey", f"idempotencyKey must be 1-{MAX_KEY} characters")
    return key


def _location(location: Location | None) -> Location | None:
    # an empty name or address is no name or address, for every engine alike
    if location is None:
        return None
    name, address = (v.strip() if v else None for v in (location.name, location.address))
    return replace(location, name=name or None, address=address or None)


def _contact(request: SendRequest) -> ContactCard | None:
    contact = request.contact
    if contact is None or contact.phone is None:
        return contact
    return replace(contact, phone=phone_of_jid(recipient_jid(contact.phone, "contact.phone")))


def _author(message: Message, session: Session) -> str | None:
    if message.direction == "out":
        return user_jid(session.phone_number) if session.phone_number else None
    return message.sender


def _fingerprint(draft: Outgoing, media: MediaInput | None, local: MediaBytes | None) -> str:
    """What makes two requests "the same" for an idempotency key."""
    described: dict[str, Any] = {"message": queue.to_json(draft)}
    if media is not None:
        source = media.url if local is None else hashlib.sha256(local.data).hexdigest()
        described["media"] = {
            "mimetype": media.mimetype,
            "filename": media.filename,
            "source": source,
        }
    canonical = json.dumps(described, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


def _replay(existing: Message, fingerprint: str) -> Message:
    if queue.fingerprint_of(existing.payload) != fingerprint:
        raise Conflict(
            "this idempotency key was used for a different message", code="idempotency_conflict"
        )
    return existing
