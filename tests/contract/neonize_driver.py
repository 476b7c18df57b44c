"""The contract's driver for the neonize engine: the fake FFI plays WhatsApp and the phones.

Inbound traffic is delivered the way whatsmeow reports it today: a peer is
addressed by its ``@lid`` (``Sender`` and, in direct chats, ``Chat``, for
messages and receipts alike) with its phone JID in ``SenderAlt``; media
arrives as the WhatsApp sub-message with its direct path, hashes and length;
receipts and groups as neonize's events.
What a session sent is read back from the ``SendMessage`` calls, field by
field, into the same inbox entries the sandbox network keeps.
"""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import os
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tests.contract import neonize_go as go
from tests.contract.neonize_fake import FakeClient, FakeGo, Sent
from wagate.clock import Clock
from wagate.domain.message import ContactCard, Location
from wagate.engine.base import AuthStore
from wagate.engine.neonize import NeonizeConfig, NeonizeEngine
from wagate.engine.neonize import _loader as nz
from wagate.storage.auth_state import FileAuthStore

E = nz.wae2e
_MEDIA_PARTS = {
    "image": "imageMessage",
    "video": "videoMessage",
    "audio": "audioMessage",
    "voice": "audioMessage",
    "document": "documentMessage",
    "sticker": "stickerMessage",
}
_KIND_OF_PART = {
    "conversation": "text",
    "extendedTextMessage": "text",
    "imageMessage": "image",
    "videoMessage": "video",
    "documentMessage": "document",
    "stickerMessage": "sticker",
    "locationMessage": "location",
    "contactMessage": "contact",
    "reactionMessage": "reaction",
}


def pn(phone: str) -> str:
    return f"{phone}@s.whatsapp.net"


def lid_of(phone: str) -> str:
    """A stable ``@lid`` user for a phone (WhatsApp's are 14-15 digits, unrelated to it)."""
    return str(10**14 + int(hashlib.sha256(phone.encode()).hexdigest()[:10], 16))


class NeonizeDriver:
    """Acts as WhatsApp and the phones around a :class:`NeonizeEngine` on a :class:`FakeGo`."""

    name = "neonize"

    def __init__(
        self,
        fake: FakeGo,
        tmp_path: Path,
        config: NeonizeConfig | None = None,
        *,
        clock: Clock | None = None,
    ) -> None:
        self.fake = fake
        self.root = tmp_path / "auth"
        config = config or NeonizeConfig(reconnect_grace_s=0, connect_backoff_base_s=0.01)
        self.engine = NeonizeEngine(config, clock=clock)
        self.groups: dict[str, dict[str, Any]] = {}
        self.push_names: dict[str, str] = {}
        self._ids = itertools.count(1)

    def auth(self, session_id: str) -> AuthStore:
        return FileAuthStore(self.root, session_id)

    async def aclose(self) -> None:
        await settle(self.fake, self.engine)
        await self.engine.aclose()

    # --- linking --------------------------------------------------------------------------

    async def scan(self, qr: str, phone: str, push_name: str | None = None) -> None:
        client = self.fake.find_qr(qr)
        self.push_names[phone] = push_name or ""
        client.post("scan", phone, push_name or "", lid_of(phone))

    async def add_phone(self, phone: str) -> None:
        self.push_names.setdefault(phone, "")

    async def fast_qr_engine(self) -> NeonizeEngine:
        """QR codes that run out at once: the fake times out after the first."""
        self.fake.qr_timeout_after = 2
        return self.engine

    # --- the phones' side -----------------------------------------------------------------

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
        location: Location | None = None,
        contact: ContactCard | None = None,
        mentions: Sequence[str] = (),
        timestamp: datetime | None = None,
    ) -> str:
        content = self._content(
            text, media, mimetype, filename, kind, quote_id, react_to, location, contact, mentions
        )
        msg_id = f"3A{next(self._ids):06d}{os.urandom(4).hex().upper()}"
        at = timestamp or datetime.now(UTC)
        media_kind = content.ListFields()[0][0].name.removesuffix("Message")
        for client, chat, group in self._recipients(from_phone, to):
            src = go.source(chat, f"{lid_of(from_phone)}@lid", alt=pn(from_phone), group=group)
            event = go.message(
                src, msg_id, at, content, push_name=self.push_names.get(from_phone, ""),
                kind="text" if media is None else media_kind,
            )  # fmt: skip
            self.fake.emit(client, 17, event)
        return msg_id

    def _recipients(self, sender: str, to: str) -> list[tuple[FakeClient, str, bool]]:
        target = to.split("@", 1)[0]
        if to.endswith("@g.us"):
            members = [m for m in self.groups[to]["members"] if m != sender]
            return [(c, to, True) for m in members for c in self.fake.linked(m)]
        return [(c, f"{lid_of(sender)}@lid", False) for c in self.fake.linked(target)]

    def _content(
        self,
        text: str | None,
        media: bytes | None,
        mimetype: str | None,
        filename: str | None,
        kind: str | None,
        quote_id: str | None,
        react_to: str | None,
        location: Location | None,
        contact: ContactCard | None,
        mentions: Sequence[str],
    ) -> Any:
        ctx = E.ContextInfo(mentionedJID=list(mentions))
        if quote_id:
            ctx.stanzaID = quote_id
            ctx.quotedMessage.conversation = ""
        has_ctx = bool(quote_id or mentions)
        if react_to:
            key = nz.wacommon.MessageKey(remoteJID="", fromMe=True, ID=react_to)
            return E.Message(reactionMessage=E.ReactionMessage(key=key, text=text or ""))
        if media is not None:
            return self._media(media, mimetype, filename, kind, text, ctx if has_ctx else None)
        if location is not None:
            loc = E.LocationMessage(
                degreesLatitude=location.latitude,
                degreesLongitude=location.longitude,
                name=location.name or "",
                address=location.address or "",
            )
            return E.Message(locationMessage=loc)
        if contact is not None:
            card = E.ContactMessage(displayName=contact.name, vcard=contact.vcard or "")
            return E.Message(contactMessage=card)
        if has_ctx:
            return E.Message(extendedTextMessage=E.ExtendedTextMessage(text=text, contextInfo=ctx))
        return E.Message(conversation=text)

    def _media(
        self,
        data: bytes,
        mimetype: str | None,
        filename: str | None,
        kind: str | None,
        caption: str | None,
        ctx: Any,
    ) -> Any:
        mimetype = mimetype or "application/octet-stream"
        top = mimetype.split("/", 1)[0]
        kind = kind or {"image": "image", "video": "video", "audio": "audio"}.get(top, "document")
        part = _MEDIA_PARTS[kind]
        path = f"/v/t62/in-{next(self._ids)}"
        self.fake.blobs[path] = data
        fields: dict[str, Any] = {
            "URL": f"https://mmg.whatsapp.net{path}",
            "directPath": path,
            "mediaKey": os.urandom(32),
            "fileSHA256": hashlib.sha256(data).digest(),
            "fileEncSHA256": hashlib.sha256(b"enc" + data).digest(),
            "fileLength": len(data),
            "mimetype": mimetype,
            "JPEGThumbnail" if part != "stickerMessage" else "pngThumbnail": b"\xff\xd8thumb",
        }
        if part in ("imageMessage", "videoMessage", "documentMessage") and caption:
            fields["caption"] = caption
        if part == "documentMessage":
            fields["fileName"] = filename or "file"
        if kind == "voice":
            fields["PTT"] = True
        if ctx is not None:
            fields["contextInfo"] = ctx
        sub_type = getattr(E, part[0].upper() + part[1:])
        return E.Message(**{part: sub_type(**fields)})

    # --- what the phones see --------------------------------------------------------------

    async def inbox(self, phone: str) -> list[dict[str, Any]]:
        await asyncio.sleep(0)
        entries = []
        for sent in self.fake.sent:
            to = sent.to
            group = self.groups.get(to)
            if to.split("@", 1)[0] in (phone, lid_of(phone)) or (
                group and phone in group["members"]
            ):
                entries.append(self._entry(sent))
        return entries

    def _entry(self, sent: Sent) -> dict[str, Any]:
        msg = sent.message
        field, sub = msg.ListFields()[0]
        part = field.name
        kind = _KIND_OF_PART.get(part, "audio" if part == "audioMessage" else "other")
        if part == "audioMessage" and sub.PTT:
            kind = "voice"
        own = self.fake.devices.get(self.fake.by_uuid[sent.uuid].db, {}).get("phone", "")
        entry: dict[str, Any] = {
            "id": sent.id,
            "from": pn(own),
            "chat": sent.to,
            "kind": kind,
            "text": _text_of(part, sub),
            "timestamp": sent.at.isoformat(),
            "quoted_id": None,
            "react_to": sub.key.ID if part == "reactionMessage" else None,
            "mentions": [],
        }
        if part != "conversation" and "contextInfo" in sub.DESCRIPTOR.fields_by_name:
            entry["quoted_id"] = sub.contextInfo.stanzaID or None
            entry["mentions"] = list(sub.contextInfo.mentionedJID)
        if part in _MEDIA_PARTS.values():
            entry |= _media_entry(part, sub)
        if part == "locationMessage":
            entry["location"] = {
                "latitude": sub.degreesLatitude,
                "longitude": sub.degreesLongitude,
                "name": sub.name or None,
                "address": sub.address or None,
            }
        if part == "contactMessage":
            entry["contact"] = {"name": sub.displayName, "vcard": sub.vcard}
        entry["preview"] = _preview_entry(sub) if part == "extendedTextMessage" else None
        return entry

    async def blob(self, entry: dict[str, Any]) -> bytes:
        return self.fake.blobs[entry["media_handle"]]

    async def mark_read(self, phone: str, ids: list[str]) -> None:
        now = datetime.now(UTC)
        for sent in self.fake.sent:
            if sent.id in ids and sent.to.split("@", 1)[0] in (phone, lid_of(phone)):
                peer = f"{lid_of(phone)}@lid"
                src = go.source(peer, peer, alt=pn(phone))
                client = self.fake.by_uuid[sent.uuid]
                self.fake.emit(client, 18, go.receipt(src, [sent.id], now, "read"))

    # --- groups ---------------------------------------------------------------------------

    async def create_group(self, name: str, owner: str, members: list[str]) -> str:
        jid = f"1203630{next(self._ids):011d}@g.us"
        everyone = [owner, *[m for m in members if m != owner]]
        self.groups[jid] = {"name": name, "owner": owner, "members": everyone}
        info = self._group_info(jid)
        self.fake.groups[jid] = info
        for member in everyone:
            for client in self.fake.linked(member):
                self.fake.emit(client, 21, go.joined_group(info, pn(owner)))
        return jid

    async def rename_group(self, jid: str, name: str) -> None:
        group = self.groups[jid]
        group["name"] = name
        self.fake.groups[jid] = self._group_info(jid)
        now = datetime.now(UTC)
        for member in group["members"]:
            for client in self.fake.linked(member):
                event = go.group_change(jid, now, by=pn(group["owner"]), name=name)
                self.fake.emit(client, 22, event)

    def _group_info(self, jid: str) -> Any:
        group = self.groups[jid]
        members = [pn(m) for m in group["members"]]
        return go.group_info(jid, group["name"], pn(group["owner"]), members, datetime.now(UTC))

    # --- fate -----------------------------------------------------------------------------

    async def fault(self, kind: str, session: str) -> None:
        clients = [
            c
            for uuid, c in self.fake.clients.items()
            if uuid == session or uuid.startswith(session + "~")
        ]
        for client in clients:
            if kind == "drop":
                self.fake.emit(client, 12, go.disconnected())
            elif kind == "logout":
                self.fake.devices.pop(client.db, None)
                self.fake.emit(client, 6, go.logged_out("LOGGED_OUT"))
            elif kind == "ban":
                self.fake.emit(client, 8, go.temporary_ban("BLOCKED_BY_USERS", 3600))
            elif kind == "replaced":
                self.fake.emit(client, 7, nz.nproto.StreamReplaced())
            else:
                raise ValueError(f"no such fault: {kind}")


async def settle(fake: FakeGo, engine: NeonizeEngine, within_s: float = 3.0) -> None:
    """Release the fake's parked goroutines and let their connect tasks end on this loop."""
    fake.close()
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within_s
    while loop.time() < deadline:
        slots = [s for c in engine.sessions.values() for s in (c.current, *c.abandoned) if s]
        if all(s.task is None or s.task.done() for s in slots):
            break
        await asyncio.sleep(0.01)


def _text_of(part: str, sub: Any) -> str | None:
    if part == "conversation":
        return str(sub) or None
    for name in ("text", "caption"):
        if name in sub.DESCRIPTOR.fields_by_name and getattr(sub, name):
            return str(getattr(sub, name))
    return None


def _preview_entry(sub: Any) -> dict[str, Any] | None:
    """A link card as the sandbox's inbox shows it."""
    if not sub.matchedText:
        return None
    thumbnail = bytes(sub.JPEGThumbnail)
    return {
        "url": sub.matchedText,
        "title": sub.title or None,
        "description": sub.description or None,
        "thumbnail_sha256": hashlib.sha256(thumbnail).hexdigest() if thumbnail else None,
        "thumbnail_size": len(thumbnail) or None,
    }


def _media_entry(part: str, sub: Any) -> dict[str, Any]:
    fields = sub.DESCRIPTOR.fields_by_name
    return {
        "mimetype": sub.mimetype or None,
        "filename": (sub.fileName or None) if "fileName" in fields else None,
        "size": sub.fileLength,
        "sha256": sub.fileSHA256.hex(),
        "width": (sub.width or None) if "width" in fields else None,
        "height": (sub.height or None) if "height" in fields else None,
        "media_handle": sub.directPath,
        "media_key": len(sub.mediaKey),
        "url": sub.URL,
    }
