"""The sandbox link against a scripted network: how it reads odd or hostile frames."""

from __future__ import annotations

import asyncio
import logging

import pytest

from wagate.domain.session import DisconnectKind
from wagate.engine.base import Disconnected, GroupEvent, LinkOptions, QRCode
from wagate.engine.sandbox import SandboxLink
from wagate.engine.sandbox.link import INBOUND_MAX
from wagate.errors import EngineError, TransientError
from wagate.sandbox import memory_pair
from wagate.sandbox.transport import Channel, ChannelClosed, Frame, MemoryChannel
from wagate.storage.auth_state import MemoryAuthStore
from wagate.testing import eventually


async def scripted_link(*frames: Frame) -> tuple[SandboxLink, MemoryChannel, MemoryAuthStore]:
    """A link whose network answers the hello with ``frames``; the peer end is returned."""
    client_end, network_end = memory_pair()
    for frame in frames:
        await network_end.send(frame)

    async def opener(options: LinkOptions) -> Channel:
        return client_end

    auth = MemoryAuthStore("s1")
    link = SandboxLink(opener, auth, LinkOptions(), client=None, device_name="w", open_timeout_s=1)
    return link, network_end, auth


async def test_a_malformed_frame_ends_the_stream_as_lost_without_logging_it(watch, caplog):
    link, _, auth = await scripted_link(
        {"ev": "qr", "code": "2@a,b,c,d", "ttl": 1}, {"ev": "paired", "creds": "SECRET-xyz"}
    )
    caplog.set_level(logging.DEBUG)
    async with link:
        events = await watch(link).rest()
    assert isinstance(events[0], QRCode)
    assert events[1:] == [Disconnected(DisconnectKind.CONNECTION_LOST, events[1].reason)]
    assert (await auth.load("creds")) is None
    assert "SECRET-xyz" not in caplog.text


async def test_unknown_events_errors_and_kinds_are_tolerated(watch) -> None:
    link, _, _ = await scripted_link(
        {"ev": "something_new"},
        {"ev": "error", "code": "unknown_op", "message": "what?"},
        {"ev": "disconnected", "kind": "solar_flare", "reason": "?"},
    )
    async with link:
        events = await watch(link).rest()
    assert events == [Disconnected(DisconnectKind.CONNECTION_LOST, "?")]


async def test_the_hello_carries_the_session_and_the_pair_phone() -> None:
    client_end, network_end = memory_pair()

    async def opener(options: LinkOptions) -> Channel:
        return client_end

    auth = MemoryAuthStore("s9")
    options = LinkOptions(pair_phone="+44 7700-900123")
    link = SandboxLink(opener, auth, options, client="gw", device_name="w", open_timeout_s=1)
    entering = asyncio.create_task(link.__aenter__())
    hello = await network_end.recv()
    assert hello == {
        "op": "hello",
        "session": "s9",
        "client": "gw",
        "device_name": "w",
        "creds": None,
        "pair_phone": "447700900123",
    }
    await network_end.send({"ev": "qr", "code": "2@r,a,b,c", "ttl": 60})
    await entering
    await link.__aexit__(None, None, None)


@pytest.mark.parametrize(
    ("answer", "error", "code"),
    [
        ({"ev": "error", "code": "unavailable", "message": "down"}, TransientError, None),
        ({"ev": "error", "code": "bad_hello", "message": "no"}, EngineError, "bad_hello"),
    ],
)
async def test_refusals_at_the_handshake_raise(answer, error, code) -> None:
    link, _, _ = await scripted_link(answer)
    with pytest.raises(error) as raised:
        await link.__aenter__()
    assert code is None or raised.value.code == code


async def test_a_silent_network_is_a_transient_error() -> None:
    client_end, _network_end = memory_pair()

    async def opener(options: LinkOptions) -> Channel:
        return client_end

    link = SandboxLink(
        opener,
        MemoryAuthStore("s1"),
        LinkOptions(),
        client=None,
        device_name="w",
        open_timeout_s=0.05,
    )
    with pytest.raises(TransientError, match="handshake"):
        await link.__aenter__()


def _group_frame(seq: int) -> Frame:
    return {"ev": "group", "jid": f"{seq}@g.us", "name": f"G{seq}", "change": "renamed", "q": seq}


async def _handled(network_end: MemoryChannel) -> list[int]:
    """The sequence numbers the link confirmed so far (its frames already sent to the network)."""
    seen = []
    while True:
        try:
            frame = await network_end.recv()
        except ChannelClosed:  # the link closed its end: everything it sent is here
            return seen
        if frame.get("op") == "handled":
            seen.append(int(frame["q"]))


async def test_a_slow_consumer_holds_back_the_network_not_memory(watch) -> None:
    total = INBOUND_MAX + 40
    frames = [{"ev": "qr", "code": "2@a,b,c,d", "ttl": 60}]
    link, network_end, _ = await scripted_link(*frames, *(_group_frame(n) for n in range(total)))
    async with link:
        events = watch(link)
        await events.expect(QRCode)
        first = await events.expect(GroupEvent)
        await eventually(lambda: link._inbound.full())  # the reader stops at the bound
        assert link._inbound.qsize() == INBOUND_MAX
        await link.drain()  # intake stops: what was read is still delivered, then the end
        rest = await events.rest()
    delivered = [first, *rest]
    assert [e.jid for e in delivered] == [f"{n}@g.us" for n in range(len(delivered))]
    assert INBOUND_MAX <= len(delivered) < total
    # only what the consumer took was confirmed: the network keeps the rest for the next link
    assert await _handled(network_end) == list(range(len(delivered)))
