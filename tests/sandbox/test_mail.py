"""Delivery on the sandbox network: the offline queue, receipts, confirmations, caps."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest

from tests.sandbox.support import (
    ALICE,
    BOB,
    CAROL,
    NO_OPTIONS,
    jid,
    link_auth,
    online,
)
from wagate.domain.message import MessageKind, Outgoing, OutgoingMedia, ReceiptStatus
from wagate.engine.base import Connected, GroupEvent, MessageEvent, ReceiptEvent
from wagate.engine.sandbox import SandboxEngine
from wagate.errors import NotFound
from wagate.sandbox import SandboxLimits


async def test_messages_for_an_offline_device_wait_and_arrive_in_order(network, engine):
    auth = await link_auth(network)
    sent = [await network.phone_send(BOB, ALICE, text=f"m{n}") for n in range(5)]
    group = await network.create_group("Later", BOB, [ALICE])
    sent.append(await network.phone_send(BOB, group, text="in the group"))
    async with online(engine, auth) as alice:
        got = [await alice.message() for _ in range(5)]
        created = await alice.events.expect(GroupEvent)
        in_group = await alice.message()
    assert [event.id for event in got] == sent[:5]
    assert [event.text for event in got] == [f"m{n}" for n in range(5)]
    assert (created.jid, created.change, in_group.id) == (group, "created", sent[5])


async def test_what_arrives_while_connecting_keeps_its_order(network, engine, watch) -> None:
    auth = await link_auth(network)
    first = await network.phone_send(BOB, ALICE, text="before")
    async with engine.link(auth, NO_OPTIONS) as link:
        events = watch(link)
        second = await network.phone_send(BOB, ALICE, text="during")
        assert isinstance(await events.next(), Connected)
        third = await network.phone_send(BOB, ALICE, text="after")
        ids = [(await events.expect(MessageEvent)).id for _ in range(3)]
    assert ids == [first, second, third]


async def test_an_event_not_handled_before_the_link_closed_comes_again(network, engine):
    auth = await link_auth(network)
    msg_id = await network.phone_send(BOB, ALICE, text="did you get it?")
    async with online(engine, auth) as alice:
        assert (await alice.message()).id == msg_id  # taken, never confirmed: the link closes
    async with asyncio.timeout(5):
        await network.wait_connections(lambda live: not live)
    async with online(engine, auth) as alice:
        assert (await alice.message()).id == msg_id  # delivered again
        marker = await network.phone_send(BOB, ALICE, text="marker")
        assert (await alice.message()).id == marker  # taking it confirmed the first
    async with asyncio.timeout(5):
        await network.wait_connections(lambda live: not live)
    async with online(engine, auth) as alice:
        # The marker itself was never confirmed; the first message is gone for good.
        assert (await alice.message()).id == marker


async def test_delivered_then_read_receipts(network, alice_and_bob, clock) -> None:
    alice = alice_and_bob
    result = await alice.link.send(Outgoing(BOB, MessageKind.TEXT, text="read me"))
    delivered = await alice.receipt()
    await clock.advance(90)
    await network.mark_read(BOB, [result.id])
    read = await alice.receipt()
    assert delivered.status is ReceiptStatus.DELIVERED and delivered.by is None
    assert (read.chat, read.message_ids, read.status, read.by) == (
        jid(BOB),
        (result.id,),
        ReceiptStatus.READ,
        jid(BOB),
    )
    assert read.timestamp - delivered.timestamp == timedelta(seconds=90), "on the network's clock"


async def test_a_played_voice_note_is_read_then_played(network, alice_and_bob) -> None:
    alice = alice_and_bob
    voice = OutgoingMedia(b"OggS" * 64, "audio/ogg; codecs=opus", duration_s=1.5)
    note = await alice.link.send(Outgoing(BOB, MessageKind.VOICE, media=voice))
    text = await alice.link.send(Outgoing(BOB, MessageKind.TEXT, text="and this"))
    await alice.receipt()
    await alice.receipt()
    await network.mark_read(BOB, [note.id, text.id])
    read, played = await alice.receipt(), await alice.receipt()
    assert (read.status, read.message_ids) == (ReceiptStatus.READ, (note.id, text.id))
    assert (played.status, played.message_ids) == (ReceiptStatus.PLAYED, (note.id,))


async def test_receipts_for_an_offline_device_are_queued(network, engine) -> None:
    auth = await link_auth(network)
    await network.add_phone(BOB)
    async with online(engine, auth) as alice:
        sent_id = await alice.text(BOB, "read it later")
    await network.mark_read(BOB, [sent_id])
    async with online(engine, auth) as alice:
        # The delivered receipt was taken but the link closed before confirming it: again.
        receipts = [await alice.events.expect(ReceiptEvent) for _ in range(2)]
    assert [(r.status, r.message_ids) for r in receipts] == [
        (ReceiptStatus.DELIVERED, (sent_id,)),
        (ReceiptStatus.READ, (sent_id,)),
    ]


async def test_marking_unknown_messages_read_is_not_found(network, alice_and_bob) -> None:
    with pytest.raises(NotFound, match="not in the inbox"):
        await network.mark_read(BOB, ["3EB0FFFFFFFFFFFFFFFF"])
    msg_id = await network.phone_send(CAROL, BOB, text="for bob")
    with pytest.raises(NotFound):
        await network.mark_read(ALICE, [msg_id])  # Alice never received it


async def test_the_oldest_queued_events_go_when_a_queue_is_full(make_network) -> None:
    network = await make_network(limits=SandboxLimits(queue_size=3, inbox_size=2))
    engine = SandboxEngine(network=network)
    auth = await link_auth(network)
    sent = [await network.phone_send(BOB, ALICE, text=str(n)) for n in range(5)]
    assert [entry["id"] for entry in await network.inbox(ALICE)] == sent[-2:]
    async with online(engine, auth) as alice:
        assert [(await alice.message()).id for _ in range(3)] == sent[-3:]


async def test_a_logged_out_device_loses_its_queue(network, engine) -> None:
    auth = await link_auth(network)
    await network.phone_send(BOB, ALICE, text="never seen")
    await network.fault("logout", phone=ALICE)
    fresh = await link_auth(network, "s2")
    msg_id = await network.phone_send(BOB, ALICE, text="for the new device")
    async with online(engine, fresh) as alice:
        assert (await alice.message()).id == msg_id
    assert (await auth.load("creds")) is not None  # the old creds are simply refused now


@pytest.fixture
async def alice_and_bob(network, engine):
    """ALICE's session online, BOB a simulated phone."""
    auth = await link_auth(network)
    await network.add_phone(BOB)
    async with online(engine, auth) as alice:
        yield alice
