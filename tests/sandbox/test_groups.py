"""Groups on the sandbox network: create, rename, members, group messages and @lid senders."""

from __future__ import annotations

import re

import pytest

from tests.sandbox.support import (
    ALICE,
    BOB,
    CAROL,
    jid,
    lid_of,
    link_auth,
    online,
)
from wagate.domain.group import GroupInfo
from wagate.domain.message import MessageKind, Outgoing
from wagate.engine.base import GroupEvent
from wagate.errors import InvalidInput, NotFound

GROUP_JID = re.compile(r"120363[0-9]{12}@g\.us")


async def test_a_new_group_is_announced_to_every_member_and_listed(network, engine) -> None:
    alice_auth, bob_auth = await link_auth(network), await link_auth(network, "s2", phone=BOB)
    async with online(engine, alice_auth) as alice, online(engine, bob_auth) as bob:
        group = await network.create_group("Family", ALICE, [BOB, CAROL])
        for member in (alice, bob):
            created = await member.events.expect(GroupEvent)
            assert created == GroupEvent(group, "Family", "created", by=jid(ALICE))
        listed = await alice.link.groups()
    assert GROUP_JID.fullmatch(group)
    assert listed == [GroupInfo(group, "Family", participants=3, owner=jid(ALICE), announce=False)]


async def test_a_rename_is_announced_and_listed(network, engine) -> None:
    auth = await link_auth(network)
    group = await network.create_group("Old", BOB, [ALICE])
    async with online(engine, auth) as alice:
        await alice.events.expect(GroupEvent)
        await network.rename_group(group, "New name")
        renamed = await alice.events.expect(GroupEvent)
        (info,) = await alice.link.groups()
    assert (renamed.jid, renamed.name, renamed.change) == (group, "New name", "renamed")
    assert info.name == "New name"


async def test_a_group_message_reaches_members_but_the_sender_with_lid_senders(network, engine):
    alice_auth, bob_auth = await link_auth(network), await link_auth(network, "s2", phone=BOB)
    group = await network.create_group("Team", CAROL, [ALICE, BOB])
    async with online(engine, alice_auth) as alice, online(engine, bob_auth) as bob:
        for member in (alice, bob):
            await member.events.expect(GroupEvent)
        msg_id = await network.phone_send(CAROL, group, text="hello team")
        seen = [await alice.message(), await bob.message()]
        sent_id = await alice.text(group, "hi Carol")
        echo = await bob.message()
    carol_lid = await lid_of(network, CAROL)
    for event in seen:
        assert (event.id, event.chat, event.is_group) == (msg_id, group, True)
        assert (event.sender, event.sender_pn, event.sender_lid) == (
            carol_lid,
            jid(CAROL),
            carol_lid,
        )
    assert (echo.id, echo.chat, echo.sender, echo.sender_pn) == (
        sent_id,
        group,
        await lid_of(network, ALICE),
        jid(ALICE),
    )
    assert [e["id"] for e in await network.inbox(CAROL)] == [sent_id]
    assert [e["chat"] for e in await network.inbox(CAROL)] == [group]
    assert msg_id not in [e["id"] for e in await network.inbox(CAROL)], "not to the sender"


async def test_group_reads_come_back_per_reader(network, engine) -> None:
    auth = await link_auth(network)
    group = await network.create_group("Readers", ALICE, [BOB, CAROL])
    async with online(engine, auth) as alice:
        await alice.events.expect(GroupEvent)
        sent = await alice.text(group, "please read")
        await network.mark_read(CAROL, [sent])
        read = await alice.receipt()
    assert (read.chat, read.message_ids, read.by, read.status.value) == (
        group,
        (sent,),
        jid(CAROL),
        "read",
    )


async def test_members_come_and_go(network, engine) -> None:
    carol = await link_auth(network, "s3", phone=CAROL)
    group = await network.create_group("Club", ALICE, [BOB])
    async with online(engine, carol) as session:
        await network.add_members(group, [CAROL])
        joined = await session.events.expect(GroupEvent)
        await session.text(group, "hi all")
        await network.remove_members(group, [f"+{CAROL}"])
        left = await session.events.expect(GroupEvent)
        with pytest.raises(InvalidInput, match="not a participant"):
            await session.link.send(Outgoing(group, MessageKind.TEXT, text="still here?"))
        assert await session.link.groups() == []
    assert (joined.change, left.change) == ("participants", "participants")
    with pytest.raises(InvalidInput, match="owner"):
        await network.remove_members(group, [ALICE])


@pytest.mark.parametrize(
    ("call", "error"),
    [
        (lambda n: n.create_group("", ALICE, [BOB]), InvalidInput),
        (lambda n: n.create_group("x" * 101, ALICE, [BOB]), InvalidInput),
        (lambda n: n.create_group("ok", "owner?", [BOB]), InvalidInput),
        (lambda n: n.create_group("ok", ALICE, ["12"]), InvalidInput),
        (lambda n: n.rename_group("120363000000000000@g.us", "x"), NotFound),
        (lambda n: n.add_members("120363000000000000@g.us", [BOB]), NotFound),
    ],
)
async def test_bad_group_requests(call, error, network) -> None:
    with pytest.raises(error):
        await call(network)
