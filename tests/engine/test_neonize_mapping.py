"""Pure mapping between neonize's protobufs and wagate's events and messages."""

from __future__ import annotations

import base64
from datetime import UTC, datetime
from typing import Any

import pytest

from tests.contract import neonize_go as go
from wagate.domain.message import (
    ContactCard,
    LinkPreview,
    Location,
    MessageKind,
    Outgoing,
    OutgoingMedia,
    Quote,
    ReceiptStatus,
)
from wagate.engine.neonize import _loader as nz
from wagate.engine.neonize import failures, inbound, outbound
from wagate.errors import InvalidInput, ProxyFailure, TransientError

E = nz.wae2e
NOW = datetime(2025, 3, 4, 5, 6, 7, 890000, tzinfo=UTC)
PN, LID, GROUP = "15550002222@s.whatsapp.net", "123456789012345@lid", "120363001@g.us"


def received(content: Any, *, chat: str = LID, sender: str = LID, alt: str = PN) -> Any:
    return go.message(go.source(chat, sender, alt=alt, group=chat == GROUP), "ID1", NOW, content)


# --- messages in ------------------------------------------------------------------------------


def test_message_info_timestamps_are_milliseconds() -> None:
    event = inbound.message(received(E.Message(conversation="hi")))
    assert event is not None and event.timestamp == NOW


@pytest.mark.parametrize(
    ("sender", "alt", "pn", "lid"),
    [(LID, PN, PN, LID), (PN, LID, PN, LID), (PN, "", PN, None), (LID, "", None, LID)],
)
def test_the_senders_phone_and_lid_come_from_sender_and_sender_alt(
    sender: str, alt: str, pn: str | None, lid: str | None
) -> None:
    event = inbound.message(received(E.Message(conversation="x"), sender=sender, alt=alt))
    assert event is not None and (event.sender, event.sender_pn, event.sender_lid) == (
        sender,
        pn,
        lid,
    )


def test_a_group_message_is_in_the_group_chat() -> None:
    event = inbound.message(received(E.Message(conversation="x"), chat=GROUP))
    assert event is not None and event.is_group and event.chat == GROUP


def test_a_direct_chat_whatsapp_names_by_lid_is_the_peers_phone() -> None:
    event = inbound.message(received(E.Message(conversation="x"), chat=LID, sender=LID, alt=PN))
    assert event is not None and (event.chat, event.sender_lid) == (PN, LID)


def test_what_we_sent_from_our_phone_to_a_lid_chat_is_in_the_peers_phone_chat() -> None:
    mine = "15550001111@s.whatsapp.net"
    src = go.source(LID, mine, recipient_alt=PN, from_me=True)
    event = inbound.message(go.message(src, "ID2", NOW, E.Message(conversation="sent")))
    assert event is not None and (event.chat, event.from_me) == (PN, True)


def test_a_lid_chat_without_a_phone_stays_the_lid() -> None:
    event = inbound.message(received(E.Message(conversation="x"), chat=LID, sender=LID, alt=""))
    assert event is not None and event.chat == LID


def test_wrapped_content_is_unwrapped() -> None:
    doc = E.DocumentMessage(fileName="a.pdf", caption="see", mimetype="application/pdf")
    wrapped = E.Message(
        ephemeralMessage=E.FutureProofMessage(
            message=E.Message(documentWithCaptionMessage=E.FutureProofMessage(
                message=E.Message(documentMessage=doc)
            ))
        )
    )  # fmt: skip
    event = inbound.message(received(wrapped))
    assert event is not None and event.kind is MessageKind.DOCUMENT
    assert event.text == "see" and event.media is not None and event.media.filename == "a.pdf"


def test_a_voice_note_is_audio_marked_push_to_talk() -> None:
    audio = E.AudioMessage(mimetype="audio/ogg", PTT=True, seconds=7, fileLength=1234)
    event = inbound.message(received(E.Message(audioMessage=audio)))
    assert event is not None and event.kind is MessageKind.VOICE
    assert event.media is not None and (event.media.duration_s, event.media.size) == (7.0, 1234)


def test_an_inbound_video_keeps_its_caption_and_size() -> None:
    video = E.VideoMessage(mimetype="video/mp4", caption="clip", width=640, height=360, seconds=3)
    event = inbound.message(received(E.Message(videoMessage=video)))
    assert event is not None and (event.kind, event.text) == (MessageKind.VIDEO, "clip")
    assert event.media is not None
    assert (event.media.width, event.media.height, event.media.duration_s) == (640, 360, 3.0)


def test_an_inbound_image_keeps_its_width_and_height() -> None:
    image = E.ImageMessage(mimetype="image/jpeg", width=800, height=600)
    event = inbound.message(received(E.Message(imageMessage=image)))
    assert event is not None and event.media is not None
    assert (event.media.width, event.media.height) == (800, 600)


def test_a_sticker_is_a_sticker() -> None:
    sticker = E.StickerMessage(mimetype="image/webp", fileLength=99)
    event = inbound.message(received(E.Message(stickerMessage=sticker)))
    assert event is not None and event.kind is MessageKind.STICKER
    assert event.media is not None and event.media.kind is MessageKind.STICKER


def test_inbound_mentions_are_kept() -> None:
    ctx = E.ContextInfo(mentionedJID=[PN, "15550003333@s.whatsapp.net"])
    text = E.ExtendedTextMessage(text="hi @15550002222", contextInfo=ctx)
    event = inbound.message(received(E.Message(extendedTextMessage=text)))
    assert event is not None and event.mentions == (PN, "15550003333@s.whatsapp.net")


def test_the_media_handle_drops_thumbnails_and_keeps_what_download_needs() -> None:
    image = E.ImageMessage(directPath="/v/x", mediaKey=b"k" * 32, JPEGThumbnail=b"t" * 5000)
    event = inbound.message(received(E.Message(imageMessage=image)))
    assert event is not None and event.media is not None
    holder = E.Message.FromString(base64.b64decode(event.media.handle["message"]))
    assert holder.imageMessage.directPath == "/v/x" and not holder.imageMessage.JPEGThumbnail


def test_protocol_only_messages_are_not_events() -> None:
    quiet = E.Message(protocolMessage=E.ProtocolMessage(type=E.ProtocolMessage.REVOKE))
    assert inbound.message(received(quiet)) is None


def test_unmodelled_content_is_other_with_its_field_names() -> None:
    poll = E.Message(pollCreationMessage=E.PollCreationMessage(name="lunch?"))
    event = inbound.message(received(poll))
    assert event is not None and event.kind is MessageKind.OTHER
    assert event.raw["fields"] == ["pollCreationMessage"]


def test_a_removed_reaction_has_empty_text() -> None:
    key = nz.wacommon.MessageKey(remoteJID=PN, fromMe=True, ID="M1")
    event = inbound.message(received(E.Message(reactionMessage=E.ReactionMessage(key=key))))
    assert event is not None and (event.kind, event.text, event.react_to) == (
        MessageKind.REACTION,
        "",
        "M1",
    )


# --- receipts, groups, connection -------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "expected"),
    [("delivered", ReceiptStatus.DELIVERED), ("read", ReceiptStatus.READ),
     ("played", ReceiptStatus.PLAYED), ("read_self", None), ("retry", None)],
)  # fmt: skip
def test_receipts_map_their_status_in_seconds(status: str, expected: ReceiptStatus | None) -> None:
    event = inbound.receipt(go.receipt(go.source(PN, PN), ["M1", "M2"], NOW, status))
    if expected is None:
        assert event is None
        return
    assert event is not None and (event.status, event.message_ids) == (expected, ("M1", "M2"))
    assert event.timestamp == NOW.replace(microsecond=0)


def test_a_receipt_in_a_lid_chat_is_in_the_peers_phone_chat() -> None:
    event = inbound.receipt(go.receipt(go.source(LID, LID, alt=PN), ["M1"], NOW, "read"))
    assert event is not None and (event.chat, event.by) == (PN, None)


def test_a_group_receipt_says_who_read_it() -> None:
    src = go.source(GROUP, LID, alt=PN, group=True)
    event = inbound.receipt(go.receipt(src, ["M1"], NOW, "read"))
    assert event is not None and (event.chat, event.by) == (GROUP, PN)


def test_our_own_devices_receipts_are_skipped() -> None:
    assert inbound.receipt(go.receipt(go.source(PN, PN, from_me=True), ["M"], NOW, "read")) is None


def test_group_changes_and_joins() -> None:
    renamed = inbound.group_change(go.group_change(GROUP, NOW, by=PN, name="New"))
    joined = inbound.group_change(go.group_change(GROUP, NOW, by=PN, join=[LID]))
    quiet = inbound.group_change(go.group_change(GROUP, NOW, by=PN))
    info = go.group_info(GROUP, "Team", PN, [PN, "15550001111@s.whatsapp.net"], NOW)
    created = inbound.joined_group(go.joined_group(info, PN))
    assert renamed is not None and (renamed.change, renamed.name, renamed.by) == (
        "renamed",
        "New",
        PN,
    )
    assert joined is not None and joined.change == "participants" and quiet is None
    assert created is not None and (created.jid, created.name, created.change) == (
        GROUP,
        "Team",
        "created",
    )
    assert inbound.group_info(info).participants == 2


def test_connected_needs_the_devices_jid() -> None:
    with pytest.raises(ValueError, match="JID"):
        inbound.connected(nz.nproto.Device(PushName="x"), "wagate")


# --- messages out -----------------------------------------------------------------------------


def test_jids_are_checked_before_anything_is_built() -> None:
    for bad in ("15550002222", "x@example.com", "a:b@s.whatsapp.net", "@g.us"):
        with pytest.raises(InvalidInput):
            outbound.parse_jid(bad)
    parsed = outbound.parse_jid("15550002222:3@s.whatsapp.net")
    assert (parsed.User, parsed.Device, parsed.Server) == ("15550002222", 3, "s.whatsapp.net")


@pytest.mark.parametrize(
    ("message", "field"),
    [
        (Outgoing(to=PN, kind=MessageKind.TEXT), "text"),
        (Outgoing(to=PN, kind=MessageKind.IMAGE), "media"),
        (Outgoing(to=PN, kind=MessageKind.LOCATION), "location"),
        (Outgoing(to=PN, kind=MessageKind.CONTACT), "contact"),
        (Outgoing(to=PN, kind=MessageKind.REACTION, text="x"), "react_to"),
        (Outgoing(to="nobody", kind=MessageKind.TEXT, text="x"), "to"),
        # WhatsApp shows no sticker but WebP and plays no voice note but Ogg Opus
        (
            Outgoing(to=PN, kind=MessageKind.STICKER, media=OutgoingMedia(b"x", "image/png")),
            "media.mimetype",
        ),
        (
            Outgoing(to=PN, kind=MessageKind.VOICE, media=OutgoingMedia(b"x", "audio/mpeg")),
            "media.mimetype",
        ),
    ],
)
def test_unsendable_messages_name_their_field(message: Outgoing, field: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        outbound.check(message)
    assert caught.value.field == field


def test_a_reply_with_mentions_quotes_the_message_without_its_device() -> None:
    quote = Quote(id="Q1", sender="15550002222:4@s.whatsapp.net", text="original")
    message = Outgoing(to=PN, kind=MessageKind.TEXT, text="yes", quote=quote, mentions=(PN,))
    built = outbound.build(message, own_user="1")
    ctx = built.extendedTextMessage.contextInfo
    assert (ctx.stanzaID, ctx.participant, list(ctx.mentionedJID)) == ("Q1", PN, [PN])
    assert ctx.quotedMessage.conversation == "original"


def test_a_link_preview_is_an_extended_text_with_the_card() -> None:
    preview = LinkPreview("https://e.example/a", "Title", "About it", b"\xff\xd8\xffjpeg")
    text = "read https://e.example/a now"
    message = Outgoing(to=PN, kind=MessageKind.TEXT, text=text, link_preview=True, preview=preview)
    built = outbound.build(message, own_user="1")
    assert not built.HasField("conversation")
    ext = built.extendedTextMessage
    assert (ext.text, ext.matchedText, ext.title, ext.description) == (
        text,
        "https://e.example/a",
        "Title",
        "About it",
    )
    assert ext.JPEGThumbnail == b"\xff\xd8\xffjpeg"
    assert ext.previewType == E.ExtendedTextMessage.PreviewType.NONE
    assert not ext.HasField("contextInfo")
    # with mentions too, and without a thumbnail or description
    bare = LinkPreview("https://e.example/a", "Title")
    mentioned = outbound.build(
        Outgoing(to=PN, kind=MessageKind.TEXT, text=text, mentions=(PN,), preview=bare),
        own_user="1",
    ).extendedTextMessage
    assert (mentioned.matchedText, list(mentioned.contextInfo.mentionedJID)) == (bare.url, [PN])
    assert not mentioned.HasField("JPEGThumbnail") and not mentioned.HasField("description")
    # asked for, but no card could be built: the plain conversation a phone sends
    plain = outbound.build(
        Outgoing(to=PN, kind=MessageKind.TEXT, text=text, link_preview=True), own_user="1"
    )
    assert plain.conversation == text and not plain.HasField("extendedTextMessage")


def test_media_is_built_from_our_own_upload() -> None:
    upload = nz.nproto.UploadResponse(
        url="https://mmg/x", DirectPath="/x", Handle="", MediaKey=b"k" * 32,
        FileEncSHA256=b"e" * 32, FileSHA256=b"s" * 32, FileLength=3,
    )  # fmt: skip
    media = OutgoingMedia(data=b"abc", mimetype="video/mp4", width=4, height=3, duration_s=2.4)
    video = outbound.build(
        Outgoing(to=PN, kind=MessageKind.VIDEO, text="clip", media=media),
        own_user="1",
        upload=upload,
    ).videoMessage
    assert (video.URL, video.directPath, video.fileLength, video.seconds) == (
        "https://mmg/x",
        "/x",
        3,
        2,
    )
    assert (video.width, video.height, video.caption, video.mimetype) == (4, 3, "clip", "video/mp4")


def test_reactions_to_our_own_messages_say_from_me() -> None:
    mine = Outgoing(to=PN, kind=MessageKind.REACTION, text="👍", react_to="M",
                    react_to_sender="15550001111:7@s.whatsapp.net")  # fmt: skip
    theirs = Outgoing(to=GROUP, kind=MessageKind.REACTION, text="👍", react_to="M",
                      react_to_sender=PN)  # fmt: skip
    own = outbound.build(mine, own_user="15550001111").reactionMessage.key
    other = outbound.build(theirs, own_user="15550001111").reactionMessage.key
    assert (own.fromMe, own.participant) == (True, "")
    assert (other.fromMe, other.participant, other.remoteJID) == (False, PN, GROUP)


def test_contacts_and_locations() -> None:
    card = outbound.build(
        Outgoing(to=PN, kind=MessageKind.CONTACT, contact=ContactCard("Bob", "+1 555 0100")),
        own_user=None,
    ).contactMessage
    place = outbound.build(
        Outgoing(to=PN, kind=MessageKind.LOCATION, location=Location(1.0, 2.0, None, "Main St")),
        own_user=None,
    ).locationMessage
    assert card.displayName == "Bob" and "waid=15550100:+15550100" in card.vcard
    # a name cannot break the card into lines of its own
    odd = outbound.build(
        Outgoing(to=PN, kind=MessageKind.CONTACT, contact=ContactCard("Eve\nTEL:+1999", "+1 5")),
        own_user=None,
    ).contactMessage
    assert "FN:Eve TEL:+1999" in odd.vcard.splitlines()
    assert (place.degreesLatitude, place.degreesLongitude, place.address) == (1.0, 2.0, "Main St")


# --- failures and proxies ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("given", "go_url"),
    [
        ("socks5h://u:p@h:1080", "socks5://u:p@h:1080"),
        ("SOCKS5://h:1", "socks5://h:1"),
        ("http://h:3128", "http://h:3128"),
        ("https://u:p@h:443", "https://u:p@h:443"),
    ],
)
def test_proxy_urls_are_given_to_go_in_its_terms(given: str, go_url: str) -> None:
    assert failures.go_proxy_url(given) == go_url


def test_unusable_proxies_and_secrets() -> None:
    with pytest.raises(ProxyFailure):
        failures.go_proxy_url("socks4://h:1")
    text = failures.redact("dial socks5://u:hunter2@h:1 failed", "socks5h://u:hunter2@h:1")
    assert "hunter2" not in text
    assert failures.redact_url("http://u:hunter2@h:8") == "http://u:***@h:8"


@pytest.mark.parametrize(
    ("text", "proxy", "kind"),
    [
        ("dial tcp: lookup web.whatsapp.com: no such host", None, TransientError),
        ("context deadline exceeded", "socks5://h:1", ProxyFailure),
        ("context deadline exceeded", None, TransientError),
        ("Bad Gateway", "http://h:1", ProxyFailure),
    ],
)
def test_connect_errors_are_classified(text: str, proxy: str | None, kind: type) -> None:
    assert type(failures.connect_error(text, proxy)) is kind
