"""Fault injection: every fault kind ends a live link with the right disconnect kind.

``slow`` holds every frame back for its delay on the network's clock.
"""

from __future__ import annotations

import asyncio

import pytest

from wagate.clock import ManualClock
from wagate.domain.session import DisconnectKind
from wagate.engine.base import Connected, Disconnected, LinkOptions, MessageEvent, QRCode
from wagate.engine.sandbox import SandboxEngine
from wagate.errors import InvalidInput, NotFound
from wagate.sandbox import SandboxNetwork
from wagate.storage.auth_state import MemoryAuthStore

PHONE = "15550001111"
NO_OPTIONS = LinkOptions()


async def linked_auth(engine: SandboxEngine, network: SandboxNetwork, watch, session="s1"):
    """Link a new device for ``session`` and close the link; wait until the network saw it go."""
    auth = MemoryAuthStore(session)
    async with engine.link(auth, NO_OPTIONS) as link:
        events = watch(link)
        await network.scan((await events.expect(QRCode)).code, PHONE)
        await events.expect(Connected)
    async with asyncio.timeout(5):  # the network notices the close on its own task
        await network.wait_connections(lambda live: not live)
    return auth


@pytest.mark.parametrize(
    ("fault", "kind"),
    [
        ("drop", DisconnectKind.CONNECTION_LOST),
        ("logout", DisconnectKind.LOGGED_OUT),
        ("ban", DisconnectKind.BANNED),
        ("replaced", DisconnectKind.REPLACED),
        ("proxy_error", DisconnectKind.PROXY_ERROR),
    ],
)
@pytest.mark.parametrize("target", ["session", "phone"])
async def test_each_fault_ends_the_link_with_its_kind(
    fault: str, kind: DisconnectKind, target: str, engine, network, watch
) -> None:
    auth = await linked_auth(engine, network, watch)
    async with engine.link(auth, NO_OPTIONS) as link:
        events = watch(link)
        await events.expect(Connected)
        where = {"session": "s1"} if target == "session" else {"phone": "+" + PHONE}
        assert await network.fault(fault, **where) == 1
        rest = await events.rest()
    assert len(rest) == 1, "the stream ends after exactly one Disconnected"
    assert isinstance(rest[0], Disconnected) and rest[0].kind is kind
    assert await network.connections() == []


async def test_a_fault_reaches_a_link_still_showing_qr_codes(engine, network, watch) -> None:
    async with engine.link(MemoryAuthStore("s1"), NO_OPTIONS) as link:
        events = watch(link)
        await events.expect(QRCode)
        await network.fault("proxy_error", session="s1")
        (ended,) = await events.rest()
    assert isinstance(ended, Disconnected) and ended.kind is DisconnectKind.PROXY_ERROR


async def test_after_a_logout_fault_the_creds_are_logged_out(engine, network, watch) -> None:
    auth = await linked_auth(engine, network, watch)
    await network.fault("logout", phone=PHONE)
    async with engine.link(auth, NO_OPTIONS) as link:
        (ended,) = await watch(link).rest()
    assert isinstance(ended, Disconnected) and ended.kind is DisconnectKind.LOGGED_OUT
    (account,) = await network.accounts()
    assert account.devices == ()


async def test_a_logout_of_one_session_keeps_other_devices(engine, network, watch) -> None:
    one = await linked_auth(engine, network, watch, "s1")
    two = await linked_auth(engine, network, watch, "s2")
    async with engine.link(one, NO_OPTIONS) as link:
        await watch(link).expect(Connected)
        await network.fault("logout", session="s1")
    async with engine.link(two, NO_OPTIONS) as link:
        await watch(link).expect(Connected)


async def test_ban_holds_until_unban(engine, network, watch) -> None:
    auth = await linked_auth(engine, network, watch)
    assert await network.fault("ban", phone=PHONE) == 0  # nobody online: still banned
    for _ in range(2):
        async with engine.link(auth, NO_OPTIONS) as link:
            (ended,) = await watch(link).rest()
        assert isinstance(ended, Disconnected) and ended.kind is DisconnectKind.BANNED
    assert (await network.accounts())[0].banned
    await network.unban(PHONE)
    async with engine.link(auth, NO_OPTIONS) as link:
        await watch(link).expect(Connected)


async def test_a_dropped_connection_can_reconnect(engine, network, watch) -> None:
    auth = await linked_auth(engine, network, watch)
    async with engine.link(auth, NO_OPTIONS) as link:
        events = watch(link)
        await events.expect(Connected)
        await network.fault("drop", session="s1")
        assert [e.kind for e in await events.rest()] == [DisconnectKind.CONNECTION_LOST]
    async with engine.link(auth, NO_OPTIONS) as link:
        await watch(link).expect(Connected)


async def test_slow_delays_every_frame(engine, network, watch, clock: ManualClock) -> None:
    auth = await linked_auth(engine, network, watch)
    async with engine.link(auth, NO_OPTIONS) as link:
        events = watch(link)
        await events.expect(Connected)
        assert await network.fault("slow", session="s1", delay_ms=150) == 1
        (info,) = await network.connections()
        assert info.delay_ms == 150
        sent = await network.phone_send("15550002222", PHONE, text="slowly")
        await clock.wait_for_sleepers()
        assert clock.sleeps[-1] == 0.15
        await clock.advance(0.1)
        assert clock.sleeping == 1, "the message is still held back"
        await clock.advance(0.05)
        assert (await events.expect(MessageEvent)).id == sent
        ending = asyncio.create_task(network.fault("replaced", session="s1"))
        await clock.wait_for_sleepers()
        await clock.advance(0.15)
        (ended,) = await events.rest()
        assert await ending == 1
    assert isinstance(ended, Disconnected) and ended.kind is DisconnectKind.REPLACED


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"kind": "meteor", "session": "s1"}, InvalidInput, "unknown fault kind"),
        ({"kind": "drop"}, InvalidInput, "name the session or the phone"),
        ({"kind": "drop", "session": "nobody"}, NotFound, "session nobody"),
        ({"kind": "drop", "phone": "12"}, InvalidInput, "phone must be"),
        ({"kind": "slow", "session": "s1", "delay_ms": -1}, InvalidInput, "delay_ms"),
        ({"kind": "ban", "phone": "15559999999"}, NotFound, "no account"),
    ],
)
async def test_bad_faults_are_refused(kwargs, error, match, network) -> None:
    with pytest.raises(error, match=match):
        await network.fault(**kwargs)


async def test_unban_of_an_unknown_phone_is_not_found(network) -> None:
    with pytest.raises(NotFound):
        await network.unban("15559999999")
