"""Opt-in, by a person with a phone: link through real WhatsApp, send one message, receive one.

Run it with ``WAGATE_LIVE_WHATSAPP=1 WAGATE_LIVE_TO=<international number> pytest tests/live``.
It draws the QR code in the terminal (or, with ``WAGATE_LIVE_PAIR_PHONE=<your number>``,
prints a pairing code to type on the phone), waits for the link, sends a message to
``WAGATE_LIVE_TO`` and waits for a reply from that number. ``WAGATE_LIVE_AUTH_DIR``
keeps the link between runs (default: a fresh temporary folder).
"""

from __future__ import annotations

import asyncio
import os
import re
import secrets
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
import segno

from wagate.domain.message import MessageKind, Outgoing
from wagate.engine.base import (
    Connected,
    Disconnected,
    EngineEvent,
    LinkOptions,
    MessageEvent,
    PairCode,
    QRCode,
)
from wagate.storage.auth_state import FileAuthStore

pytestmark = [
    pytest.mark.live,
    pytest.mark.skipif(
        os.environ.get("WAGATE_LIVE_WHATSAPP") != "1",
        reason=(
            "needs a person with a phone and WhatsApp, and a network that reaches WhatsApp "
            "(set WAGATE_LIVE_WHATSAPP=1 and WAGATE_LIVE_TO); it cannot run here or in CI"
        ),
    ),
]

WAIT_S = float(os.environ.get("WAGATE_LIVE_WAIT_S", "180"))


@pytest.mark.timeout(WAIT_S * 3 + 60)
async def test_link_send_and_receive_through_whatsapp(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from wagate.engine.neonize import NeonizeConfig, NeonizeEngine

    to = re.sub(r"\D", "", os.environ.get("WAGATE_LIVE_TO", ""))
    assert to, "set WAGATE_LIVE_TO to the number that receives the test message"
    root = Path(os.environ.get("WAGATE_LIVE_AUTH_DIR", tmp_path))

    def say(text: str) -> None:
        with capsys.disabled():
            if text.startswith("2@"):  # a QR code: draw it
                segno.make_qr(text).terminal(compact=True)
            else:
                print(text, flush=True)

    engine = NeonizeEngine(NeonizeConfig(reconnect_grace_s=30, log_level="warning"))
    options = LinkOptions(pair_phone=os.environ.get("WAGATE_LIVE_PAIR_PHONE") or None)
    try:
        async with engine.link(FileAuthStore(root, "live"), options) as link:
            events = link.events()
            me = await _until_linked(events, say)
            say(f"linked as {me.phone} ({me.push_name or 'no push name yet'})")
            marker = f"wagate live test {secrets.token_hex(3)}"
            to_jid = f"{to}@s.whatsapp.net"
            sent = await link.send(Outgoing(to=to_jid, kind=MessageKind.TEXT, text=marker))
            assert sent.id
            say(f"sent {marker!r} to +{to}; now reply to it from that phone")
            reply = await _reply_from(events, to)
            say(f"received {reply.kind}: {reply.text!r}")
            assert reply.sender_pn == f"{to}@s.whatsapp.net"
    finally:
        await engine.aclose()


async def _until_linked(
    events: AsyncIterator[EngineEvent], say: Callable[[str], None]
) -> Connected:
    async with asyncio.timeout(WAIT_S):
        async for event in events:
            if isinstance(event, QRCode):
                say("scan this with WhatsApp → Linked devices → Link a device:")
                say(event.code)
            elif isinstance(event, PairCode):
                say(f"or type this pairing code on the phone: {event.code}")
            elif isinstance(event, Connected):
                return event
            elif isinstance(event, Disconnected):
                pytest.fail(f"the link ended before it was up: {event.kind} {event.reason}")
    pytest.fail("the event stream ended before the link was up")


async def _reply_from(events: AsyncIterator[EngineEvent], phone: str) -> MessageEvent:
    async with asyncio.timeout(WAIT_S):
        async for event in events:
            if isinstance(event, MessageEvent) and event.sender_pn == f"{phone}@s.whatsapp.net":
                if not event.from_me:
                    return event
            if isinstance(event, Disconnected):
                pytest.fail(f"the link ended while waiting: {event.kind} {event.reason}")
    pytest.fail("the event stream ended before a reply came")
