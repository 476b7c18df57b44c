"""Engine events for the pipeline, as the engine would hand them in, on a bench's clock."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from tests.ingest.conftest import Bench
from wagate.domain.message import MediaRef, MessageKind
from wagate.engine.base import MessageEvent

GROUP = "120363000000000001@g.us"
ALICE = "6281111111111@s.whatsapp.net"
ALICE_LID = "111111111111111@lid"
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 2000
JPEG = b"\xff\xd8\xff\xe0" + b"\x10JFIF" + b"\x01" * 5000


def msg(
    bench: Bench,
    mid: str,
    *,
    chat: str = GROUP,
    kind: MessageKind = MessageKind.TEXT,
    text: str | None = "hi",
    sender: str = ALICE,
    age_s: float = 0,
    media: MediaRef | None = None,
    **kw: Any,
) -> MessageEvent:
    return MessageEvent(
        id=mid,
        chat=chat,
        sender=sender,
        timestamp=bench.clock.now() - timedelta(seconds=age_s),
        kind=kind,
        text=text,
        media=media,
        **kw,
    )


def image(
    bench: Bench,
    mid: str,
    data: bytes,
    *,
    mimetype: str | None = "image/png",
    size: int | None = None,
    **kw: Any,
) -> MessageEvent:
    handle = f"blob-{mid}"
    bench.link.blobs[handle] = data
    ref = MediaRef(
        MessageKind.IMAGE,
        mimetype=mimetype,
        size=size if size is not None else len(data),
        width=640,
        height=480,
        handle={"blob": handle},
    )
    return msg(bench, mid, kind=MessageKind.IMAGE, text=kw.pop("caption", None), media=ref, **kw)


async def monitored(bench: Bench, jid: str = GROUP, monitor: bool = True) -> None:
    await bench.groups.upsert("s1", jid, "Team")
    await bench.groups.set_monitor("s1", jid, monitor)
