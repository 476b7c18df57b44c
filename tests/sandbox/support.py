"""Helpers of the sandbox network's tests: event readers, raw channels, linked sessions.

Shared by ``tests/sandbox`` (the simulator) and ``tests/engine/sandbox`` (its
engine adapter); the fixtures built on them are in ``tests/sandbox/conftest.py``.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

import pytest

from wagate.domain.message import MessageKind, Outgoing, ReceiptStatus
from wagate.engine.base import (
    Connected,
    LinkOptions,
    MessageEvent,
    QRCode,
    ReceiptEvent,
)
from wagate.engine.sandbox import SandboxEngine, SandboxLink
from wagate.sandbox import SandboxNetwork
from wagate.sandbox.transport import ChannelClosed, Frame, MemoryChannel
from wagate.storage.auth_state import MemoryAuthStore
from wagate.testing import Events

T = TypeVar("T")

ALICE = "15550001111"  # the account the gateway's sessions are linked to
BOB = "15550002222"  # a simulated phone
CAROL = "15550003333"
NO_OPTIONS = LinkOptions()


def jid(phone: str) -> str:
    return f"{phone}@s.whatsapp.net"


# --- raw channels: the frame protocol without an engine -----------------------------------


def hello(**overrides: object) -> Frame:
    frame: Frame = {"op": "hello", "session": "s1", "client": "gw-1", "creds": None}
    frame.update(overrides)
    return frame


async def recv(channel: MemoryChannel) -> Frame:
    async with asyncio.timeout(5):
        return await channel.recv()


async def closed(channel: MemoryChannel) -> None:
    with pytest.raises(ChannelClosed):
        await recv(channel)


# --- linked sessions ----------------------------------------------------------------------


async def link_auth(
    network: SandboxNetwork, session: str = "s1", phone: str = ALICE, engine: Any = None
) -> MemoryAuthStore:
    """Link a new device of ``phone`` for ``session``; return once the network saw it leave."""
    engine = engine or SandboxEngine(network=network)
    auth = MemoryAuthStore(session)
    async with engine.link(auth, NO_OPTIONS) as link:
        events = Events(link)
        await network.scan((await events.expect(QRCode)).code, phone)
        await events.expect(Connected)
    async with asyncio.timeout(5):  # the network notices the close on its own task
        await network.wait_connections(lambda live: all(c.session != session for c in live))
    return auth


class Session:
    """A logged-in link and its event reader."""

    def __init__(self, link: SandboxLink, events: Events) -> None:
        self.link = link
        self.events = events

    async def message(self) -> MessageEvent:
        return await self.events.expect(MessageEvent)

    async def receipt(self) -> ReceiptEvent:
        return await self.events.expect(ReceiptEvent)

    async def text(self, to: str, text: str, **kw: Any) -> str:
        """Send a text; returns its id once its ``delivered`` receipt came."""
        result = await self.link.send(Outgoing(to=to, kind=MessageKind.TEXT, text=text, **kw))
        receipt = await self.receipt()
        assert receipt.message_ids == (result.id,) and receipt.status is ReceiptStatus.DELIVERED
        return result.id


@asynccontextmanager
async def online(engine: SandboxEngine, auth: MemoryAuthStore) -> AsyncIterator[Session]:
    async with engine.link(auth, NO_OPTIONS) as link:
        events = Events(link)
        await events.expect(Connected)
        yield Session(link, events)


async def lid_of(network: SandboxNetwork, phone: str) -> str:
    (account,) = [a for a in await network.accounts() if a.phone == phone]
    return account.lid


# --- real servers -------------------------------------------------------------------------


def free_socket() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    return sock


@dataclass(frozen=True)
class Served:
    """A real uvicorn server on 127.0.0.1 serving an app."""

    base: str  # http://127.0.0.1:<port>
    port: int

    def ws(self, path: str = "/ws") -> str:
        return self.base.replace("http://", "ws://") + path
