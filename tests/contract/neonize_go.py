"""neonize's protobuf messages, built the way its Go side builds them (``utils/encoder.go``).

Go fills every field (``Neonize.proto`` is proto2 with required fields, and
Go's ``proto.Marshal`` refuses a message that lacks one), and it picks the
units: ``MessageInfo.Timestamp`` in milliseconds (``UnixMilli``),
``Receipt.Timestamp`` and ``SendResponse.Timestamp`` in seconds (``Unix``),
``TemporaryBan.Expire`` as a duration in seconds. Keep these faithful: the
engine's tests are only as good as this module.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from wagate.engine.neonize import _loader as nz

P = nz.nproto
E = nz.wae2e


def jid(text: str = "") -> Any:
    """``EncodeJidProto``: every field set, ``IsEmpty`` for the zero JID."""
    user, _, server = text.partition("@")
    device = 0
    if ":" in user:
        user, _, dev = user.partition(":")
        device = int(dev)
    return P.JID(
        User=user, Server=server, Device=device, RawAgent=0, Integrator=0, IsEmpty=not text
    )


def jid_text(value: Any) -> str:
    return f"{value.User}@{value.Server}" if value.User else ""


def source(
    chat: str,
    sender: str,
    *,
    alt: str = "",
    recipient_alt: str = "",
    from_me: bool = False,
    group: bool = False,
) -> Any:
    """``EncodeMessageSource``; ``alt`` (``SenderAlt``) is an ``@lid`` sender's phone JID.

    ``recipient_alt`` (``RecipientAlt``) is the phone JID of an ``@lid`` direct
    chat's peer, on what we sent from our own phone.
    """
    mode = P.AddressingMode.LID if sender.endswith("@lid") else P.AddressingMode.PN
    return P.MessageSource(
        Chat=jid(chat),
        Sender=jid(sender),
        IsFromMe=from_me,
        IsGroup=group,
        AddressingMode=mode,
        SenderAlt=jid(alt),
        RecipientAlt=jid(recipient_alt),
        BroadcastListOwner=jid(),
    )


def message(
    src: Any, msg_id: str, at: datetime, content: Any, *, push_name: str = "", kind: str = "text"
) -> Any:
    """``EncodeEventTypesMessage`` with ``EncodeMessageInfo`` (timestamp in milliseconds)."""
    info = P.MessageInfo(
        MessageSource=src,
        ID=msg_id,
        ServerID=0,
        Type=kind,
        Pushname=push_name,
        Timestamp=int(at.timestamp() * 1000),
        Category="",
        Multicast=False,
        MediaType="" if kind == "text" else kind,
        Edit="",
    )
    return P.Message(
        Info=info,
        Message=content,
        IsEphemeral=False,
        IsViewOnce=False,
        IsViewOnceV2=False,
        IsViewOnceV2Extension=False,
        IsDocumentWithCaption=False,
        IsLottieSticker=False,
        IsEdit=False,
        UnavailableRequestID="",
        RetryCount=0,
        Raw=content,
    )


_RECEIPT_TYPES = {"delivered": "DELIVERED", "read": "READ", "played": "PLAYED"}


def receipt(src: Any, ids: Iterable[str], at: datetime, status: str) -> Any:
    """``EncodeReceipts`` (timestamp in seconds)."""
    kind = P.Receipt.ReceiptType.Value(_RECEIPT_TYPES.get(status, status.upper()))
    return P.Receipt(
        MessageSource=src, MessageIDs=list(ids), Timestamp=int(at.timestamp()), Type=kind
    )


def device(phone: str, lid: str, push_name: str) -> Any:
    """What ``FetchMe`` sends as event 0 once the device has an ID."""
    return P.Device(
        JID=jid(f"{phone}:7@s.whatsapp.net"),
        LID=jid(f"{lid}@lid"),
        Platform="android",
        BussinessName="",
        PushName=push_name,
        Initialized=True,
    )


def send_response(msg_id: str, at: datetime) -> Any:
    """``EncodeSendResponse`` (timestamp in seconds)."""
    timings = P.MessageDebugTimings(
        Queue=0,
        Marshal=0,
        GetParticipants=0,
        GetDevices=0,
        GroupEncrypt=0,
        PeerEncrypt=0,
        Send=0,
        Resp=0,
        Retry=0,
    )
    return P.SendResponse(
        Timestamp=int(at.timestamp()), ID=msg_id, ServerID=1, DebugTimings=timings
    )


def group_info(group: str, name: str, owner: str, members: Iterable[str], at: datetime) -> Any:
    """``EncodeGroupInfo``."""
    stamp = int(at.timestamp())
    participants = [
        P.GroupParticipant(
            JID=jid(member),
            LID=jid(),
            PhoneNumber=jid(member),
            IsAdmin=member == owner,
            IsSuperAdmin=member == owner,
            DisplayName="",
            Error=0,
        )
        for member in members
    ]
    return P.GroupInfo(
        OwnerJID=jid(owner),
        JID=jid(group),
        OwnerPN=jid(owner),
        GroupName=P.GroupName(Name=name, NameSetAt=stamp, NameSetBy=jid(owner)),
        GroupTopic=P.GroupTopic(
            Topic="", TopicID="", TopicSetAt=0, TopicSetBy=jid(), TopicDeleted=False
        ),
        GroupLocked=P.GroupLocked(isLocked=False),
        GroupAnnounce=P.GroupAnnounce(IsAnnounce=False, AnnounceVersionID=""),
        GroupEphemeral=P.GroupEphemeral(IsEphemeral=False, DisappearingTimer=0),
        GroupIncognito=P.GroupIncognito(IsIncognito=False),
        GroupParent=P.GroupParent(IsParent=False, DefaultMembershipApprovalMode=""),
        GroupLinkedParent=P.GroupLinkedParent(LinkedParentJID=jid()),
        GroupIsDefaultSub=P.GroupIsDefaultSub(IsDefaultSubGroup=False),
        GroupCreated=float(stamp),
        ParticipantVersionID="1",
        Participants=participants,
    )


def group_change(
    group: str, at: datetime, *, by: str, name: str | None = None, join: Iterable[str] = ()
) -> Any:
    """``EncodeGroupInfoEvent``: ``Name`` only when the subject changed."""
    event = P.GroupInfoEvent(
        JID=jid(group),
        Notify="",
        Sender=jid(by),
        Timestamp=int(at.timestamp()),
        PrevParticipantsVersionID="",
        ParticipantVersionID="",
        JoinReason="",
        Join=[jid(member) for member in join],
    )
    if name is not None:
        event.Name.CopyFrom(
            P.GroupName(Name=name, NameSetAt=int(at.timestamp()), NameSetBy=jid(by))
        )
    return event


def joined_group(info: Any, by: str) -> Any:
    """``EncodeJoinedGroup`` (its ``Type`` is the reason too, as in Go)."""
    return P.JoinedGroup(Reason="", Type="", CreateKey="", GroupInfo=info, Sender=jid(by))


def logged_out(reason: str = "LOGGED_OUT", on_connect: bool = False) -> Any:
    return P.LoggedOut(OnConnect=on_connect, Reason=P.ConnectFailureReason.Value(reason))


def temporary_ban(code: str, expire_s: int) -> Any:
    return P.TemporaryBan(Code=P.TemporaryBan.TempBanReason.Value(code), Expire=expire_s)


def connect_failure(reason: str, text: str = "") -> Any:
    return P.ConnectFailure(
        Reason=P.ConnectFailureReason.Value(reason), Message=text, Raw=P.Node(Tag="failure")
    )


def keepalive_timeout(errors: int, last_success: datetime) -> Any:
    return P.KeepAliveTimeout(ErrorCount=errors, LastSuccess=int(last_success.timestamp()))


def disconnected() -> Any:
    return P.Disconnected(status=True)


def connected() -> Any:
    return P.Connected(status=True)
